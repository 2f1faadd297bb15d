"""How far is the toy UNet's estimate of the clean clip from the truth, with and without guidance?

    python studies/toy_x0_error.py              # 12 held-out scenes, buckets 0 / 64 / 192, fps 7 (about 1 minute)
    python studies/toy_x0_error.py --scenes 3

In the toy world a clip is fully determined by its first frame and the knobs, so at any noise level a perfect
UNet's estimate x0 of the clean clip would be the true clip itself. This script adds noise of level sigma to
the true latents of held-out clips, asks the UNet for x0 through svdkit's own sampling stages (svdkit.sampling:
encode_image, condition, one denoise step; noise_aug_strength 0.02), both as the conditional prediction and
with the pipeline's per-frame guidance 1 -> 3 applied to it, and prints the mean
squared error in the scaled latents, split into the per-frame, per-channel spatial means ("global": a wrong
background or overall tint) and the rest ("local": shapes in the wrong place or colour). The "copy" row is
the error of repeating the first frame's latents over every frame: what a UNet that ignored the motion gets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from svdkit.cli_args import count
from svdkit.sampling import condition, denoise, encode_image, guidance_schedule, set_schedule
from svdkit.toy import MODEL_PATH
from svdkit.toy.world import HELD_OUT_SEED, render_clip
from svdkit.video import to_model

BUCKETS = (0, 64, 192)
SIGMAS = (0.5, 2.0, 8.0, 50.0)
FPS = 7
AUG = 0.02
FIRST_SEED = HELD_OUT_SEED + 2000  # held-out scenes, distinct from the examples and toy_quality's scenes


def split_error(x0: torch.Tensor, truth: torch.Tensor) -> tuple[float, float, float]:
    """(total, global, local) mean squared error of latents (F, C, h, w); global + local = total."""
    err = x0 - truth
    mean = err.mean((-1, -2), keepdim=True)  # (F, C, 1, 1): per frame and channel
    return float((err**2).mean()), float((mean**2).mean()), float(((err - mean) ** 2).mean())


@torch.no_grad()
def encode_clip(pipe, frames: np.ndarray, bucket: float, generator: torch.Generator) -> tuple:
    """Stages 1 and 2 for the first frame of `frames` (F, H, W, 3) uint8, and the true clip's latents.

    Returns (truth: scaled latents (F, 4, h, w), svdkit.sampling.Condition of the first frame).
    """
    from PIL import Image

    truth = pipe.vae.encode(to_model(frames)).latent_dist.mode() * pipe.vae.config.scaling_factor
    height, width = frames.shape[1:3]
    stage1 = encode_image(pipe, Image.fromarray(frames[0]), generator, height=height, width=width,
                          noise_aug_strength=AUG)
    return truth, condition(*stage1, fps=FPS, motion_bucket_id=bucket, noise_aug_strength=AUG)


@torch.no_grad()
def x0_estimates(pipe, clip: tuple, sigma: float, generator: torch.Generator) -> dict:
    """The UNet's x0 for an `encode_clip` result noised to `sigma`: scaled latents (F, 4, h, w), by name.

    Returns {"truth", "copy", "conditional", "guided"}; the last two are the scheduler's own x0
    (pred_original_sample) from the conditional and from the guided (1 -> 3) prediction of one UNet pass.
    """
    truth, cond = clip
    num_frames = len(truth)
    noisy = (truth + sigma * torch.randn(truth.shape, generator=generator)).unsqueeze(0)  # (1, F, 4, h, w)
    guidance = guidance_schedule("linear", num_frames)[None]  # (1, F): the pipeline's default, 1 -> 3
    set_schedule(pipe, 1, sigmas=[sigma, 0.0])  # one Euler step from sigma: the scheduler reports its x0
    _, _, record = denoise(pipe, noisy, cond, guidance, capture=True)  # record: (steps, 1, F, 4, h, w)
    # the same step from the conditional prediction alone, which that pass also recorded
    set_schedule(pipe, 1, sigmas=[sigma, 0.0])
    conditional = pipe.scheduler.step(record["cond"][0], pipe.scheduler.timesteps[0], noisy).pred_original_sample
    copy = cond.image_latents.expand(num_frames, -1, -1, -1) * pipe.vae.config.scaling_factor  # first frame, repeated
    out = {"truth": truth, "copy": copy, "conditional": conditional[0], "guided": record["x0"][0, 0]}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", type=count(1), default=12)
    p.add_argument("--model", type=Path, default=MODEL_PATH)
    p.add_argument("--threads", type=count(1), default=2)
    args = p.parse_args(argv)
    if not (args.model / "model_index.json").is_file():
        p.error(f"--model: no diffusers pipeline folder (with model_index.json) at {args.model}")
    torch.set_num_threads(args.threads)

    from diffusers import StableVideoDiffusionPipeline

    pipe = StableVideoDiffusionPipeline.from_pretrained(args.model)
    generator = torch.Generator().manual_seed(0)
    rows: dict[tuple, list] = {}
    for seed in range(FIRST_SEED, FIRST_SEED + args.scenes):
        for bucket in BUCKETS:
            clip = encode_clip(pipe, render_clip(seed, bucket, FPS), bucket, generator)  # once for every sigma
            for sigma in SIGMAS:
                est = x0_estimates(pipe, clip, sigma, generator)
                for name in ("conditional", "guided"):
                    rows.setdefault((bucket, name, sigma), []).append(split_error(est[name], est["truth"]))
            rows.setdefault((bucket, "copy", 0.0), []).append(split_error(est["copy"], est["truth"]))
    print(f"x0 error in scaled latents, {args.scenes} held-out scenes, fps {FPS}, model {args.model}")
    print(f"{'bucket':>6} {'estimate':<12} {'sigma':>6} {'total':>7} {'global':>7} {'local':>7}")
    for (bucket, name, sigma), errs in sorted(rows.items()):
        total, glob, local = np.mean(errs, 0)
        print(f"{bucket:6d} {name:<12} {sigma if sigma else '-':>6} {total:7.3f} {glob:7.3f} {local:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
