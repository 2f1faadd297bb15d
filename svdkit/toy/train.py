"""Train the toy SVD from seeds: ``python -m svdkit.toy.train`` rebuilds ``svdkit/toy/model/``.

The result is a stock diffusers ``StableVideoDiffusionPipeline`` folder (safetensors). Training follows
the conditioning of the real model exactly as the diffusers pipeline builds it at sampling time:

1. **VAE.** ``AutoencoderKLTemporalDecoder`` learns to reconstruct short clips of the world (L1 + MSE + an
   edge term + a small KL). Most steps see 32x32 crops of 4-frame chunks (a quarter of the cost, so four
   times the scenes); the last ``recipe.vae_full`` (10%) whole frames. The pixels on and around the shapes weigh
   ``1 + VAE_SHAPE_WEIGHT``: they are a few percent of a frame but all of its content, and a VAE trained on
   equal weights blurs squares and diamonds into discs and leaves coloured fringes that read as extra shapes.
   Its ``scaling_factor`` is then measured so that scaled latents have unit std.
2. **Latent pool.** ``POOL_SCENES`` training scenes are rendered at ``POOL_SPEEDS`` speeds each (one of them
   still) for ``POOL_FRAMES`` frames and encoded once. Any 14-frame window of a pool clip, played
   forwards or backwards, is a training clip; its first frame is the conditioning image.
3. **UNet.** ``UNetSpatioTemporalConditionModel`` learns EDM v-prediction (``svdkit.objective``, the loss
   ``svdkit.finetune`` trains with too), which ``EulerDiscreteScheduler`` (v_prediction, continuous) samples:

   * input ``x_noisy / sqrt(sigma^2 + 1)`` concatenated on channels with the *unscaled* image latents
     ``vae.encode(image + noise_aug_strength * noise).latent_dist.mode()``, repeated over frames;
   * timestep ``0.25 * ln(sigma)``; added time ids ``[fps - 1, motion_bucket_id, noise_aug_strength]``;
   * ``x0 = out * (-sigma / sqrt(sigma^2 + 1)) + x_noisy / (sigma^2 + 1)``, loss
     ``(sigma^2 + 1) / sigma^2 * |x0 - latents|^2`` (the EDM weighting), plus the same on the
     frame-to-frame differences, where the motion is;
   * ``COND_DROPOUT`` of clips get zero image embeddings **and** zero image latents, which is exactly the
     unconditional branch of the pipeline's classifier-free guidance.

   In the world only the pixels per frame, ``d = MAX_SPEED * bucket / 255 / fps``, shape a clip. So a pool
   clip with displacement ``d`` is relabelled on every visit with a fresh fps and the bucket that gives
   the same ``d``: the UNet sees that only the ratio bucket / fps matters. A batch holds ``UNET_BATCH /
   UNET_SPEEDS`` scenes, each at ``UNET_SPEEDS`` of its speeds with one shared noise level and noise
   sample, so that the clips of a scene differ only in how far things move, and in the labels that say so.
   (Two speeds of four scenes beat four speeds of two: more scenes and noise levels a step.)

The CLIP image encoder is a fixed, seeded random network (see README.md for why).

>>> # python -m svdkit.toy.train --smoke          # a few steps of everything, reload, generate (< 1 min)
>>> # python -m svdkit.toy.train                  # the shipped weights (see README.md for timings)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from svdkit.cli_args import count
from svdkit.files import atomic_write
from svdkit.objective import diffusion_loss, sample_sigma
from svdkit.toy.checkpoint import Run, resume, save_training
from svdkit.toy.evaluate import averaged, evaluate
from svdkit.toy.recipes import CLIP_CONFIG, RECIPES, SCHEDULER_CONFIG, Recipe, unet_config, vae_config
from svdkit.toy.world import HELD_OUT_SEED, MAX_SPEED, render_background, render_clip
from svdkit.video import to_model

__all__ = ["Recipe", "RECIPES", "build_pipeline", "pass_through", "train_vae", "shape_weights", "crop", "edges",
           "warmup_cosine", "encode_pool", "train_unet", "main"]

# ------------------------------------------------------------------------------ configuration
SEED = 0
NUM_FRAMES = 14
SIZE = 64  # pixels
THREADS = 2

VAE_BATCH = 8  # chunks per step, cropped to VAE_CROP; whole-frame steps take VAE_BATCH // 4 (the same pixels)
VAE_CHUNK = 4  # consecutive frames per chunk (the temporal decoder sees its neighbours)
VAE_CROP = 32  # pixels, on the latent grid
VAE_LR = 2e-3
VAE_KL = 1e-4
VAE_SHAPE_WEIGHT = 10.0

POOL_SPEEDS = 4  # clips per scene, from still to POOL_MAX_STEP
POOL_FRAMES = 24
POOL_MAX_STEP = 5.0  # pixels per frame; the fastest the world allows is MAX_SPEED / 3 = 8

UNET_BATCH = 8
UNET_SPEEDS = 2  # clips of one scene in a batch, at different speeds drawn from its POOL_SPEEDS
UNET_LR = 3e-3
UNET_EMA = 0.995
P_MEAN, P_STD = 0.3, 1.4  # log-normal sigma ...
P_UNIFORM = 0.2  # ... but this share log-uniform over the sampler's whole range, 0.002 .. 700
TEMPORAL_WEIGHT = 4.0
COND_LR_MULT = 3.0  # learning-rate multiplier for the added-time-id MLP
COND_DROPOUT = 0.15
NOISE_AUG_MAX = 0.2
FPS_RANGE = (3.0, 30.0)

LOG_EVERY = 25
DEFAULT_RUNS = Path(os.environ.get("SVDKIT_CACHE", Path.home() / ".cache" / "svdkit")) / "toy_runs"

# ------------------------------------------------------------------------------ components
def build_pipeline(seed: int = SEED, recipe: Recipe = RECIPES["v1"]):
    """A fresh, untrained toy StableVideoDiffusionPipeline of ``recipe`` with seeded weights."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder(**vae_config(recipe))
    if recipe.vae_pass_through:
        pass_through(vae)
    torch.manual_seed(seed + 1)
    unet = UNetSpatioTemporalConditionModel(**unet_config(recipe))
    torch.manual_seed(seed + 2)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_CONFIG)).eval()
    return StableVideoDiffusionPipeline(
        vae=vae, image_encoder=image_encoder, unet=unet,
        scheduler=EulerDiscreteScheduler(**SCHEDULER_CONFIG),
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
    )


@torch.no_grad()
def pass_through(vae) -> None:
    """Start the VAE decoder's last layer, ``time_conv_out`` (a Conv3d 3 -> 3 over frames), as the identity.

    At PyTorch's init its taps sum, for a still clip, to a nearly singular 3x3 colour matrix (singular values 0.53,
    0.10, 0.02 for v2's seed 0): a VAE trained from there came back grey for 4,000 steps (svdkit/toy/README.md).
    """
    w = vae.decoder.time_conv_out.weight  # (3 out, 3 in, 3 frames, 1, 1)
    w.zero_()
    w[:, :, w.shape[2] // 2, 0, 0] = torch.eye(w.shape[0])
    vae.decoder.time_conv_out.bias.zero_()


def _sample_motion(rng: np.random.Generator) -> tuple[float, float]:
    """A (motion_bucket_id, fps) pair from the training prior: buckets uniform, fps log-uniform, some stills."""
    bucket = 0.0 if rng.random() < 0.05 else float(rng.uniform(0, 255))
    fps = float(np.exp(rng.uniform(np.log(FPS_RANGE[0]), np.log(FPS_RANGE[1]))))
    return bucket, fps


# ------------------------------------------------------------------------------ 1. VAE
def edges(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def shape_weights(x: torch.Tensor, weight: float, background: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel loss weights (B, 1, H, W) for frames x (B, 3, H, W) in [-1, 1]: 1 + `weight` on and near shapes.

    Without ``background``, shapes are the saturated pixels (the palette world: palette colours have max - min
    channel > 100 of 255, its backgrounds < 30). With the frames' own ``background`` (B, 3, H, W), shapes are the
    pixels that differ from it (any world: white, black and saturated backgrounds included). The weight extends
    3 pixels past each shape, so that bleeding colour into the background costs as much as missing it: the outline
    is what tells the shapes apart.
    """
    if background is None:
        on = (x.amax(1, keepdim=True) - x.amin(1, keepdim=True)) > 0.4  # (B, 1, H, W), in [-1, 1] units
    else:
        on = (x - background).abs().amax(1, keepdim=True) > 0.2
    near = F.max_pool2d(on.float(), kernel_size=7, stride=1, padding=3)
    return 1.0 + weight * near


def crop(frames: np.ndarray, size: int, rng: np.random.Generator, grid: int = 8) -> np.ndarray:
    """The same `size` x `size` window of every frame (F, H, W, C), at an offset on the latent grid (`grid` px)."""
    y, x = grid * rng.integers((frames.shape[1] - size) // grid + 1, size=2)
    return frames[:, y: y + size, x: x + size]


def _vae_chunk(rng: np.random.Generator, recipe: Recipe) -> np.ndarray:
    """VAE_CHUNK frames of a fresh training scene and its background, side by side on the channel axis: uint8
    (K, H, W, 6), [..., :3] the frames, [..., 3:] the background (the same in every frame), so one crop cuts both."""
    seed = int(rng.integers(HELD_OUT_SEED))
    clip = render_clip(seed, *_sample_motion(rng), num_frames=VAE_CHUNK, world=recipe.world)
    bg = np.rint(render_background(seed, world=recipe.world)).astype(np.uint8)
    return np.concatenate([clip, np.broadcast_to(bg, clip.shape)], -1)


def train_vae(vae, steps: int, *, device: str, seed: int = SEED, batch: int = VAE_BATCH,
              recipe: Recipe = RECIPES["v1"], run: Run | None = None, callback=None) -> list:
    """Fit the temporal-decoder VAE on chunks of world clips; returns [(step, loss, psnr), ...] of this sitting.

    A step sees `batch` chunks of VAE_CHUNK frames cropped to VAE_CROP, or, in the last ``recipe.vae_full`` of the
    steps, `batch` // 4 whole chunks (the same number of pixels). With a ``run``, it continues from the run's last
    VAE checkpoint and writes one every ``run.every`` seconds and at the end. ``callback(steps_done, vae)``, if
    given, is called after every step (a screening probes the VAE with it).
    """
    rng = np.random.default_rng([seed, 1])
    torch.manual_seed(seed + 10)
    vae.train().to(device)
    with torch.no_grad():  # start nearly deterministic: posterior std e^-3 instead of 1
        vae.quant_conv.bias[vae.config.latent_channels:] = -6.0
    opt = torch.optim.AdamW(vae.parameters(), lr=VAE_LR, betas=(0.9, 0.99), weight_decay=0.0)
    start = resume(run, "vae", vae, opt, rng)
    sched = warmup_cosine(opt, steps, warmup=min(50, steps // 10 + 1), start=start)
    log = []
    t0 = time.time()
    for step in range(start, steps):
        # (B*K, h, w, 6): B chunks of K consecutive frames, each from a fresh training scene, and their backgrounds
        whole = step >= steps * (1 - recipe.vae_full)
        chunks = [_vae_chunk(rng, recipe) for _ in range(max(1, batch // 4) if whole else batch)]
        frames = np.concatenate(chunks if whole else [crop(c, VAE_CROP, rng, recipe.factor) for c in chunks])
        x = to_model(frames[..., :3]).to(device)  # (B*K, 3, h, w)
        bg = to_model(frames[..., 3:]).to(device) if recipe.shape_mask == "background" else None
        weight = shape_weights(x, VAE_SHAPE_WEIGHT, bg)  # (B*K, 1, h, w)
        post = vae.encode(x).latent_dist
        z = post.sample()  # (B*K, 4, h/f, w/f)
        y = vae.decode(z, num_frames=VAE_CHUNK).sample  # (B*K, 3, h, w)
        err = y - x
        mse = (err**2).mean()
        recon = (weight * err.abs()).mean() + (weight * err**2).mean()
        edge = sum(F.l1_loss(a, b) for a, b in zip(edges(y), edges(x)))
        loss = recon + 0.5 * edge + VAE_KL * post.kl().mean() / z[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 5.0)
        opt.step()
        sched.step()
        if step % LOG_EVERY == 0 or step == steps - 1:
            psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-10))  # pixel range [-1, 1] spans 2
            log.append((step, round(loss.item(), 5), round(psnr, 2)))
            print(f"vae  {step:5d}/{steps}  loss {loss.item():.4f}  psnr {psnr:5.2f} dB  {time.time() - t0:6.0f}s",
                  flush=True)
            if run is not None:
                run.log(stage="vae", step=step, loss=round(loss.item(), 5), psnr=round(psnr, 2))
        if run is not None and (run.due() or step == steps - 1):
            save_training(run, "vae", step + 1, vae, opt, rng)
        if callback is not None:
            callback(step + 1, vae)
    vae.eval()
    return log


@torch.no_grad()
def measure_scaling_factor(vae, *, device: str, seed: int = SEED, clips: int = 48, world: str = "palette") -> float:
    """1 / std of the latents of training clips, so that scaled latents have unit std (as SD's 0.18215 does)."""
    rng = np.random.default_rng([seed, 2])
    vae.eval()
    zs = []
    for _ in range(clips):
        clip = render_clip(int(rng.integers(HELD_OUT_SEED)), *_sample_motion(rng), num_frames=NUM_FRAMES, world=world)
        zs.append(vae.encode(to_model(clip).to(device)).latent_dist.mode())
    return float(1.0 / torch.cat(zs).std())


# ------------------------------------------------------------------------------ 2. latent pool
@torch.no_grad()
def encode_pool(vae, n_scenes: int, *, device: str, seed: int = SEED, num_frames: int = POOL_FRAMES,
                speeds: int = POOL_SPEEDS, world: str = "palette"):
    """Render and encode each of ``n_scenes`` training scenes at ``speeds`` speeds, one of them still.

    Returns a dict: ``frames`` uint8 (N, K, T, H, W, 3), ``latents`` (N, K, T, 4, h, w) unscaled VAE
    modes, ``step`` (N, K) pixels moved per frame. The K clips of a scene differ only in speed.
    """
    rng = np.random.default_rng([seed, 3])
    vae.eval()
    frames, latents, steps = [], [], []
    t0 = time.time()
    fps = FPS_RANGE[0]  # any fps will do: only pixels per frame shape the clip, labels are drawn later
    for i in range(n_scenes):
        scene = int(rng.integers(HELD_OUT_SEED))
        # stratified speeds: 0, then one from each slice of (0, POOL_MAX_STEP]
        edges = np.linspace(0, POOL_MAX_STEP, speeds)
        step = np.concatenate([[0.0], rng.uniform(edges[:-1], edges[1:])])
        clips = np.stack([render_clip(scene, d * fps / MAX_SPEED * 255, fps, num_frames=num_frames, world=world)
                          for d in step])
        frames.append(clips)  # (K, T, H, W, 3)
        z = vae.encode(to_model(clips.reshape(-1, *clips.shape[2:])).to(device)).latent_dist.mode()
        latents.append(z.cpu().reshape(speeds, num_frames, *z.shape[1:]))  # (K, T, 4, h, w)
        steps.append(step)
        if i % 100 == 0 or i == n_scenes - 1:
            print(f"pool {i + 1:5d}/{n_scenes}  {time.time() - t0:6.0f}s", flush=True)
    return {"frames": np.stack(frames), "latents": torch.stack(latents), "step": np.stack(steps)}


def _save_pool(pool: dict, path: Path) -> None:
    from safetensors.torch import save_file

    with atomic_write(path) as tmp:
        save_file({"frames": torch.from_numpy(pool["frames"]), "latents": pool["latents"].contiguous(),
                   "step": torch.from_numpy(pool["step"])}, str(tmp))


def _load_pool(path: Path) -> dict:
    from safetensors.torch import load_file

    t = load_file(str(path))
    return {"frames": t["frames"].numpy(), "latents": t["latents"], "step": t["step"].numpy()}


# ------------------------------------------------------------------------------ 3. UNet
def _clip_embeddings(pipe, frames: torch.Tensor) -> torch.Tensor:
    """Image embeddings exactly as the pipeline makes them: [-1, 1] pixels (B, 3, H, W) -> (B, 1, D)."""
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing

    x = (_resize_with_antialiasing(frames, (224, 224)) + 1.0) / 2.0  # (B, 3, 224, 224) in [0, 1]
    fe = pipe.feature_extractor
    mean = torch.tensor(fe.image_mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(fe.image_std, device=x.device).view(1, 3, 1, 1)
    return pipe.image_encoder((x - mean) / std).image_embeds.unsqueeze(1)


def _relabel(step: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """For pixels-per-frame ``step``, draw an fps and the bucket that gives that step at that fps."""
    lo = np.log(FPS_RANGE[0])
    hi = np.log(np.minimum(FPS_RANGE[1], np.where(step > 0, MAX_SPEED / np.maximum(step, 1e-9), FPS_RANGE[1])))
    fps = np.exp(rng.uniform(lo, np.maximum(hi, lo)))
    bucket = np.clip(step * fps / MAX_SPEED * 255.0, 0, 255)
    return bucket, fps


def train_unet(pipe, pool: dict, steps: int, *, device: str, seed: int = SEED, batch: int = UNET_BATCH,
               callback=None, run: Run | None = None, until: int | None = None, eval_every: int = 0,
               world: str = "palette") -> list:
    """Fit the UNet with EDM v-prediction on windows of the latent pool; returns [(step, loss), ...] of this sitting.

    ``callback(step, loss)``, if given, is called after every logged step (notebook 06 draws its live
    loss curve with it). With a ``run``, training continues from the run's last UNet checkpoint, writes one every
    ``run.every`` seconds, logs every row to the run, and every ``eval_every`` steps scores the averaged weights
    on held-out scenes of ``world`` (:func:`evaluate`) for the learning curve. ``until`` stops early at that step
    (with a checkpoint, and without folding the average into the weights), so that several runs can take turns.
    """
    unet, vae = pipe.unet, pipe.vae
    sf = vae.config.scaling_factor
    rng = np.random.default_rng([seed, 4])
    gen = torch.Generator().manual_seed(seed + 20)
    unet.train().to(device)
    vae.eval().to(device)
    pipe.image_encoder.eval().to(device)
    ema = [p.detach().clone() for p in unet.parameters()]
    cond = list(unet.add_embedding.parameters())
    rest = [p for n, p in unet.named_parameters() if not n.startswith("add_embedding.")]
    opt = torch.optim.AdamW([{"params": rest}, {"params": cond, "lr": UNET_LR * COND_LR_MULT}],
                            lr=UNET_LR, weight_decay=0.01)
    start = resume(run, "unet", unet, opt, rng, gen, ema)
    sched = warmup_cosine(opt, steps, warmup=min(100, steps // 10 + 1), start=start)
    stop = steps if until is None else min(steps, until)
    n, S, T = pool["latents"].shape[:3]  # scenes, speeds, frames per clip
    K = min(UNET_SPEEDS, S)  # clips per scene in a batch
    G = max(1, batch // K)  # scenes in a batch
    B = G * K
    log = []
    t0 = time.time()
    for step in range(start, stop):
        # a. G scenes, each at K of its speeds, with one window and one direction per scene
        idx = rng.integers(n, size=G)
        speeds = np.stack([rng.choice(S, K, replace=False) for _ in range(G)])  # (G, K)
        from_start = rng.random(G) < 0.5  # the K clips then share their first frame exactly
        start = np.where(from_start, 0, rng.integers(T - NUM_FRAMES + 1, size=G))
        backwards = ~from_start & (rng.random(G) < 0.5)
        order = [np.arange(s, s + NUM_FRAMES)[::-1].copy() if b else np.arange(s, s + NUM_FRAMES)
                 for s, b in zip(start, backwards)]
        picks = [(i, k, o) for i, o, ks in zip(idx, order, speeds) for k in ks]  # B of (scene, speed, frames)
        latents = torch.stack([pool["latents"][i, k, o] for i, k, o in picks])
        latents = latents.to(device) * sf  # (B, F, 4, h, w), scaled as the pipeline's frame latents are
        first = to_model(np.stack([pool["frames"][i, k, o[0]] for i, k, o in picks]))
        first = first.to(device)  # (B, 3, H, W)

        # b. conditioning: motion labels, noise augmentation, dropout (shared within a scene's group)
        bucket, fps = _relabel(pool["step"][idx[:, None], speeds].reshape(-1), rng)
        aug = np.repeat(np.where(rng.random(G) < 0.2, 0.0,
                                 np.exp(rng.uniform(np.log(1e-3), np.log(NOISE_AUG_MAX), G))), K)
        added_time_ids = torch.tensor(np.stack([fps - 1, bucket, aug], 1), dtype=torch.float32, device=device)
        aug_t = torch.tensor(aug, dtype=torch.float32, device=device).view(B, 1, 1, 1)
        with torch.no_grad():
            aug_noise = torch.randn((G, 1, *first.shape[1:]), generator=gen).expand(-1, K, -1, -1, -1)
            noisy_first = first + aug_t * aug_noise.reshape(first.shape).to(device)
            image_latents = vae.encode(noisy_first).latent_dist.mode()  # (B, 4, h, w), NOT scaled
            embeddings = _clip_embeddings(pipe, first)  # (B, 1, D)
        keep = torch.tensor(np.repeat(rng.random(G) >= COND_DROPOUT, K), dtype=torch.float32, device=device)

        # c. EDM noise, preconditioning and loss (svdkit.objective: the same function svdkit.finetune trains with)
        # one noise level and one noise sample per scene: its K clips then differ only in their motion
        sigma = sample_sigma(G, gen, p_mean=P_MEAN, p_std=P_STD, p_uniform=P_UNIFORM)
        sigma = sigma.repeat_interleave(K).to(device)  # (B,)
        noise = torch.randn((G, 1, *latents.shape[1:]), generator=gen).expand(-1, K, -1, -1, -1, -1)
        loss = diffusion_loss(unet, latents, image_latents, embeddings, added_time_ids, sigma=sigma,
                              noise=noise.reshape(latents.shape).to(device), keep=keep,
                              temporal_weight=TEMPORAL_WEIGHT)

        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(UNET_EMA, (1 + step) / (10 + step))
            for e, p in zip(ema, unet.parameters()):
                e.lerp_(p.detach(), 1 - decay)
        if step % LOG_EVERY == 0 or step == steps - 1:
            log.append((step, round(loss.item(), 5)))
            print(f"unet {step:5d}/{steps}  loss {loss.item():.4f}  {time.time() - t0:6.0f}s", flush=True)
            if callback is not None:
                callback(step, loss.item())
            if run is not None:
                run.log(stage="unet", step=step, loss=round(loss.item(), 5), sigma=round(float(sigma.mean()), 4))
        if run is not None and eval_every and (step + 1) % eval_every == 0:
            with averaged(unet, ema):
                scores = evaluate(pipe, world=world)
            run.log(stage="eval", step=step + 1, **scores)
            print(f"eval {step + 1:5d}  " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()), flush=True)
            unet.train()
        if run is not None and (run.due() or step == stop - 1):
            save_training(run, "unet", step + 1, unet, opt, rng, gen, ema)
    if stop < steps:
        return log
    with torch.no_grad():
        for e, p in zip(ema, unet.parameters()):
            p.copy_(e)
    unet.eval()
    return log


def warmup_cosine(opt, steps: int, warmup: int, floor: float = 0.1, start: int = 0):
    """Linear warm-up over `warmup` steps, then a cosine from the full rate down to `floor` of it; `start` resumes
    the schedule at that step."""
    def factor(i):
        if i < warmup:
            return (i + 1) / warmup
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (i - warmup) / max(1, steps - warmup)))
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return torch.optim.lr_scheduler.LambdaLR(opt, factor, last_epoch=start - 1)


# ------------------------------------------------------------------------------ saving and checking
def _plot_losses(record: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, stage in zip(axes, ("vae", "unet")):
        rows = np.asarray(record[stage]["log"], dtype=float).reshape(-1, len(record[stage]["columns"]))
        if len(rows):
            ax.plot(rows[:, 0], rows[:, 1])
        ax.set(title=f"{stage} loss", xlabel="step", yscale="log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _smoke_generate(folder: Path) -> tuple:
    """Reload the folder with nothing but stock diffusers and make one clip."""
    from diffusers import StableVideoDiffusionPipeline
    from PIL import Image

    pipe = StableVideoDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    image = Image.fromarray(render_clip(HELD_OUT_SEED)[0])
    frames = pipe(image, height=SIZE, width=SIZE, num_frames=NUM_FRAMES, num_inference_steps=2,
                  generator=torch.Generator().manual_seed(0), output_type="np").frames[0]
    return frames.shape


def main(argv: list[str] | None = None) -> Path | None:
    p = argparse.ArgumentParser(prog="python -m svdkit.toy.train", description=__doc__.split("\n")[0])
    p.add_argument("--recipe", choices=list(RECIPES), default="v1",
                   help="the design to train (default v1, the shipped weights); see RECIPES")
    p.add_argument("--out", type=Path, default=None,
                   help="output pipeline folder (default: the package's model folder for v1, RUN_DIR/pipeline else)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help=f"checkpoints and log.jsonl of this training (default {DEFAULT_RUNS}/RECIPE-seedSEED)")
    p.add_argument("--resume", action="store_true", help="continue the training in --run-dir from its last checkpoint")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0, help="minutes between checkpoints (default 10)")
    p.add_argument("--until-step", type=count(1), default=None,
                   help="stop the UNet stage at this step (checkpoint written); --resume continues it")
    p.add_argument("--eval-every", type=count(0), default=None,
                   help="score the averaged UNet on held-out scenes every N steps (default 500 for v2, 0 for v1)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="a few steps of each stage into a temporary folder")
    p.add_argument("--vae-steps", type=count(1), default=None, help="default: the recipe's")
    p.add_argument("--pool-scenes", type=count(1), default=None, help="default: the recipe's")
    p.add_argument("--unet-steps", type=count(1), default=None, help="default: the recipe's")
    p.add_argument("--vae-from", type=Path, default=None,
                   help="skip stage 1 and reuse the trained VAE of this pipeline or run folder (its pool too)")
    p.add_argument("--pool-seed", type=count(0), default=None,
                   help="the seed that draws the latent pool's scenes (default --seed; a screening shares one pool)")
    p.add_argument("--only-vae", action="store_true", help="stop after stage 1 (saves OUT/vae)")
    p.add_argument("--threads", type=count(1), default=THREADS)
    p.add_argument("--seed", type=count(0), default=SEED)
    args = p.parse_args(argv)
    if not math.isfinite(args.checkpoint_minutes) or args.checkpoint_minutes <= 0:
        p.error(f"--checkpoint-minutes must be a number > 0, got {args.checkpoint_minutes}")
    recipe = RECIPES[args.recipe]
    vae_steps = args.vae_steps or recipe.vae_steps
    pool_scenes = args.pool_scenes or recipe.pool_scenes
    unet_steps = args.unet_steps or recipe.unet_steps
    eval_every = args.eval_every if args.eval_every is not None else (0 if recipe.world == "palette" else 500)
    batches = dict(vae=VAE_BATCH, unet=UNET_BATCH)
    if args.smoke:
        vae_steps, pool_scenes, unet_steps = args.vae_steps or 3, args.pool_scenes or 2, args.unet_steps or 3
        batches = dict(vae=1, unet=POOL_SPEEDS)
    vae_from = args.vae_from
    if vae_from is not None and not (vae_from / "vae" / "config.json").is_file():
        p.error(f"--vae-from: no trained VAE (vae/config.json) in {vae_from}")
    run_dir = args.run_dir or (Path(tempfile.mkdtemp(prefix="toy_svd_smoke_run_")) if args.smoke
                               else DEFAULT_RUNS / f"{recipe.name}-seed{args.seed}")
    if (run_dir / "log.jsonl").exists() and not args.resume:
        p.error(f"--run-dir {run_dir} holds a training already: add --resume to continue it, or pick another folder")
    out = args.out or (Path(tempfile.mkdtemp(prefix="toy_svd_smoke_")) if args.smoke
                       else Path(__file__).parent / "model" if recipe.name == "v1" else run_dir / "pipeline")
    torch.set_num_threads(args.threads)
    run = Run(run_dir, every_minutes=args.checkpoint_minutes)
    run.lock()
    record = {"recipe": dataclasses.asdict(recipe), "seed": args.seed, "vae_steps": vae_steps,
              "pool_scenes": pool_scenes, "pool_seed": args.pool_seed, "unet_steps": unet_steps,
              "vae_from": str(vae_from) if vae_from else None}
    run.check_same(record)
    run.log(stage="start", **record, resume=args.resume, threads=args.threads, device=args.device)
    t_start = time.time()

    # 1. VAE: another run's, this run's finished one, or trained here (resumable)
    pipe = build_pipeline(args.seed, recipe)
    vae_dir = vae_from or run_dir
    t0 = time.time()
    if (vae_dir / "vae" / "config.json").is_file():
        from diffusers import AutoencoderKLTemporalDecoder

        pipe.register_modules(vae=AutoencoderKLTemporalDecoder.from_pretrained(vae_dir / "vae").eval())
        saved = json.loads((vae_dir / "vae" / "vae_log.json").read_text())
        vae_log, vae_time = saved["log"], saved["seconds"]
    else:
        train_vae(pipe.vae, vae_steps, device=args.device, seed=args.seed, batch=batches["vae"], recipe=recipe, run=run)
        vae_log = run.curve("vae", "loss", "psnr")  # every sitting's rows, not just this one's
        scaling_factor = measure_scaling_factor(pipe.vae, device=args.device, seed=args.seed,
                                                clips=4 if args.smoke else 48, world=recipe.world)
        pipe.vae.register_to_config(scaling_factor=scaling_factor)
        vae_time = time.time() - t0
        # keep the VAE on its own, so that the UNet stage can be rerun with --vae-from
        pipe.vae.to("cpu").save_pretrained(run_dir / "vae", safe_serialization=True)
        (run_dir / "vae" / "vae_log.json").write_text(json.dumps({"seconds": vae_time, "log": vae_log}))
    scaling_factor = pipe.vae.config.scaling_factor
    print(f"vae ready; scaling_factor {scaling_factor:.4f}", flush=True)
    if args.only_vae:
        pipe.vae.to("cpu").save_pretrained(out / "vae", safe_serialization=True)
        return out

    # 2. latent pool, encoded once per VAE and kept beside it
    t0 = time.time()
    pool_seed = args.seed if args.pool_seed is None else args.pool_seed
    pool_home = vae_dir if (vae_dir / "log.jsonl").exists() else run_dir  # beside a run's VAE, never in a copy
    pool_file = pool_home / f"pool-{pool_scenes}-seed{pool_seed}.safetensors"
    if pool_file.is_file():
        pool = _load_pool(pool_file)
    else:
        pool = encode_pool(pipe.vae, pool_scenes, device=args.device, seed=pool_seed, world=recipe.world)
        _save_pool(pool, pool_file)
    pool_time = time.time() - t0

    # 3. UNet (resumable; with --until-step it stops early and leaves the rest for --resume)
    t0 = time.time()
    train_unet(pipe, pool, unet_steps, device=args.device, seed=args.seed, batch=batches["unet"], run=run,
               until=args.until_step, eval_every=eval_every, world=recipe.world)
    unet_time = time.time() - t0
    if args.until_step is not None and args.until_step < unet_steps:
        run.log(stage="stop", step=args.until_step)
        print(f"stopped at UNet step {args.until_step} of {unet_steps}; continue with --resume", flush=True)
        return None
    unet_log = run.curve("unet", "loss")  # every sitting's rows

    # 4. save as a stock pipeline folder, with the loss curves beside the weights
    pipe.to("cpu")
    for child in out.iterdir() if out.exists() else ():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    pipe.save_pretrained(out, safe_serialization=True)
    (out / "vae" / "vae_log.json").write_text(json.dumps({"seconds": vae_time, "log": vae_log}))
    record = {
        "recipe": dataclasses.asdict(recipe), "seed": args.seed, "device": args.device, "threads": args.threads,
        "wall_seconds": {"vae": round(vae_time), "pool": round(pool_time), "unet": round(unet_time),
                         "total": round(time.time() - t_start)},
        "vae": {"steps": vae_steps, "batch": f"{batches['vae']} chunks x {VAE_CHUNK} frames",
                "crop": VAE_CROP, "whole_frames": recipe.vae_full, "shape_weight": VAE_SHAPE_WEIGHT, "lr": VAE_LR,
                "kl_weight": VAE_KL, "scaling_factor": scaling_factor,
                "columns": ["step", "loss", "psnr_db"], "log": vae_log},
        "pool": {"scenes": pool_scenes, "speeds": POOL_SPEEDS, "frames_per_clip": POOL_FRAMES,
                 "max_step": POOL_MAX_STEP},
        "unet": {"steps": unet_steps, "batch": batches["unet"], "lr": UNET_LR, "ema": UNET_EMA,
                 "p_mean": P_MEAN, "p_std": P_STD, "p_uniform": P_UNIFORM, "cond_dropout": COND_DROPOUT,
                 "noise_aug_max": NOISE_AUG_MAX, "fps_range": FPS_RANGE,
                 "columns": ["step", "loss"], "log": unet_log},
        "eval": run.rows(stage="eval"),
    }
    (out / "training_log.json").write_text(json.dumps(record, indent=1))
    _plot_losses(record, out / "loss.png")
    run.log(stage="done", out=str(out))
    print(f"saved to {out} in {time.time() - t_start:.0f}s", flush=True)

    # 5. the folder must work with stock diffusers alone
    shape = _smoke_generate(out)
    print(f"reloaded with StableVideoDiffusionPipeline.from_pretrained: frames {shape}", flush=True)
    return out


if __name__ == "__main__":
    main()
