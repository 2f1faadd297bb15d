"""Latents as colours: a linear 4 -> 3 map plus a bias, instead of the VAE decoder.

Each latent pixel stands for an 8 x 8 patch of the picture; a least-squares fit finds the map that sends its
4 channels to that patch's mean colour. `preview` applies it: no decoder, so it is cheap enough to watch every
step of denoising. The real SVD models get Stable Diffusion's published map; the toy's fitted map is stored in
`LATENT_RGB_PATH`; any other VAE is fitted once per session.

>>> import svdkit
>>> from svdkit.latent_rgb import latent_rgb_factors, preview
>>> pipe = svdkit.load_pipeline("toy")
>>> video = svdkit.generate(pipe, "data/example_0.png", num_inference_steps=4, capture=True)
>>> preview(video.trace.latents, pipe).shape              # scaled latents (F, 4, h, w) -> uint8 (F, h, w, 3)
(14, 8, 8, 3)
>>> [a.shape for a in latent_rgb_factors("svd-xt")]       # rgb = latents @ W + b
[(4, 3), (3,)]
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from svdkit.sampling import load_image, upcast_vae

__all__ = ["preview", "latent_rgb_factors", "fit_latent_rgb", "store_latent_rgb", "SD_LATENT_RGB", "LATENT_RGB_PATH"]

# The published 4 -> 3 map of the Stable Diffusion VAE's latent space (rows: latent channels; columns: R, G, B),
# applied to scaled latents, giving colours in about [-1, 1]. SVD encodes images with that VAE's encoder, so
# the map suits the real SVD models. The numbers come from Keturn's "Decoding latents to RGB without upscaling"
# (Hugging Face forums, 2022) and are shipped by several tools, ComfyUI's latent previews among them.
SD_LATENT_RGB = np.array([
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
], dtype=np.float32)

LATENT_RGB_PATH = Path(__file__).parent / "latent_rgb.json"
"""Stored fitted maps, keyed by model name, each with the fingerprint of the VAE it was fitted on."""

_SD_MODELS = ("svd", "svd-xt", "svd-xt-1-1")
_FITTED: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # fitted this session, by VAE fingerprint


def _as_pixels(images) -> torch.Tensor:
    """Images (PIL, uint8 arrays of one size, or a (N, 3, H, W) tensor in [-1, 1]) as (N, 3, H, W) in [-1, 1]."""
    if isinstance(images, torch.Tensor):
        return images.to("cpu", torch.float32)
    arrays = np.stack([np.asarray(load_image(im)) for im in images])  # (N, H, W, 3) uint8
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def fit_latent_rgb(vae, images) -> tuple[np.ndarray, np.ndarray]:
    """Fit the linear map from scaled latents to colour by least squares.

    Each latent pixel stands for an 8 x 8 patch; the map sends its 4 channels to that patch's mean colour in
    [-1, 1]: `rgb = z @ W + b`.

    Args:
      vae: the pipeline's VAE (`pipe.vae`).
      images: sample images of one size, a multiple of 8: PIL images, uint8 arrays or a (N, 3, H, W) tensor in
        [-1, 1]. A few dozen typical images are plenty: the map has 15 numbers.

    Returns:
      (W, b): W (4, 3) and b (3,), float32.
    """
    x = _as_pixels(images)  # (N, 3, H, W)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    with upcast_vae(vae):
        z = vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mode().to("cpu", torch.float32)
    z = z * vae.config.scaling_factor  # (N, 4, h, w)
    target = torch.nn.functional.avg_pool2d(x, factor)  # (N, 3, h, w): each patch's mean colour
    inputs = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).double()
    inputs = torch.cat([inputs, torch.ones(len(inputs), 1, dtype=torch.float64)], dim=1)  # bias column
    colours = target.permute(0, 2, 3, 1).reshape(-1, 3).double()
    solution = torch.linalg.lstsq(inputs, colours, driver="gelsd").solution  # (5, 3)
    return solution[:-1].float().numpy(), solution[-1].float().numpy()


def _fit_images(count: int = 32, size: int = 64) -> list[np.ndarray]:
    """Sample images for fitting: first and last frames of toy-world clips."""
    from svdkit.toy import render_clip
    images = []
    for seed in range(count // 2):
        clip = render_clip(seed, motion_bucket_id=255, fps=4, size=size)
        images += [clip[0], clip[-1]]
    return images


def _vae_fingerprint(vae) -> str:
    """A short hash of a few encoder weights: tells apart two VAEs, and a VAE before and after training."""
    h = hashlib.sha1()
    for name in ("encoder.conv_in.weight", "encoder.conv_out.weight", "quant_conv.weight"):
        t = dict(vae.named_parameters()).get(name)
        if t is not None:
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _model_name(model) -> str:
    if isinstance(model, (str, Path)):
        return str(model)
    info = getattr(model, "svdkit", None)
    return info.model if info is not None else str(getattr(model, "name_or_path", "") or "")


def _table(path=None) -> dict:
    path = Path(LATENT_RGB_PATH if path is None else path)
    return json.loads(path.read_text()) if path.is_file() else {}


def latent_rgb_factors(model="toy") -> tuple[np.ndarray, np.ndarray]:
    """The latent -> colour map (W (4, 3), b (3,)) for a model: `rgb = scaled_latents @ W + b`, in about [-1, 1].

    model: a pipeline (best: its VAE is checked against the stored fit, and fitted on the spot when none
    matches), a model name, or a (W, b) pair. The real SVD models get `SD_LATENT_RGB`; the toy gets the map
    stored in `LATENT_RGB_PATH`; other pipelines are fitted on toy-world images once per session.
    """
    if isinstance(model, (tuple, list)) and len(model) == 2:
        return np.asarray(model[0], np.float32), np.asarray(model[1], np.float32)
    name = _model_name(model)
    if name in _SD_MODELS or name.startswith("stabilityai/"):
        return SD_LATENT_RGB.copy(), np.zeros(3, np.float32)
    table = _table()
    vae = getattr(model, "vae", None)
    if vae is None:  # a name only
        if name in table:
            return np.asarray(table[name]["W"], np.float32), np.asarray(table[name]["b"], np.float32)
        if name == "toy":
            from diffusers import AutoencoderKLTemporalDecoder

            from svdkit.toy import MODEL_PATH
            vae = AutoencoderKLTemporalDecoder.from_pretrained(MODEL_PATH, subfolder="vae", use_safetensors=True)
        else:
            warnings.warn(f"no latent colour map stored for {name!r}; using Stable Diffusion's. Pass the pipeline "
                          "to fit one to its VAE.", stacklevel=2)
            return SD_LATENT_RGB.copy(), np.zeros(3, np.float32)
    key = _vae_fingerprint(vae)
    if key not in _FITTED:
        stored = [e for e in table.values() if isinstance(e, dict) and e.get("vae") == key]
        if stored:
            _FITTED[key] = np.asarray(stored[0]["W"], np.float32), np.asarray(stored[0]["b"], np.float32)
        else:
            _FITTED[key] = fit_latent_rgb(vae, _fit_images())
    W, b = _FITTED[key]
    return W.copy(), b.copy()


def store_latent_rgb(pipe, name: str = "toy", path=None) -> dict:
    """Fit the colour map to `pipe`'s VAE on toy-world images and store it under `name` in `path` (JSON, default
    `LATENT_RGB_PATH`), with the VAE's fingerprint; returns the stored entry."""
    path = LATENT_RGB_PATH if path is None else path
    images = _fit_images()
    W, b = fit_latent_rgb(pipe.vae, images)
    entry = {"vae": _vae_fingerprint(pipe.vae), "W": np.round(W, 6).tolist(), "b": np.round(b, 6).tolist(),
             "fitted_on": f"{len(images)} toy-world frames, 64 x 64"}
    table = _table(path)
    table[name] = entry
    Path(path).write_text(json.dumps(table, indent=1) + "\n")
    _FITTED[entry["vae"]] = W, b
    return entry


def preview(latents, model="toy", *, upscale: int = 1) -> np.ndarray:
    """Scaled latents (..., 4, h, w) as colours, through the linear map: uint8 (..., h * upscale, w * upscale, 3).

    Cheap (no decoder), and good enough to watch denoising. For the unscaled condition latents, multiply by
    the scaling factor first: `preview(trace.image_latents * trace.scaling_factor, pipe)`.
    """
    W, b = latent_rgb_factors(model)
    z = torch.as_tensor(latents).detach().to("cpu", torch.float32)
    rgb = torch.einsum("...chw,cd->...hwd", z, torch.from_numpy(W)) + torch.from_numpy(b)
    image = ((rgb + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    if upscale > 1:
        image = image.repeat(upscale, axis=-3).repeat(upscale, axis=-2)
    return image
