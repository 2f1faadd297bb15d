"""Learning curves for the toy: score a pipeline on held-out scenes while it trains.

``evaluate`` runs the stock pipeline on a few held-out scenes of a world at a few buckets, with few sampling steps,
and reads the clips back with the world's own check (``svdkit.toy.world.shapes_kept``): cheap enough to call every
few hundred training steps, the same measure as ``evaluations/toy_quality.py``'s first check.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from svdkit.toy.world import HELD_OUT_SEED, render_background, render_clip, scene_colours, shapes_kept

__all__ = ["evaluate", "averaged", "EVAL_SEED", "EVAL_SCENES", "EVAL_BUCKETS"]

EVAL_SEED = HELD_OUT_SEED + 500  # held-out scenes for the learning curves (the benchmark starts at + 1000)
EVAL_SCENES = 6
EVAL_BUCKETS = (0, 128, 255)


@contextlib.contextmanager
@torch.no_grad()
def averaged(unet, ema: list):
    """``with averaged(unet, ema):`` the UNet holds the averaged (EMA) weights, in eval mode, inside the block; its
    own weights come back after it."""
    saved = [p.detach().clone() for p in unet.parameters()]
    for p, e in zip(unet.parameters(), ema):
        p.copy_(e)
    unet.eval()
    try:
        yield unet
    finally:
        for p, s in zip(unet.parameters(), saved):
            p.copy_(s)


@torch.no_grad()
def evaluate(pipe, *, world: str = "palette", scenes: int = EVAL_SCENES,
             buckets=EVAL_BUCKETS, steps: int = 10) -> dict:
    """Score a pipeline for the learning curves: held-out scenes of ``world`` at ``buckets`` (fps 7, ``steps``
    sampling steps, guidance 1 -> 3, as the stock pipeline does it). Returns ``kept`` (share of frames that keep
    the scene's shapes, check 4 of the benchmark), ``kept_255`` (the same at the top bucket) and ``first_psnr`` (dB,
    frame 0 against the input)."""
    from PIL import Image

    from svdkit.metrics import psnr

    pipe.set_progress_bar_config(disable=True)
    kept, top, first = [], [], []
    for seed in range(EVAL_SEED, EVAL_SEED + scenes):
        image = render_clip(seed, num_frames=1, world=world)[0]
        colours, bg = scene_colours(seed, world=world), render_background(seed, world=world)
        for bucket in buckets:
            frames = pipe(Image.fromarray(image), height=64, width=64, num_frames=14, fps=7,
                          motion_bucket_id=bucket, noise_aug_strength=0.02, num_inference_steps=steps,
                          generator=torch.Generator().manual_seed(seed), output_type="np").frames[0]
            frames = np.clip(np.rint(frames * 255), 0, 255).astype(np.uint8)  # (F, H, W, 3)
            k = float(shapes_kept(frames, colours, bg).mean())
            kept.append(k)
            top += [k] if bucket == max(buckets) else []
            first.append(psnr(frames[0], image))
    return {"kept": round(float(np.mean(kept)), 4), "kept_255": round(float(np.mean(top)), 4),
            "first_psnr": round(float(np.mean(first)), 3)}
