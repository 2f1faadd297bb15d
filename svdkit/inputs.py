"""What a call of `generate()` is given, checked before any model work: the image, the parameters, the guidance.

`load_image` takes a path, a PIL image, a uint8 array or a tensor; `check_params` fills in the model's defaults
and refuses a bad value with a message naming the parameter and its valid range; `guidance_schedule` makes the
per-frame guidance scales; `size_multiple` says what heights and widths the loaded model takes; `seed_list` makes a
notebook's `seeds` and `seed` parameters agree.

>>> from svdkit.inputs import check_params, guidance_schedule
>>> guidance_schedule("linear", num_frames=3, min_scale=1.0, max_scale=3.0).tolist()
[1.0, 2.0, 3.0]
>>> check_params(None, {"fps": 6})["motion_bucket_id"]     # SVD's defaults fill in the rest
127
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["load_image", "check_params", "guidance_schedule", "size_multiple", "seed_list", "user_stacklevel",
           "GENERATE_PARAMS", "GUIDANCE_KINDS"]

# The pipeline parameters `generate()` accepts as keywords.
GENERATE_PARAMS = ("height", "width", "num_frames", "num_inference_steps", "min_guidance_scale",
                   "max_guidance_scale", "fps", "motion_bucket_id", "noise_aug_strength", "decode_chunk_size")

GUIDANCE_KINDS = ("linear", "constant", "triangle")


def seed_list(seeds, seed=None) -> tuple[list[int], int]:
    """The seeds to measure with, and the one whose clips are shown: ``seeds`` (an int or a list) as a list, and
    ``seed`` (None: the first of them). A ``seed`` that is not among ``seeds`` joins them, so that it is measured too.

    >>> seed_list([0, 1])
    ([0, 1], 0)
    >>> seed_list(3, seed=7)
    ([3, 7], 7)
    """
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    if not seeds:
        raise ValueError("seeds: give at least one seed, e.g. [0, 1]")
    if seed is None:
        return seeds, seeds[0]
    return seeds if seed in seeds else [*seeds, seed], seed


def load_image(image):
    """Return `image` as an RGB PIL image; accepts a PIL image, a path, a numpy array or a torch tensor.

    Arrays may be (H, W), (H, W, 1|3|4) uint8 or float in [0, 1]; tensors (3, H, W) or (1, 3, H, W) in [0, 1].
    RGBA, grayscale and palette images are converted to RGB with a warning.

    >>> load_image("data/example_0.png").size
    (64, 64)
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image: no file at {str(path)!r}")
        try:
            with Image.open(path) as im:
                im.load()
                image = im.copy()
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"image: cannot read {str(path)!r} as an image ({e})") from None
    elif isinstance(image, torch.Tensor):
        t = image.detach().cpu().float()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
            raise ValueError(f"image: a tensor must be (3, H, W) or (1, 3, H, W) in [0, 1], got {tuple(image.shape)}")
        image = t.permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        a = image
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
            raise ValueError(f"image: an array must be (H, W) or (H, W, 3|4), got shape {image.shape}")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"image: an array must have at least one pixel (H, W >= 1), got shape {image.shape}")
        if a.dtype != np.uint8:
            if not np.issubdtype(a.dtype, np.floating) or np.nanmin(a) < 0 or np.nanmax(a) > 1:
                raise ValueError("image: a non-uint8 array must be float with values in [0, 1]")
            a = (a * 255).round().astype(np.uint8)
        image = Image.fromarray(a)
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, a path, a numpy array or a torch tensor, "
                        f"got {type(image).__name__}")
    if image.width == 0 or image.height == 0:
        raise ValueError(f"image must have at least one pixel, got a {image.width}x{image.height} image")
    if image.mode != "RGB":
        warnings.warn(f"image: converting mode {image.mode!r} to RGB", stacklevel=user_stacklevel())
        image = image.convert("RGB")
    return image


def guidance_schedule(kind="linear", num_frames: int = 14, min_scale: float = 1.0, max_scale: float = 3.0):
    """The classifier-free guidance scale of each frame, a float32 tensor (num_frames,).

    kind: "linear" (SVD's default: min on the first frame rising to max on the last), "constant" (max on
    every frame), "triangle" (min at both ends, max in the middle, as generative-models and ComfyUI offer),
    or any sequence of num_frames numbers.

    >>> guidance_schedule("triangle", 5, 1.0, 3.0).tolist()
    [1.0, 2.0, 3.0, 2.0, 1.0]
    """
    if isinstance(kind, str):
        if kind == "linear":
            return torch.linspace(min_scale, max_scale, num_frames)
        if kind == "constant":
            return torch.full((num_frames,), float(max_scale))
        if kind == "triangle":
            t = torch.linspace(0.0, 1.0, num_frames)
            return min_scale + (max_scale - min_scale) * (1 - (2 * t - 1).abs())
        raise ValueError(f"guidance must be one of {GUIDANCE_KINDS} or a sequence of num_frames numbers, got {kind!r}")
    values = torch.as_tensor(np.asarray(kind, dtype=np.float32))
    if values.ndim != 1 or len(values) != num_frames:
        raise ValueError(f"guidance: a schedule needs exactly num_frames={num_frames} values, "
                         f"got shape {tuple(values.shape)}")
    if not torch.isfinite(values).all() or (values < 0).any():
        raise ValueError("guidance: every scale must be finite and >= 0")
    return values.float()


def defaults(pipe, spec=None) -> dict:
    """The parameters a call uses when it does not name them: the model's registry row, else the pipeline's.

    `pipe` may be None (checking a command line before loading anything): then `spec` alone is used.
    """
    info = getattr(pipe, "svdkit", None)
    spec = info.spec if info is not None else spec
    d = dict(height=576, width=1024, num_frames=14, num_inference_steps=25, min_guidance_scale=1.0,
             max_guidance_scale=3.0, fps=7, motion_bucket_id=127, noise_aug_strength=0.02, decode_chunk_size=None)
    if pipe is not None:
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        d.update(height=size, width=size, num_frames=pipe.unet.config.num_frames)
    if spec is not None:
        d.update({k: getattr(spec, k) for k in d if hasattr(spec, k)})
    if info is not None and info.decode_chunk_size:
        d["decode_chunk_size"] = info.decode_chunk_size
    return d


def user_stacklevel() -> int:
    """The `stacklevel` for a warning raised by the function that calls this one: the first frame outside svdkit
    and torch, so the warning names the user's line however deep the call (generate, sweep, text) and whatever
    wraps it (`torch.no_grad`); the command line (`python -m svdkit`) counts as the user."""
    import os
    import sys

    inside = tuple(str(Path(f).parent) + os.sep for f in (__file__, torch.__file__))
    frame, level = sys._getframe(1), 1
    while (frame is not None and frame.f_code.co_filename.startswith(inside)
           and not frame.f_code.co_filename.endswith("__main__.py")):
        frame, level = frame.f_back, level + 1
    return level


def size_multiple(pipe=None, spec=None) -> int:
    """Height and width must be multiples of this: the VAE's downsampling times the UNet's (8 x 8 = 64 for SVD).

    Read from the loaded pipeline's configs; with `pipe=None` (a command line checked before loading), from the
    bundled toy's config files when `spec` is the toy's registry row, else SVD's 64.

    >>> size_multiple()
    64
    """
    if pipe is not None:
        vae_blocks, unet_blocks = pipe.vae.config.block_out_channels, pipe.unet.config.down_block_types
    elif spec is not None and spec.repo_id == "toy":
        import json

        from svdkit.toy import MODEL_PATH
        vae_blocks = json.loads((MODEL_PATH / "vae" / "config.json").read_text())["block_out_channels"]
        unet_blocks = json.loads((MODEL_PATH / "unet" / "config.json").read_text())["down_block_types"]
    else:
        return 64
    return 2 ** (len(vae_blocks) - 1) * 2 ** (len(unet_blocks) - 1)


def check_params(pipe, params: dict, guidance=None, sigmas=None, *, spec=None) -> dict:
    """Fill in defaults and validate every parameter before any model work; return the full set.

    With `pipe=None`, checks against a registry row `spec` (or generic defaults) without a loaded model.
    """
    unknown = set(params) - set(GENERATE_PARAMS)
    if unknown:
        raise TypeError(f"generate() got unknown parameter(s) {sorted(unknown)}; valid: {', '.join(GENERATE_PARAMS)}")
    p = defaults(pipe, spec)
    p.update({k: v for k, v in params.items() if v is not None or k == "decode_chunk_size"})
    if p["decode_chunk_size"] is None:
        p["decode_chunk_size"] = defaults(pipe, spec)["decode_chunk_size"]

    m = size_multiple(pipe, spec)
    for name in ("height", "width"):
        v = p[name]
        if not isinstance(v, (int, np.integer)) or v < m or v % m:
            near = max(m, int(round(v / m)) * m) if isinstance(v, (int, float, np.number)) and v > 0 else m
            raise ValueError(f"{name} must be a positive multiple of {m} (the model's VAE downsampling times its "
                             f"UNet's); got {v!r}, nearest valid is {near}")
    for name, lo in (("num_frames", 1), ("num_inference_steps", 1), ("fps", 1)):
        v = p[name]
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    dcs = p["decode_chunk_size"]
    if dcs is not None and (not isinstance(dcs, (int, np.integer)) or dcs < 1):
        raise ValueError(f"decode_chunk_size must be an integer >= 1 (frames decoded at once), got {dcs!r}")
    if not isinstance(p["noise_aug_strength"], (int, float)) or not p["noise_aug_strength"] >= 0:
        raise ValueError(f"noise_aug_strength must be a number >= 0 (SVD uses 0.0-0.1), "
                         f"got {p['noise_aug_strength']!r}")
    for name in ("min_guidance_scale", "max_guidance_scale"):
        if not isinstance(p[name], (int, float)) or not math.isfinite(p[name]) or p[name] < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {p[name]!r}")
    if not isinstance(p["motion_bucket_id"], (int, float, np.number)):
        raise ValueError(f"motion_bucket_id must be a number in 0-255, got {p['motion_bucket_id']!r}")
    if not 0 <= p["motion_bucket_id"] <= 255:
        warnings.warn(f"motion_bucket_id={p['motion_bucket_id']} is outside 0-255, the range SVD was trained on",
                      stacklevel=user_stacklevel())
    trained = pipe.unet.config.num_frames if pipe is not None else getattr(spec, "num_frames", None)
    if trained is not None and p["num_frames"] > trained:
        warnings.warn(f"num_frames={p['num_frames']} is more than the {trained} frames this model was trained for; "
                      "expect the clip to degrade", stacklevel=user_stacklevel())
    if sigmas is not None:
        s = np.asarray(sigmas, dtype=np.float64)
        if s.ndim != 1 or len(s) < 2 or not np.all(np.isfinite(s)) or np.any(s[:-1] <= 0) or s[-1] < 0 \
                or np.any(np.diff(s) >= 0):
            raise ValueError("sigmas must be a strictly decreasing sequence of at least 2 noise levels, all > 0 "
                             "except the last (usually 0); the number of steps is len(sigmas) - 1")
        p["num_inference_steps"] = len(s) - 1
    p["guidance"] = guidance_schedule("linear" if guidance is None else guidance, p["num_frames"],
                                      p["min_guidance_scale"], p["max_guidance_scale"])
    return p
