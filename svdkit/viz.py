"""Pictures of SVD, stage by stage and frame by frame: latents, frames, schedules and temporal attention.

Every function returns a matplotlib `Figure` (built without pyplot, so it works headless and leaves no global
state) or a numpy array / torch tensor, so the same pictures serve notebooks, scripts and tests. What they
picture comes from `svdkit.sampling` (the stages), `svdkit.latent_rgb` (latents as colours) and
`svdkit.attention` (temporal attention).

>>> import svdkit
>>> from svdkit import attention, viz
>>> pipe = svdkit.load_pipeline("toy")
>>> video = svdkit.generate(pipe, viz.example_image(), num_inference_steps=8, capture=True)
>>> fig = viz.plot_latent_grid(video.trace.latents)      # frames x channels, one colour scale
>>> viz.filmstrip(video.frames).shape                    # frames side by side, 2-pixel gaps
(64, 922, 3)
>>> viz.trace_previews(video.trace, "x0", pipe).shape    # every step's x0 as colours, no VAE: (S, F, h, w, 3)
(8, 14, 8, 8, 3)
>>> video, maps = attention.capture_temporal_attention(pipe, viz.example_image(), num_inference_steps=8)
>>> fig = viz.plot_temporal_attention(maps, steps=[7])   # which frames each frame looks at

Layouts: one video's latents are (F, 4, h, w); a trace's per-step tensors (S, F, 4, h, w); frames (F, H, W, 3)
uint8; an image for the VAE (1, 3, H, W) in [-1, 1]. "Scaled" latents are multiplied by the VAE's scaling
factor, as the frames' latents are during denoising; SVD's condition latents (`trace.image_latents`) are not.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from svdkit.attention import short_name
from svdkit.latent_rgb import preview
from svdkit.sampling import decode_latents, encode_latents, load_image, noise_augment, preprocess
from svdkit.video import to_uint8

__all__ = [
    # the example picture
    "example_image",
    # latents as colours, against the VAE decoder
    "preview_error", "compare_preview",
    # frames as arrays
    "filmstrip", "frame_grid", "frame_differences", "frame_rmse",
    # a captured trace
    "QUANTITIES", "trace_quantity", "trace_previews", "x0_distances", "denoising_video",
    # figures
    "plot_images", "plot_latent_grid", "plot_filmstrips", "plot_step_frame_grid", "plot_frame_differences",
    "plot_latent_histograms", "plot_sigmas", "plot_x0_distances", "plot_per_frame", "plot_guidance",
    "plot_added_time_ids", "plot_noise_augmentation", "plot_temporal_attention",
    # for building more figures
    "figure", "hide_ticks",
]


def figure(width: float, height: float):
    """A matplotlib `Figure` of that size in inches, with constrained layout, made without pyplot."""
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), layout="constrained")


def hide_ticks(ax):
    """Remove an axis' ticks and tick labels (for images)."""
    ax.set_xticks([])
    ax.set_yticks([])


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x)


# ----------------------------------------------------------------------------------------------------
# The example picture


def example_image():
    """The example picture: `data/example_0.png` of a source checkout, else a held-out scene of the toy world.

    >>> example_image().size
    (64, 64)
    """
    from PIL import Image

    for path in (Path(__file__).resolve().parents[1] / "data" / "example_0.png", Path("data/example_0.png")):
        if path.is_file():
            return load_image(path)
    from svdkit.toy import HELD_OUT_SEED, render_clip
    return Image.fromarray(render_clip(HELD_OUT_SEED)[0])


# ----------------------------------------------------------------------------------------------------
# Latents as colours (svdkit.latent_rgb), against the VAE decoder

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
    latents = torch.as_tensor(latents)
    model = pipe if model is None else model
    decoded = decode_latents(pipe, latents)  # (F, H, W, 3)
    cheap = preview(latents, model)  # (F, h, w, 3)
    err = preview_error(latents, decoded, model)
    F, h, w = cheap.shape[:3]
    frames = _pick(F, 7) if frames is None else list(frames)
    pooled = _pool_frames(decoded, h, w)
    diff = np.abs(cheap.astype(np.float64) - pooled).mean(-1)  # (F, h, w)
    fig = figure(1.3 * len(frames) + 1, 4.4)
    axes = fig.subplots(3, len(frames), squeeze=False)
    for j, f in enumerate(frames):
        axes[0, j].imshow(decoded[f])
        axes[1, j].imshow(cheap[f], interpolation="nearest")
        im = axes[2, j].imshow(diff[f], cmap="magma", vmin=0, vmax=max(diff.max(), 1e-6), interpolation="nearest")
        axes[0, j].set_title(f"frame {f}", fontsize=8)
    for i, label in enumerate(("VAE decode", "preview", "|difference|")):
        axes[i, 0].set_ylabel(label, fontsize=8)
    for ax in axes.ravel():
        hide_ticks(ax)
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


def plot_images(images: dict, *, title: str | None = None, cmap: str = "magma"):
    """A row of labelled images: {label: uint8 (H, W, 3), or (H, W) values shown with `cmap` and a colour bar}."""
    fig = figure(2.2 * len(images), 2.6)
    axes = fig.subplots(1, len(images), squeeze=False)[0]
    for ax, (label, image) in zip(axes, images.items()):
        image = _np(image)
        im = ax.imshow(image, cmap=None if image.ndim == 3 else cmap, interpolation="nearest")
        if image.ndim == 2:
            fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_title(label, fontsize=9)
        hide_ticks(ax)
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
    fig = figure(1.1 * len(channels) + 1.2, 1.1 * len(frames) + 0.6)
    axes = fig.subplots(len(frames), len(channels), squeeze=False)
    for i, f in enumerate(frames):
        for j, c in enumerate(channels):
            im = axes[i, j].imshow(z[f, c], cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
            hide_ticks(axes[i, j])
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
    fig = figure(min(16.0, 0.9 * F + 1.0), (0.9 * F + 1.0) * H / strip_w * len(rows) + 0.6)
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
    fig = figure(min(16.0, 0.55 * F + 1.6), min(22.0, 0.55 * S + 0.8))
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
    fig = figure(min(16.0, 0.9 * n + 1.6), 0.9 * H / W + 1.0)
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
    fig = figure(2.8 * len(steps), 2.6)
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
    fig = figure(4.6, 2.8)
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
    fig = figure(4.6, 2.8)
    ax = fig.subplots()
    ax.plot(np.arange(len(d)), d, "o-", ms=3)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("RMS(x0 − final latents)", fontsize=8)
    ax.set_title(title or "how far each step's guess of the clean latents is from the end", fontsize=9)
    return fig


def plot_per_frame(curves, *, ylabel: str = "", title: str | None = None):
    """One value per frame: an (F,) curve, or {label: curve} to compare, against the frame index."""
    curves = curves if isinstance(curves, dict) else {"": curves}
    fig = figure(4.6, 2.8)
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
    fig = figure(6.0, 2.2)
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
    fig = figure(1.8 * len(strengths) + 0.4, 4.0)
    axes = fig.subplots(2, len(strengths), squeeze=False)
    for j, s in enumerate(strengths):
        noisy = noise_augment(pixels, s, seed)
        z = encode_latents(pipe, noisy)
        rms = float((z - clean).pow(2).mean().sqrt())
        axes[0, j].imshow(to_uint8(noisy)[0])
        axes[1, j].imshow(preview(z[0] * sf, pipe), interpolation="nearest")
        axes[0, j].set_title(f"strength {s:g}", fontsize=8)
        axes[1, j].set_title(f"latents moved {rms:.3g}", fontsize=8)
        hide_ticks(axes[0, j])
        hide_ticks(axes[1, j])
    axes[0, 0].set_ylabel("image + noise", fontsize=8)
    axes[1, 0].set_ylabel("its latents", fontsize=8)
    return fig


# ----------------------------------------------------------------------------------------------------
# Temporal attention (recorded by svdkit.attention): which frames each frame looks at


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
            key = f"{short_name(module)}, step {step}"
        chosen[key] = _np(w)
    if not chosen:
        raise ValueError("no attention maps match the modules and steps asked for")
    n = len(chosen)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    vmax = max(float(w.max()) for w in chosen.values())
    fig = figure(2.6 * cols + 0.8, 2.6 * rows + 0.4)
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
