"""svdkit's own SVD sampling loop, written to be read top to bottom.

SVD turns one image into a clip in four stages:

  1. encode the image: a CLIP embedding (what is in it) and VAE latents (where everything is);
  2. condition every frame on it: the image latents are concatenated to every frame's noisy latents,
     and fps - 1, motion_bucket_id and noise_aug_strength enter as "added time ids";
  3. denoise the stack of frames together, one Euler step per noise level, with per-frame guidance;
  4. decode the latents back to frames with the temporal VAE decoder.

With the same inputs and seed, `generate()` returns exactly the frames of the stock diffusers pipeline
(CPU, fp32), and can also record every step (`capture=True`), follow another guidance schedule or noise
schedule, and let a hook inspect or change the latents after each step.

>>> import svdkit
>>> pipe = svdkit.load_pipeline("toy")
>>> video = svdkit.generate(pipe, "data/example_0.png", seed=0, motion_bucket_id=200)
>>> video.frames.shape
(14, 64, 64, 3)
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from svdkit.trace import Trace
from svdkit.video import Video

__all__ = ["generate", "guidance_schedule", "load_image", "GENERATE_PARAMS", "STEP_TENSORS"]

# The pipeline parameters `generate()` accepts as keywords.
GENERATE_PARAMS = ("height", "width", "num_frames", "num_inference_steps", "min_guidance_scale",
                   "max_guidance_scale", "fps", "motion_bucket_id", "noise_aug_strength", "decode_chunk_size")

# The tensors an `on_step` hook receives (and may replace: only "latents" is read back).
STEP_TENSORS = ("latents", "x0", "noise_pred")

GUIDANCE_KINDS = ("linear", "constant", "triangle")


# ----------------------------------------------------------------------------------------------------
# Inputs


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
        if a.dtype != np.uint8:
            if not np.issubdtype(a.dtype, np.floating) or np.nanmin(a) < 0 or np.nanmax(a) > 1:
                raise ValueError("image: a non-uint8 array must be float with values in [0, 1]")
            a = (a * 255).round().astype(np.uint8)
        image = Image.fromarray(a)
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, a path, a numpy array or a torch tensor, got {type(image).__name__}")
    if image.mode != "RGB":
        warnings.warn(f"image: converting mode {image.mode!r} to RGB", stacklevel=3)
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
        raise ValueError(f"guidance: a schedule needs exactly num_frames={num_frames} values, got shape {tuple(values.shape)}")
    if not torch.isfinite(values).all() or (values < 0).any():
        raise ValueError("guidance: every scale must be finite and >= 0")
    return values.float()


def _defaults(pipe) -> dict:
    """The parameters a call uses when it does not name them: the model's registry row, else the pipeline's."""
    info = getattr(pipe, "svdkit", None)
    spec = info.spec if info is not None else None
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    d = dict(height=size, width=size, num_frames=pipe.unet.config.num_frames, num_inference_steps=25,
             min_guidance_scale=1.0, max_guidance_scale=3.0, fps=7, motion_bucket_id=127,
             noise_aug_strength=0.02, decode_chunk_size=None)
    if spec is not None:
        d.update({k: getattr(spec, k) for k in d if hasattr(spec, k)})
    if info is not None and info.decode_chunk_size:
        d["decode_chunk_size"] = info.decode_chunk_size
    return d


def _nearest64(x: int) -> int:
    return max(64, int(round(x / 64)) * 64)


def check_params(pipe, params: dict, guidance=None, sigmas=None) -> dict:
    """Fill in defaults and validate every parameter before any model work; return the full set."""
    unknown = set(params) - set(GENERATE_PARAMS)
    if unknown:
        raise TypeError(f"generate() got unknown parameter(s) {sorted(unknown)}; valid: {', '.join(GENERATE_PARAMS)}")
    p = _defaults(pipe)
    p.update({k: v for k, v in params.items() if v is not None or k == "decode_chunk_size"})
    if p["decode_chunk_size"] is None:
        p["decode_chunk_size"] = _defaults(pipe)["decode_chunk_size"]

    for name in ("height", "width"):
        v = p[name]
        if not isinstance(v, (int, np.integer)) or v < 64 or v % 64:
            near = _nearest64(v) if isinstance(v, (int, float, np.number)) and v > 0 else 64
            raise ValueError(f"{name} must be a positive multiple of 64 (the VAE downsamples 8x and the UNet "
                             f"halves that three times); got {v!r}, nearest valid is {near}")
    for name, lo in (("num_frames", 1), ("num_inference_steps", 1), ("fps", 1)):
        v = p[name]
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    dcs = p["decode_chunk_size"]
    if dcs is not None and (not isinstance(dcs, (int, np.integer)) or dcs < 1):
        raise ValueError(f"decode_chunk_size must be an integer >= 1 (frames decoded at once), got {dcs!r}")
    if not isinstance(p["noise_aug_strength"], (int, float)) or not p["noise_aug_strength"] >= 0:
        raise ValueError(f"noise_aug_strength must be a number >= 0 (SVD uses 0.0-0.1), got {p['noise_aug_strength']!r}")
    for name in ("min_guidance_scale", "max_guidance_scale"):
        if not isinstance(p[name], (int, float)) or not math.isfinite(p[name]) or p[name] < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {p[name]!r}")
    if not isinstance(p["motion_bucket_id"], (int, float, np.number)):
        raise ValueError(f"motion_bucket_id must be a number in 0-255, got {p['motion_bucket_id']!r}")
    if not 0 <= p["motion_bucket_id"] <= 255:
        warnings.warn(f"motion_bucket_id={p['motion_bucket_id']} is outside 0-255, the range SVD was trained on",
                      stacklevel=3)
    trained = pipe.unet.config.num_frames
    if p["num_frames"] > trained:
        warnings.warn(f"num_frames={p['num_frames']} is more than the {trained} frames this model was trained for; "
                      "expect the clip to degrade", stacklevel=3)
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


def _record(pipe, seed, p, guidance, sigmas) -> dict:
    info = getattr(pipe, "svdkit", None)
    import diffusers
    from svdkit import __version__
    versions = {"svdkit": __version__, "diffusers": diffusers.__version__, "torch": torch.__version__}
    rec = {"model": info.model if info else str(pipe.name_or_path or "unknown"), "seed": seed}
    rec.update({k: v for k, v in p.items() if k != "guidance"})
    rec["guidance"] = guidance if isinstance(guidance, str) or guidance is None else "custom"
    rec["guidance_scales"] = [round(float(g), 6) for g in p["guidance"]]
    rec["sigmas"] = None if sigmas is None else [float(s) for s in sigmas]
    rec["random_weights"] = bool(getattr(pipe, "random_weights", False))
    rec["versions"] = versions
    return rec


# ----------------------------------------------------------------------------------------------------
# The loop


@torch.no_grad()
def generate(pipe, image, *, seed: int = 0, capture=False, on_step: Callable | None = None, guidance=None,
             sigmas=None, progress: bool = False, **params) -> Video:
    """Generate a clip from one image with svdkit's own SVD sampling loop.

    Args:
      pipe: a `StableVideoDiffusionPipeline` (from `load_pipeline`).
      image: PIL image, path, numpy array or torch tensor (see `load_image`).
      seed: seeds a CPU `torch.Generator`, as `pipe(..., generator=torch.Generator().manual_seed(seed))`.
      capture: True to record every step in `video.trace` (fp32 on the CPU), or "fp16" to store it in half.
      on_step: `on_step(pipe, step, timestep, tensors) -> dict`, called after each step with the tensors named
        in `STEP_TENSORS`; a returned "latents" replaces the current latents, and a returned `"stop": True`
        ends the loop early (the current latents are decoded).
      guidance: per-frame guidance: "linear" (default), "constant", "triangle" or num_frames numbers.
      sigmas: a custom noise schedule, strictly decreasing, ending with the final level (usually 0).
      progress: show a progress bar over the steps.
      **params: height, width, num_frames, num_inference_steps, min_guidance_scale, max_guidance_scale, fps,
        motion_bucket_id, noise_aug_strength, decode_chunk_size — as in the diffusers pipeline.

    Returns:
      A `Video`: frames uint8 (F, H, W, 3), fps, the full parameter record, and the trace if captured.
    """
    # 1. Check inputs: every parameter and the image, before any model work.
    p = check_params(pipe, params, guidance, sigmas)
    image = load_image(image)
    if capture not in (False, True, "fp16"):
        raise ValueError(f"capture must be False, True or 'fp16', got {capture!r}")
    keep = torch.float16 if capture == "fp16" else torch.float32
    F, H, W = p["num_frames"], p["height"], p["width"]
    device = pipe._execution_device
    dtype = pipe.image_encoder.dtype
    generator = torch.Generator().manual_seed(int(seed))
    g = p["guidance"].to(device, dtype)  # (F,)
    do_cfg = bool(g.max() > 1)  # the unconditional pass is only needed when some frame is guided
    started = time.perf_counter()

    # 2. Encode the image.
    #    2a. CLIP sees it at 224 x 224: one embedding vector, (1, 1, D).
    image_embeddings = pipe._encode_image(image, device, 1, False)
    #    2b. The VAE sees it at the output size, in [-1, 1], with a little noise added ("noise augmentation").
    pixels = pipe.video_processor.preprocess(image, height=H, width=W).to(device)  # (1, 3, H, W)
    noise = _randn(pixels.shape, generator, device, pixels.dtype)
    noisy_image = pixels + p["noise_aug_strength"] * noise
    upcast = pipe.vae.dtype == torch.float16 and pipe.vae.config.force_upcast
    if upcast:
        pipe.vae.to(dtype=torch.float32)
    #    Its latents are NOT multiplied by the VAE scaling factor (unlike the frames' latents).
    image_latents = pipe.vae.encode(noisy_image.to(pipe.vae.dtype)).latent_dist.mode()  # (1, 4, h, w)
    image_latents = image_latents.to(image_embeddings.dtype)
    if upcast:
        pipe.vae.to(dtype=torch.float16)

    # 3. Condition every frame on it.
    #    The added time ids: the UNet was trained on fps - 1, hence the shift.
    added_time_ids = torch.tensor([[p["fps"] - 1, p["motion_bucket_id"], p["noise_aug_strength"]]],
                                  dtype=image_embeddings.dtype, device=device)  # (1, 3)
    cond_latents = image_latents.unsqueeze(1).repeat(1, F, 1, 1, 1)  # (1, F, 4, h, w): same image every frame
    if do_cfg:  # batch row 0 is unconditional (zero embedding, zero image latents), row 1 conditional
        embeddings_in = torch.cat([torch.zeros_like(image_embeddings), image_embeddings])
        cond_in = torch.cat([torch.zeros_like(cond_latents), cond_latents])
        time_ids_in = added_time_ids.repeat(2, 1)
    else:
        embeddings_in, cond_in, time_ids_in = image_embeddings, cond_latents, added_time_ids

    # 4. Denoise the stack of frames together.
    scheduler = pipe.scheduler
    if sigmas is not None:
        scheduler.set_timesteps(sigmas=list(map(float, sigmas)), device=device)
    else:
        scheduler.set_timesteps(p["num_inference_steps"], device=device)
    timesteps = scheduler.timesteps
    h, w = H // pipe.vae_scale_factor, W // pipe.vae_scale_factor
    latents = _randn((1, F, 4, h, w), generator, device, image_embeddings.dtype) * scheduler.init_noise_sigma
    scale = g.view(1, F, 1, 1, 1)
    rec = {k: [] for k in ("x_t", "x0", "cond", "uncond")}
    steps = timesteps
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(timesteps, desc="denoising", unit="step")
    for i, t in enumerate(steps):
        x_t = latents  # (1, F, 4, h, w)
        model_in = torch.cat([x_t] * 2) if do_cfg else x_t
        model_in = scheduler.scale_model_input(model_in, t)  # x / sqrt(sigma^2 + 1)
        model_in = torch.cat([model_in, cond_in], dim=2)  # (B, F, 8, h, w): 4 noisy + 4 image channels
        out = pipe.unet(model_in, t, encoder_hidden_states=embeddings_in, added_time_ids=time_ids_in,
                        return_dict=False)[0]  # (B, F, 4, h, w)
        if do_cfg:
            uncond, cond = out.chunk(2)
            noise_pred = uncond + scale * (cond - uncond)
        else:
            uncond, cond, noise_pred = None, out, out
        step = scheduler.step(noise_pred, t, x_t)
        latents, x0 = step.prev_sample, step.pred_original_sample
        if capture:
            rec["x_t"].append(x_t[0].to("cpu", keep))
            rec["x0"].append(x0[0].to("cpu", keep))
            rec["cond"].append(cond[0].to("cpu", keep))
            if do_cfg:
                rec["uncond"].append(uncond[0].to("cpu", keep))
        if on_step is not None:
            result = on_step(pipe, i, t, {"latents": latents, "x0": x0, "noise_pred": noise_pred}) or {}
            latents = result.get("latents", latents)
            if result.get("stop"):
                break

    # 5. Decode the latents to frames.
    frames = decode_latents(pipe, latents, p["decode_chunk_size"] or F)

    record = _record(pipe, seed, p, guidance, sigmas)
    record["steps_run"] = i + 1 if len(timesteps) else 0
    record["seconds"] = round(time.perf_counter() - started, 4)
    trace = None
    if capture:
        n = len(rec["x_t"])
        trace = Trace(
            sigmas=scheduler.sigmas[: n + 1].to("cpu", torch.float32).clone(),
            timesteps=timesteps[:n].to("cpu", torch.float32).clone(),
            x_t=torch.stack(rec["x_t"]), x0=torch.stack(rec["x0"]),
            model_output_cond=torch.stack(rec["cond"]),
            model_output_uncond=torch.stack(rec["uncond"]) if do_cfg else None,
            guidance=g.to("cpu", torch.float32), latents=latents[0].to("cpu", keep),
            image_embeddings=image_embeddings.to("cpu", keep), image_latents=image_latents.to("cpu", keep),
            noisy_image=noisy_image.to("cpu", keep), added_time_ids=added_time_ids.to("cpu", torch.float32),
            scaling_factor=float(pipe.vae.config.scaling_factor),
        )
    return Video(frames=frames, fps=p["fps"], params=record, trace=trace)


def _randn(shape, generator, device, dtype):
    from diffusers.utils.torch_utils import randn_tensor
    return randn_tensor(shape, generator=generator, device=torch.device(device), dtype=dtype)


@torch.no_grad()
def decode_latents(pipe, latents: torch.Tensor, decode_chunk_size: int | None = None) -> np.ndarray:
    """Decode scaled latents (B, F, 4, h, w) or (F, 4, h, w) to uint8 frames (F, H, W, 3) of the first video.

    Frames are decoded `decode_chunk_size` at a time (fewer at once: less memory, a little more flicker).
    """
    if latents.ndim == 4:
        latents = latents.unsqueeze(0)
    vae = pipe.vae
    latents = latents.to(pipe._execution_device)
    num_frames = latents.shape[1]
    decode_chunk_size = decode_chunk_size or num_frames
    flat = (1 / vae.config.scaling_factor) * latents.flatten(0, 1)  # (B*F, 4, h, w), as diffusers rounds it
    chunks = []
    for i in range(0, flat.shape[0], decode_chunk_size):
        chunk = flat[i: i + decode_chunk_size]
        chunks.append(vae.decode(chunk.to(vae.dtype), num_frames=chunk.shape[0]).sample)
    video = torch.cat(chunks).reshape(-1, num_frames, *chunks[0].shape[1:]).permute(0, 2, 1, 3, 4).float()
    # (B, 3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8, rounded as diffusers' PIL output is
    arr = pipe.video_processor.postprocess_video(video=video, output_type="np")[0]
    return (arr * 255).round().astype(np.uint8)
