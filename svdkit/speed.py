"""Speed: SVD's real architecture with random weights, FLOP counts, and the approximate speed-ups of the loop.

Timing and memory depend on the architecture and the input size, not on what the weights learned. So svdkit
can measure real SVD without downloading it: `build_random_pipeline` builds the real-size networks (the
diffusers UNet, the temporal-decoder VAE, a ViT-H/14 CLIP image encoder, SVD's scheduler) with seeded random
weights. Its frames are noise, and it says so: `pipe.random_weights` is True, and every `Video` made with it
prints "RANDOM WEIGHTS".

>>> from svdkit.speed import build_random_pipeline, count_flops
>>> pipe = build_random_pipeline(25, size="tiny")              # same block layout, 32 channels: CPU-sized
>>> pipe.random_weights
True
>>> meta = build_random_pipeline(25, device="meta")            # the real size, no memory used
>>> round(sum(p.numel() for p in meta.unet.parameters()) / 1e9, 2)
1.52
>>> flops = count_flops(25, height=576, width=1024)            # counted on the meta device, in a few seconds
>>> round(flops["unet"] / 1e12)                                # one UNet call: 2 x 25 frames (guidance on)
160

The sampling loop (`svdkit.sampling.denoise`) asks a `predict` function for the UNet's outputs at each step;
its plain default is `svdkit.sampling.unet_prediction`. `fast_prediction` makes faster, approximate ones, which
`generate(..., cache_interval=N, skip_uncond=True)` plugs in:

* `StepCache` runs the UNet with step caching, in the spirit of DeepCache: on a full step it keeps the
  features that enter the UNet's last (highest-resolution) up block; on the steps between, it recomputes only
  the first down block and the last up block around them.
* `skip_uncond` runs the unconditional pass only on the frames whose guidance scale is not 1.

>>> from svdkit import sampling
>>> from svdkit.speed import fast_prediction
>>> predict = fast_prediction(sampling.unet_prediction, sampling.guidance_schedule("linear", 14)[None],
...                           cache_interval=2)   # then: sampling.denoise(pipe, latents, cond, scales, predict=predict)
>>> predict.cache_interval, predict.skip_uncond
(2, False)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import numbers
from collections.abc import Callable

import torch

__all__ = ["build_random_pipeline", "count_flops", "compile_pipeline", "to_channels_last", "fast_prediction",
           "FastPrediction", "StepCache", "ARCHITECTURES"]

# The architectures `build_random_pipeline` knows. "real" is SVD's own (the configs of the
# stabilityai/stable-video-diffusion-img2vid(-xt) repos, which differ only in num_frames); "tiny" keeps the
# UNet's block layout (3 cross-attention down blocks and a plain one, mirrored going up) with one layer per
# block and 32 channels (the fewest GroupNorm's 32 groups allow), so that it runs in seconds on a CPU.
ARCHITECTURES: dict[str, dict] = {
    "real": dict(
        unet=dict(sample_size=96, in_channels=8, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
                  layers_per_block=2, cross_attention_dim=1024, num_attention_heads=(5, 10, 20, 20),
                  addition_time_embed_dim=256, projection_class_embeddings_input_dim=768),
        vae=dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                 layers_per_block=2, latent_channels=4, sample_size=768, scaling_factor=0.18215,
                 force_upcast=True),
        image_encoder=dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120,
                           patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu",
                           layer_norm_eps=1e-5),
    ),
    "tiny": dict(
        unet=dict(sample_size=8, in_channels=8, out_channels=4, block_out_channels=(32, 32, 32, 32),
                  layers_per_block=1, cross_attention_dim=32, num_attention_heads=(2, 2, 2, 2),
                  addition_time_embed_dim=8, projection_class_embeddings_input_dim=24),
        vae=dict(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                 layers_per_block=1, latent_channels=4, sample_size=64, scaling_factor=0.18215,
                 force_upcast=True),
        image_encoder=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                           patch_size=32, image_size=224, projection_dim=32, hidden_act="gelu",
                           layer_norm_eps=1e-5),
    ),
}

# SVD's scheduler (EDM-style Euler with Karras sigmas and v-prediction), as in its scheduler_config.json.
_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
                  num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
                  steps_offset=1, timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)


@contextlib.contextmanager
def _constructing_on(device, dtype: torch.dtype):
    """New tensors are created on `device` in `dtype`: weights are initialised where they will live."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


def build_random_pipeline(num_frames: int = 25, *, size: str = "real", device="cpu", dtype=torch.float32,
                          seed: int = 0):
    """A `StableVideoDiffusionPipeline` with SVD's architecture and seeded random weights.

    Args:
      num_frames: frames the UNet is configured for (14 for SVD, 25 for SVD-XT).
      size: "real" (1.52 B-parameter UNet, 98 M VAE, 632 M CLIP image encoder) or "tiny" (a few channels, CPU).
      device: where the weights are created, initialised and kept; "meta" builds the shapes only (no memory).
      dtype: the weights' dtype (they are initialised in it, with no float32 copy on the way).
      seed: seeds the initialisation (on that device's generator).

    Returns:
      The pipeline, with `pipe.random_weights = True`.
    """
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    if size not in ARCHITECTURES:
        raise ValueError(f"size must be one of {list(ARCHITECTURES)}, got {size!r}")
    arch = ARCHITECTURES[size]
    torch.manual_seed(seed)
    with _constructing_on(device, dtype):
        unet = UNetSpatioTemporalConditionModel(num_frames=num_frames, **arch["unet"])
        vae = AutoencoderKLTemporalDecoder(**arch["vae"])
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**arch["image_encoder"]))
    # CLIPImageProcessor's defaults are SVD's (224 px, bicubic, CLIP's mean and std).
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=image_encoder, unet=unet,
                                        scheduler=EulerDiscreteScheduler(**_SCHEDULER),
                                        feature_extractor=CLIPImageProcessor())
    # A few scalars (the temporal mixing factors) are created on the CPU whatever the default device.
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.random_weights = True
    return pipe


def compile_pipeline(pipe, **compile_kwargs):
    """Compile the UNet's blocks and the VAE decoder in place with `torch.compile` (regional compilation).

    Compiling block by block (not the whole UNet) lets `StepCache` call the blocks it needs and still run
    compiled code; the first call of each new input shape pays the compilation.
    """
    unet = pipe.unet
    for block in (*unet.down_blocks, unet.mid_block, *unet.up_blocks):
        block.compile(**compile_kwargs)
    pipe.vae.decoder.compile(**compile_kwargs)
    return pipe


def to_channels_last(pipe):
    """Store the UNet's and the VAE's 2-d convolution weights channels-last (NHWC), in place.

    Convolutions then run in NHWC, which tensor cores prefer; whether that pays off against the layout changes
    around the temporal layers is measured by benchmarks/gpu_presets.py ("fast+channels_last").
    """
    for model in (pipe.unet, pipe.vae):
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
    return pipe


# ----------------------------------------------------------------------------------------------------
# Step caching


def _unet_forward(unet, sample, timestep, encoder_hidden_states, added_time_ids, deep=None):
    """diffusers' `UNetSpatioTemporalConditionModel.forward`, split where `StepCache` cuts it.

    sample (B, F, 8, h, w). With `deep=None` this is the full UNet; given `deep` (the features entering the
    last up block on an earlier step) it runs only conv_in, the first down block, the last up block and the
    output layers. Returns (v-prediction (B, F, 4, h, w), deep).
    """
    B, F = sample.shape[:2]
    # 1. Time and micro-conditioning embeddings, one per video, then repeated for every frame.
    t = torch.as_tensor(timestep, device=sample.device)
    t = t[None] if t.ndim == 0 else t
    emb = unet.time_embedding(unet.time_proj(t.expand(B)).to(dtype=sample.dtype))
    time_ids = unet.add_time_proj(added_time_ids.flatten()).reshape((B, -1)).to(emb.dtype)
    emb = emb + unet.add_embedding(time_ids)
    emb = emb.repeat_interleave(F, dim=0, output_size=B * F)  # (B*F, C)
    encoder_hidden_states = encoder_hidden_states.repeat_interleave(F, dim=0, output_size=B * F)  # (B*F, 1, D)
    common = dict(temb=emb, image_only_indicator=torch.zeros(B, F, dtype=sample.dtype, device=sample.device))

    def kwargs(block):
        cross = getattr(block, "has_cross_attention", False)
        return {**common, "encoder_hidden_states": encoder_hidden_states} if cross else common

    # 2. The shallow part that always runs: conv_in and the first down block (full resolution).
    h = unet.conv_in(sample.flatten(0, 1))  # (B*F, C0, h, w)
    skips = (h,)
    h, res = unet.down_blocks[0](h, **kwargs(unet.down_blocks[0]))
    skips += res
    # 3. The deep part, only on full steps: the other down blocks, the mid block, all up blocks but the last.
    if deep is None:
        for block in unet.down_blocks[1:]:
            h, res = block(h, **kwargs(block))
            skips += res
        h = unet.mid_block(h, **kwargs(unet.mid_block))
        for block in unet.up_blocks[:-1]:
            n = len(block.resnets)
            h, skips = block(h, res_hidden_states_tuple=skips[-n:], **kwargs(block)), skips[:-n]
        deep = h
    # 4. The last up block takes the deep features and the first down block's skips (conv_in, its layers).
    last = unet.up_blocks[-1]
    h = last(deep, res_hidden_states_tuple=skips[:len(last.resnets)], **kwargs(last))
    h = unet.conv_out(unet.conv_act(unet.conv_norm_out(h)))
    return h.reshape(B, F, *h.shape[1:]), deep


def _check_interval(interval) -> None:
    if not isinstance(interval, numbers.Integral) or isinstance(interval, bool) or interval < 1:
        raise ValueError(f"cache_interval must be an integer >= 1 (1: no caching), got {interval!r}")


class StepCache:
    """Calls the UNet, recomputing its deep features only every `interval` steps.

    interval=1 is the plain `unet(...)` call. With interval=N, steps 0, N, 2N, ... run the full UNet and keep the
    features that enter its last up block; the steps between reuse them and run only conv_in, the first down
    block, the last up block and the output layers. Adjacent steps change those deep features little, so the
    result moves a little (measure it: `benchmarks/gpu_presets.py` and tests/test_realsize.py do).
    `key` keeps separate caches for separate calls in one step. `calls` counts full and shallow calls.
    """

    def __init__(self, unet, interval: int = 1):
        _check_interval(interval)
        self.unet, self.interval = unet, int(interval)
        self.deep: dict = {}
        self.calls = {"full": 0, "shallow": 0}

    def __call__(self, sample, timestep, encoder_hidden_states, added_time_ids, *, step: int, key="all"):
        if self.interval == 1:
            self.calls["full"] += 1
            return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                             added_time_ids=added_time_ids, return_dict=False)[0]
        full = step % self.interval == 0 or key not in self.deep
        self.calls["full" if full else "shallow"] += 1
        out, self.deep[key] = _unet_forward(self.unet, sample, timestep, encoder_hidden_states, added_time_ids,
                                            deep=None if full else self.deep[key])
        return out


# ----------------------------------------------------------------------------------------------------
# Predictions for the sampling loop


def fast_prediction(plain: Callable, guidance: torch.Tensor, *, skip_uncond: bool = False,
                    cache_interval: int = 1) -> FastPrediction:
    """A `predict` function for `svdkit.sampling.denoise` with the approximate speed-ups of `generate()`.

    Args:
      plain: the plain prediction it builds on, `svdkit.sampling.unet_prediction`.
      guidance: (B, F) the guidance scale of each frame of each video, as `denoise` gets it.
      skip_uncond: run the unconditional pass only on the frames whose scale is not 1 (see `FastPrediction`).
      cache_interval: run the full UNet every `cache_interval` steps only (`StepCache`); 1: always.
    """
    return FastPrediction(plain, torch.as_tensor(guidance), skip_uncond=bool(skip_uncond),
                          cache_interval=cache_interval)


class FastPrediction:
    """The UNet's outputs at one step, faster and approximate: `predict(pipe, x_t, t, cond, guided=, step=)`.

    With `skip_uncond`, the conditional pass runs on every frame and the unconditional pass only on the frames
    whose guidance scale is not 1: a frame with scale 1 uses only the conditional prediction
    (uncond + 1 * (cond - uncond)), so its unconditional prediction is set to the conditional one. That is NOT
    exact for the other frames: the UNet's temporal layers mix frames, so their unconditional prediction changes
    when a frame leaves that video. When every frame, or none, is guided there is nothing to skip, and the one
    batched call of the plain prediction runs. Every UNet call goes through one `StepCache`.
    """

    def __init__(self, plain: Callable, guidance: torch.Tensor, *, skip_uncond: bool = False,
                 cache_interval: int = 1):
        _check_interval(cache_interval)
        self.plain, self.skip_uncond, self.cache_interval = plain, skip_uncond, int(cache_interval)
        self.frames = (guidance != 1).any(0)  # (F,): the frames that use the unconditional prediction
        self.cache: StepCache | None = None  # made at the first call, around that pipeline's UNet

    def __call__(self, pipe, x_t: torch.Tensor, t, cond, *, guided: bool, step: int):
        if self.cache is None or self.cache.unet is not pipe.unet:
            self.cache = StepCache(pipe.unet, self.cache_interval)
        unet = functools.partial(self.cache, step=step)
        frames = self.frames.to(x_t.device)
        if not (guided and self.skip_uncond) or bool(frames.all()):
            return self.plain(pipe, x_t, t, cond, guided=guided, unet=unet)
        _, cond_out = self.plain(pipe, x_t, t, cond, guided=False, unet=functools.partial(unet, key="cond"))
        # The unconditional pass on `frames` only: zero embedding, zero image latents.
        blank = dataclasses.replace(cond, image_embeddings=torch.zeros_like(cond.image_embeddings),
                                    image_latents=torch.zeros_like(cond.image_latents))
        _, some = self.plain(pipe, x_t[:, frames], t, blank, guided=False, unet=functools.partial(unet, key="uncond"))
        uncond = cond_out.clone()
        uncond[:, frames] = some
        return uncond, cond_out


# ----------------------------------------------------------------------------------------------------
# FLOPs


def count_flops(num_frames: int = 25, *, height: int = 576, width: int = 1024, size: str = "real",
                batch: int = 2) -> dict:
    """FLOPs (multiply-adds count 2) of each model call of one SVD clip, counted on the meta device.

    Returns a dict: "unet" (one UNet call on `batch` videos of num_frames; 2 = one clip with guidance),
    "unet_shallow" (the same call on a cached step of `StepCache`), "decode" (the VAE decoding num_frames
    frames), "encode" (the VAE encoding the image), "clip" (the image encoder). Matmuls, convolutions and
    attention are counted (not norms or activations), as `torch.utils.flop_counter.FlopCounterMode` does.
    """
    from torch.utils.flop_counter import FlopCounterMode

    meta = build_random_pipeline(num_frames, size=size, device="meta", dtype=torch.float16)
    h, w, f = height // meta.vae_scale_factor, width // meta.vae_scale_factor, num_frames

    def empty(*shape):
        return torch.empty(*shape, device="meta", dtype=torch.float16)

    cross = meta.unet.config.cross_attention_dim
    unet_args = (empty(batch, f, 8, h, w), torch.tensor(1.0, device="meta"), empty(batch, 1, cross),
                 empty(batch, 3))
    counts = {}

    def count(name, fn):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            result = fn()
        counts[name] = int(counter.get_total_flops())
        return result

    _, deep = count("unet", lambda: _unet_forward(meta.unet, *unet_args))
    count("unet_shallow", lambda: _unet_forward(meta.unet, *unet_args, deep=deep))
    count("decode", lambda: meta.vae.decode(empty(f, 4, h, w), num_frames=f))
    count("encode", lambda: meta.vae.encode(empty(1, 3, height, width)))
    size_in = meta.image_encoder.config.image_size
    count("clip", lambda: meta.image_encoder(empty(1, 3, size_in, size_in)))
    return counts
