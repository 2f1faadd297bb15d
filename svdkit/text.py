"""Text -> first frame -> video: start an SVD clip from a prompt.

SVD animates an image; it never reads text. To go from words to a clip, a text-to-image model draws the
first frame, and SVD takes it from there. The frame is resized and centre-cropped to the video model's
resolution first, because SVD was trained at one size (576 x 1024 for the real models): a frame drawn at
another size or shape would be stretched, or give the UNet latents of a size it never saw.

>>> import svdkit.text as text
>>> image = text.text_to_image("a red circle and a blue square on a grey background", seed=1)
>>> image.size                                   # the toy SVD's resolution
(64, 64)
>>> text.check_prompt(image, "a red circle and a blue square on a grey background")["shapes_ok"]  # doctest: +SKIP
True
>>> result = text.prompt_to_video("a yellow triangle on a slate background", num_inference_steps=4)
>>> result.frames.shape                          # (F, H, W, 3)
(14, 64, 64, 3)

`TEXT_MODELS` pairs each text-to-image model with the video model it suits: the bundled "toy" (a tiny Stable
Diffusion trained on the toy world's captions, offline on a CPU) with the toy SVD, and the one-step "turbo"
models with the real SVD on a GPU. Colours and shapes in a first frame can be checked against the prompt
with `find_objects` and `check_prompt`, on the toy world's palette.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import torch

from svdkit.models import MODELS, load_weights, resolve_device, resolve_dtype
from svdkit.sampling import load_image
from svdkit.toy import TEXT_MODEL_PATH

__all__ = [
    # the models
    "TextModelSpec", "TEXT_MODELS", "load_text_pipeline",
    # prompt -> first frame -> clip
    "text_to_image", "fit_image", "prompt_to_video", "PromptVideo",
    # checking a first frame against its prompt (toy world)
    "find_objects", "parse_prompt", "check_prompt", "ToyObject",
]


@dataclasses.dataclass(frozen=True)
class TextModelSpec:
    """One row of the text-to-image registry: where the weights live and how the model likes to be sampled."""

    repo_id: str  # a hub id, or "toy" for the bundled folder
    height: int  # the size it draws at; the image is then fitted to the video model's resolution
    width: int
    num_inference_steps: int
    guidance_scale: float  # classifier-free guidance; 0.0 for the distilled turbo models
    video_model: str  # the `svdkit.MODELS` entry it pairs with, whose resolution is the default output size
    note: str = ""


TEXT_MODELS: dict[str, TextModelSpec] = {
    "toy": TextModelSpec(
        "toy", 64, 64, 25, 4.0, "toy",
        note="bundled tiny Stable Diffusion trained on the toy world's captions; offline, CPU, well under a second",
    ),
    "sd-turbo": TextModelSpec(
        "stabilityai/sd-turbo", 512, 512, 1, 0.0, "svd",
        note="SD 2.1 distilled to 1-4 steps without guidance; about 5 GB of fp16 weights",
    ),
    "sdxl-turbo": TextModelSpec(
        "stabilityai/sdxl-turbo", 512, 512, 1, 0.0, "svd-xt",
        note="SDXL distilled to 1-4 steps without guidance; sharper, about 7 GB of fp16 weights",
    ),
}

_CACHE: dict[str, tuple] = {}  # the last pipeline of each kind ("text", "video"), so that a widget reloads nothing


# ----------------------------------------------------------------------------------------------------
# Checking inputs


def _check_prompt_text(prompt) -> str:
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    return prompt.strip()


def _check_size(name: str, value, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 64 or value % 64:
        raise ValueError(f"{name} must be a positive multiple of 64 (what the video model accepts), got {value!r}")


def _check_number(name: str, value, *, integer: bool, lo: float) -> None:
    if value is None:
        return
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if not isinstance(value, kinds) or isinstance(value, bool) or not np.isfinite(value) or value < lo:
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} >= {lo}, got {value!r}")


def _check_model(name: str, model) -> None:
    if isinstance(model, str):
        if not model.strip():
            raise ValueError(f"{name} must be a name from the registry, a hub id or a local folder; got ''")
    elif not callable(model) or not hasattr(model, "vae"):
        raise ValueError(f"{name} must be a name, a hub id, a local folder or a loaded diffusers pipeline, "
                         f"got {type(model).__name__}")


# ----------------------------------------------------------------------------------------------------
# Loading


def load_text_pipeline(model: str = "toy", *, device: str = "auto", dtype="auto"):
    """Load a text-to-image model with diffusers' `AutoPipelineForText2Image`.

    Args:
      model: "toy" (bundled), "sd-turbo", "sdxl-turbo" (see `TEXT_MODELS`), any other hub id, or a local folder.
      device: "auto" (cuda, then mps, then cpu), or a torch device string.
      dtype: "auto" (fp16 on CUDA, fp32 elsewhere), "fp16", "bf16", "fp32" or a torch.dtype.

    Weights load from safetensors only (the fp16 variant on CUDA), through `svdkit.models.load_weights`: when
    they are neither cached nor reachable, this fails within seconds with an error that says how to fetch them;
    `HF_HUB_OFFLINE=1` is honoured.

    >>> type(load_text_pipeline("toy")).__name__
    'StableDiffusionPipeline'
    """
    from diffusers import AutoPipelineForText2Image

    _check_model("model", model)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    spec = TEXT_MODELS.get(model)
    if spec is not None and spec.repo_id == "toy":
        source = str(TEXT_MODEL_PATH)
        if not (TEXT_MODEL_PATH / "model_index.json").is_file():
            raise FileNotFoundError(f"The bundled toy text-to-image model is missing from {TEXT_MODEL_PATH}; "
                                    "rebuild it with `python -m svdkit.toy.train_text`.")
    else:
        source = spec.repo_id if spec is not None else str(model)
    if not Path(source).is_dir() and Path(source).exists():
        raise ValueError(f"model must be a diffusers folder, a hub id or one of {list(TEXT_MODELS)}; "
                         f"got file {source!r}")
    pipe = load_weights(AutoPipelineForText2Image, source, dtype, model=model, kind="text-to-image model",
                        offline="text_to_image(prompt, model='toy')")
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _cached(kind: str, key: tuple, load):
    if kind not in _CACHE or _CACHE[kind][0] != key:
        _CACHE.pop(kind, None)  # let the old one go before loading the new one
        _CACHE[kind] = (key, load())
    return _CACHE[kind][1]


def fit_image(image, height: int, width: int):
    """Resize `image` to cover height x width, keeping its aspect ratio, then crop the centre.

    Nothing is stretched: a square 512 x 512 drawing becomes 1024 x 1024, then loses its top and bottom to
    fit SVD's 576 x 1024.

    >>> from PIL import Image
    >>> fit_image(Image.new("RGB", (512, 512)), 576, 1024).size
    (1024, 576)
    """
    from PIL import Image

    _check_size("height", height, optional=False)
    _check_size("width", width, optional=False)
    image = load_image(image)
    w, h = image.size
    if (w, h) == (width, height):
        return image
    scale = max(width / w, height / h)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return image.crop((left, top, left + width, top + height))


# ----------------------------------------------------------------------------------------------------
# Prompt -> first frame -> clip


@torch.no_grad()
def text_to_image(prompt: str, model="toy", *, seed: int = 0, height: int | None = None, width: int | None = None,
                  device: str = "auto", num_inference_steps: int | None = None,
                  guidance_scale: float | None = None):
    """Draw a first frame for a video from a prompt, at the video model's resolution.

    Args:
      prompt: what to draw. The toy model knows the toy world's words: six colours (red, green, blue, yellow,
        magenta, cyan), four shapes (circle, square, triangle, diamond) and four backgrounds.
      model: a `TEXT_MODELS` name, a hub id, a local diffusers folder, or an already loaded pipeline.
      seed: seeds a CPU `torch.Generator`, so a seed draws the same image on every device.
      height, width: the output size, multiples of 64; by default the resolution of the video model that
        `TEXT_MODELS` pairs the model with (64 x 64 for the toy, 576 x 1024 for the real SVD).
      device: "auto" or a torch device string (when a model is loaded here).
      num_inference_steps, guidance_scale: the sampler's settings; by default the registry's for the model.

    Returns:
      A PIL RGB image of size (width, height): drawn at the model's own size, then resized to cover the output
      size and centre-cropped.

    >>> text_to_image("a green diamond on a brown background", seed=3).size
    (64, 64)
    """
    # 1. Check inputs, before any model work.
    prompt = _check_prompt_text(prompt)
    _check_model("model", model)
    _check_size("height", height)
    _check_size("width", width)
    _check_number("seed", seed, integer=True, lo=0)
    _check_number("num_inference_steps", num_inference_steps, integer=True, lo=1)
    _check_number("guidance_scale", guidance_scale, integer=False, lo=0)

    # 2. The model, and the sizes: the model's own, and the video model's.
    if isinstance(model, str):
        spec = TEXT_MODELS.get(model)
        device = resolve_device(device)
        pipe = _cached("text", (model, device), lambda: load_text_pipeline(model, device=device))
    else:
        spec, pipe = None, model
    video_spec = _video_spec(spec, pipe)
    height = height or video_spec.height
    width = width or video_spec.width
    steps = num_inference_steps or (spec.num_inference_steps if spec else 25)
    scale = guidance_scale if guidance_scale is not None else (spec.guidance_scale if spec else 4.0)

    # 3. Draw at the model's own size, from CPU noise.
    image = pipe(prompt, height=spec.height if spec else None, width=spec.width if spec else None,
                 num_inference_steps=steps, guidance_scale=scale,
                 generator=torch.Generator().manual_seed(int(seed))).images[0]

    # 4. Fit it to the video model's resolution.
    return fit_image(image.convert("RGB"), height, width)


def _video_spec(spec: TextModelSpec | None, pipe):
    """The `svdkit.MODELS` row whose resolution a text model's images are fitted to by default."""
    if spec is not None:
        return MODELS[spec.video_model]
    source = str(getattr(pipe, "name_or_path", "") or "")
    is_toy = bool(source) and Path(source).is_dir() and Path(source).resolve() == TEXT_MODEL_PATH.resolve()
    return MODELS["toy" if is_toy else "svd"]


@dataclasses.dataclass
class PromptVideo:
    """What `prompt_to_video` made: the prompt, the first frame it drew, and the clip SVD made from it."""

    prompt: str
    image: object  # PIL image at the video's resolution
    video: object  # svdkit.Video

    @property
    def frames(self) -> np.ndarray:
        """The clip, uint8 (F, H, W, 3)."""
        return self.video.frames

    def summary(self) -> dict:
        """A JSON-ready record: the prompt, what the first frame shows (toy palette), the clip's shape."""
        check = check_prompt(self.image, self.prompt)
        return {"prompt": self.prompt, "image_size": list(self.image.size), "frames_shape": list(self.frames.shape),
                "wanted": check["wanted"], "found": check["found"], "colours_ok": check["colours_ok"],
                "shapes_ok": check["shapes_ok"], "params": {k: v for k, v in self.video.params.items()
                                                            if k not in ("guidance_scales", "versions")}}


def prompt_to_video(prompt: str, *, text_model="toy", video_model="toy", seed: int = 0, device: str = "auto",
                    text_steps: int | None = None, guidance_scale: float | None = None,
                    **generate_params) -> PromptVideo:
    """Prompt -> first frame -> clip, in one call (and the callback behind notebook 05's prompt box).

    Args:
      prompt: what the first frame shows.
      text_model: a `TEXT_MODELS` name, hub id, folder or loaded text-to-image pipeline.
      video_model: an `svdkit.MODELS` name, hub id, folder or loaded SVD pipeline.
      seed: seeds both the drawing and the clip.
      device: "auto" or a torch device string, for the models loaded here (they are kept for the next call).
      text_steps, guidance_scale: the text-to-image sampler's settings (see `text_to_image`).
      **generate_params: passed to `svdkit.generate` (num_inference_steps, motion_bucket_id, fps, ...).

    Returns:
      A `PromptVideo` with the image, the `Video` and a `summary()` for JSON.

    >>> prompt_to_video("a cyan square on a grey background", num_inference_steps=4).frames.shape
    (14, 64, 64, 3)
    """
    from svdkit.models import load_pipeline
    from svdkit.sampling import check_params, generate

    # 1. Check inputs, before any model work.
    prompt = _check_prompt_text(prompt)
    _check_model("text_model", text_model)
    _check_model("video_model", video_model)
    _check_number("seed", seed, integer=True, lo=0)
    _check_number("text_steps", text_steps, integer=True, lo=1)
    _check_number("guidance_scale", guidance_scale, integer=False, lo=0)
    video_spec = MODELS.get(video_model) if isinstance(video_model, str) else getattr(
        getattr(video_model, "svdkit", None), "spec", None)
    if not isinstance(video_model, str) and video_spec is None:  # a pipeline svdkit did not load: ask the model
        size = video_model.unet.config.sample_size * video_model.vae_scale_factor
        generate_params.setdefault("height", size)
        generate_params.setdefault("width", size)
    params = check_params(video_model if not isinstance(video_model, str) else None, generate_params, spec=video_spec)

    # 2. The first frame, at the video model's resolution.
    image = text_to_image(prompt, text_model, seed=seed, height=params["height"], width=params["width"],
                          device=device, num_inference_steps=text_steps, guidance_scale=guidance_scale)

    # 3. The clip.
    if isinstance(video_model, str):
        device = resolve_device(device)
        pipe = _cached("video", (video_model, device), lambda: load_pipeline(video_model, device=device))
    else:
        pipe = video_model
    given = {k: v for k, v in generate_params.items() if v is not None}
    given.setdefault("height", params["height"])
    given.setdefault("width", params["width"])
    video = generate(pipe, image, seed=seed, **given)
    return PromptVideo(prompt=prompt, image=image, video=video)


# ----------------------------------------------------------------------------------------------------
# Checking a first frame against its prompt, on the toy world's palette

@dataclasses.dataclass(frozen=True)
class ToyObject:
    """One blob of one palette colour, the largest of its colour, and the shape its silhouette suggests."""

    colour: str
    shape: str
    corners: float  # E[dx^4 + dy^4] / E[r^4] about the centroid: square 0.64, circle 0.75, diamond 0.86
    skew: float  # skewness of the rows: 0 for the symmetric shapes, -0.57 for an upward triangle
    solidity: float  # area / the area of its convex hull: 0.81-1 for the world's (convex) shapes at 64 px
    area: int  # pixels
    box: tuple[int, int, int, int]  # x, y, width, height


MIN_SOLIDITY = 0.75  # below the least solid shape in rendered frames (0.81, a small triangle)


def _classify(corners: float, skew: float, solidity: float) -> str:
    if solidity < MIN_SOLIDITY:  # every shape of the world is convex; a cross or a star is none of them
        return "none"
    if skew <= -0.28:  # mass low, a tail upwards: the triangle's point
        return "triangle"
    if corners < 0.70:  # mass far out along the diagonals
        return "square"
    return "diamond" if corners > 0.80 else "circle"  # mass far out along the axes, or evenly


def find_objects(image, *, max_distance: float = 90.0, min_area: int = 12) -> list[ToyObject]:
    """The coloured shapes in a toy-world image: for each palette colour, its largest blob and its shape.

    A pixel belongs to the nearest palette colour within `max_distance` (RGB), as in
    `svdkit.toy.world.detect_shapes`; a colour's largest connected blob of at least `min_area` pixels is its
    object. Its shape comes from two moments of its pixels about their centroid, which blur and rounded
    corners move only a little (a fill or corner count would flip), once the blob is convex enough to be a
    shape at all (its `solidity`, area over the area of its convex hull, at least `MIN_SOLIDITY`; otherwise
    "none"):

    * the skewness of the rows: an upward triangle has its mass low and a tail up (-0.57), the others 0;
    * ``E[dx^4 + dy^4] / E[(dx^2 + dy^2)^2]``: how far out the mass reaches along the axes rather than the
      diagonals; 0.64 for a square, 0.75 for a circle, 0.86 for a diamond (a square turned 45 degrees).

    >>> from svdkit.toy import render_clip
    >>> sorted((o.colour, o.shape) for o in find_objects(render_clip(7)[0]))  # doctest: +SKIP
    [('blue', 'circle'), ('green', 'square')]
    """
    import cv2

    from svdkit.toy.world import PALETTE

    img = np.asarray(load_image(image), dtype=np.float32)  # (H, W, 3)
    names = list(PALETTE)
    colours = np.asarray([PALETTE[c] for c in names], np.float32)  # (K, 3)
    dist = np.linalg.norm(img[:, :, None, :] - colours, axis=-1)  # (H, W, K)
    nearest, close = dist.argmin(-1), dist.min(-1) <= max_distance
    found = []
    for k, name in enumerate(names):
        mask = (close & (nearest == k)).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count < 2:
            continue
        j = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        x, y, w, h, area = (int(v) for v in stats[j])
        if area < min_area:
            continue
        rows, cols = np.nonzero(labels == j)
        dy, dx = rows - rows.mean(), cols - cols.mean()  # (area,) offsets from the centroid
        r2 = dx * dx + dy * dy
        corners = float((dx ** 4 + dy ** 4).mean() / max((r2 * r2).mean(), 1e-9))
        skew = float((dy ** 3).mean() / max((dy * dy).mean(), 1e-9) ** 1.5)
        pixel_corners = np.concatenate([np.stack([cols + a, rows + b], 1) for a in (0, 1) for b in (0, 1)])
        solidity = area / cv2.contourArea(cv2.convexHull(pixel_corners.astype(np.int32)))  # hull of whole pixels
        found.append(ToyObject(name, _classify(corners, skew, solidity), round(corners, 3), round(skew, 3),
                               round(solidity, 3), area, (x, y, w, h)))
    return found


def parse_prompt(prompt: str) -> list[tuple[str, str | None]]:
    """The (colour, shape) pairs a prompt names, in order; shape is None for a colour with no shape after it.

    >>> parse_prompt("a red circle, a blue square and a yellow thing on a grey background")
    [('red', 'circle'), ('blue', 'square'), ('yellow', None)]
    """
    from svdkit.toy.world import PALETTE, SHAPE_KINDS

    colours, shapes = "|".join(PALETTE), "|".join(SHAPE_KINDS)
    pairs = re.findall(rf"\b({colours})\b(?:\s+({shapes})\b)?", prompt.lower())
    return [(c, s or None) for c, s in pairs]


def check_prompt(image, prompt: str) -> dict:
    """Does the image show what the prompt names? Colours alone, and colours with their shapes.

    Returns a JSON-ready dict: `wanted` and `found` as [colour, shape] pairs, `colours_ok` (every named colour
    has a blob), `shapes_ok` (and every named shape is that colour's blob's shape), and `extra` colours.
    """
    wanted = parse_prompt(_check_prompt_text(prompt))
    found = {o.colour: o for o in find_objects(image)}
    colours_ok = all(c in found for c, _ in wanted)
    shapes_ok = colours_ok and all(s is None or found[c].shape == s for c, s in wanted)
    named = {c for c, _ in wanted}
    return {"wanted": [[c, s] for c, s in wanted], "found": [[o.colour, o.shape] for o in found.values()],
            "colours_ok": bool(colours_ok), "shapes_ok": bool(shapes_ok),
            "extra": sorted(c for c in found if c not in named)}
