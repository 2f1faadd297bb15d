# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Denoising, step by step and frame by frame
#
# Step 3 of SVD is where the clip appears. All frames start as pure noise and are denoised together, one step
# per noise level; at every step the UNet predicts the clean latents (x0) of every frame, and the sampler moves
# part of the way there. This notebook records every step (`capture=True`) and looks along both axes: steps and
# frames.

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
out_dir = "outputs/02_denoising"
show_step = 5            # the step marked on the noise schedule
guidances = ["linear", "constant", "triangle"]  # guidance schedules compared; the first is the reference
attention_steps = None   # steps whose temporal attention is drawn; None: first, middle, last

# %%
# %matplotlib inline
import json
from pathlib import Path

import svdkit
from svdkit import attention, viz, widgets

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
pipe = svdkit.load_pipeline(model, device=device)
picture = svdkit.load_image(image) if image else viz.example_image()
picture

# %% [markdown]
# ## Capture a trace
#
# With `capture=True`, `generate` keeps every step: the noisy latents x_t going in, the predicted clean latents
# x0, and the UNet's outputs with and without the image.

# %%
video = svdkit.generate(pipe, picture, seed=seed, num_inference_steps=num_inference_steps, capture=True)
trace = video.trace
print("x0 at every step:", tuple(trace.x0.shape), "= steps x frames x channels x h x w")
video.show()

# %% [markdown]
# ## The noise schedule
#
# σ is the noise level of each step. It falls from hundreds, where the latents are pure noise, to almost 0. The
# levels are spaced so that many steps are spent at low noise, where the details are decided.

# %%
step = min(show_step, trace.num_steps - 1)
viz.plot_sigmas(trace.sigmas, step=step)

# %% [markdown]
# At high σ the noisy latents are Gaussian noise of standard deviation σ, almost exactly; as σ falls, the
# clip's own values show through.

# %%
viz.plot_latent_histograms(trace)

# %% [markdown]
# ## Every step, every frame
#
# Rows are steps, columns are frames, drawn with the cheap colour preview (compared with the real decoder below).
# x_t is what the UNet receives; x0 is its guess of the finished clip. Early guesses are blurry averages, since at
# high noise many clips are possible; they sharpen as σ falls, and the frames move apart as the motion is decided.

# %%
viz.plot_step_frame_grid(viz.trace_previews(trace, "x_t", pipe), sigmas=trace.sigmas,
                         title="x_t: the noisy latents, as the UNet sees them")

# %%
viz.plot_step_frame_grid(viz.trace_previews(trace, "x0", pipe), sigmas=trace.sigmas,
                         title="x0: the UNet's guess of the clean latents")

# %% [markdown]
# How far is each step's guess from the latents that step 4 will decode? The distance shrinks to 0 at the last
# step, where the guess and the result are the same.

# %%
distances = viz.x0_distances(trace)
viz.plot_x0_distances(trace)

# %% [markdown]
# ## Scrub the trace
#
# The trace holds step 3 in full, for every step and every frame. Move through it, and switch between x_t, x0,
# the UNet output with and without the image, and the guidance delta. Nothing is computed again: the pictures come
# from the recorded trace.

# %%
widgets.trace_scrubber(trace, model=pipe)

# %% [markdown]
# ## The denoising as a video
#
# Step 3 as a film: each video frame is one denoising step, showing the clip's frames side by side as x0 previews.
# The coarse layout comes first, the details after.

# %%
progression = viz.denoising_video(trace, pipe)
svdkit.write_video(out / "denoising.gif", progression, fps=4)
svdkit.Video(frames=progression, fps=4).show()

# %% [markdown]
# ## Cheap preview versus full decode
#
# Step 4, the VAE decoder, is the costly one. To look at latents, a linear map from the 4 channels to RGB is
# almost free: fitted by least squares on sample images for the toy, the published Stable Diffusion factors for
# real SVD. Here is how close it comes to the decoder on the final latents.

# %%
figure, preview_rmse = viz.compare_preview(pipe, trace.latents)
figure

# %% [markdown]
# ## Guidance, per frame
#
# Each step runs the UNet with and without the image and pushes the result away from the unguided output:
# `uncond + g · (cond − uncond)`. In SVD, g differs per frame: by default it ramps from `min_guidance_scale` on
# the first frame, which is close to the image anyway, to `max_guidance_scale` on the last.

# %%
viz.plot_guidance(trace.guidance, title="the per-frame guidance of this clip")

# %% [markdown]
# Other schedules on the same seed: "constant" guides every frame at the maximum, "triangle" is low at both ends
# and highest mid-clip. The curves below show, frame by frame, how far each clip moves from the first schedule's.

# %%
frames_count = len(trace.guidance)
viz.plot_guidance({g: svdkit.guidance_schedule(g, frames_count) for g in guidances})

# %%
clips = {g: svdkit.generate(pipe, picture, seed=seed, num_inference_steps=num_inference_steps, guidance=g).frames
         for g in guidances}
viz.plot_filmstrips(clips)

# %%
reference = guidances[0]
change = {g: viz.frame_rmse(clips[g], clips[reference]) for g in guidances[1:]}
viz.plot_per_frame(change, ylabel=f"RMS difference from {reference}", title="where the guidance schedules differ")

# %% [markdown]
# ## Temporal attention
#
# What makes SVD a video model are its temporal layers: in every UNet block, after the spatial layers, each pixel
# position attends across the frames. A heat map shows, for one block at one step, how each frame (row) spreads its
# attention over all frames (columns), averaged over heads and positions. A hook records the weights and leaves the
# result unchanged.

# %%
attention_video, maps = attention.capture_temporal_attention(pipe, picture, seed=seed,
                                                       num_inference_steps=num_inference_steps)
unchanged = bool((attention_video.frames == video.frames).all())
modules = attention.temporal_attention_modules(pipe.unet)
print(len(modules), "temporal attention modules; clip identical with the hook:", unchanged)

# %%
steps = attention_steps or sorted({0, trace.num_steps // 2, trace.num_steps - 1})
viz.plot_temporal_attention(maps, steps=[steps[-1]], title=f"every temporal block at step {steps[-1]}")

# %%
viz.plot_temporal_attention(maps, modules=[modules[0]], steps=steps, title="one block across the steps")

# %%
attention_table = attention.attention_summary(maps, steps=steps)
attention_table  # self: weight a frame gives itself; reach: mean distance in frames to what it attends to

# %%
summary = {
    "model": model, "seed": seed, "num_inference_steps": num_inference_steps,
    "sigmas": trace.sigmas.tolist(), "x0_distance_to_final": distances.tolist(), "preview_rmse": preview_rmse,
    "guidance": trace.guidance.tolist(), "guidance_reference": reference,
    "guidance_change": {g: float(c.mean()) for g, c in change.items()},
    "attention_output_unchanged": unchanged, "attention": attention_table,
    "attention_row_sum_error": max(float((m.sum(-1) - 1).abs().max()) for m in maps.values()),
}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
summary
