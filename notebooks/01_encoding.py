# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Encoding: what SVD makes of your image
#
# Before any frame exists, SVD turns the image into what the UNet reads: VAE latents and a CLIP embedding
# (step 1, encode), and three conditioning numbers (step 2, condition). This notebook builds each piece by hand
# and checks it against what `generate` uses.

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
out_dir = "outputs/01_encoding"
noise_aug_strength = 0.02                  # SVD's default
strengths = [0.0, 0.02, 0.1, 0.3, 1.0]     # noise augmentation strengths compared
fps = 7
motion_bucket_id = 127

# %%
# %matplotlib inline
import json
from pathlib import Path

import numpy as np

import svdkit
from svdkit import metrics, sampling, viz, widgets
from svdkit.video import to_uint8

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
pipe = svdkit.load_pipeline(model, device=device)
picture = svdkit.load_image(image) if image else viz.example_image()
picture

# %% [markdown]
# ## Preprocessing: resize and normalise
#
# Step 1 starts from pixels: the image is resized to the output size and its values mapped from 0…255 to −1…1,
# the range the VAE was trained on.

# %%
pixels = sampling.preprocess(pipe, picture)  # (1, 3, H, W)
print("pixels", tuple(pixels.shape), f"from {pixels.min():.2f} to {pixels.max():.2f}")

# %% [markdown]
# ## VAE latents
#
# The VAE encoder squeezes each 8 × 8 patch of pixels into 4 numbers: a B × 3 × H × W image becomes
# B × 4 × H/8 × W/8 latents, a small picture with 4 channels instead of 3 colours. The rest of SVD works on these.

# %%
latents = sampling.encode_latents(pipe, pixels)  # (1, 4, H/8, W/8)
print("latents", tuple(latents.shape))
viz.plot_latent_grid(latents[0], title="the image's 4 latent channels")

# %% [markdown]
# ### The scaling factor
#
# While denoising, the frames' latents are multiplied by the VAE's scaling factor, so that they have roughly unit
# variance, like the noise they are mixed with. SVD's *condition* latents, concatenated to every frame, are **not**
# scaled. A run of `generate` records them; they equal the unscaled latents of the noise-augmented image, made by
# hand here.

# %%
scaling_factor = pipe.vae.config.scaling_factor
print(f"scaling factor {scaling_factor:.5g}: latent std {latents.std():.3f} unscaled, "
      f"{(latents * scaling_factor).std():.3f} scaled")
video = svdkit.generate(pipe, picture, seed=seed, num_inference_steps=num_inference_steps, capture=True,
                        fps=fps, motion_bucket_id=motion_bucket_id, noise_aug_strength=noise_aug_strength)
trace = video.trace
by_hand = sampling.encode_latents(pipe, sampling.noise_augment(pixels, noise_aug_strength, seed))
condition_gap = float((trace.image_latents - by_hand).abs().max())
print("condition latents in generate vs unscaled latents by hand, largest difference:", condition_gap)

# %% [markdown]
# ## Reconstruction
#
# Decoding the latents again shows what the squeeze keeps (step 4 does the same for every frame). The peak
# signal-to-noise ratio (PSNR) measures the error; above about 30 dB it is hard to see.

# %%
rebuilt = to_uint8(sampling.decode_image(pipe, latents))[0]
original = to_uint8(pixels)[0]
reconstruction_psnr = metrics.psnr(original, rebuilt)
viz.plot_images({"input": original, "reconstruction": rebuilt,
                 "|difference|": viz.frame_differences([original, rebuilt])[0]},
                title=f"VAE round trip: PSNR {reconstruction_psnr:.1f} dB")

# %% [markdown]
# ## Noise augmentation
#
# Before encoding, SVD adds a little Gaussian noise to the image: `noise_aug_strength`, 0.02 by default. Trained
# this way, the UNet does not copy the image pixel for pixel; more noise loosens its hold and allows more motion.
# The strength is also one of the conditioning numbers, so the UNet knows how much was added.

# %%
viz.plot_noise_augmentation(pipe, picture, strengths, seed=seed)

# %% [markdown]
# Try any strength: the VAE encodes again each time you let go of the slider.

# %%
widgets.noise_augmentation_slider(pipe, picture, seed=seed, value=noise_aug_strength)

# %% [markdown]
# ## The CLIP image embedding
#
# The other half of step 1: CLIP looks at the image at 224 × 224 pixels, whatever the output size, and sums it up
# in one vector. The UNet reads that vector through cross-attention in its blocks. For the unguided pass of
# classifier-free guidance the vector is all zeros.

# %%
embedding = sampling.clip_embedding(pipe, picture)  # (1, 1, D)
embedding_gap = float((embedding - trace.image_embeddings).abs().max())
print("embedding", tuple(embedding.shape), "- largest difference from the one generate used:", embedding_gap)
viz.plot_images({"your image": np.asarray(picture), "what CLIP sees": sampling.clip_input(pipe, picture)})

# %% [markdown]
# ## The added time ids
#
# Step 2 adds three numbers, embedded like the diffusion time step: `fps − 1`, `motion_bucket_id` and
# `noise_aug_strength`. The UNet was trained with the fps shifted by one, so `fps=7` reaches it as 6.

# %%
print("added time ids:", trace.added_time_ids[0].tolist())
viz.plot_added_time_ids(trace.added_time_ids)

# %% [markdown]
# ## What the UNet receives
#
# At every denoising step each frame enters the UNet with 8 channels: its 4 noisy latents (scaled by
# 1/√(σ²+1)) and the 4 condition latents, the same in every frame. The frames start apart only in their noise;
# the image is the anchor they share.

# %%
unet_in = sampling.unet_input(trace, step=0)  # (F, 8, h, w)
F = unet_in.shape[0]
print("UNet input", tuple(unet_in.shape), "= frames x (4 noisy + 4 image) channels x h x w")
viz.plot_latent_grid(unet_in, frames=[0, F // 2, F - 1], title="channels 0-3: the noise; 4-7: the image, repeated")

# %%
condition_spread = float((unet_in[:, 4:] - unet_in[:1, 4:]).abs().max())
print("largest difference in channels 4-7 between frames:", condition_spread)

# %%
summary = {
    "model": model, "seed": seed,
    "latent_shape": list(latents.shape), "scaling_factor": scaling_factor,
    "reconstruction_psnr": reconstruction_psnr, "condition_latents_gap": condition_gap,
    "clip_embedding_shape": list(embedding.shape), "clip_embedding_gap": embedding_gap,
    "added_time_ids": trace.added_time_ids[0].tolist(),
    "unet_input_shape": list(unet_in.shape), "condition_spread_across_frames": condition_spread,
}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
summary
