# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · fps: what the model is told, and how fast you play it
#
# "fps" means two different things around SVD, and mixing them up is behind many questions about it:
#
# - **conditioning fps** goes into the model. In step 2 (**condition**) it becomes one of the "added time ids"
#   (as fps − 1), and it tells the UNet in step 3 (**denoise**) how much time passes between two frames. It
#   changes the pixels.
# - **playback fps** is how fast a player shows the frames after step 4 (**decode**). The model never sees it,
#   and it changes no pixel, only how long the clip lasts.
#
# This notebook separates the two: one clip played at several rates, then clips conditioned at several fps and
# played at one rate.

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
seeds = [0, 1]           # every conditioning fps is run with each seed
seed = None              # the seed of the clips shown; None: the first of seeds
num_inference_steps = 10
image = None             # a path to your own image; None: the example image
out_dir = "outputs/04_fps_comparison"
fps_values = [3, 5, 7, 10, 15, 30]   # conditioning fps, swept
motion_bucket_id = 127
playback_rates = [4, 8, 16]          # one clip, played at each of these rates
playback_fps = 8                     # the one rate every swept clip is played at

# %% tags=["derived"]
# Values that follow from the parameters, so that any one of them can be set on its own (papermill's -p).
from svdkit.inputs import seed_list

seeds, seed = seed_list(seeds, seed)  # a seed set on its own joins seeds

# %%
# %matplotlib inline
import json
from pathlib import Path

import svdkit
from svdkit import metrics, sweep, viz
from svdkit.sweeps import views

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
pipe = svdkit.load_pipeline(model, device=device)
picture = svdkit.load_image(image) if image else viz.example_image()
picture

# %% [markdown]
# ## 1 · Playback fps: same frames, different speed
#
# One clip, generated once at conditioning fps 7, written at three playback rates. The frames are identical, so
# every measurement per frame is identical too; only the duration, and so the speed in pixels per second,
# changes. Nothing in steps 1-4 ran again.

# %%
import pandas as pd

video = svdkit.generate(pipe, picture, seed=seed, fps=7, motion_bucket_id=motion_bucket_id,
                        num_inference_steps=num_inference_steps)
playback = []
for rate in playback_rates:
    path = svdkit.write_video(out / f"playback_{rate}fps.mp4", video.frames, rate)
    back = svdkit.read_video(path)  # read the file back: its rate, its length, its motion
    motion = metrics.motion(back.frames)
    playback.append({"playback_fps": back.fps, "frames": len(back.frames), "seconds": len(back.frames) / back.fps,
                     "motion_px_per_frame": motion, "motion_px_per_second": motion * back.fps})
pd.DataFrame(playback).round(3)

# %%
for rate in playback_rates:
    video.fps = rate
    video.show(title=f"played at {rate} fps")

# %% [markdown]
# ## 2 · Conditioning fps: the model is told how much time passes
#
# Now the other fps. It enters in step 2, beside the bucket, and only step 3 can act on it. Same image, bucket
# and seeds; only the fps given to the model changes, and every clip is played at the same rate. If the model
# learned what fps means, a clip "filmed" at high fps moves less between two frames: the same speed, spread over
# more frames.

# %%
table = sweep(pipe, picture, {"fps": fps_values, "motion_bucket_id": motion_bucket_id,
                              "num_inference_steps": num_inference_steps},
              seeds=seeds, out_dir=out / "sweep")
table[["fps", "seed", "motion", "frame_diff", "flicker", "psnr_first"]].round(3)

# %%
grid = views.grid_video(table[table.seed == seed], fps=playback_fps, path=out / "conditioning_fps.mp4")
print(f"every clip played at {playback_fps} fps; labels are the conditioning fps")
grid.show()

# %% [markdown]
# Motion per frame against the conditioning fps, on a log axis. On the toy, the dashed line is its training
# world: speed set by the bucket, divided by fps, so pixels per frame fall as 1 / fps.

# %%
truth = None
if model == "toy":
    from svdkit.toy import pixels_per_frame
    truth = lambda f: pixels_per_frame(motion_bucket_id, f)  # noqa: E731
views.plot_metric(table, "fps", "motion", logx=True, truth=truth, truth_label="the toy's training world",
                  title="motion per frame vs conditioning fps (all played at one rate)")

# %% [markdown]
# ## 3 · The fps − 1 micro-conditioning, and what other tools send
#
# SVD was trained with the frame rate minus one as its conditioning number, so the diffusers pipeline (and
# svdkit, which follows it) subtracts 1 before the UNet sees it:

# %%
for f in (6, 7):
    trace = svdkit.generate(pipe, picture, fps=f, motion_bucket_id=motion_bucket_id, num_inference_steps=2,
                            capture=True).trace
    ids = [round(v, 3) for v in trace.added_time_ids[0].tolist()]
    print(f"fps={f}: the UNet receives [fps - 1, motion_bucket_id, noise_aug_strength] = {ids}")

# %% [markdown]
# Tools disagree on the default, and on whether their "fps" is the number before or after the subtraction. What
# reaches the UNet is what matters:
#
# | tool | its setting | default | the UNet receives | same clip in svdkit |
# |---|---|---|---|---|
# | diffusers `StableVideoDiffusionPipeline` | `fps` (subtracts 1) | 7 | 6 | `fps=7` |
# | Stability's `simple_video_sample.py` | `fps_id` (sent as is; saves the video at `fps_id + 1`) | 6 | 6 | `fps=7` |
# | Stability's Streamlit demo | `fps` (subtracts 1) | 6 | 5 | `fps=6` |
# | ComfyUI `SVD_img2vid_Conditioning` | `fps` (subtracts 1) | 6 | 5 | `fps=6` |
# | svdkit `generate` / `sweep` | `fps` (subtracts 1, as diffusers) | 7 (the model's registry row) | 6 | `fps=7` |
#
# So a ComfyUI workflow at its default and a diffusers script at its default condition on different frame rates
# (5 and 6); to reproduce a ComfyUI clip here, pass the same `fps` it shows. SVD-XT 1.1 was trained at a fixed
# fps of 6 (its registry row uses that).

# %% [markdown]
# ## 4 · So what does fps do?
#
# Playback fps never reaches steps 1-4; conditioning fps reaches step 2 as one number. Computed from this run's
# numbers:

# %%
t = metrics.trend(table, "fps", "motion")
rho, slope = t["spearman"], t["loglog_slope"]
if rho < -0.8:
    verdict = ("the conditioning fps tells the model how much time passes between frames: the higher it is, "
               "the less the clip moves from one frame to the next")
elif rho > 0.8:
    verdict = "on this model, a higher conditioning fps gives MORE motion per frame"
else:
    verdict = "on this model and image, the conditioning fps has no consistent effect on motion per frame"
durations = ", ".join(f"{p['seconds']:.2f}" for p in playback)
per_frame = [p["motion_px_per_frame"] for p in playback]
answer = (
    f"Playback fps changes no pixel: the same frames played at {playback_rates} fps last {durations} s, and "
    f"measure {min(per_frame):.2f}-{max(per_frame):.2f} px/frame in every file. Conditioning fps: {verdict} "
    f"(rank correlation {rho:+.2f} over {len(table)} clips; motion from {t['mean'][0]:.2f} px/frame at fps "
    f"{t['values'][0]:g} to {t['mean'][-1]:.2f} at fps {t['values'][-1]:g}). Against fps on a log-log scale, motion "
    f"per frame has slope {slope:.2f}; -1 would mean a fixed speed in pixels per second, split over fps frames.")
print(answer)

# %%
summary = {
    "model": model, "seeds": seeds, "num_inference_steps": num_inference_steps,
    "motion_bucket_id": motion_bucket_id, "fps": t["values"], "mean_motion": t["mean"], "std_motion": t["std"],
    "spearman": t["spearman"], "loglog_slope": t["loglog_slope"], "points": len(table),
    "playback": playback, "answer": answer,
}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
summary
