# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · The toy world: the small SVD every notebook runs on
#
# Real SVD weights are gigabytes and want a GPU. svdkit ships a **toy SVD** instead: the same diffusers classes,
# scheduler and conditioning, a few MB of weights, trained by svdkit's own code on a synthetic world in which
# `motion_bucket_id` and `fps` have a physical meaning. This notebook shows that world, what the toy shares with
# real SVD and what it does not, and then trains a small one live, on this machine, in a couple of minutes.

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
seed = 0
num_inference_steps = 25
image = None             # a path to your own image; None: the example image
out_dir = "outputs/06_toy_world"
scene = 1_000_000        # a held-out scene (training never sees seeds from 1,000,000 up)
buckets = [0, 64, 128, 255]
train_steps = 150        # the live mini training run (about 0.7 s a step on 2 CPU cores)
pool_scenes = 24         # training scenes for it, each encoded at 4 speeds

# %%
# %matplotlib inline
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

import svdkit
from svdkit import metrics, viz
from svdkit.toy import MODEL_PATH, caption, pixels_per_frame, render_clip, shape_positions, train

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(seed)

# %% [markdown]
# ## 1 · The world
#
# A scene is a plain or gradient background and 1-3 shapes of distinct colours. Each shape slides in a straight
# line in its own direction and bounces off the edges. The two knobs have the meaning SVD gives them:
#
# * `motion_bucket_id` is the speed in pixels per **second**: 0 is still, 255 is the fastest (24 px/s);
# * `fps` says how much time passes between two frames: each frame moves `speed / fps` pixels.
#
# The renderer is deterministic: a seed is a scene, and the same scene can be played at any speed.

# %%
print(caption(scene))
viz.plot_filmstrips({f"bucket {b}": render_clip(scene, b, fps=7) for b in buckets},
                    title="one scene at four motion buckets, fps 7")

# %% [markdown]
# At the same bucket, fps 6 moves four times as far per frame as fps 24: the same speed, sampled four times as
# often. The dots are the shapes' true positions, the lines the rule `speed / fps`.

# %%
grid = np.linspace(0, 255, 52)
fig, ax = plt.subplots(figsize=(5, 3))
for f in (6, 12, 24):
    ax.plot(grid, [pixels_per_frame(b, f) for b in grid], label=f"fps {f}")
    measured = [np.median(np.linalg.norm(np.diff(shape_positions(scene, b, f), axis=0), axis=-1)) for b in buckets]
    ax.plot(buckets, measured, "o", color=ax.lines[-1].get_color())
ax.set(xlabel="motion_bucket_id", ylabel="pixels per frame", title="the world's physics")
ax.legend()
plt.show()

# %% [markdown]
# ## 2 · What is the same as real SVD, and what is not
#
# | | real SVD / SVD-XT | the toy |
# |---|---|---|
# | classes | `AutoencoderKLTemporalDecoder`, `UNetSpatioTemporalConditionModel`, `CLIPVisionModelWithProjection`, `EulerDiscreteScheduler` | the same classes |
# | scheduler | v-prediction, Karras sigmas 0.002-700 | the same configuration |
# | conditioning | image latents beside every frame (8 input channels), CLIP embedding for cross-attention, added time ids `[fps - 1, motion_bucket_id, noise_aug_strength]` | the same, built by the same pipeline code |
# | guidance | zeroed image latents and embedding for the unconditional branch, per-frame scale | the same |
# | size | 576x1024, 14 or 25 frames, about 1.5 B UNet parameters | 64x64, 14 frames, about 2.5 M |
# | training data | millions of real videos | clips rendered by `svdkit.toy.world` |
# | CLIP encoder | trained on images and text | a fixed random network: with one cross-attention token it can only add one vector per clip, and the image latents carry the picture |
# | added time embedding | 256 sinusoidal features per id | 8 (smooth over the ranges of fps and bucket) |
#
# So every line of sampling code, in diffusers or in svdkit, runs unchanged on both; what the toy cannot show is
# what a large model learned about the real world.

# %%
pipe = svdkit.load_pipeline(model, device=device)
sizes = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("vae", "unet", "image_encoder")}
disk_mb = sum(f.stat().st_size for f in MODEL_PATH.rglob("*.safetensors")) / 2**20
print({k: f"{v / 1e6:.2f} M parameters" for k, v in sizes.items()}, f"- {disk_mb:.1f} MB on disk")

# %% [markdown]
# ## 3 · How the bundled model was trained
#
# `python -m svdkit.toy.train` rebuilds it from seeds, in stages: the VAE learns to reconstruct clips of the
# world; training scenes are encoded once into a pool of latents, each scene at four speeds; the UNet learns
# EDM v-prediction, which is what `EulerDiscreteScheduler` samples from. The loss curves were written beside the
# weights.

# %%
record = json.loads((MODEL_PATH / "training_log.json").read_text())
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for ax, stage in zip(axes, ("vae", "unet")):
    rows = np.array(record[stage]["log"], dtype=float)
    ax.plot(rows[:, 0], rows[:, 1])
    ax.set(title=f"{stage}: {record['wall_seconds'][stage] / 60:.0f} min", xlabel="step", ylabel="loss", yscale="log")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4 · A mini training run, live
#
# The same code, small: a fresh UNet on the bundled VAE, `pool_scenes` scenes, `train_steps` steps. Each step draws
# four scenes, each at two of its four speeds with **one** noise sample per scene, relabels each clip with a random
# fps and the bucket that gives its speed at that fps, and scores the UNet's clean-clip estimate x0. The curve
# updates while it trains (the loss jumps from batch to batch: each batch has its own noise levels).

# %%
from diffusers import AutoencoderKLTemporalDecoder

where = "cuda" if torch.cuda.is_available() else "cpu"
mini = train.build_pipeline(seed)
mini.register_modules(vae=AutoencoderKLTemporalDecoder.from_pretrained(MODEL_PATH / "vae").eval())
pool = train.encode_pool(mini.vae, pool_scenes, device=where, seed=seed)
print("latent pool (scenes, speeds, frames, channels, h, w):", tuple(pool["latents"].shape))

losses = []
fig, ax = plt.subplots(figsize=(5, 3))
handle = display(fig, display_id=True)
plt.close(fig)

def on_log(step, loss):
    """Called by train_unet every few steps: redraw the curve."""
    losses.append((step, loss))
    ax.clear()
    ax.plot(*zip(*losses), "o-")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="mini run")
    handle.update(fig)

start = time.time()
train.train_unet(mini, pool, train_steps, device=where, seed=seed, callback=on_log)
train_seconds = time.time() - start
print(f"{train_steps} steps in {train_seconds:.0f} s")

# %% [markdown]
# The mini model next to the bundled one, same image, same seed, bucket 255. A couple of minutes of training
# gives blobs that roughly keep the picture; the bundled model trained for about half an hour.

# %%
picture = render_clip(scene)[0]
settings = dict(seed=seed, num_inference_steps=num_inference_steps, motion_bucket_id=255)
samples = {f"mini, {train_steps} steps": svdkit.generate(mini, picture, **settings).frames,
           "bundled": svdkit.generate(pipe, picture, **settings).frames,
           "the world": render_clip(scene, 255, fps=7)}
viz.plot_filmstrips(samples, title="bucket 255")

# %% [markdown]
# ## 5 · Does the bundled model listen to its knobs?
#
# Clips from the bundled model at each bucket, their motion measured by optical flow (`svdkit.metrics.motion`,
# pixels per frame), against the same measure on the world's true clips. `evaluations/toy_quality.py` does this on
# held-out scenes with many seeds and checks the targets.

# %%
generated = {b: svdkit.generate(pipe, picture, seed=seed, num_inference_steps=num_inference_steps,
                                motion_bucket_id=b).frames for b in buckets}
motion = {b: metrics.motion(frames) for b, frames in generated.items()}
true_motion = {b: metrics.motion(render_clip(scene, b, fps=7)) for b in buckets}
for b in buckets:
    print(f"bucket {b:3d}: generated {motion[b]:5.2f} px/frame   true {true_motion[b]:5.2f}")
viz.plot_filmstrips({f"bucket {b}": f for b, f in generated.items()}, title="the bundled toy, one seed")

# %%
summary = {
    "model": model, "scene": scene, "caption": caption(scene), "train_steps": train_steps,
    "train_seconds": train_seconds, "losses": [loss for _, loss in losses],
    "pool_shape": list(pool["latents"].shape), "mini_frames_shape": list(samples[f"mini, {train_steps} steps"].shape),
    "unet_parameters": sizes["unet"], "disk_mb": disk_mb,
    "motion_by_bucket": {str(b): motion[b] for b in buckets},
    "true_motion_by_bucket": {str(b): true_motion[b] for b in buckets},
}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
summary
