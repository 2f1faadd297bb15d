"""See inside SVD, stage by stage and frame by frame: latents, frames, schedules and temporal attention.

Every function returns a matplotlib `Figure` (built without pyplot, so it works headless and leaves no global
state) or a numpy array / torch tensor, so the same pictures serve notebooks, scripts and tests.

>>> import svdkit
>>> from svdkit import viz
>>> pipe = svdkit.load_pipeline("toy")
>>> video = svdkit.generate(pipe, viz.example_image(), num_inference_steps=8, capture=True)
>>> viz.preview(video.trace.latents, pipe).shape         # cheap RGB look at latents: no VAE, (F, h, w, 3)
(14, 8, 8, 3)
>>> fig = viz.plot_latent_grid(video.trace.latents)      # frames x channels, one colour scale
>>> viz.filmstrip(video.frames).shape                    # frames side by side, 2-pixel gaps
(64, 922, 3)
>>> video, maps = viz.capture_temporal_attention(pipe, viz.example_image(), num_inference_steps=8)
>>> fig = viz.plot_temporal_attention(maps, steps=[7])   # which frames each frame looks at

Layouts: one video's latents are (F, 4, h, w); a trace's per-step tensors (S, F, 4, h, w); frames (F, H, W, 3)
uint8; an image for the VAE (1, 3, H, W) in [-1, 1]. "Scaled" latents are multiplied by the VAE's scaling
factor, as the frames' latents are during denoising; SVD's condition latents (`trace.image_latents`) are not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from svdkit.sampling import load_image

__all__ = [
    # stage 1 and 2, measured: what the VAE and CLIP see, and what the UNet receives
    "example_image", "preprocess", "encode_latents", "decode_image", "noise_augment", "to_uint8", "psnr",
    "clip_input", "clip_embedding", "unet_input",
    # latents as colours, without the VAE decoder
    "SD_LATENT_RGB", "LATENT_RGB_PATH", "fit_latent_rgb", "latent_rgb_factors", "store_latent_rgb", "preview",
    "preview_error", "compare_preview",
    # frames as arrays
    "filmstrip", "frame_grid", "frame_differences", "frame_rmse",
    # a captured trace
    "QUANTITIES", "trace_quantity", "trace_previews", "x0_distances", "denoising_video",
    # figures
    "plot_images", "plot_latent_grid", "plot_filmstrips", "plot_step_frame_grid", "plot_frame_differences",
    "plot_latent_histograms", "plot_sigmas", "plot_x0_distances", "plot_per_frame", "plot_guidance",
    "plot_added_time_ids",
    "plot_noise_augmentation",
    # temporal attention
    "temporal_attention_modules", "TemporalAttentionRecorder", "capture_temporal_attention", "attention_summary",
    "plot_temporal_attention",
]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), layout="constrained")


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x)


# ----------------------------------------------------------------------------------------------------
# Stages 1 and 2, measured


def example_image():
    """The example picture: `data/example_0.png` of a source checkout, else a held-out scene of the toy world.

    >>> example_image().size
    (64, 64)
    """
    import svdkit
    from PIL import Image

    for path in (Path(svdkit.__file__).resolve().parents[1] / "data" / "example_0.png", Path("data/example_0.png")):
        if path.is_file():
            return load_image(path)
    from svdkit.toy import HELD_OUT_SEED, render_clip
    return Image.fromarray(render_clip(HELD_OUT_SEED)[0])


def _size(pipe) -> tuple[int, int]:
    """The (height, width) `generate()` uses by default for this pipeline."""
    info = getattr(pipe, "svdkit", None)
    if info is not None and info.spec is not None:
        return info.spec.height, info.spec.width
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return size, size


@contextlib.contextmanager
def _vae_fp32(vae):
    """Run a half-precision VAE that asks for it (`force_upcast`) in float32, as the pipeline does."""
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        yield
    finally:
        if upcast:
            vae.to(dtype=torch.float16)


@torch.no_grad()
def preprocess(pipe, image, height: int | None = None, width: int | None = None) -> torch.Tensor:
    """The image as the VAE sees it: resized to the output size and mapped to [-1, 1]; (1, 3, H, W) float32.

    Height and width default to the ones `generate()` uses for this pipeline.
    """
    h, w = _size(pipe)
    pixels = pipe.video_processor.preprocess(load_image(image), height=height or h, width=width or w)
    return pixels.to("cpu", torch.float32)


def noise_augment(pixels: torch.Tensor, strength: float, seed: int = 0) -> torch.Tensor:
    """`pixels + strength * noise`, with the same noise `generate(seed=seed)` draws first.

    So `noise_augment(preprocess(pipe, image), 0.02, seed)` equals `trace.noisy_image` of that run.
    """
    from diffusers.utils.torch_utils import randn_tensor
    generator = torch.Generator().manual_seed(int(seed))
    noise = randn_tensor(tuple(pixels.shape), generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    return pixels.to("cpu", torch.float32) + strength * noise


@torch.no_grad()
def encode_latents(pipe, pixels: torch.Tensor) -> torch.Tensor:
    """The VAE encoder's latents of pixels (B, 3, H, W) in [-1, 1]: (B, 4, H/8, W/8), float32 on the CPU.

    The mode of the latent distribution, NOT multiplied by the scaling factor: exactly what SVD concatenates
    to every frame's noisy latents.
    """
    vae = pipe.vae
    with _vae_fp32(vae):
        z = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
    return z.to("cpu", torch.float32)


@torch.no_grad()
def decode_image(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Decode unscaled latents (B, 4, h, w) back to pixels (B, 3, H, W) in about [-1, 1], each as a 1-frame clip."""
    vae = pipe.vae
    with _vae_fp32(vae):
        x = vae.decode(latents.to(vae.device, vae.dtype), num_frames=latents.shape[0]).sample
    return x.to("cpu", torch.float32)


def to_uint8(pixels) -> np.ndarray:
    """Pixels in [-1, 1], (B, 3, H, W) or (3, H, W), to uint8 images (B, H, W, 3) or (H, W, 3)."""
    x = torch.as_tensor(pixels).detach().to("cpu", torch.float32)
    x = ((x + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images or clips, in dB (inf when equal)."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def clip_input(pipe, image) -> np.ndarray:
    """What CLIP sees: the image resized to 224 x 224 with anti-aliasing, as the SVD pipeline does; uint8 (224, 224, 3).

    (CLIP then normalises it with its own mean and standard deviation.)
    """
    image = load_image(image)
    try:
        from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import \
            _resize_with_antialiasing
    except ImportError:  # a diffusers without the helper: PIL's bicubic resize is close
        from PIL import Image
        return np.asarray(image.resize((224, 224), Image.BICUBIC))
    x = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None]  # (1, 3, H, W) in [0, 1]
    x = _resize_with_antialiasing(x * 2 - 1, (224, 224))
    return to_uint8(x)[0]


@torch.no_grad()
def clip_embedding(pipe, image) -> torch.Tensor:
    """The CLIP image embedding SVD conditions on: (1, 1, D), float32 on the CPU."""
    return pipe._encode_image(load_image(image), pipe._execution_device, 1, False).to("cpu", torch.float32)


def unet_input(trace, step: int = 0) -> torch.Tensor:
    """The conditional UNet input at one step of a trace: (F, 8, h, w).

    Channels 0-3: that step's noisy latents scaled by 1/sqrt(sigma^2 + 1); channels 4-7: the image latents,
    the same in every frame.
    """
    sigma = float(trace.sigmas[step])
    noisy = trace.x_t[step].float() / math.sqrt(sigma**2 + 1)  # (F, 4, h, w)
    image = trace.image_latents[0].float().expand(noisy.shape[0], -1, -1, -1)  # (F, 4, h, w)
    return torch.cat([noisy, image], dim=1)


# ----------------------------------------------------------------------------------------------------
# Latents as colours: a linear 4 -> 3 map plus a bias, instead of the VAE decoder

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
    with _vae_fp32(vae):
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


def _pool_frames(frames: np.ndarray, h: int, w: int) -> np.ndarray:
    """Average uint8 frames (F, H, W, 3) over blocks down to (F, h, w, 3), float."""
    F, H, W, C = frames.shape
    return frames.astype(np.float64).reshape(F, h, H // h, w, W // w, C).mean(axis=(2, 4))


def preview_error(latents, frames: np.ndarray, model="toy") -> float:
    """RMS difference (0-255 units) between the preview of latents (F, 4, h, w) and frames (F, H, W, 3), compared
    at latent resolution (each frame averaged over the 8 x 8 patch a latent pixel stands for)."""
    cheap = preview(latents, model).astype(np.float64)  # (F, h, w, 3)
    target = _pool_frames(np.asarray(frames), cheap.shape[-3], cheap.shape[-2])
    return float(np.sqrt(np.mean((cheap - target) ** 2)))


def compare_preview(pipe, latents, model=None, *, frames=None):
    """Full VAE decode against the cheap preview, for scaled latents (F, 4, h, w).

    Returns (figure, rmse): rows decode / preview / difference for the chosen frames (default: up to 7), and the
    RMS difference over all frames at latent resolution (`preview_error`).
    """
    from svdkit.sampling import decode_latents
    latents = torch.as_tensor(latents)
    model = pipe if model is None else model
    decoded = decode_latents(pipe, latents)  # (F, H, W, 3)
    cheap = preview(latents, model)  # (F, h, w, 3)
    err = preview_error(latents, decoded, model)
    F, h, w = cheap.shape[:3]
    frames = _pick(F, 7) if frames is None else list(frames)
    pooled = _pool_frames(decoded, h, w)
    diff = np.abs(cheap.astype(np.float64) - pooled).mean(-1)  # (F, h, w)
    fig = _figure(1.3 * len(frames) + 1, 4.4)
    axes = fig.subplots(3, len(frames), squeeze=False)
    for j, f in enumerate(frames):
        axes[0, j].imshow(decoded[f])
        axes[1, j].imshow(cheap[f], interpolation="nearest")
        im = axes[2, j].imshow(diff[f], cmap="magma", vmin=0, vmax=max(diff.max(), 1e-6), interpolation="nearest")
        axes[0, j].set_title(f"frame {f}", fontsize=8)
    for i, label in enumerate(("VAE decode", "preview", "|difference|")):
        axes[i, 0].set_ylabel(label, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[2, :].tolist(), shrink=0.8, label="0-255")
    fig.suptitle(f"preview vs decode: RMS error {err:.1f} / 255 at latent resolution", fontsize=9)
    return fig, err


# ----------------------------------------------------------------------------------------------------
# Frames as arrays


def filmstrip(frames, gap: int = 2, fill=255) -> np.ndarray:
    """Frames (F, H, W[, C]) side by side with `gap` pixels of `fill` between them: (H, F * W + (F - 1) * gap[, C]).

    >>> filmstrip(np.zeros((3, 4, 5, 3), np.uint8), gap=1).shape
    (4, 17, 3)
    """
    frames = np.asarray(frames)
    F, H, W = frames.shape[:3]
    out = np.full((H, F * W + (F - 1) * gap) + frames.shape[3:], fill, dtype=frames.dtype)
    for k in range(F):
        out[:, k * (W + gap): k * (W + gap) + W] = frames[k]
    return out


def frame_grid(images, gap: int = 2, fill=255) -> np.ndarray:
    """Images (R, C, H, W[, 3]) as one grid, rows R (e.g. steps) by columns C (e.g. frames), `gap` pixels apart."""
    images = np.asarray(images)
    rows = [filmstrip(row, gap, fill) for row in images]
    spacer = np.full((gap,) + rows[0].shape[1:], fill, dtype=images.dtype)
    parts = []
    for i, row in enumerate(rows):
        parts += [row] if i == 0 else [spacer, row]
    return np.concatenate(parts, axis=0)


def frame_rmse(a, b) -> np.ndarray:
    """RMS difference (0-255) of two clips (F, H, W, 3), frame by frame: (F,)."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return np.sqrt((diff**2).reshape(len(diff), -1).mean(axis=1))


def frame_differences(frames) -> np.ndarray:
    """How much each pixel changes from one frame to the next: (F - 1, H, W), mean |difference| over RGB, 0-255."""
    f = np.asarray(frames, np.float32)
    return np.abs(np.diff(f, axis=0)).mean(axis=-1)


# ----------------------------------------------------------------------------------------------------
# A captured trace

QUANTITIES = {
    "x_t": "noisy latents x_t, scaled by 1/sqrt(sigma^2+1) as the UNet sees them",
    "x0": "predicted clean latents x0",
    "cond": "UNet output with the image",
    "uncond": "UNet output without the image",
    "delta": "guidance delta g * (cond - uncond)",
}
"""What a trace holds per step and frame, by the short names the scrubber and `trace_quantity` use."""


def trace_quantity(trace, quantity: str = "x0") -> torch.Tensor:
    """One of `QUANTITIES` from a trace, float32 (S, F, 4, h, w)."""
    if quantity not in QUANTITIES:
        raise ValueError(f"quantity must be one of {list(QUANTITIES)}, got {quantity!r}")
    if quantity == "x_t":
        scale = (trace.sigmas[: trace.num_steps].float() ** 2 + 1).rsqrt()
        return trace.x_t.float() * scale.view(-1, 1, 1, 1, 1)
    if quantity in ("uncond", "delta") and trace.model_output_uncond is None:
        raise ValueError(f"{quantity!r} needs the unguided UNet output, and this trace has none: it was generated "
                         "with every guidance scale <= 1, so the UNet ran once per step")
    value = {"x0": trace.x0, "cond": trace.model_output_cond, "uncond": trace.model_output_uncond}.get(quantity)
    return (trace.guidance_delta if value is None else value).float()


def trace_previews(trace, quantity: str = "x0", model="toy", *, upscale: int = 1) -> np.ndarray:
    """The preview colours of one quantity at every step and frame: uint8 (S, F, h, w, 3)."""
    return preview(trace_quantity(trace, quantity), model, upscale=upscale)


def x0_distances(trace) -> np.ndarray:
    """RMS distance of each step's predicted clean latents to the final latents: (S,). It shrinks to 0."""
    diff = trace.x0.float() - trace.latents.float().unsqueeze(0)
    return diff.pow(2).flatten(1).mean(1).sqrt().numpy()


def denoising_video(trace, model="toy", quantity: str = "x0", *, upscale: int = 4, gap: int = 1) -> np.ndarray:
    """The denoising as a clip: video frame k is the filmstrip of all frames' previews at step k.

    uint8 (S, h * upscale, F * (w * upscale + gap) - gap, 3), ready for `mediapy.show_video` or `write_video`.
    """
    images = trace_previews(trace, quantity, model, upscale=upscale)  # (S, F, h', w', 3)
    return np.stack([filmstrip(step, gap) for step in images])


# ----------------------------------------------------------------------------------------------------
# Figures


def _pick(n: int, most: int) -> list[int]:
    """Up to `most` indices spread evenly over range(n), first and last included."""
    return list(range(n)) if n <= most else sorted({int(round(i)) for i in np.linspace(0, n - 1, most)})


def _off(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def plot_images(images: dict, *, title: str | None = None, cmap: str = "magma"):
    """A row of labelled images: {label: uint8 (H, W, 3), or (H, W) values shown with `cmap` and a colour bar}."""
    fig = _figure(2.2 * len(images), 2.6)
    axes = fig.subplots(1, len(images), squeeze=False)[0]
    for ax, (label, image) in zip(axes, images.items()):
        image = _np(image)
        im = ax.imshow(image, cmap=None if image.ndim == 3 else cmap, interpolation="nearest")
        if image.ndim == 2:
            fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_title(label, fontsize=9)
        _off(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_latent_grid(latents, *, frames=None, channels=None, title: str | None = None, vmax: float | None = None,
                     cmap: str = "RdBu_r"):
    """Latents (F, C, h, w) (or (C, h, w), one row) as a grid, frames by channels, on ONE colour scale.

    The scale is symmetric around 0, up to `vmax` (default: the largest |value| shown), with one colour bar.
    frames / channels: which to show (default: all channels; all frames up to 16, else 8 spread evenly).
    """
    z = _np(latents)
    single = z.ndim == 3
    if single:
        z = z[None]
    if frames is None:
        frames = _pick(z.shape[0], 8) if z.shape[0] > 16 else range(z.shape[0])
    frames = list(frames)
    channels = list(range(z.shape[1])) if channels is None else list(channels)
    shown = z[np.ix_(frames, channels)]
    vmax = float(np.abs(shown).max()) if vmax is None else float(vmax)
    vmax = vmax or 1.0
    fig = _figure(1.1 * len(channels) + 1.2, 1.1 * len(frames) + 0.6)
    axes = fig.subplots(len(frames), len(channels), squeeze=False)
    for i, f in enumerate(frames):
        for j, c in enumerate(channels):
            im = axes[i, j].imshow(z[f, c], cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
            _off(axes[i, j])
            if i == 0:
                axes[i, j].set_title(f"ch {c}", fontsize=8)
        axes[i, 0].set_ylabel("" if single else f"frame {f}", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_filmstrips(rows, *, title: str | None = None, gap: int = 2):
    """One filmstrip per row: frames (F, H, W, 3), or {label: frames} to compare clips, frame numbers below."""
    rows = rows if isinstance(rows, dict) else {"": rows}
    first = np.asarray(next(iter(rows.values())))
    F, H, W = first.shape[:3]
    strip_w = F * W + (F - 1) * gap
    fig = _figure(min(16.0, 0.9 * F + 1.0), (0.9 * F + 1.0) * H / strip_w * len(rows) + 0.6)
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (label, frames) in zip(axes, rows.items()):
        ax.imshow(filmstrip(frames, gap), interpolation="nearest")
        ax.set_yticks([])
        ax.set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center")
        ax.set_xticks([k * (W + gap) + W / 2 for k in range(F)], [str(k) for k in range(F)], fontsize=7)
        ax.tick_params(length=0)
    axes[-1].set_xlabel("frame", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_step_frame_grid(images, *, sigmas=None, title: str | None = None, gap: int = 1):
    """Images (S, F, H, W, 3) as a grid: one row per denoising step (labelled with its sigma), one column per frame."""
    images = np.asarray(images)
    S, F, H, W = images.shape[:4]
    fig = _figure(min(16.0, 0.55 * F + 1.6), min(22.0, 0.55 * S + 0.8))
    ax = fig.subplots()
    ax.imshow(frame_grid(images, gap), interpolation="nearest")
    ax.set_xticks([k * (W + gap) + W / 2 for k in range(F)], [str(k) for k in range(F)], fontsize=7)
    labels = [f"{s}" if sigmas is None else f"{s}  σ={float(sigmas[s]):.3g}" for s in range(S)]
    ax.set_yticks([s * (H + gap) + H / 2 for s in range(S)], labels, fontsize=7)
    ax.tick_params(length=0)
    ax.set_xlabel("frame", fontsize=8)
    ax.set_ylabel("step", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_frame_differences(frames, *, title: str | None = None):
    """Where the clip moves: |frame k+1 - frame k| (mean over RGB, 0-255) side by side, one colour scale."""
    diffs = frame_differences(frames)  # (F-1, H, W)
    n, H, W = diffs.shape
    fig = _figure(min(16.0, 0.9 * n + 1.6), 0.9 * H / W + 1.0)
    ax = fig.subplots()
    im = ax.imshow(filmstrip(diffs, 2, np.nan), cmap="magma", vmin=0, vmax=max(float(diffs.max()), 1e-6),
                   interpolation="nearest")
    ax.set_xticks([k * (W + 2) + W / 2 for k in range(n)], [f"{k}→{k + 1}" for k in range(n)], fontsize=6)
    ax.set_yticks([])
    ax.tick_params(length=0)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title or f"frame differences: mean {diffs.mean():.2f} / 255 per pixel", fontsize=9)
    return fig


def plot_latent_histograms(trace, steps=None, *, quantity: str = "x_t", bins: int = 60):
    """Histograms of a trace's latent values at some steps, against the density of N(0, sigma^2) of that step.

    With quantity "x_t" (raw, unscaled noisy latents), early steps are almost exactly N(0, sigma^2): pure noise.
    """
    S = trace.num_steps
    steps = _pick(S, 4) if steps is None else list(steps)
    fig = _figure(2.8 * len(steps), 2.6)
    axes = fig.subplots(1, len(steps), squeeze=False)[0]
    data = trace.x_t.float() if quantity == "x_t" else trace_quantity(trace, quantity)
    for ax, s in zip(axes, steps):
        values = data[s].flatten().numpy()
        sigma = float(trace.sigmas[s])
        lim = max(4 * sigma, float(np.abs(values).max()))
        ax.hist(values, bins=bins, range=(-lim, lim), density=True, color="tab:blue", alpha=0.6, label="values")
        grid = np.linspace(-lim, lim, 200)
        ax.plot(grid, np.exp(-grid**2 / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi)), "k-", lw=1,
                label="N(0, σ²)")
        ax.set_title(f"step {s}: σ={sigma:.3g}, std {values.std():.3g}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    return fig


def plot_sigmas(sigmas, step: int | None = None, *, title: str | None = None):
    """The noise schedule on a log scale, one point per step, with step `step` marked."""
    s = _np(sigmas).astype(np.float64)
    positive = s[s > 0]
    fig = _figure(4.6, 2.8)
    ax = fig.subplots()
    ax.semilogy(np.arange(len(positive)), positive, "o-", ms=3, color="tab:blue")
    if step is not None and step < len(positive):
        ax.axvline(step, color="tab:red", lw=0.8)
        ax.semilogy([step], [positive[step]], "o", color="tab:red", ms=7, label=f"step {step}: σ={positive[step]:.3g}")
        ax.legend(fontsize=8)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("σ (log scale)", fontsize=8)
    note = f", then σ={s[-1]:g} after the last step" if len(positive) < len(s) else ""
    ax.set_title(title or f"noise levels: {len(positive)} steps{note}", fontsize=9)
    return fig


def plot_x0_distances(trace, *, title: str | None = None):
    """RMS distance of each step's x0 prediction to the final latents: how soon the clip is decided."""
    d = x0_distances(trace)
    fig = _figure(4.6, 2.8)
    ax = fig.subplots()
    ax.plot(np.arange(len(d)), d, "o-", ms=3)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("RMS(x0 − final latents)", fontsize=8)
    ax.set_title(title or "how far each step's guess of the clean latents is from the end", fontsize=9)
    return fig


def plot_per_frame(curves, *, ylabel: str = "", title: str | None = None):
    """One value per frame: an (F,) curve, or {label: curve} to compare, against the frame index."""
    curves = curves if isinstance(curves, dict) else {"": curves}
    fig = _figure(4.6, 2.8)
    ax = fig.subplots()
    for label, values in curves.items():
        values = _np(values).ravel()
        ax.plot(np.arange(len(values)), values, "o-", ms=3, label=label or None)
    ax.set_xlabel("frame", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if any(curves):
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_guidance(schedules, *, title: str | None = None):
    """Per-frame guidance scales: one (F,) schedule, or {label: schedule} to compare."""
    return plot_per_frame(schedules, ylabel="guidance scale", title=title or "classifier-free guidance per frame")


def plot_added_time_ids(added_time_ids, *, title: str | None = None):
    """SVD's three "added time ids" as bars: [fps - 1, motion_bucket_id, noise_aug_strength], each on its own axis."""
    ids = _np(added_time_ids).ravel()
    names = ("fps − 1", "motion_bucket_id", "noise_aug_strength")
    limits = (30, 255, 1.0)
    fig = _figure(6.0, 2.2)
    axes = fig.subplots(1, 3)
    for ax, name, value, top in zip(axes, names, ids, limits):
        ax.bar([0], [value], color="tab:blue", width=0.5)
        ax.set_ylim(0, max(top, float(value) * 1.1))
        ax.set_xticks([])
        ax.set_title(f"{name} = {value:g}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title or "added time ids (one row per video)", fontsize=9)
    return fig


def plot_noise_augmentation(pipe, image, strengths=(0.0, 0.02, 0.1, 0.3, 1.0), *, seed: int = 0):
    """Noise augmentation at several strengths: the noisy image the VAE encodes, and the preview of its latents,
    with how far (RMS) the latents moved from the clean image's."""
    pixels = preprocess(pipe, image)
    clean = encode_latents(pipe, pixels)
    sf = float(pipe.vae.config.scaling_factor)
    fig = _figure(1.8 * len(strengths) + 0.4, 4.0)
    axes = fig.subplots(2, len(strengths), squeeze=False)
    for j, s in enumerate(strengths):
        noisy = noise_augment(pixels, s, seed)
        z = encode_latents(pipe, noisy)
        rms = float((z - clean).pow(2).mean().sqrt())
        axes[0, j].imshow(to_uint8(noisy)[0])
        axes[1, j].imshow(preview(z[0] * sf, pipe), interpolation="nearest")
        axes[0, j].set_title(f"strength {s:g}", fontsize=8)
        axes[1, j].set_title(f"latents moved {rms:.3g}", fontsize=8)
        _off(axes[0, j])
        _off(axes[1, j])
    axes[0, 0].set_ylabel("image + noise", fontsize=8)
    axes[1, 0].set_ylabel("its latents", fontsize=8)
    return fig


# ----------------------------------------------------------------------------------------------------
# Temporal attention: which frames each frame looks at


def temporal_attention_modules(unet) -> list[str]:
    """Names of the UNet's temporal self-attention modules (attn1 of each temporal transformer block), in order."""
    return [name for name, _ in unet.named_modules()
            if name.endswith(".attn1") and ".temporal_transformer_blocks." in name]


def _short(name: str) -> str:
    """'up_blocks.1.attentions.0.temporal_transformer_blocks.0.attn1' -> 'up1.0'."""
    s = name.replace(".temporal_transformer_blocks.0.attn1", "").replace(".temporal_transformer_blocks.", ".t")
    s = s.replace(".attn1", "").replace(".attentions.", ".")
    return s.replace("down_blocks.", "down").replace("up_blocks.", "up").replace("mid_block", "mid")


def _attention_probs(attn, hidden_states: torch.Tensor) -> torch.Tensor:
    """The softmax weights of a self-attention module, computed explicitly: (N, heads, L, L), float32.

    hidden_states (N, L, C): for a temporal block, N = batch * h * w positions and L = frames.
    """
    x = hidden_states
    if attn.group_norm is not None:
        x = attn.group_norm(x.transpose(1, 2)).transpose(1, 2)
    query, key = attn.to_q(x), attn.to_k(x)
    N, L, inner = key.shape
    head_dim = inner // attn.heads
    query = query.view(N, -1, attn.heads, head_dim).transpose(1, 2)  # (N, heads, L, d)
    key = key.view(N, -1, attn.heads, head_dim).transpose(1, 2)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    scores = query.float() @ key.float().transpose(-1, -2) / math.sqrt(head_dim)  # the scale SDPA uses
    return scores.softmax(dim=-1)


class _RecordingProcessor:
    """An attention processor that records the weights and returns exactly what the original processor returns."""

    def __init__(self, original, recorder: "TemporalAttentionRecorder", name: str):
        self.original, self.recorder, self.name = original, recorder, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        self.recorder._record(self.name, attn, hidden_states)
        return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


class TemporalAttentionRecorder:
    """Record the frame-to-frame attention weights of temporal attention modules while the UNet runs.

    A context manager: while inside, the chosen modules carry a processor that computes the softmax weights
    explicitly, averages them over heads and spatial positions, and hands back the original output untouched.

    Attributes:
      weights: {(module name, step): tensor (B, F, F)}, B the UNet batch (with guidance: row 0 without the image,
        row 1 with it); row i of an F x F map says how frame i spreads its attention over all frames (sums to 1).

    >>> with TemporalAttentionRecorder(pipe.unet, steps=[0]) as rec:    # doctest: +SKIP
    ...     video = svdkit.generate(pipe, image, num_inference_steps=4)
    >>> sorted(rec.weights)[0]                                            # doctest: +SKIP
    ('down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1', 0)
    """

    def __init__(self, unet, modules=None, steps=None, *, chunk: int = 4096):
        available = temporal_attention_modules(unet)
        if isinstance(modules, str):
            modules = [modules]
        if modules is not None:
            missing = [m for m in modules if m not in available]
            if missing:
                raise ValueError(f"not temporal attention modules of this UNet: {missing}; available: {available}")
        self.modules = available if modules is None else list(modules)
        self.steps = None if steps is None else {int(s) for s in ([steps] if isinstance(steps, int) else steps)}
        self.weights: dict[tuple[str, int], torch.Tensor] = {}
        self._unet, self._chunk = unet, chunk
        self._calls, self._step, self._batch = 0, 0, 1
        self._originals, self._handle = {}, None

    def _before_unet(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self._step, self._batch = self._calls, sample.shape[0]
        self._calls += 1

    @torch.no_grad()
    def _record(self, name: str, attn, hidden_states: torch.Tensor):
        if self.steps is not None and self._step not in self.steps:
            return
        B = self._batch
        positions = hidden_states.shape[0] // B  # rows are batch-major: (B * h * w, F, C)
        rows = []
        for b in range(B):
            total = 0
            for start in range(b * positions, (b + 1) * positions, self._chunk):
                stop = min(start + self._chunk, (b + 1) * positions)
                total = total + _attention_probs(attn, hidden_states[start:stop]).sum(dim=(0, 1))  # (F, F)
            rows.append(total / (positions * attn.heads))
        self.weights[(name, self._step)] = torch.stack(rows).cpu()

    def __enter__(self):
        modules = dict(self._unet.named_modules())
        self._handle = self._unet.register_forward_pre_hook(self._before_unet, with_kwargs=True)
        for name in self.modules:
            attn = modules[name]
            self._originals[name] = attn.processor
            attn.set_processor(_RecordingProcessor(attn.processor, self, name))
        return self

    def __exit__(self, *exc):
        modules = dict(self._unet.named_modules())
        for name, processor in self._originals.items():
            modules[name].set_processor(processor)
        self._originals = {}
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        return False


def capture_temporal_attention(pipe, image, *, modules=None, steps=None, seed: int = 0, **kwargs):
    """Generate a clip while recording temporal attention.

    Returns (video, maps): maps[(module name, step)] is the (F, F) frame-to-frame attention of the pass WITH the
    image (averaged over heads and positions). kwargs go to `generate()`.
    """
    from svdkit import sampling
    with TemporalAttentionRecorder(pipe.unet, modules, steps) as recorder:
        video = sampling.generate(pipe, image, seed=seed, **kwargs)
    return video, {key: w[-1] for key, w in recorder.weights.items()}


def attention_summary(maps: dict, steps=None) -> dict:
    """Two numbers per map, keyed 'module@step': `self`, the mean weight a frame gives itself, and `reach`, the mean
    distance in frames between a frame and what it attends to (uniform attention over 14 frames gives about 4.6).

    steps: only the maps of these steps (default: all).
    """
    out = {}
    for key, w in maps.items():
        if steps is not None and isinstance(key, tuple) and key[1] not in steps:
            continue
        w = torch.as_tensor(w).float()
        F = w.shape[-1]
        distance = (torch.arange(F)[:, None] - torch.arange(F)[None, :]).abs().float()
        label = f"{_short(key[0])}@{key[1]}" if isinstance(key, tuple) else str(key)
        out[label] = {"self": round(float(w.diagonal().mean()), 4),
                      "reach": round(float((w * distance).sum(1).mean()), 4)}
    return out


def plot_temporal_attention(maps, *, modules=None, steps=None, title: str | None = None):
    """Frame-to-frame attention as heat maps, one colour scale.

    maps: an (F, F) tensor, {label: (F, F)}, or the {(module, step): (F, F)} of `capture_temporal_attention`,
    filtered by `modules` and `steps` when given. Row i: how frame i spreads its attention over the frames.
    """
    if not isinstance(maps, dict):
        maps = {"": maps}
    chosen = {}
    for key, w in maps.items():
        if isinstance(key, tuple):
            module, step = key
            if (modules is not None and module not in modules) or (steps is not None and step not in steps):
                continue
            key = f"{_short(module)}, step {step}"
        chosen[key] = _np(w)
    if not chosen:
        raise ValueError("no attention maps match the modules and steps asked for")
    n = len(chosen)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    vmax = max(float(w.max()) for w in chosen.values())
    fig = _figure(2.6 * cols + 0.8, 2.6 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (label, w) in zip(axes.ravel(), chosen.items()):
        im = ax.imshow(w, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("attended frame", fontsize=7)
        ax.set_ylabel("frame", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
    fig.suptitle(title or "temporal attention (averaged over heads and positions)", fontsize=9)
    return fig
