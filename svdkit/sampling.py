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

Stages 1 and 2 also run by hand, piece by piece, to show what the VAE, CLIP and the UNet see:

>>> from svdkit.sampling import encode_latents, noise_augment, preprocess
>>> pixels = preprocess(pipe, "data/example_0.png")                  # (1, 3, H, W) in [-1, 1]
>>> encode_latents(pipe, noise_augment(pixels, 0.02, seed=0)).shape  # generate()'s condition latents, seed 0
torch.Size([1, 4, 8, 8])
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from svdkit.inputs import (
    GENERATE_PARAMS,
    check_params,
    defaults,
    guidance_schedule,
    load_image,
    user_stacklevel,
)
from svdkit.trace import Trace
from svdkit.video import Video

__all__ = [
    # the whole loop, and its inputs
    "generate", "guidance_schedule", "load_image", "check_params", "GENERATE_PARAMS", "STEP_TENSORS",
    # the four stages
    "encode_image", "condition", "Condition", "set_schedule", "initial_noise", "denoise", "unet_prediction",
    "decode_latents",
    # stages 1 and 2 by hand: what the VAE, CLIP and the UNet see
    "preprocess", "noise_augment", "encode_latents", "decode_image", "clip_input", "clip_embedding", "unet_input",
    "upcast_vae",
]

# The tensors an `on_step` hook receives (and may replace: only "latents" is read back).
STEP_TENSORS = ("latents", "x0", "noise_pred")


# ----------------------------------------------------------------------------------------------------
# The record a clip carries


def _record(pipe, seed, p, guidance, sigmas) -> dict:
    info = getattr(pipe, "svdkit", None)
    import diffusers

    from svdkit.version import __version__
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
# The four stages. `generate()` runs them for one video; `svdkit.sweep` runs stage 3 for many at once.


@dataclasses.dataclass
class Condition:
    """The image as the UNet sees it, for B videos (the output of stages 1 and 2).

    image_embeddings (B, 1, D): CLIP embedding; image_latents (B, 4, h, w): VAE latents of the noise-augmented
    image, NOT multiplied by the VAE scaling factor; noisy_image (B, 3, H, W) in [-1, 1];
    added_time_ids (B, 3): [fps - 1, motion_bucket_id, noise_aug_strength].
    """

    image_embeddings: torch.Tensor
    image_latents: torch.Tensor
    noisy_image: torch.Tensor
    added_time_ids: torch.Tensor

    @staticmethod
    def cat(conditions: list[Condition]) -> Condition:
        """Stack the rows of several conditions into one batch."""
        return Condition(*(torch.cat([getattr(c, f.name) for c in conditions])
                           for f in dataclasses.fields(Condition)))


def encode_image(pipe, image, generator: torch.Generator, *, height: int, width: int,
                 noise_aug_strength: float, image_embeddings: torch.Tensor | None = None):
    """Stage 1, encode the image: its CLIP embedding, and VAE latents of the noise-augmented image.

    Draws the augmentation noise from `generator` (first, as the stock pipeline does). Pass `image_embeddings`
    to reuse an embedding already computed for this image. Returns (embeddings (1, 1, D), noisy_image
    (1, 3, H, W), image_latents (1, 4, h, w)).
    """
    device = pipe._execution_device
    # 1a. CLIP sees the image at 224 x 224: one embedding vector, (1, 1, D).
    if image_embeddings is None:
        image_embeddings = pipe._encode_image(image, device, 1, False)
    # 1b. The VAE sees it at the output size, in [-1, 1], with a little noise added ("noise augmentation").
    pixels = pipe.video_processor.preprocess(image, height=height, width=width).to(device)  # (1, 3, H, W)
    noise = _randn(pixels.shape, generator, device, pixels.dtype)
    noisy_image = pixels + noise_aug_strength * noise
    # Its latents are NOT multiplied by the VAE scaling factor (unlike the frames' latents).
    with upcast_vae(pipe.vae):
        image_latents = pipe.vae.encode(noisy_image.to(pipe.vae.dtype)).latent_dist.mode()  # (1, 4, h, w)
    if _is_toy(pipe):  # the toy knows a small world: say so when the picture is far from it (measured, cheap)
        check_toy_picture(pipe, noisy_image, image_latents)
    return image_embeddings, noisy_image, image_latents.to(image_embeddings.dtype)


def condition(image_embeddings, noisy_image, image_latents, *, fps, motion_bucket_id, noise_aug_strength):
    """Stage 2, condition on the image: add the micro-conditioning ("added time ids") to what stage 1 made.

    The UNet was trained on fps - 1, hence the shift.
    """
    added_time_ids = torch.tensor([[fps - 1, motion_bucket_id, noise_aug_strength]],
                                  dtype=image_embeddings.dtype, device=image_embeddings.device)  # (1, 3)
    return Condition(image_embeddings, image_latents, noisy_image, added_time_ids)


def denoise(pipe, latents: torch.Tensor, cond: Condition, guidance: torch.Tensor, *, predict: Callable | None = None,
            capture=False, on_step: Callable | None = None, progress: bool = False):
    """Stage 3, denoise the stack of frames together: one Euler step per noise level of `pipe.scheduler`.

    latents (B, F, 4, h, w) start as pure noise (already multiplied by init_noise_sigma); guidance (B, F) is each
    frame's classifier-free guidance scale. The scheduler's timesteps must already be set. `predict` gives the
    UNet's outputs at a step, `predict(pipe, x_t, t, cond, guided=..., step=i) -> (uncond, cond)`: by default
    `unet_prediction`; `svdkit.speed.fast_prediction` makes approximate, faster ones. Returns
    (latents, steps_run, record) where record holds per-step tensors when capturing, each (steps, B, F, 4, h, w).
    """
    predict = unet_prediction if predict is None else predict
    scheduler = pipe.scheduler
    B, F = latents.shape[:2]
    guided = bool(guidance.max() > 1)  # the unconditional pass is only needed when some frame is guided
    scale = guidance.to(latents.device, latents.dtype).view(B, F, 1, 1, 1)
    keep = torch.float16 if capture == "fp16" else torch.float32
    record = {k: [] for k in ("x_t", "x0", "cond", "uncond")}
    timesteps = scheduler.timesteps
    steps_run = 0
    if progress:
        from tqdm.auto import tqdm
        timesteps = tqdm(timesteps, desc="denoising", unit="step")
    for i, t in enumerate(timesteps):
        x_t = latents  # (B, F, 4, h, w)
        uncond, cond_out = predict(pipe, x_t, t, cond, guided=guided, step=i)  # v-predictions, (B, F, 4, h, w)
        noise_pred = uncond + scale * (cond_out - uncond) if guided else cond_out  # each frame its own scale
        step = scheduler.step(noise_pred, t, x_t)
        latents, x0 = step.prev_sample, step.pred_original_sample
        steps_run = i + 1
        if capture:
            record["x_t"].append(x_t.to("cpu", keep))
            record["x0"].append(x0.to("cpu", keep))
            record["cond"].append(cond_out.to("cpu", keep))
            if guided:
                record["uncond"].append(uncond.to("cpu", keep))
        if on_step is not None:
            result = on_step(pipe, i, t, {"latents": latents, "x0": x0, "noise_pred": noise_pred}) or {}
            latents = result.get("latents", latents)
            if result.get("stop"):
                break
    return latents, steps_run, {k: torch.stack(v) for k, v in record.items() if v}


def unet_prediction(pipe, x_t: torch.Tensor, t, cond: Condition, *, guided: bool, step: int = 0,
                    unet: Callable | None = None):
    """The UNet's v-prediction for every frame at one step: with the image, and without it when `guided`.

    x_t (B, F, 4, h, w). Each frame enters with 8 channels: its noisy latents scaled by 1/sqrt(sigma^2 + 1) and
    the image latents, the same in every frame. With guidance both passes run as one batch of 2B videos: rows
    [0, B) see a zero embedding and zero image latents (unconditional), rows [B, 2B) the image. Returns
    (uncond, cond), each (B, F, 4, h, w); uncond is None when not guided. `unet(sample, t, embeddings,
    added_time_ids)` stands in for the pipeline's UNet when given; `step` is for predictions that need it.
    """
    F = x_t.shape[1]
    image_latents = cond.image_latents.unsqueeze(1).repeat(1, F, 1, 1, 1)  # (B, F, 4, h, w): same every frame
    embeddings, time_ids = cond.image_embeddings, cond.added_time_ids  # (B, 1, D), (B, 3)
    if guided:
        x_t = torch.cat([x_t] * 2)
        image_latents = torch.cat([torch.zeros_like(image_latents), image_latents])
        embeddings = torch.cat([torch.zeros_like(embeddings), embeddings])
        time_ids = torch.cat([time_ids, time_ids])
    model_in = pipe.scheduler.scale_model_input(x_t, t)  # x / sqrt(sigma^2 + 1)
    model_in = torch.cat([model_in, image_latents], dim=2)  # (2B, F, 8, h, w): 4 noisy + 4 image channels
    if unet is None:
        out = pipe.unet(model_in, t, encoder_hidden_states=embeddings, added_time_ids=time_ids,
                        return_dict=False)[0]
    else:
        out = unet(model_in, t, embeddings, time_ids)
    return out.chunk(2) if guided else (None, out)


def set_schedule(pipe, num_inference_steps: int, sigmas=None):
    """Set the scheduler's noise levels: `num_inference_steps` Karras levels, or the given `sigmas`."""
    device = pipe._execution_device
    if sigmas is not None:
        pipe.scheduler.set_timesteps(sigmas=[float(s) for s in sigmas], device=device)
    else:
        pipe.scheduler.set_timesteps(num_inference_steps, device=device)


def initial_noise(pipe, generator, num_frames: int, height: int, width: int, dtype) -> torch.Tensor:
    """The starting latents (1, F, 4, h, w): Gaussian noise at the scheduler's first noise level."""
    h, w = height // pipe.vae_scale_factor, width // pipe.vae_scale_factor
    noise = _randn((1, num_frames, 4, h, w), generator, pipe._execution_device, dtype)
    return noise * pipe.scheduler.init_noise_sigma


@torch.no_grad()
def generate(pipe, image, *, seed: int = 0, capture=False, on_step: Callable | None = None, guidance=None,
             sigmas=None, progress: bool = False, skip_uncond: bool = False, cache_interval: int = 1,
             loop: bool = False, end_image=None, **params) -> Video:
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
      skip_uncond: run the unconditional (guidance) pass only on the frames whose guidance scale is not 1 —
        with SVD's linear ramp, all but the first. Approximate: the UNet's temporal layers mix frames, so the
        other frames change a little; it saves that fraction of the unconditional pass, but splits the one
        batched UNet call in two. (When no frame is guided, the unconditional pass is skipped exactly, always.)
      cache_interval: N > 1 runs the full UNet every N steps only, and in between reuses its deep features
        (step caching in the spirit of DeepCache; see `svdkit.speed.StepCache`). Faster, approximate.
        Both speed-ups come from `svdkit.speed.fast_prediction`.
      end_image: a picture for the clip to end on (keyframe to keyframe): the last frames' x0 estimates are
        steered toward its latents during denoising (`svdkit.keyframes`). It must have the size of `image`
        (refused otherwise, not resized: resize it yourself so nothing is stretched unnoticed).
      loop: True steers the last frames back to the image itself, so the clip can play in a loop without
        reversing its motion; the same as `end_image=image` (so not together with `end_image`).
      **params: height, width, num_frames, num_inference_steps, min_guidance_scale, max_guidance_scale, fps,
        motion_bucket_id, noise_aug_strength, decode_chunk_size — as in the diffusers pipeline.

    Returns:
      A `Video`: frames uint8 (F, H, W, 3), fps, the full parameter record, and the trace if captured.
    """
    # 0. Check inputs: every parameter and the image, before any model work.
    p = check_params(pipe, params, guidance, sigmas)
    image = load_image(image)
    if capture not in (False, True, "fp16"):
        raise ValueError(f"capture must be False, True or 'fp16', got {capture!r}")
    if not isinstance(cache_interval, (int, np.integer)) or isinstance(cache_interval, bool) or cache_interval < 1:
        raise ValueError(f"cache_interval must be an integer >= 1 (1: no caching), got {cache_interval!r}")
    cache_interval = int(cache_interval)
    end = _end_picture(image, loop, end_image)
    F, H, W = p["num_frames"], p["height"], p["width"]
    generator = torch.Generator().manual_seed(int(seed))  # on the CPU: the same noise on every device
    started = time.perf_counter()

    # 1. Encode the image: CLIP embedding and VAE latents of the noise-augmented image.
    embeddings, noisy_image, image_latents = encode_image(
        pipe, image, generator, height=H, width=W, noise_aug_strength=p["noise_aug_strength"])

    # 2. Condition every frame on it: image latents beside every frame, fps/motion/noise as added time ids.
    cond = condition(embeddings, noisy_image, image_latents, fps=p["fps"],
                     motion_bucket_id=p["motion_bucket_id"], noise_aug_strength=p["noise_aug_strength"])

    # 3. Denoise the stack of frames together, from pure noise, with per-frame guidance (with loop or end_image,
    #    the last frames' x0 estimates are pulled toward the end picture at each step: svdkit.keyframes).
    set_schedule(pipe, p["num_inference_steps"], sigmas)
    latents = initial_noise(pipe, generator, F, H, W, embeddings.dtype)  # (1, F, 4, h, w)
    scales = p["guidance"].unsqueeze(0)  # (1, F)
    predict = unet_prediction
    if skip_uncond or cache_interval > 1:  # the approximate speed-ups plug in here
        from svdkit.speed import fast_prediction
        predict = fast_prediction(unet_prediction, scales, skip_uncond=skip_uncond, cache_interval=cache_interval)
    latents, steps_run, rec = denoise(pipe, latents, cond, scales, predict=predict, capture=capture,
                                      on_step=_toward_end(pipe, end, F, H, W, on_step), progress=progress)

    # 4. Decode the latents to frames with the temporal VAE decoder.
    frames = decode_latents(pipe, latents, p["decode_chunk_size"] or F)

    record = _record(pipe, seed, p, guidance, sigmas)
    record["steps_run"] = steps_run
    record["skip_uncond"], record["cache_interval"] = bool(skip_uncond), cache_interval
    if end is not None:
        record["loop"], record["end_image"] = bool(loop), not loop
    record["seconds"] = round(time.perf_counter() - started, 4)
    trace = _trace(pipe, rec, cond, p["guidance"], latents, steps_run, capture) if capture else None
    return Video(frames=frames, fps=p["fps"], params=record, trace=trace)


def _end_picture(image, loop, end_image):
    """The picture a clip must end on (`loop=True`: the image itself), or None; checked before any model work."""
    if not isinstance(loop, (bool, np.bool_)):
        raise ValueError(f"loop must be True or False, got {loop!r}")
    if loop and end_image is not None:
        raise ValueError("loop=True and end_image cannot be used together: loop=True already means "
                         "end_image=image (give one of them)")
    if loop:
        return image
    if end_image is None:
        return None
    end = load_image(end_image)
    if end.size != image.size:
        raise ValueError(f"end_image must have the size of image, {image.width}x{image.height}, got "
                         f"{end.width}x{end.height}: resize it first (e.g. end.resize(image.size))")
    return end


def _toward_end(pipe, end, num_frames: int, height: int, width: int, on_step):
    """`on_step`, preceded by steering the last frames toward the picture `end` (when there is one)."""
    if end is None:
        return on_step
    from svdkit.keyframes import chain_hooks, end_weights, steer

    weights = end_weights(num_frames)
    z = encode_latents(pipe, preprocess(pipe, end, height, width))[0] * pipe.vae.config.scaling_factor  # (4, h, w)
    return chain_hooks(steer({j: z for j in weights}, weights), on_step)


def _trace(pipe, rec, cond: Condition, guidance, latents, n, capture) -> Trace:
    """Assemble the `Trace` of the first video from what `denoise` recorded."""
    keep = torch.float16 if capture == "fp16" else torch.float32

    def cpu(x):
        return x.to("cpu", keep)

    return Trace(
        sigmas=pipe.scheduler.sigmas[: n + 1].to("cpu", torch.float32).clone(),
        timesteps=pipe.scheduler.timesteps[:n].to("cpu", torch.float32).clone(),
        x_t=rec["x_t"][:, 0], x0=rec["x0"][:, 0], model_output_cond=rec["cond"][:, 0],
        model_output_uncond=rec["uncond"][:, 0] if "uncond" in rec else None,
        guidance=guidance.to("cpu", torch.float32), latents=cpu(latents[0]),
        image_embeddings=cpu(cond.image_embeddings[:1]), image_latents=cpu(cond.image_latents[:1]),
        noisy_image=cpu(cond.noisy_image[:1]), added_time_ids=cond.added_time_ids[:1].to("cpu", torch.float32),
        scaling_factor=float(pipe.vae.config.scaling_factor),
    )


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


# ----------------------------------------------------------------------------------------------------
# Stages 1 and 2 by hand: what the VAE, CLIP and the UNet see, one piece at a time.
# Layouts: an image for the VAE (1, 3, H, W) in [-1, 1]; its latents (1, 4, H/8, W/8), NOT scaled.


@contextlib.contextmanager
def upcast_vae(vae):
    """Run a half-precision VAE that asks for it (`config.force_upcast`) in float32, as the pipeline does."""
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
    size = defaults(pipe)
    pixels = pipe.video_processor.preprocess(load_image(image), height=height or size["height"],
                                             width=width or size["width"])
    return pixels.to("cpu", torch.float32)


def noise_augment(pixels: torch.Tensor, strength: float, seed: int = 0) -> torch.Tensor:
    """`pixels + strength * noise`, with the same noise `generate(seed=seed)` draws first.

    So `noise_augment(preprocess(pipe, image), 0.02, seed)` equals `trace.noisy_image` of that run.
    """
    generator = torch.Generator().manual_seed(int(seed))
    noise = _randn(tuple(pixels.shape), generator, "cpu", torch.float32)
    return pixels.to("cpu", torch.float32) + strength * noise


@torch.no_grad()
def encode_latents(pipe, pixels: torch.Tensor) -> torch.Tensor:
    """The VAE encoder's latents of pixels (B, 3, H, W) in [-1, 1]: (B, 4, H/8, W/8), float32 on the CPU.

    The mode of the latent distribution, NOT multiplied by the scaling factor: exactly what SVD concatenates
    to every frame's noisy latents.
    """
    vae = pipe.vae
    with upcast_vae(vae):
        z = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
    return z.to("cpu", torch.float32)


TOY_ROUND_TRIP_DB = 20.0
"""Below this PSNR of its VAE round trip a picture is one the toy cannot draw: the toy's own world comes back at
22 dB or more, photos, fine textures and (for the first toy) colours outside its palette at 7-18 dB."""


def _is_toy(pipe) -> bool:
    spec = getattr(getattr(pipe, "svdkit", None), "spec", None)
    return getattr(spec, "repo_id", None) == "toy"


def check_toy_picture(pipe, pixels: torch.Tensor, latents: torch.Tensor) -> float:
    """Warn when the bundled toy cannot represent a picture; return the PSNR (dB) of its VAE round trip.

    pixels (1, 3, H, W) in [-1, 1] and their unscaled latents (1, 4, h, w), as stage 1 made them. A picture the
    toy's VAE cannot give back (a photo, fine texture, colours the toy never saw) is one its UNet cannot animate
    either: one decode (a few milliseconds) tells, before the denoising starts.
    """
    from svdkit.metrics import psnr
    from svdkit.toy import WORLD_DESCRIPTIONS, model_world
    from svdkit.video import to_uint8

    db = psnr(to_uint8(pixels)[0], to_uint8(decode_image(pipe, latents))[0])
    if db < TOY_ROUND_TRIP_DB:
        warnings.warn(f"the toy SVD cannot draw this picture: its VAE gives it back at only {db:.1f} dB PSNR (its "
                      f"own world comes back at 22 dB or more), so expect a clip that does not hold it. The toy knows "
                      f"{WORLD_DESCRIPTIONS[model_world()]}. For photos, use a real model: load_pipeline('svd-xt').",
                      stacklevel=user_stacklevel())
    return db


@torch.no_grad()
def decode_image(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Decode unscaled latents (B, 4, h, w) back to pixels (B, 3, H, W) in about [-1, 1], each as a 1-frame clip."""
    vae = pipe.vae
    with upcast_vae(vae):
        x = vae.decode(latents.to(vae.device, vae.dtype), num_frames=latents.shape[0]).sample
    return x.to("cpu", torch.float32)


def clip_input(pipe, image) -> np.ndarray:
    """What CLIP sees: the image resized to 224 x 224 with anti-aliasing, as the SVD pipeline does; uint8 (224, 224, 3).

    (CLIP then normalises it with its own mean and standard deviation.)
    """
    from svdkit.video import to_uint8

    image = load_image(image)
    try:
        from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing
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
