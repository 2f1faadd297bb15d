# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · What does motion_bucket_id do? Measure it
#
# People who use SVD keep asking what `motion_bucket_id` really does: "no rhyme or reason", "only two different
# movements", "is it linear or logarithmic?". This notebook answers with measurements: the same image and seeds,
# the bucket swept from 0 to 255, and every clip's motion read back from its pixels.
#
# Where it enters: in step 2 (**condition**), `motion_bucket_id` is one of three numbers, the "added time ids",
# that the UNet receives beside the image. Steps 1 (**encode**) and 4 (**decode**) never see it; only the
# denoising in step 3 can turn it into movement.

# %%
# Setup: install svdkit when it is missing; in Colab, also turn on its widget manager. Elsewhere this does nothing.
SVDKIT_SOURCE = "git+https://github.com/svdkit/svdkit"  # where svdkit installs from (see the README)
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("svdkit") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", SVDKIT_SOURCE], check=True)
if "google.colab" in sys.modules:
    from google.colab import output
    output.enable_custom_widget_manager()

# %% tags=["parameters"]
model = "toy"            # "toy" (bundled, CPU), "svd", "svd-xt", "svd-xt-1-1", a hub id or a local diffusers folder
device = "auto"          # "auto": cuda, then mps, then cpu
seeds = [0, 1]           # every bucket is run with each seed: the spread between them is the noise
seed = None              # the seed shown in the videos and the widget; None: the first of seeds
num_inference_steps = 10
image = None             # a path to your own image; None: the example image
out_dir = "outputs/03_motion_bucket_sweep"
buckets = 6              # motion_bucket_id values, evenly spaced from 0 to 255
fps = 7                  # conditioning fps, the same for every clip
batch_size = "auto"      # points that share one UNet call

# %% tags=["derived"]
# Values that follow from the parameters, so that any one of them can be set on its own (papermill's -p).
from svdkit.inputs import seed_list

seeds, seed = seed_list(seeds, seed)  # a seed set on its own joins seeds

# %%
# %matplotlib inline
import json
from pathlib import Path

import numpy as np

import svdkit
from svdkit import metrics, sweep, sweeps, viz
from svdkit.sweeps import views

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
pipe = svdkit.load_pipeline(model, device=device)
picture = svdkit.load_image(image) if image else viz.example_image()
picture

# %% [markdown]
# ## 1 · Run the sweep
#
# `sweep` runs all four steps for every point of a grid: here every bucket with every seed. It is quicker than a
# loop of `generate` calls because step 1 runs once per image and seed (the image does not depend on the bucket)
# and step 3 sends several buckets through the UNet in one batch. Every finished point is saved under
# `out_dir/sweep/points/`, so running this cell again only reads them back.

# %%
bucket_values = sweeps.linspace(0, 255, buckets)
table = sweep(pipe, picture, {"motion_bucket_id": bucket_values, "fps": fps,
                              "num_inference_steps": num_inference_steps},
              seeds=seeds, out_dir=out / "sweep", batch_size=batch_size)
table[["motion_bucket_id", "seed", "motion", "frame_diff", "flicker", "psnr_first", "ssim_first"]].round(3)

# %% [markdown]
# ## 2 · The motion curve
#
# Each clip gets a few numbers, measured on its frames once step 4 (**decode**) has turned the latents back into
# pixels. None of them needs the model, so they work the same for the toy and for real SVD:

# %%
for name, meaning in metrics.METRICS.items():
    print(f"{name:>10}: {meaning}")

# %% [markdown]
# Motion against the bucket: a dot per clip, the line through the mean over seeds, the band from the lowest to
# the highest seed. On the toy, the dashed line is what its training world does: the bucket sets a speed, so
# pixels per frame grow in a straight line with it.

# %%
truth = None
if model == "toy":
    from svdkit.toy import pixels_per_frame
    truth = lambda b: pixels_per_frame(b, fps)  # noqa: E731
views.plot_metric(table, "motion_bucket_id", "motion", truth=truth, truth_label="the toy's training world")

# %%
views.plot_metric(table, "motion_bucket_id", "psnr_first",
                  title="first frame against the input: does more motion cost fidelity?")

# %% [markdown]
# ## 3 · Watch them
#
# All buckets of one seed side by side, in sync. They share step 1 (the same image latents and embedding) and
# start step 3 from the same noise, so whatever differs between them is what the bucket did in step 3. Then a
# contact sheet: one row per clip, its frames left to right.

# %%
grid = views.grid_video(table[table.seed == seed], fps=fps, path=out / "buckets.mp4")
grid.show()

# %%
sheet = views.contact_sheet(table[table.seed == seed], every=2, path=out / "contact_sheet.png")
sheet

# %% [markdown]
# ## 4 · Compare two buckets
#
# Pick two buckets and a seed: the two clips play side by side, with their measurements. Their conditioning
# differs in one number of step 2, nothing else. (The same comparison without widgets:
# `views.compare(table, a, b)`.)

# %%
views.compare_widget(table, by="motion_bucket_id")

# %%
print(views.compare(table, bucket_values[0], bucket_values[-1], seed=seed).text)

# %% [markdown]
# ## 5 · So what does motion_bucket_id do?
#
# The bucket is only a number handed to the UNet in step 2; what it does is whatever step 3 learned to make of
# it. The answer below is computed from this run's numbers: run it on another model or image and it changes
# with them.

# %%
t = metrics.trend(table, "motion_bucket_id", "motion")
rho, ratio = t["spearman"], t["ratio"]
if rho > 0.8:
    verdict = "motion_bucket_id sets how much the clip moves: the higher the bucket, the more motion"
elif rho < -0.8:
    verdict = "on this model, a higher motion_bucket_id gives LESS motion"
else:
    verdict = "on this model and image, motion_bucket_id has no consistent effect on motion"
if abs(rho) <= 0.8:
    shape = "there is no trend to fit"
elif t["r2_linear"] >= t["r2_log"]:
    shape = "a straight line fits the means better than a log curve"
else:
    shape = "a log curve fits the means better than a straight line"
levels = t["distinct_steps"] + 1
answer = (
    f"{verdict} (rank correlation {rho:+.2f} over {len(table)} clips). "
    f"From bucket {t['values'][0]:g} to {t['values'][-1]:g} the mean motion goes from {t['mean'][0]:.2f} to "
    f"{t['mean'][-1]:.2f} px/frame" + (f", {ratio:.1f}x as much" if np.isfinite(ratio) else "") + ". "
    f"{t['distinct_steps']} of the {len(t['values']) - 1} steps between neighbouring buckets change the motion by "
    f"more than twice the seed-to-seed spread ({t['noise']:.2f} px/frame): about {levels} "
    f"level{'s' if levels != 1 else ''} of motion you can tell apart with {len(seeds)} seeds. Shape: {shape} "
    f"(R^2 {t['r2_linear']:.2f} linear, {t['r2_log']:.2f} log).")
print(answer)

# %%
summary = {
    "model": model, "seeds": seeds, "num_inference_steps": num_inference_steps, "fps": fps,
    "buckets": t["values"], "mean_motion": t["mean"], "std_motion": t["std"],
    "spearman": t["spearman"], "ratio": t["ratio"], "r2_linear": t["r2_linear"], "r2_log": t["r2_log"],
    "distinct_steps": t["distinct_steps"], "points": len(table), "reused": int(table["reused"].sum()),
    "grid_video": str(out / "buckets.mp4"), "contact_sheet": str(out / "contact_sheet.png"), "answer": answer,
}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
summary
