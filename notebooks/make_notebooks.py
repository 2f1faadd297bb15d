"""Write the notebooks 00-02 and 06 from the cell sources below: `python notebooks/make_notebooks.py`.

The .ipynb files are generated, clean (no outputs, no execution counts) and deterministic (fixed cell ids), so a
change to a notebook is a change to this file, and its diff reads as Python. Each notebook has a cell tagged
`parameters` that papermill overrides (`python -m svdkit notebooks`, tests/test_notebooks.py).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

# The same first code cell in every notebook.
SETUP = '''\
# Setup: install svdkit when it is missing; in Colab, also turn on its widget manager. Elsewhere this does nothing.
SVDKIT_SOURCE = "git+https://github.com/svdkit/svdkit"  # where svdkit installs from (see the README)
import importlib.util, subprocess, sys
if importlib.util.find_spec("svdkit") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", SVDKIT_SOURCE], check=True)
if "google.colab" in sys.modules:
    from google.colab import output
    output.enable_custom_widget_manager()'''

COMMON_PARAMETERS = '''\
model = "toy"            # "toy" (bundled, CPU), "svd", "svd-xt", "svd-xt-1-1", a hub id or a local diffusers folder
device = "auto"          # "auto": cuda, then mps, then cpu
seed = 0
num_inference_steps = 25
image = None             # a path to your own image; None: the example image'''

LOAD = '''\
%matplotlib inline
import json
from pathlib import Path

import numpy as np
import svdkit
from svdkit import viz, widgets

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
pipe = svdkit.load_pipeline(model, device=device)
picture = svdkit.load_image(image) if image else viz.example_image()
picture'''

SUMMARY = '''\
(out / "summary.json").write_text(json.dumps(summary, indent=2))
summary'''


def _parameters(name: str, extra: str) -> str:
    return f'{COMMON_PARAMETERS}\nout_dir = "outputs/{name}"\n{extra}'


QUICKSTART = [
    ("md", """\
# 00 · Quickstart: one image in, one clip out

Stable Video Diffusion (SVD) turns one image into a short clip in four steps:

1. **encode** the image: a CLIP embedding says what is in it, VAE latents say where everything is;
2. **condition** on it: every frame's latents get the image latents beside them, and three numbers
   (fps, motion, noise augmentation) say how the clip should move;
3. **denoise** the stack of frames together, from pure noise, one step per noise level;
4. **decode** the latents back to pixels.

This notebook runs all four with one call, saves the clip, then turns one knob. The bundled toy model runs on
a CPU in seconds; on a GPU, set `model = "svd-xt"` for the real thing."""),
    ("code", SETUP),
    ("params", _parameters("00_quickstart", '''\
motion_bucket_id = 127
motions = [10, 127, 255]  # the motion_bucket_id values compared at the end''')),
    ("md", """\
## Load a model

A pipeline holds what the four steps need: the CLIP image encoder and the VAE (steps 1 and 4), the UNet
(steps 2 and 3), and the scheduler that sets the noise levels (step 3)."""),
    ("code", LOAD),
    ("md", """\
## Generate a clip

`generate` runs the four steps. The same image, seed and settings give the same clip."""),
    ("code", '''\
video = svdkit.generate(pipe, picture, seed=seed, num_inference_steps=num_inference_steps,
                        motion_bucket_id=motion_bucket_id)
video'''),
    ("code", "video.show()"),
    ("code", 'viz.plot_filmstrips(video.frames, title="every frame, left to right")'),
    ("md", """\
## Save it

`Video.save` writes the clip and, beside it, a JSON record of the model, seed, every setting and the library
versions: enough to make the same clip again."""),
    ("code", '''\
path = video.save(out / "clip.mp4")
print("wrote", path, "and", path.with_suffix(".json"))'''),
    ("md", """\
## Turn one knob: motion_bucket_id

In step 2 the UNet also receives `motion_bucket_id`, a number from 0 to 255 that says how much the clip should
move. Same image, same seed, three values. The frame differences measure how much each pixel changes from one
frame to the next."""),
    ("code", '''\
clips = {m: svdkit.generate(pipe, picture, seed=seed, num_inference_steps=num_inference_steps,
                            motion_bucket_id=m).frames for m in motions}
viz.plot_filmstrips({f"motion {m}": frames for m, frames in clips.items()})'''),
    ("code", '''\
motion = {m: float(viz.frame_differences(frames).mean()) for m, frames in clips.items()}
print("mean change per pixel between neighbouring frames (0-255):", motion)
viz.plot_frame_differences(clips[motions[-1]], title=f"where the pixels change at motion_bucket_id {motions[-1]}")'''),
    ("md", """\
## Where to go next

- `01_encoding`: steps 1 and 2 up close: the VAE latents, noise augmentation, the CLIP embedding and exactly
  what the UNet receives.
- `02_denoising`: step 3 frame by frame: every intermediate prediction, the per-frame guidance and the temporal
  attention that ties the frames together.
- The notebooks after these take SVD's other knobs apart, one at a time."""),
    ("code", '''\
summary = {
    "model": model, "seed": seed, "num_inference_steps": num_inference_steps,
    "frames_shape": list(video.frames.shape), "clip": str(path), "seconds": video.params["seconds"],
    "motion_by_bucket": motion,
}
''' + SUMMARY),
]


ENCODING = [
    ("md", """\
# 01 · Encoding: what SVD makes of your image

Before any frame exists, SVD turns the image into what the UNet reads: VAE latents and a CLIP embedding
(step 1, encode), and three conditioning numbers (step 2, condition). This notebook builds each piece by hand
and checks it against what `generate` uses."""),
    ("code", SETUP),
    ("params", _parameters("01_encoding", '''\
noise_aug_strength = 0.02                  # SVD's default
strengths = [0.0, 0.02, 0.1, 0.3, 1.0]     # noise augmentation strengths compared
fps = 7
motion_bucket_id = 127''')),
    ("code", LOAD),
    ("md", """\
## Preprocessing: resize and normalise

Step 1 starts from pixels: the image is resized to the output size and its values mapped from 0…255 to −1…1,
the range the VAE was trained on."""),
    ("code", '''\
pixels = viz.preprocess(pipe, picture)  # (1, 3, H, W)
print("pixels", tuple(pixels.shape), f"from {pixels.min():.2f} to {pixels.max():.2f}")'''),
    ("md", """\
## VAE latents

The VAE encoder squeezes each 8 × 8 patch of pixels into 4 numbers: a B × 3 × H × W image becomes
B × 4 × H/8 × W/8 latents, a small picture with 4 channels instead of 3 colours. The rest of SVD works on these."""),
    ("code", '''\
latents = viz.encode_latents(pipe, pixels)  # (1, 4, H/8, W/8)
print("latents", tuple(latents.shape))
viz.plot_latent_grid(latents[0], title="the image's 4 latent channels")'''),
    ("md", """\
### The scaling factor

While denoising, the frames' latents are multiplied by the VAE's scaling factor, so that they have roughly unit
variance, like the noise they are mixed with. SVD's *condition* latents, concatenated to every frame, are **not**
scaled. A run of `generate` records them; they equal the unscaled latents of the noise-augmented image, made by
hand here."""),
    ("code", '''\
scaling_factor = pipe.vae.config.scaling_factor
print(f"scaling factor {scaling_factor:.5g}: latent std {latents.std():.3f} unscaled, "
      f"{(latents * scaling_factor).std():.3f} scaled")
video = svdkit.generate(pipe, picture, seed=seed, num_inference_steps=num_inference_steps, capture=True,
                        fps=fps, motion_bucket_id=motion_bucket_id, noise_aug_strength=noise_aug_strength)
trace = video.trace
by_hand = viz.encode_latents(pipe, viz.noise_augment(pixels, noise_aug_strength, seed))
condition_gap = float((trace.image_latents - by_hand).abs().max())
print("condition latents in generate vs unscaled latents by hand, largest difference:", condition_gap)'''),
    ("md", """\
## Reconstruction

Decoding the latents again shows what the squeeze keeps (step 4 does the same for every frame). The peak
signal-to-noise ratio (PSNR) measures the error; above about 30 dB it is hard to see."""),
    ("code", '''\
rebuilt = viz.to_uint8(viz.decode_image(pipe, latents))[0]
original = viz.to_uint8(pixels)[0]
reconstruction_psnr = viz.psnr(original, rebuilt)
viz.plot_images({"input": original, "reconstruction": rebuilt,
                 "|difference|": viz.frame_differences([original, rebuilt])[0]},
                title=f"VAE round trip: PSNR {reconstruction_psnr:.1f} dB")'''),
    ("md", """\
## Noise augmentation

Before encoding, SVD adds a little Gaussian noise to the image: `noise_aug_strength`, 0.02 by default. Trained
this way, the UNet does not copy the image pixel for pixel; more noise loosens its hold and allows more motion.
The strength is also one of the conditioning numbers, so the UNet knows how much was added."""),
    ("code", "viz.plot_noise_augmentation(pipe, picture, strengths, seed=seed)"),
    ("md", "Try any strength: the VAE encodes again each time you let go of the slider."),
    ("code", "widgets.noise_augmentation_slider(pipe, picture, seed=seed, value=noise_aug_strength)"),
    ("md", """\
## The CLIP image embedding

The other half of step 1: CLIP looks at the image at 224 × 224 pixels, whatever the output size, and sums it up
in one vector. The UNet reads that vector through cross-attention in its blocks. For the unguided pass of
classifier-free guidance the vector is all zeros."""),
    ("code", '''\
embedding = viz.clip_embedding(pipe, picture)  # (1, 1, D)
embedding_gap = float((embedding - trace.image_embeddings).abs().max())
print("embedding", tuple(embedding.shape), "- largest difference from the one generate used:", embedding_gap)
viz.plot_images({"your image": np.asarray(picture), "what CLIP sees": viz.clip_input(pipe, picture)})'''),
    ("md", """\
## The added time ids

Step 2 adds three numbers, embedded like the diffusion time step: `fps − 1`, `motion_bucket_id` and
`noise_aug_strength`. The UNet was trained with the fps shifted by one, so `fps=7` reaches it as 6."""),
    ("code", '''\
print("added time ids:", trace.added_time_ids[0].tolist())
viz.plot_added_time_ids(trace.added_time_ids)'''),
    ("md", """\
## What the UNet receives

At every denoising step each frame enters the UNet with 8 channels: its 4 noisy latents (scaled by
1/√(σ²+1)) and the 4 condition latents, the same in every frame. The frames start apart only in their noise;
the image is the anchor they share."""),
    ("code", '''\
unet_in = viz.unet_input(trace, step=0)  # (F, 8, h, w)
F = unet_in.shape[0]
print("UNet input", tuple(unet_in.shape), "= frames x (4 noisy + 4 image) channels x h x w")
viz.plot_latent_grid(unet_in, frames=[0, F // 2, F - 1], title="channels 0-3: the noise; 4-7: the image, repeated")'''),
    ("code", '''\
condition_spread = float((unet_in[:, 4:] - unet_in[:1, 4:]).abs().max())
print("largest difference in channels 4-7 between frames:", condition_spread)'''),
    ("code", '''\
summary = {
    "model": model, "seed": seed,
    "latent_shape": list(latents.shape), "scaling_factor": scaling_factor,
    "reconstruction_psnr": reconstruction_psnr, "condition_latents_gap": condition_gap,
    "clip_embedding_shape": list(embedding.shape), "clip_embedding_gap": embedding_gap,
    "added_time_ids": trace.added_time_ids[0].tolist(),
    "unet_input_shape": list(unet_in.shape), "condition_spread_across_frames": condition_spread,
}
''' + SUMMARY),
]


DENOISING = [
    ("md", """\
# 02 · Denoising, step by step and frame by frame

Step 3 of SVD is where the clip appears. All frames start as pure noise and are denoised together, one step
per noise level; at every step the UNet predicts the clean latents (x0) of every frame, and the sampler moves
part of the way there. This notebook records every step (`capture=True`) and looks along both axes: steps and
frames."""),
    ("code", SETUP),
    ("params", _parameters("02_denoising", '''\
show_step = 5            # the step marked on the noise schedule
guidances = ["linear", "constant", "triangle"]  # guidance schedules compared; the first is the reference
attention_steps = None   # steps whose temporal attention is drawn; None: first, middle, last''')),
    ("code", LOAD),
    ("md", """\
## Capture a trace

With `capture=True`, `generate` keeps every step: the noisy latents x_t going in, the predicted clean latents
x0, and the UNet's outputs with and without the image."""),
    ("code", '''\
video = svdkit.generate(pipe, picture, seed=seed, num_inference_steps=num_inference_steps, capture=True)
trace = video.trace
print("x0 at every step:", tuple(trace.x0.shape), "= steps x frames x channels x h x w")
video.show()'''),
    ("md", """\
## The noise schedule

σ is the noise level of each step. It falls from hundreds, where the latents are pure noise, to almost 0. The
levels are spaced so that many steps are spent at low noise, where the details are decided."""),
    ("code", '''\
step = min(show_step, trace.num_steps - 1)
viz.plot_sigmas(trace.sigmas, step=step)'''),
    ("md", """\
At high σ the noisy latents are Gaussian noise of standard deviation σ, almost exactly; as σ falls, the
clip's own values show through."""),
    ("code", "viz.plot_latent_histograms(trace)"),
    ("md", """\
## Every step, every frame

Rows are steps, columns are frames, drawn with the cheap colour preview (compared with the real decoder below).
x_t is what the UNet receives; x0 is its guess of the finished clip. Early guesses are blurry averages, since at
high noise many clips are possible; they sharpen as σ falls, and the frames move apart as the motion is decided."""),
    ("code", '''\
viz.plot_step_frame_grid(viz.trace_previews(trace, "x_t", pipe), sigmas=trace.sigmas,
                         title="x_t: the noisy latents, as the UNet sees them")'''),
    ("code", '''\
viz.plot_step_frame_grid(viz.trace_previews(trace, "x0", pipe), sigmas=trace.sigmas,
                         title="x0: the UNet's guess of the clean latents")'''),
    ("md", """\
How far is each step's guess from the latents that step 4 will decode? The distance shrinks to 0 at the last
step, where the guess and the result are the same."""),
    ("code", '''\
distances = viz.x0_distances(trace)
viz.plot_x0_distances(trace)'''),
    ("md", """\
## Scrub the trace

The trace holds step 3 in full, for every step and every frame. Move through it, and switch between x_t, x0,
the UNet output with and without the image, and the guidance delta. Nothing is computed again: the pictures come
from the recorded trace."""),
    ("code", "widgets.trace_scrubber(trace, model=pipe)"),
    ("md", """\
## The denoising as a video

Step 3 as a film: each video frame is one denoising step, showing the clip's frames side by side as x0 previews.
The coarse layout comes first, the details after."""),
    ("code", '''\
progression = viz.denoising_video(trace, pipe)
svdkit.write_video(out / "denoising.gif", progression, fps=4)
svdkit.Video(frames=progression, fps=4).show()'''),
    ("md", """\
## Cheap preview versus full decode

Step 4, the VAE decoder, is the costly one. To look at latents, a linear map from the 4 channels to RGB is
almost free: fitted by least squares on sample images for the toy, the published Stable Diffusion factors for
real SVD. Here is how close it comes to the decoder on the final latents."""),
    ("code", '''\
figure, preview_rmse = viz.compare_preview(pipe, trace.latents)
figure'''),
    ("md", """\
## Guidance, per frame

Each step runs the UNet with and without the image and pushes the result away from the unguided output:
`uncond + g · (cond − uncond)`. In SVD, g differs per frame: by default it ramps from `min_guidance_scale` on
the first frame, which is close to the image anyway, to `max_guidance_scale` on the last."""),
    ("code", 'viz.plot_guidance(trace.guidance, title="the per-frame guidance of this clip")'),
    ("md", """\
Other schedules on the same seed: "constant" guides every frame at the maximum, "triangle" is low at both ends
and highest mid-clip. The curves below show, frame by frame, how far each clip moves from the first schedule's."""),
    ("code", '''\
frames_count = len(trace.guidance)
viz.plot_guidance({g: svdkit.guidance_schedule(g, frames_count) for g in guidances})'''),
    ("code", '''\
clips = {g: svdkit.generate(pipe, picture, seed=seed, num_inference_steps=num_inference_steps, guidance=g).frames
         for g in guidances}
viz.plot_filmstrips(clips)'''),
    ("code", '''\
reference = guidances[0]
change = {g: viz.frame_rmse(clips[g], clips[reference]) for g in guidances[1:]}
viz.plot_per_frame(change, ylabel=f"RMS difference from {reference}", title="where the guidance schedules differ")'''),
    ("md", """\
## Temporal attention

What makes SVD a video model are its temporal layers: in every UNet block, after the spatial layers, each pixel
position attends across the frames. A heat map shows, for one block at one step, how each frame (row) spreads its
attention over all frames (columns), averaged over heads and positions. A hook records the weights and leaves the
result unchanged."""),
    ("code", '''\
attention_video, maps = viz.capture_temporal_attention(pipe, picture, seed=seed,
                                                       num_inference_steps=num_inference_steps)
unchanged = bool((attention_video.frames == video.frames).all())
modules = viz.temporal_attention_modules(pipe.unet)
print(len(modules), "temporal attention modules; clip identical with the hook:", unchanged)'''),
    ("code", '''\
steps = attention_steps or sorted({0, trace.num_steps // 2, trace.num_steps - 1})
viz.plot_temporal_attention(maps, steps=[steps[-1]], title=f"every temporal block at step {steps[-1]}")'''),
    ("code", '''\
viz.plot_temporal_attention(maps, modules=[modules[0]], steps=steps, title="one block across the steps")'''),
    ("code", '''\
attention = viz.attention_summary(maps, steps=steps)
attention  # self: weight a frame gives itself; reach: mean distance in frames to what it attends to'''),
    ("code", '''\
summary = {
    "model": model, "seed": seed, "num_inference_steps": num_inference_steps,
    "sigmas": trace.sigmas.tolist(), "x0_distance_to_final": distances.tolist(), "preview_rmse": preview_rmse,
    "guidance": trace.guidance.tolist(), "guidance_reference": reference,
    "guidance_change": {g: float(c.mean()) for g, c in change.items()},
    "attention_output_unchanged": unchanged, "attention": attention,
    "attention_row_sum_error": max(float((m.sum(-1) - 1).abs().max()) for m in maps.values()),
}
''' + SUMMARY),
]

TOY_WORLD = [
    ("md", """\
# 06 · The toy world: the small SVD every notebook runs on

Real SVD weights are gigabytes and want a GPU. svdkit ships a **toy SVD** instead: the same diffusers classes,
scheduler and conditioning, a few MB of weights, trained by svdkit's own code on a synthetic world in which
`motion_bucket_id` and `fps` have a physical meaning. This notebook shows that world, what the toy shares with
real SVD and what it does not, and then trains a small one live, on this machine, in a couple of minutes."""),
    ("code", SETUP),
    ("params", _parameters("06_toy_world", '''\
scene = 1_000_000        # a held-out scene (training never sees seeds from 1,000,000 up)
buckets = [0, 64, 128, 255]
train_steps = 150        # the live mini training run (about 0.7 s a step on 2 CPU cores)
pool_scenes = 24         # training scenes for it, each encoded at 4 speeds''')),
    ("code", '''\
%matplotlib inline
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

import svdkit
from svdkit import metrics, viz
from svdkit.toy import MODEL_PATH, caption, pixels_per_frame, render_clip, shape_positions
from svdkit.toy import train

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(seed)'''),
    ("md", """\
## 1 · The world

A scene is a plain or gradient background and 1-3 shapes of distinct colours. Each shape slides in a straight
line in its own direction and bounces off the edges. The two knobs have the meaning SVD gives them:

* `motion_bucket_id` is the speed in pixels per **second**: 0 is still, 255 is the fastest (24 px/s);
* `fps` says how much time passes between two frames: each frame moves `speed / fps` pixels.

The renderer is deterministic: a seed is a scene, and the same scene can be played at any speed."""),
    ("code", '''\
print(caption(scene))
viz.plot_filmstrips({f"bucket {b}": render_clip(scene, b, fps=7) for b in buckets},
                    title="one scene at four motion buckets, fps 7")'''),
    ("md", """\
At the same bucket, fps 6 moves four times as far per frame as fps 24: the same speed, sampled four times as
often. The dots are the shapes' true positions, the lines the rule `speed / fps`."""),
    ("code", '''\
grid = np.linspace(0, 255, 52)
fig, ax = plt.subplots(figsize=(5, 3))
for f in (6, 12, 24):
    ax.plot(grid, [pixels_per_frame(b, f) for b in grid], label=f"fps {f}")
    measured = [np.median(np.linalg.norm(np.diff(shape_positions(scene, b, f), axis=0), axis=-1)) for b in buckets]
    ax.plot(buckets, measured, "o", color=ax.lines[-1].get_color())
ax.set(xlabel="motion_bucket_id", ylabel="pixels per frame", title="the world's physics")
ax.legend()
fig'''),
    ("md", """\
## 2 · What is the same as real SVD, and what is not

| | real SVD / SVD-XT | the toy |
|---|---|---|
| classes | `AutoencoderKLTemporalDecoder`, `UNetSpatioTemporalConditionModel`, `CLIPVisionModelWithProjection`, `EulerDiscreteScheduler` | the same classes |
| scheduler | v-prediction, Karras sigmas 0.002-700 | the same configuration |
| conditioning | image latents beside every frame (8 input channels), CLIP embedding for cross-attention, added time ids `[fps - 1, motion_bucket_id, noise_aug_strength]` | the same, built by the same pipeline code |
| guidance | zeroed image latents and embedding for the unconditional branch, per-frame scale | the same |
| size | 576x1024, 14 or 25 frames, about 1.5 B UNet parameters | 64x64, 14 frames, about 2.5 M |
| training data | millions of real videos | clips rendered by `svdkit.toy.world` |
| CLIP encoder | trained on images and text | a fixed random network: with one cross-attention token it can only add one vector per clip, and the image latents carry the picture |
| added time embedding | 256 sinusoidal features per id | 8 (smooth over the ranges of fps and bucket) |

So every line of sampling code, in diffusers or in svdkit, runs unchanged on both; what the toy cannot show is
what a large model learned about the real world."""),
    ("code", '''\
pipe = svdkit.load_pipeline(model, device=device)
sizes = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in ("vae", "unet", "image_encoder")}
disk_mb = sum(f.stat().st_size for f in MODEL_PATH.rglob("*.safetensors")) / 2**20
print({k: f"{v / 1e6:.2f} M parameters" for k, v in sizes.items()}, f"- {disk_mb:.1f} MB on disk")'''),
    ("md", """\
## 3 · How the bundled model was trained

`python -m svdkit.toy.train` rebuilds it from seeds, in stages: the VAE learns to reconstruct clips of the
world; training scenes are encoded once into a pool of latents, each scene at four speeds; the UNet learns
EDM v-prediction, which is what `EulerDiscreteScheduler` samples from. The loss curves were written beside the
weights."""),
    ("code", '''\
record = json.loads((MODEL_PATH / "training_log.json").read_text())
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for ax, stage in zip(axes, ("vae", "unet")):
    rows = np.array(record[stage]["log"], dtype=float)
    ax.plot(rows[:, 0], rows[:, 1])
    ax.set(title=f"{stage}: {record['wall_seconds'][stage] / 60:.0f} min", xlabel="step", ylabel="loss", yscale="log")
fig.tight_layout()
fig'''),
    ("md", """\
## 4 · A mini training run, live

The same code, small: a fresh UNet on the bundled VAE, `pool_scenes` scenes, `train_steps` steps. Each step draws
four scenes, each at two of its four speeds with **one** noise sample per scene, relabels each clip with a random
fps and the bucket that gives its speed at that fps, and scores the UNet's clean-clip estimate x0. The curve
updates while it trains (the loss jumps from batch to batch: each batch has its own noise levels)."""),
    ("code", '''\
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
print(f"{train_steps} steps in {train_seconds:.0f} s")'''),
    ("md", """\
The mini model next to the bundled one, same image, same seed, bucket 255. A couple of minutes of training
gives blobs that roughly keep the picture; the bundled model trained for about half an hour."""),
    ("code", '''\
picture = render_clip(scene)[0]
settings = dict(seed=seed, num_inference_steps=num_inference_steps, motion_bucket_id=255)
samples = {f"mini, {train_steps} steps": svdkit.generate(mini, picture, **settings).frames,
           "bundled": svdkit.generate(pipe, picture, **settings).frames,
           "the world": render_clip(scene, 255, fps=7)}
viz.plot_filmstrips(samples, title="bucket 255")'''),
    ("md", """\
## 5 · Does the bundled model listen to its knobs?

Clips from the bundled model at each bucket, their motion measured by optical flow (`svdkit.metrics.motion`,
pixels per frame), against the same measure on the world's true clips. `benchmarks/toy_quality.py` does this on
held-out scenes with many seeds and checks the targets."""),
    ("code", '''\
generated = {b: svdkit.generate(pipe, picture, seed=seed, num_inference_steps=num_inference_steps,
                                motion_bucket_id=b).frames for b in buckets}
motion = {b: metrics.motion(frames) for b, frames in generated.items()}
true_motion = {b: metrics.motion(render_clip(scene, b, fps=7)) for b in buckets}
for b in buckets:
    print(f"bucket {b:3d}: generated {motion[b]:5.2f} px/frame   true {true_motion[b]:5.2f}")
viz.plot_filmstrips({f"bucket {b}": f for b, f in generated.items()}, title="the bundled toy, one seed")'''),
    ("code", '''\
summary = {
    "model": model, "scene": scene, "caption": caption(scene), "train_steps": train_steps,
    "train_seconds": train_seconds, "losses": [loss for _, loss in losses],
    "pool_shape": list(pool["latents"].shape), "mini_frames_shape": list(samples[f"mini, {train_steps} steps"].shape),
    "unet_parameters": sizes["unet"], "disk_mb": disk_mb,
    "motion_by_bucket": {str(b): motion[b] for b in buckets},
    "true_motion_by_bucket": {str(b): true_motion[b] for b in buckets},
}
''' + SUMMARY),
]


NOTEBOOKS = {
    "00_quickstart.ipynb": QUICKSTART,
    "01_encoding.ipynb": ENCODING,
    "02_denoising.ipynb": DENOISING,
    "06_toy_world.ipynb": TOY_WORLD,
}


def build(cells: list[tuple[str, str]], stem: str) -> nbformat.NotebookNode:
    """A clean notebook from (kind, source) pairs; kind "md", "code" or "params" (a code cell tagged parameters)."""
    nb = new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"},
    })
    for i, (kind, source) in enumerate(cells):
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        if kind == "params":
            cell.metadata["tags"] = ["parameters"]
        cell.id = f"{stem[:2]}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main(notebooks: dict | None = None) -> None:
    """Write `notebooks` ({file name: cells}; default: this file's NOTEBOOKS) beside this script."""
    for name, cells in (NOTEBOOKS if notebooks is None else notebooks).items():
        path = HERE / name
        nbformat.write(build(cells, path.stem), path)
        print("wrote", path)


if __name__ == "__main__":
    main()
