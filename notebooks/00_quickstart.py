# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Quickstart: one image in, one clip out
#
# Stable Video Diffusion (SVD) turns one image into a short clip in four steps:
#
# 1. **encode** the image: a CLIP embedding says what is in it, VAE latents say where everything is;
# 2. **condition** on it: every frame's latents get the image latents beside them, and three numbers
#    (fps, motion, noise augmentation) say how the clip should move;
# 3. **denoise** the stack of frames together, from pure noise, one step per noise level;
# 4. **decode** the latents back to pixels.
#
# This notebook runs all four with one call, saves the clip, then turns one knob. The bundled toy model runs on
# a CPU in seconds; on a GPU, set `model = "svd-xt"` for the real thing.

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
out_dir = "outputs/00_quickstart"
motion_bucket_id = 127
motions = [10, 127, 255]  # the motion_bucket_id values compared at the end

# %% [markdown]
# ## Load a model
#
# A pipeline holds what the four steps need: the CLIP image encoder and the VAE (steps 1 and 4), the UNet
# (steps 2 and 3), and the scheduler that sets the noise levels (step 3).

# %%
# %matplotlib inline
import json
from pathlib import Path

import svdkit
from svdkit import viz

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
pipe = svdkit.load_pipeline(model, device=device)
picture = svdkit.load_image(image) if image else viz.example_image()
picture

# %% [markdown]
# ## Generate a clip
#
# `generate` runs the four steps. The same image, seed and settings give the same clip.

# %%
video = svdkit.generate(pipe, picture, seed=seed, num_inference_steps=num_inference_steps,
                        motion_bucket_id=motion_bucket_id)
video

# %%
video.show()

# %%
viz.plot_filmstrips(video.frames, title="every frame, left to right")

# %% [markdown]
# ## Save it
#
# `Video.save` writes the clip and, beside it, a JSON record of the model, seed, every setting and the library
# versions: enough to make the same clip again.

# %%
path = video.save(out / "clip.mp4")
print("wrote", path, "and", path.with_suffix(".json"))

# %% [markdown]
# ## Turn one knob: motion_bucket_id
#
# In step 2 the UNet also receives `motion_bucket_id`, a number from 0 to 255 that says how much the clip should
# move. Same image, same seed, three values. The frame differences measure how much each pixel changes from one
# frame to the next.

# %%
clips = {m: svdkit.generate(pipe, picture, seed=seed, num_inference_steps=num_inference_steps,
                            motion_bucket_id=m).frames for m in motions}
viz.plot_filmstrips({f"motion {m}": frames for m, frames in clips.items()})

# %%
motion = {m: float(viz.frame_differences(frames).mean()) for m, frames in clips.items()}
print("mean change per pixel between neighbouring frames (0-255):", motion)
viz.plot_frame_differences(clips[motions[-1]], title=f"where the pixels change at motion_bucket_id {motions[-1]}")

# %% [markdown]
# ## Where to go next
#
# - `01_encoding`: steps 1 and 2 up close: the VAE latents, noise augmentation, the CLIP embedding and exactly
#   what the UNet receives.
# - `02_denoising`: step 3 frame by frame: every intermediate prediction, the per-frame guidance and the temporal
#   attention that ties the frames together.
# - The notebooks after these take SVD's other knobs apart, one at a time.

# %%
summary = {
    "model": model, "seed": seed, "num_inference_steps": num_inference_steps,
    "frames_shape": list(video.frames.shape), "clip": str(path), "seconds": video.params["seconds"],
    "motion_by_bucket": motion,
}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
summary
