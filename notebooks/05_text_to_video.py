# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Text → first frame → video
#
# SVD animates an image; it never reads a word. Its conditioning is all pictures: a CLIP *image* embedding and
# the VAE latents of the first frame. To start a clip from a prompt, a text-to-image model draws that first frame,
# and SVD takes it from there:
#
# 1. **draw**: a text-to-image model turns the prompt into an image;
# 2. **fit**: the image is resized and centre-cropped to the video model's resolution;
# 3. **animate**: SVD makes the clip from it, exactly as from a photo.
#
# Splitting the work this way lets each model do what it was trained for: the image model knows what words look
# like, SVD knows how things move. The bundled toy pair runs on a CPU: a tiny Stable Diffusion trained on the toy
# world's captions ("a red circle and a blue square on a grey background"), and the toy SVD.

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
out_dir = "outputs/05_text_to_video"
prompt = "a red circle and a blue square on a grey background"
text_model = None        # None: "toy" for the toy video model, else "sd-turbo"; or "sdxl-turbo", a hub id, a folder
text_steps = None        # text-to-image steps; None: the registry's (25 for the toy, 1 for the turbo models)
motion_bucket_id = 127
seeds = [0, 1, 2, 3]     # first frames drawn for the same prompt

# %% [markdown]
# ## Pick the pair of models
#
# `svdkit.text.TEXT_MODELS` lists the text-to-image models svdkit knows, each with the settings it likes and the
# video model it pairs with. The toy draws at 64 × 64 for the toy SVD. For the real SVD (576 × 1024), the
# distilled *turbo* models are the natural partners: one to four steps and no guidance, so a first frame costs
# a fraction of a second on a GPU, small next to the clip itself. Any other Stable Diffusion or SDXL checkpoint
# works too (a hub id or a local folder); it is loaded with diffusers' `AutoPipelineForText2Image`.

# %%
# %matplotlib inline
import json
import time
from pathlib import Path

import numpy as np

import svdkit
from svdkit import text, viz

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
text_model = text_model or ("toy" if model == "toy" else "sd-turbo")
for name, spec in text.TEXT_MODELS.items():
    print(f"{name:11s} {spec.width}x{spec.height}, {spec.num_inference_steps:2d} steps, guidance "
          f"{spec.guidance_scale:g}, pairs with {spec.video_model!r}: {spec.note}")
print("\nthis run:", text_model, "->", model)

# %% [markdown]
# ## 1. Draw the first frame
#
# `text_to_image` loads the model once (it is kept for the next call), draws with a seeded CPU generator, so a
# seed gives the same picture on every device, and returns an image at the video model's resolution.

# %%
started = time.perf_counter()
image = text.text_to_image(prompt, text_model, seed=seed, device=device, num_inference_steps=text_steps)
text_seconds = time.perf_counter() - started
image.save(out / "first_frame.png")
viz.plot_images({"first frame": np.asarray(image)},
                title=f"{image.size[0]}x{image.size[1]} in {text_seconds:.2f} s")

# %% [markdown]
# Does the picture show what the prompt asks for? On the toy world's palette this can be measured:
# `check_prompt` finds, for each named colour, its largest blob, and guesses its shape from two moments of
# the blob's pixels: a triangle (pointing up) has its mass low with a tail upwards; a square reaches out
# furthest along its diagonals, a diamond along the axes, a circle evenly. Moments change little when
# corners are slightly rounded, as a small model draws them; a blob much less convex than any of the
# shapes (an X, a plus) is no shape at all. On a real model's picture the palette test
# means little; look instead.

# %%
check = text.check_prompt(image, prompt)
print("the prompt names:", check["wanted"])
print("the image shows: ", check["found"])
print("colours right:", check["colours_ok"], "  colours and shapes right:", check["shapes_ok"])

# %% [markdown]
# The seed decides everything the prompt leaves open: here, where the shapes sit and how big they are.

# %%
drawn = {f"seed {s}": np.asarray(text.text_to_image(prompt, text_model, seed=s, num_inference_steps=text_steps))
         for s in seeds}
checks = {label: text.check_prompt(im, prompt)["shapes_ok"] for label, im in drawn.items()}
viz.plot_images({f"{label} {'✓' if ok else '✗'}": drawn[label] for label, ok in checks.items()},
                title=f"“{prompt}”")

# %% [markdown]
# ## 2. Fit it to the video model
#
# SVD was trained at one resolution (576 × 1024 for the real models, 64 × 64 for the toy) and its UNet works on
# latents 8 times smaller. A first frame of another shape would have to be stretched, and one of another size
# gives the UNet latents of a size it never saw: both cost quality. So the picture is scaled until it *covers*
# the video's frame, keeping its aspect ratio, and the overflow is cropped evenly from both sides. A turbo model's
# 512 × 512 square becomes 1024 × 1024, then loses 224 rows at the top and at the bottom. Draw the subject near
# the middle: the edges may be cut.
#
# Here the same crop on the toy picture, to a frame twice as wide as it is high:

# %%
wide = text.fit_image(image, image.size[1], 2 * image.size[0])
viz.plot_images({"drawn": np.asarray(image), "fitted to a 1:2 frame": np.asarray(wide)},
                title="cover, then crop the centre: nothing is stretched")

# %% [markdown]
# ## 3. Animate it
#
# From here on the first frame is an ordinary image: `svdkit.generate` does what it does with a photo.

# %%
pipe = svdkit.load_pipeline(model, device=device)
video = svdkit.generate(pipe, image, seed=seed, num_inference_steps=num_inference_steps,
                        motion_bucket_id=motion_bucket_id)
path = video.save(out / "clip.mp4")
video.show()

# %%
viz.plot_filmstrips(video.frames, title=f"“{prompt}”, animated")

# %% [markdown]
# ## Try your own prompt
#
# Type a prompt and press the button: `svdkit.text.prompt_to_video` draws the first frame and animates it, with
# the models already loaded. The toy knows six colours (red, green, blue, yellow, magenta, cyan), four shapes
# (circle, square, triangle, diamond) and four backgrounds (grey, dark grey, slate, brown, optionally
# "gradient"); anything else it has never read.

# %%
import ipywidgets as w
from IPython.display import display

box = w.Text(value="a yellow triangle and a cyan diamond on a slate background", description="prompt",
             layout=w.Layout(width="520px"))
button = w.Button(description="draw and animate", button_style="primary")
shown = w.Output(layout=w.Layout(height="300px", overflow="auto"))
last = {}


def on_click(_):
    with shown:
        shown.clear_output(wait=True)
        result = text.prompt_to_video(box.value, text_model=text_model, video_model=pipe, seed=seed,
                                      text_steps=text_steps, num_inference_steps=num_inference_steps,
                                      motion_bucket_id=motion_bucket_id)
        last["result"] = result
        ok = result.summary()
        print(f"found {ok['found']}; colours right {ok['colours_ok']}, shapes right {ok['shapes_ok']}")
        display(viz.plot_filmstrips(result.frames, title=result.prompt))


button.on_click(on_click)
display(w.VBox([w.HBox([box, button]), shown]))
button.click()  # one press now, so the output is never empty

# %% [markdown]
# ## Where to go next
#
# - Change one word of the prompt and keep the seed: the layout stays similar while the colour or shape changes.
# - On a GPU: `model = "svd-xt"` (the first frame then comes from `sd-turbo`); try `text_model = "sdxl-turbo"`
#   for sharper frames, or any Stable Diffusion checkpoint you like.
# - Notebooks 00–04 take the clip apart; everything there works on a drawn first frame too.

# %%
summary = {
    "prompt": prompt, "text_model": text_model, "model": model, "seed": seed,
    "image_size": list(image.size), "text_seconds": round(text_seconds, 3),
    "wanted": check["wanted"], "found": check["found"],
    "colours_ok": check["colours_ok"], "shapes_ok": check["shapes_ok"],
    "seeds_shapes_ok": checks, "frames_shape": list(video.frames.shape), "clip": str(path),
    "widget": last["result"].summary() if last else None,
}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
summary
