# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Fine-tuning: teach the toy a motion it has never seen
#
# The toy SVD only knows shapes that slide in straight lines. Here it learns **gravity**: shapes that start at rest
# and fall, faster and faster, from a few dozen clips rendered for the purpose, in a few CPU minutes.
# `svdkit.finetune` trains with SVD's own objective (the one the toy was trained with) and measures each clip's
# conditioning (fps, motion bucket) instead of assuming it. We fine-tune twice, with **LoRA** adapters and with
# **full** fine-tuning, and measure three things on pictures the fine-tune never saw: whether the new motion is
# followed (the fitted vertical acceleration, and how far each shape strays from its true fall), what was
# forgotten (does `motion_bucket_id` still set the speed of the old world?), and the loss, as the steps go by.
# Last, LoRA at other ranks: what more (or fewer) trained weights buy.

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
model = "toy"            # the toy (CPU); a real model fine-tunes the same way on a GPU (and at its own size)
device = "auto"          # "auto": cuda, then mps, then cpu
seed = 0
num_inference_steps = 10
out_dir = "outputs/07_fine_tuning"
gravity = 12.0           # pixels per second squared: the new physics (0.24 px per frame squared at fps 7)
fps = 7
train_clips = 32         # falling-shape clips to fine-tune on (training scenes)
held_out = 6             # held-out scenes to measure on (never trained on, by the toy or here)
steps = 120              # optimizer steps of each fine-tune (about 0.5 s each on 2 CPU cores, batch 4)
batch_size = 4
lora_rank = 16
lora_ranks = [4, 64]     # other LoRA ranks to compare (the same clips, steps, seed and layers); [] for none
lora_lr = 5e-3
full_lr = 1e-3
lora_targets = r".*(transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)|temporal_res_block\.conv[12])"
buckets = [0, 128, 255]  # the old world's bucket response, before and after

# %%
# %matplotlib inline
import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import svdkit
from svdkit import metrics, viz
from svdkit.fine_tuning import motion_bucket, prepare_clips, trainable_parameters, validation_loss
from svdkit.toy import HELD_OUT_SEED, detect_shapes, render_background, render_clip, scene_colours, shape_positions

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(seed)
NUM_FRAMES = 14

# %% [markdown]
# ## 1 · The new physics
#
# `render_clip(..., gravity=g)` pulls every shape down with `g` pixels per second squared: it starts at rest
# (bucket 0 says no sliding) and falls `g t² / 2`, until it lies on the floor. The toy has never seen a shape
# speed up. The training clips are scenes the toy trained on, now falling; the held-out pictures are scenes
# nobody trained on.

# %%
clips = [render_clip(s, 0, fps, NUM_FRAMES, gravity=gravity) for s in range(train_clips)]
held = [HELD_OUT_SEED + i for i in range(held_out)]
viz.plot_filmstrips({"the toy's world": render_clip(held[0], 128, fps), "with gravity": render_clip(held[0], 0, fps,
                    gravity=gravity)}, title=f"a held-out scene, fps {fps}")

# %% [markdown]
# ## 2 · Measured conditioning
#
# A clip's `motion_bucket_id` is measured by one rule (`svdkit.fine_tuning.motion_bucket`): the optical-flow speed of
# what moves, in frame widths per second, with 255 at 0.375 widths a second. On the toy's own world the rule gives
# back the bucket a clip was rendered with (a few percent low: optical flow under-reads small shapes); on the
# falling clips it gives each clip the bucket of its average speed.

# %%
calibration = [(b, motion_bucket(render_clip(s, b, fps), fps)) for s in held[:3] for b in (32, 96, 160, 224)]
prepared = prepare_clips(svdkit.load_pipeline(model, device=device), clips, fps=fps)
measured = [c["motion_bucket_id"] for c in prepared]
bucket = float(np.median(measured))  # the bucket the held-out pictures are generated with
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
axes[0].plot(*zip(*calibration), "o")
axes[0].plot([0, 255], [0, 255], "k:")
axes[0].set(xlabel="bucket rendered with", ylabel="bucket measured", title="the rule on the toy's world")
axes[1].hist(measured, bins=12)
axes[1].set(xlabel="measured bucket", title=f"falling clips (median {bucket:.0f})")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3 · Numbers for "falls under gravity"
#
# Each shape is found by its colour in every frame (`detect_shapes`) while it is in the air. Pooling every shape's
# drop from its first position, `Δy = v t + a t² / 2` is fitted: `a` is the vertical acceleration in pixels per frame
# squared (the truth is `gravity / fps²`) and `v` the starting speed (0: dropped from rest). The most direct number
# is the **track error**: how far, in pixels, each shape is from where gravity would have put it, averaged over
# frames and shapes.

# %%
truth = gravity / fps**2


def falls(videos):
    """For {scene: frames}: the pooled fit of the shapes' drops (acceleration, starting speed) and the track error."""
    t_all, drop_all, errors = [], [], []
    for scene, frames in videos.items():
        true = shape_positions(scene, 0, fps, NUM_FRAMES, gravity=gravity)  # (F, N, 2), (x, y) last
        for k, (name, rgb) in enumerate(scene_colours(scene).items()):
            airborne = true[:, k, 1] < true[-1, k, 1] - 0.01  # the frames before it lands
            frames_used = np.flatnonzero(airborne) if airborne.sum() >= 6 else np.arange(NUM_FRAMES)
            track = [(t, max(found, key=lambda d: d.area)) for t in frames_used
                     if (found := detect_shapes(frames[t], {name: rgb}, background=render_background(scene)))]
            if len(track) < 6 or track[0][0] != 0:
                continue  # lost, or not found in the first frame
            t = np.array([i for i, _ in track])
            xy = np.array([(d.x, d.y) for _, d in track])  # (T, 2)
            t_all += list(t)
            drop_all += list(xy[:, 1] - xy[0, 1])
            errors.append(float(np.linalg.norm(xy - true[t, k], axis=1).mean()))
    t = np.array(t_all, float)
    v, a = np.linalg.lstsq(np.stack([t, t**2 / 2], 1), np.array(drop_all), rcond=None)[0]
    return {"acceleration": float(a), "start_speed": float(v), "track_error": float(np.mean(errors)),
            "shapes": len(errors)}


def held_out_clips(pipe):
    """Clips of the held-out pictures at the training clips' median bucket."""
    return {s: svdkit.generate(pipe, render_clip(s, 0, fps)[0], seed=seed, num_inference_steps=num_inference_steps,
                               motion_bucket_id=bucket, fps=fps).frames for s in held}


base = svdkit.load_pipeline(model, device=device)
videos = {"truth": {s: render_clip(s, 0, fps, gravity=gravity) for s in held}, "before": held_out_clips(base)}
fall = {name: falls(v) for name, v in videos.items()}
held_prepared = prepare_clips(base, list(videos["truth"].values()), fps=fps)  # the held-out falls, for the loss
held_out_loss = {"before": validation_loss(base, held_prepared, temporal_weight=4.0)}
print(f"gravity / fps² = {truth:.3f} px/frame²")
for name, f in fall.items():
    print(f"{name:7s} acceleration {f['acceleration']:6.3f}  starting speed {f['start_speed']:6.2f} px/frame  "
          f"track error {f['track_error']:5.2f} px  ({f['shapes']} shapes)")

# %% [markdown]
# ## 4 · Fine-tune: LoRA, then everything
#
# LoRA adds low-rank adapters (rank `lora_rank`) beside chosen layers and trains only those: here the attention
# projections and the temporal convolutions of the toy (`target_modules`); by default `finetune` adapts the
# attention only, but the toy keeps most of its motion in the temporal convolutions. Full fine-tuning trains every
# weight of the UNet. Both runs see the same clips, steps and seed; each writes its folder (weights as
# safetensors, `finetune.json`, `loss.json`, checkpoints). The training loss jumps from batch to batch (each has
# its own noise levels); the **held-out loss** (`validation_loss`: the held-out falling clips, fixed noise levels
# and noise) is the one to compare. `finetune` calls `callback(step, loss)` after every step and trains the
# pipeline's UNet in place, so the callback measures the held-out loss every `steps // 4` steps, on the weights of
# that moment (`validation_loss` draws from its own seeded generator: the run is the same with or without it).

# %%
every = max(1, steps // 4)
measured_at = sorted({*range(every, steps + 1, every), steps})  # steps done when the held-out loss is measured
settings = dict(steps=steps, batch_size=batch_size, fps=fps, temporal_weight=4.0, seed=seed, progress=False)


def fine_tune(name, method, **options):
    """Fine-tune a fresh pipeline into out/name; returns (the pipeline, its FineTune, the held-out loss by steps
    done [(0, before), (step, loss), ...])."""
    pipe = svdkit.load_pipeline(model, device=device)
    curve = [(0, held_out_loss["before"])]

    def watch(step, loss):
        if step + 1 in measured_at:
            curve.append((step + 1, validation_loss(pipe, held_prepared, temporal_weight=4.0)))

    run_dir = out / name
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time (finetune refuses to mix two runs)
    run = svdkit.finetune(pipe, clips, method=method, out_dir=run_dir, callback=watch, **settings, **options)
    return pipe, run, curve


lora_options = dict(lr=lora_lr, target_modules=lora_targets)
runs, pipes, curves = {}, {}, {}
for method, options in (("lora", dict(rank=lora_rank, **lora_options)), ("full", dict(lr=full_lr))):
    pipes[method], runs[method], curves[method] = fine_tune(method, method, **options)
    videos[method] = held_out_clips(pipes[method])
    fall[method] = falls(videos[method])
    held_out_loss[method] = curves[method][-1][1]  # the weights after the last step
    print(runs[method], f"- track error {fall[method]['track_error']:.2f} px, held-out loss "
          f"{held_out_loss['before']:.4f} -> {held_out_loss[method]:.4f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for method, run in runs.items():
    s, loss = np.array(run.losses).T
    window = min(10, len(loss))
    axes[0].plot(s[window - 1:] + 1, np.convolve(loss, np.ones(window) / window, mode="valid"), label=method)
    axes[1].plot(*zip(*curves[method]), "o-", label=method)
axes[0].set(xlabel="steps done", ylabel="loss (running mean of 10)", title="training loss (each batch its own noise)")
axes[1].set(xlabel="steps done", ylabel="held-out loss", title="held-out loss (fixed clips, noise)")
for ax in axes:
    ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# **What the steps did.** The right panel is the one to read: where a curve still falls at its last point, more
# steps would likely lower the held-out loss further; where it has flattened (or turned up), more steps buy little
# on pictures the fine-tune never saw. The training loss on the left cannot say this: it is measured on the clips
# being learned, and each batch draws its own noise levels.

# %% [markdown]
# ## 5 · Before and after, on held-out pictures
#
# The same held-out picture and seed, at the bucket measured on the training clips. Before: the shapes fly off in
# the toy's straight lines, at their own speed (and curve where they near an edge, which is why the acceleration
# alone says little here). After: they start at rest and drop, and the track error shrinks.

# %%
scene = held[0]
viz.plot_filmstrips({"gravity (truth)": videos["truth"][scene], "before": videos["before"][scene],
                     "LoRA": videos["lora"][scene], "full": videos["full"][scene]},
                    title=f"held-out scene {scene}, bucket {bucket:.0f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3))
for ax, (key, unit) in zip(axes, (("acceleration", "px/frame²"), ("start_speed", "px/frame"), ("track_error", "px"))):
    ax.bar(list(fall), [f[key] for f in fall.values()])
    ax.set(title=key.replace("_", " "), ylabel=unit)
axes[0].axhline(truth, color="k", ls=":")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6 · What was forgotten
#
# The old world: shapes sliding, their speed set by `motion_bucket_id`. For each model, clips of held-out pictures
# at each bucket, their motion measured by optical flow, against the world's own clips. A fine-tune that forgot
# the bucket draws a flat line.

# %%
old_world = {"truth": [metrics.motion(render_clip(s, b, fps)) for b in buckets for s in held[:3]]}
for name, pipe in (("before", base), ("lora", pipes["lora"]), ("full", pipes["full"])):
    old_world[name] = [metrics.motion(svdkit.generate(pipe, render_clip(s, b, fps)[0], seed=seed, fps=fps,
                                                      num_inference_steps=num_inference_steps,
                                                      motion_bucket_id=b).frames) for b in buckets for s in held[:3]]
response = {name: np.array(v).reshape(len(buckets), -1).mean(1).tolist() for name, v in old_world.items()}
fig, ax = plt.subplots(figsize=(5, 3))
for name, motion in response.items():
    ax.plot(buckets, motion, "o-" if name != "truth" else "k:", label=name)
ax.set(xlabel="motion_bucket_id", ylabel="motion (px/frame)", title="the old world's bucket response")
ax.legend()
plt.show()

# %% [markdown]
# The same LoRA weights load on their own, into the base model (`load_pipeline(model, finetuned=folder)`, or a
# stock diffusers pipeline with peft: see the README), and make the same clip.

# %%
reloaded = svdkit.load_pipeline(model, device=device, finetuned=out / "lora")
again = svdkit.generate(reloaded, render_clip(scene, 0, fps)[0], seed=seed, num_inference_steps=num_inference_steps,
                        motion_bucket_id=bucket, fps=fps).frames
print("reloaded LoRA makes the same clip:", bool(np.array_equal(again, videos["lora"][scene])))

# %% [markdown]
# ## 7 · What LoRA's rank does
#
# The rank sets how many weights the adapters train: each adapted layer gets a projection down to `rank` channels
# and one back up, so their count is proportional to the rank. Each rank of `lora_ranks` is fine-tuned with the
# same clips, steps, seed, learning rate and layers as the LoRA above; for each, the held-out loss as it trains, the
# number of trained weights, and the track error on the held-out pictures (measured as in section 3).

# %%
by_rank = {lora_rank: {"params": sum(p.numel() for p in trainable_parameters(pipes["lora"].unet, "lora").values()),
                       "curve": curves["lora"], "track_error": fall["lora"]["track_error"]}}
for r in sorted(set(lora_ranks) - {lora_rank}):
    pipe, _, curve = fine_tune(f"lora_rank{r}", "lora", rank=r, **lora_options)
    by_rank[r] = {"params": sum(p.numel() for p in trainable_parameters(pipe.unet, "lora").values()),
                  "curve": curve, "track_error": falls(held_out_clips(pipe))["track_error"]}
    del pipe
by_rank = dict(sorted(by_rank.items()))
for row in by_rank.values():
    row["held_out_loss"] = row["curve"][-1][1]

fig, ax = plt.subplots(figsize=(5, 3))
for r, row in by_rank.items():
    ax.plot(*zip(*row["curve"]), "o-", label=f"rank {r}")
ax.set(xlabel="steps done", ylabel="held-out loss", title="LoRA's held-out loss, by rank")
ax.legend()
plt.show()
table = pd.DataFrame({"trained weights": [row["params"] for row in by_rank.values()],
                      "held-out loss": [row["held_out_loss"] for row in by_rank.values()],
                      "track error (px)": [row["track_error"] for row in by_rank.values()]},
                     index=pd.Index(list(by_rank), name="rank"))
print(f"before fine-tuning: held-out loss {held_out_loss['before']:.4f}, "
      f"track error {fall['before']['track_error']:.2f} px; full fine-tuning: {held_out_loss['full']:.4f}, "
      f"{fall['full']['track_error']:.2f} px ({sum(p.numel() for p in pipes['full'].unet.parameters())} weights)")
table.round({"held-out loss": 4, "track error (px)": 2})

# %% [markdown]
# **How to read it.** The trained weights grow in proportion to the rank; the other two columns say what those
# weights bought. Compare the held-out loss and the track error down the table, against the line above it (the model
# before fine-tuning, and full fine-tuning): where a larger rank does not lower them, the smaller rank already holds
# this motion, at a fraction of the weights; where it does, the motion needed the room. The curves add the steps:
# every rank trained for the same steps, and one whose curve still falls at the last point had not finished
# learning. This is one seed and a few held-out pictures: a small difference may not hold for another seed.

# %%
summary = {
    "model": model, "gravity": gravity, "fps": fps, "steps": steps, "train_clips": train_clips,
    "held_out": held, "bucket": bucket, "truth_acceleration": truth, "falls": fall,
    "bucket_response": {"buckets": buckets, **response},
    "losses": {m: [r.losses[0][1], float(np.mean([x for _, x in r.losses[-10:]]))] for m, r in runs.items()},
    "held_out_loss": held_out_loss,
    "held_out_loss_by_step": {m: [list(point) for point in c] for m, c in curves.items()},
    "lora_ranks": {str(r): {"params": row["params"], "held_out_loss": row["held_out_loss"],
                            "track_error": row["track_error"], "held_out_loss_by_step": [list(p) for p in row["curve"]]}
                   for r, row in by_rank.items()},
    "reloaded_same": bool(np.array_equal(again, videos["lora"][scene])),
    "files": {m: sorted(p.name for p in (out / m).iterdir()) for m in runs},
}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
summary
