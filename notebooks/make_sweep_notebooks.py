"""Write the sweep notebooks 03 and 04 from the cell sources below: `python notebooks/make_sweep_notebooks.py`.

Same conventions as `make_notebooks.py` (whose first cell, summary cell and `build` these reuse): generated,
clean (no outputs, no execution counts), deterministic cell ids, one cell tagged `parameters`.
"""

from __future__ import annotations

import sys
from pathlib import Path


HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from make_notebooks import LOAD as _LOAD  # noqa: E402
from make_notebooks import SETUP, SUMMARY, build  # noqa: E402
from make_notebooks import main as write_notebooks  # noqa: E402

# The shared loading cell, with the sweep modules imported.
LOAD = _LOAD.replace("from svdkit import viz, widgets", "from svdkit import metrics, sweep, viz, views")

# ------------------------------------------------------------------------------------------------ 03

MOTION = [
    ("md", """\
# 03 · What does motion_bucket_id do? Measure it

People who use SVD keep asking what `motion_bucket_id` really does: "no rhyme or reason", "only two different
movements", "is it linear or logarithmic?". This notebook answers with measurements: the same image and seeds,
the bucket swept from 0 to 255, and every clip's motion read back from its pixels.

Where it enters: in step 2 (**condition**), `motion_bucket_id` is one of three numbers, the "added time ids",
that the UNet receives beside the image. Steps 1 (**encode**) and 4 (**decode**) never see it; only the
denoising in step 3 can turn it into movement."""),
    ("code", SETUP),
    ("params", '''\
model = "toy"            # "toy" (bundled, CPU), "svd", "svd-xt", "svd-xt-1-1", a hub id or a local diffusers folder
device = "auto"          # "auto": cuda, then mps, then cpu
seeds = [0, 1]           # every bucket is run with each seed: the spread between them is the noise
seed = seeds[0]          # the seed shown in the videos and the widget
num_inference_steps = 10
image = None             # a path to your own image; None: the example image
out_dir = "outputs/03_motion_bucket_sweep"
buckets = 6              # motion_bucket_id values, evenly spaced from 0 to 255
fps = 7                  # conditioning fps, the same for every clip
batch_size = "auto"      # points that share one UNet call'''),
    ("code", LOAD),
    ("md", """\
## 1 · Run the sweep

`sweep` runs all four steps for every point of a grid: here every bucket with every seed. It is quicker than a
loop of `generate` calls because step 1 runs once per image and seed (the image does not depend on the bucket)
and step 3 sends several buckets through the UNet in one batch. Every finished point is saved under
`out_dir/sweep/points/`, so running this cell again only reads them back."""),
    ("code", '''\
bucket_values = sweep.linspace(0, 255, buckets)
table = sweep(pipe, picture, {"motion_bucket_id": bucket_values, "fps": fps,
                              "num_inference_steps": num_inference_steps},
              seeds=seeds, out_dir=out / "sweep", batch_size=batch_size)
table[["motion_bucket_id", "seed", "motion", "frame_diff", "flicker", "psnr_first", "ssim_first"]].round(3)'''),
    ("md", """\
## 2 · The motion curve

Each clip gets a few numbers, measured on its frames once step 4 (**decode**) has turned the latents back into
pixels. None of them needs the model, so they work the same for the toy and for real SVD:"""),
    ("code", '''\
for name, meaning in metrics.METRICS.items():
    print(f"{name:>10}: {meaning}")'''),
    ("md", """\
Motion against the bucket: a dot per clip, the line through the mean over seeds, the band from the lowest to
the highest seed. On the toy, the dashed line is what its training world does: the bucket sets a speed, so
pixels per frame grow in a straight line with it."""),
    ("code", '''\
truth = None
if model == "toy":
    from svdkit.toy import pixels_per_frame
    truth = lambda b: pixels_per_frame(b, fps)  # noqa: E731
views.plot_metric(table, "motion_bucket_id", "motion", truth=truth, truth_label="the toy's training world")'''),
    ("code", '''\
views.plot_metric(table, "motion_bucket_id", "psnr_first",
                  title="first frame against the input: does more motion cost fidelity?")'''),
    ("md", """\
## 3 · Watch them

All buckets of one seed side by side, in sync. They share step 1 (the same image latents and embedding) and
start step 3 from the same noise, so whatever differs between them is what the bucket did in step 3. Then a
contact sheet: one row per clip, its frames left to right."""),
    ("code", '''\
grid = views.grid_video(table[table.seed == seed], fps=fps, path=out / "buckets.mp4")
grid.show()'''),
    ("code", '''\
sheet = views.contact_sheet(table[table.seed == seed], every=2, path=out / "contact_sheet.png")
sheet'''),
    ("md", """\
## 4 · Compare two buckets

Pick two buckets and a seed: the two clips play side by side, with their measurements. Their conditioning
differs in one number of step 2, nothing else. (The same comparison without widgets:
`views.compare(table, a, b)`.)"""),
    ("code", '''\
views.compare_widget(table, by="motion_bucket_id")'''),
    ("code", '''\
print(views.compare(table, bucket_values[0], bucket_values[-1], seed=seed).text)'''),
    ("md", """\
## 5 · So what does motion_bucket_id do?

The bucket is only a number handed to the UNet in step 2; what it does is whatever step 3 learned to make of
it. The answer below is computed from this run's numbers: run it on another model or image and it changes
with them."""),
    ("code", '''\
t = sweep.trend(table, "motion_bucket_id", "motion")
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
print(answer)'''),
    ("code", '''\
summary = {
    "model": model, "seeds": seeds, "num_inference_steps": num_inference_steps, "fps": fps,
    "buckets": t["values"], "mean_motion": t["mean"], "std_motion": t["std"],
    "spearman": t["spearman"], "ratio": t["ratio"], "r2_linear": t["r2_linear"], "r2_log": t["r2_log"],
    "distinct_steps": t["distinct_steps"], "points": len(table), "reused": int(table["reused"].sum()),
    "grid_video": str(out / "buckets.mp4"), "contact_sheet": str(out / "contact_sheet.png"), "answer": answer,
}
''' + SUMMARY),
]

# ------------------------------------------------------------------------------------------------ 04

FPS = [
    ("md", """\
# 04 · fps: what the model is told, and how fast you play it

"fps" means two different things around SVD, and mixing them up is behind many questions about it:

- **conditioning fps** goes into the model. In step 2 (**condition**) it becomes one of the "added time ids"
  (as fps − 1), and it tells the UNet in step 3 (**denoise**) how much time passes between two frames. It
  changes the pixels.
- **playback fps** is how fast a player shows the frames after step 4 (**decode**). The model never sees it,
  and it changes no pixel, only how long the clip lasts.

This notebook separates the two: one clip played at several rates, then clips conditioned at several fps and
played at one rate."""),
    ("code", SETUP),
    ("params", '''\
model = "toy"            # "toy" (bundled, CPU), "svd", "svd-xt", "svd-xt-1-1", a hub id or a local diffusers folder
device = "auto"          # "auto": cuda, then mps, then cpu
seeds = [0, 1]
seed = seeds[0]          # the seed of the clips shown
num_inference_steps = 10
image = None             # a path to your own image; None: the example image
out_dir = "outputs/04_fps_comparison"
fps_values = [3, 5, 7, 10, 15, 30]   # conditioning fps, swept
motion_bucket_id = 127
playback_rates = [4, 8, 16]          # one clip, played at each of these rates
playback_fps = 8                     # the one rate every swept clip is played at'''),
    ("code", LOAD),
    ("md", """\
## 1 · Playback fps: same frames, different speed

One clip, generated once at conditioning fps 7, written at three playback rates. The frames are identical, so
every measurement per frame is identical too; only the duration, and so the speed in pixels per second,
changes. Nothing in steps 1-4 ran again."""),
    ("code", '''\
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
pd.DataFrame(playback).round(3)'''),
    ("code", '''\
for rate in playback_rates:
    video.fps = rate
    video.show(title=f"played at {rate} fps")'''),
    ("md", """\
## 2 · Conditioning fps: the model is told how much time passes

Now the other fps. It enters in step 2, beside the bucket, and only step 3 can act on it. Same image, bucket
and seeds; only the fps given to the model changes, and every clip is played at the same rate. If the model
learned what fps means, a clip "filmed" at high fps moves less between two frames: the same speed, spread over
more frames."""),
    ("code", '''\
table = sweep(pipe, picture, {"fps": fps_values, "motion_bucket_id": motion_bucket_id,
                              "num_inference_steps": num_inference_steps},
              seeds=seeds, out_dir=out / "sweep")
table[["fps", "seed", "motion", "frame_diff", "flicker", "psnr_first"]].round(3)'''),
    ("code", '''\
grid = views.grid_video(table[table.seed == seed], fps=playback_fps, path=out / "conditioning_fps.mp4")
print(f"every clip played at {playback_fps} fps; labels are the conditioning fps")
grid.show()'''),
    ("md", """\
Motion per frame against the conditioning fps, on a log axis. On the toy, the dashed line is its training
world: speed set by the bucket, divided by fps, so pixels per frame fall as 1 / fps."""),
    ("code", '''\
truth = None
if model == "toy":
    from svdkit.toy import pixels_per_frame
    truth = lambda f: pixels_per_frame(motion_bucket_id, f)  # noqa: E731
views.plot_metric(table, "fps", "motion", logx=True, truth=truth, truth_label="the toy's training world",
                  title="motion per frame vs conditioning fps (all played at one rate)")'''),
    ("md", """\
## 3 · The fps − 1 micro-conditioning, and what other tools send

SVD was trained with the frame rate minus one as its conditioning number, so the diffusers pipeline (and
svdkit, which follows it) subtracts 1 before the UNet sees it:"""),
    ("code", '''\
for f in (6, 7):
    trace = svdkit.generate(pipe, picture, fps=f, motion_bucket_id=motion_bucket_id, num_inference_steps=2,
                            capture=True).trace
    ids = [round(v, 3) for v in trace.added_time_ids[0].tolist()]
    print(f"fps={f}: the UNet receives [fps - 1, motion_bucket_id, noise_aug_strength] = {ids}")'''),
    ("md", """\
Tools disagree on the default, and on whether their "fps" is the number before or after the subtraction. What
reaches the UNet is what matters:

| tool | its setting | default | the UNet receives | same clip in svdkit |
|---|---|---|---|---|
| diffusers `StableVideoDiffusionPipeline` | `fps` (subtracts 1) | 7 | 6 | `fps=7` |
| Stability's `simple_video_sample.py` | `fps_id` (sent as is; saves the video at `fps_id + 1`) | 6 | 6 | `fps=7` |
| Stability's Streamlit demo | `fps` (subtracts 1) | 6 | 5 | `fps=6` |
| ComfyUI `SVD_img2vid_Conditioning` | `fps` (subtracts 1) | 6 | 5 | `fps=6` |
| svdkit `generate` / `sweep` | `fps` (subtracts 1, as diffusers) | 7 (the model's registry row) | 6 | `fps=7` |

So a ComfyUI workflow at its default and a diffusers script at its default condition on different frame rates
(5 and 6); to reproduce a ComfyUI clip here, pass the same `fps` it shows. SVD-XT 1.1 was trained at a fixed
fps of 6 (its registry row uses that)."""),
    ("md", """\
## 4 · So what does fps do?

Playback fps never reaches steps 1-4; conditioning fps reaches step 2 as one number. Computed from this run's
numbers:"""),
    ("code", '''\
t = sweep.trend(table, "fps", "motion")
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
print(answer)'''),
    ("code", '''\
summary = {
    "model": model, "seeds": seeds, "num_inference_steps": num_inference_steps,
    "motion_bucket_id": motion_bucket_id, "fps": t["values"], "mean_motion": t["mean"], "std_motion": t["std"],
    "spearman": t["spearman"], "loglog_slope": t["loglog_slope"], "points": len(table),
    "playback": playback, "answer": answer,
}
''' + SUMMARY),
]

NOTEBOOKS = {
    "03_motion_bucket_sweep.ipynb": MOTION,
    "04_fps_comparison.ipynb": FPS,
}


if __name__ == "__main__":
    write_notebooks(NOTEBOOKS)
