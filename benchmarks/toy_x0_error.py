"""How far is the toy UNet's estimate of the clean clip from the truth, with and without guidance?

    python benchmarks/toy_x0_error.py              # 12 held-out scenes, buckets 0 / 64 / 192, fps 7 (about 1 minute)
    python benchmarks/toy_x0_error.py --scenes 3

In the toy world a clip is fully determined by its first frame and the knobs, so at any noise level a perfect
UNet's estimate x0 of the clean clip would be the true clip itself. This script adds noise of level sigma to
the true latents of held-out clips, asks the UNet for x0 exactly as the sampler does (EDM preconditioning,
v-prediction, image latents and CLIP embedding of the first frame, noise_aug_strength 0.02), once with the
image (conditional) and once with the pipeline's per-frame guidance 1 -> 3 applied to it, and prints the mean
squared error in the scaled latents, split into the per-frame, per-channel spatial means ("global": a wrong
background or overall tint) and the rest ("local": shapes in the wrong place or colour). The "copy" row is
the error of repeating the first frame's latents over every frame: what a UNet that ignored the motion gets.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from svdkit.toy import MODEL_PATH  # noqa: E402
from svdkit.toy.train import _clip_embeddings, _to_model, count  # noqa: E402
from svdkit.toy.world import HELD_OUT_SEED, render_clip  # noqa: E402

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
def x0_estimates(pipe, frames: np.ndarray, bucket: float, sigma: float, generator: torch.Generator) -> dict:
    """The UNet's x0 for clip `frames` (F, H, W, 3) uint8 noised to `sigma`: scaled latents (F, 4, h, w), by name.

    Returns {"truth", "copy", "conditional", "guided"}.
    """
    vae, unet = pipe.vae, pipe.unet
    sf = vae.config.scaling_factor
    x = _to_model(frames)  # (F, 3, H, W) in [-1, 1]
    num_frames = len(frames)
    truth = vae.encode(x).latent_dist.mode() * sf  # (F, 4, h, w), scaled as the sampler's latents are
    first = x[:1]
    image_latents = vae.encode(first + AUG * torch.randn(first.shape, generator=generator)).latent_dist.mode()
    image_latents = image_latents.unsqueeze(1).expand(-1, num_frames, -1, -1, -1)  # (1, F, 4, h, w), unscaled
    embedding = _clip_embeddings(pipe, first)  # (1, 1, D)
    noisy = (truth + sigma * torch.randn(truth.shape, generator=generator)).unsqueeze(0)  # (1, F, 4, h, w)
    c_in = 1 / math.sqrt(sigma**2 + 1)
    # batch of two, as the pipeline builds it: [unconditional (zero image latents, zero embedding), conditional]
    model_in = torch.cat([torch.cat([noisy * c_in, torch.zeros_like(image_latents)], 2),
                          torch.cat([noisy * c_in, image_latents], 2)])  # (2, F, 8, h, w)
    out = unet(model_in, torch.full((2,), 0.25 * math.log(sigma)),
               encoder_hidden_states=torch.cat([torch.zeros_like(embedding), embedding]),
               added_time_ids=torch.tensor([[FPS - 1, bucket, AUG]] * 2, dtype=torch.float32), return_dict=False)[0]
    scale = torch.linspace(1.0, 3.0, num_frames).view(1, num_frames, 1, 1, 1)  # the pipeline's default ramp
    guided = out[:1] + scale * (out[1:] - out[:1])

    def to_x0(v):  # EDM with v-prediction, as EulerDiscreteScheduler undoes it
        return (v * (-sigma / math.sqrt(sigma**2 + 1)) + noisy / (sigma**2 + 1))[0]

    return {"truth": truth, "copy": image_latents[0] * sf, "conditional": to_x0(out[1:]), "guided": to_x0(guided)}


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
            frames = render_clip(seed, bucket, FPS)
            for sigma in SIGMAS:
                est = x0_estimates(pipe, frames, bucket, sigma, generator)
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
