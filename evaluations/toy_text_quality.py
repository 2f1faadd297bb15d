"""Does the toy text-to-image model draw what the prompt says? Measured on held-out captions.

    python evaluations/toy_text_quality.py            # 300 held-out captions (about a minute on 2 CPU cores)
    python evaluations/toy_text_quality.py --quick    # 60 captions, for CI

Every image is drawn by diffusers' own ``StableDiffusionPipeline`` loaded from the bundled folder, with the
registry's settings for "toy" (25 DDIM steps, guidance 4, 64x64), one seed per caption. The captions are
those of scenes the model never saw (seeds >= HELD_OUT_SEED). Each image is read back with
``svdkit.text.find_objects``: for each palette colour (the pixels within 90 of it, as
``svdkit.toy.world.detect_shapes`` finds them), its largest blob, and the shape two moments of that blob
suggest (the skewness of its rows picks out the upward triangle; how far its mass reaches along the axes
rather than the diagonals tells square, circle and diamond apart; a blob under 0.75 of its convex hull's
area, less convex than any shape of the world, is no shape).

1. colours: every colour the caption names has a blob (per image; target >= 80%);
2. colours + shapes: and every named shape is that colour's blob's shape (per image; target >= 80%).

Per-object rates, extra colours (drawn but not named), and the same detector on the true rendered frames
and on their VAE reconstructions (references: drawings can score higher than round trips) are printed beside them.
Each line prints the measurement, the target and PASS or FAIL; the exit status is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from svdkit.text import TEXT_MODELS, check_prompt
from svdkit.toy import TEXT_MODEL_PATH
from svdkit.toy.world import HELD_OUT_SEED, PALETTE, SHAPE_KINDS, caption, render_clip

TARGET = 0.80
FIRST_SEED = HELD_OUT_SEED + 2000  # held-out scenes, apart from those the examples and tests use


def rates(checks: list[dict]) -> dict:
    """Per-image and per-object success rates of a list of `check_prompt` results."""
    objects = [(c, s, {tuple(f) for f in r["found"]}, {f[0] for f in r["found"]})
               for r in checks for c, s in r["wanted"]]
    return {
        "colours": float(np.mean([r["colours_ok"] for r in checks])),
        "colours_shapes": float(np.mean([r["shapes_ok"] for r in checks])),
        "object_colours": float(np.mean([c in cols for c, _, _, cols in objects])),
        "object_colours_shapes": float(np.mean([(c, s) in found for c, s, found, _ in objects])),
        "extra_colours": float(np.mean([bool(r["extra"]) for r in checks])),
        # per object, by what it is: is a named colour there, and is a named shape there in its colour
        "by_colour": {colour: float(np.mean([c in cols for c, _, _, cols in objects if c == colour]))
                      for colour in PALETTE if any(c == colour for c, *_ in objects)},
        "by_shape": {shape: float(np.mean([(c, s) in found for c, s, found, _ in objects if s == shape]))
                     for shape in SHAPE_KINDS if any(s == shape for _, s, *_ in objects)},
    }


@torch.no_grad()
def draw(pipe, prompts: list[str], seeds: list[int], *, steps: int, guidance_scale: float, batch: int = 50):
    """Images (N, H, W, 3) uint8 for the prompts, one CPU generator per prompt."""
    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i: i + batch]]
        images = pipe(prompts[i: i + batch], num_inference_steps=steps, guidance_scale=guidance_scale,
                      generator=gens, output_type="np").images  # (B, H, W, 3) in [0, 1]
        out.append((images * 255).round().astype(np.uint8))
    return np.concatenate(out)


@torch.no_grad()
def reconstruct(vae, frames: np.ndarray) -> np.ndarray:
    """The VAE's round trip of uint8 frames (N, H, W, 3)."""
    x = torch.from_numpy(frames).float().permute(0, 3, 1, 2) / 127.5 - 1  # (N, 3, H, W) in [-1, 1]
    y = vae.decode(vae.encode(x).latent_dist.mode()).sample
    return ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def main(argv=None) -> int:
    spec = TEXT_MODELS["toy"]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="60 captions instead of 300")
    p.add_argument("--n", type=int, default=None, help="number of held-out captions")
    p.add_argument("--model", default=str(TEXT_MODEL_PATH), help="a StableDiffusionPipeline folder")
    p.add_argument("--steps", type=int, default=spec.num_inference_steps)
    p.add_argument("--guidance-scale", type=float, default=spec.guidance_scale)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    n = args.n or (60 if args.quick else 300)
    torch.set_num_threads(args.threads)
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    seeds = list(range(FIRST_SEED, FIRST_SEED + n))
    prompts = [caption(s) for s in seeds]

    t0 = time.perf_counter()
    images = draw(pipe, prompts, seeds, steps=args.steps, guidance_scale=args.guidance_scale)
    seconds = time.perf_counter() - t0
    truth = np.stack([render_clip(s, num_frames=1)[0] for s in seeds])
    result = {
        "n": n, "steps": args.steps, "guidance_scale": args.guidance_scale,
        "seconds_per_image": round(seconds / n, 4),
        "generated": rates([check_prompt(im, pr) for im, pr in zip(images, prompts)]),
        "true_frames": rates([check_prompt(im, pr) for im, pr in zip(truth, prompts)]),
        "vae_round_trip": rates([check_prompt(im, pr) for im, pr in zip(reconstruct(pipe.vae, truth), prompts)]),
    }

    print(f"toy text-to-image on {n} held-out captions ({args.steps} steps, guidance {args.guidance_scale}, "
          f"{result['seconds_per_image'] * 1000:.0f} ms an image)")
    print(f"{'':28s}{'generated':>10s}{'true':>8s}{'VAE':>8s}")
    for key, label in (("colours", "colours (per image)"), ("colours_shapes", "colours+shapes (per image)"),
                       ("object_colours", "colours (per object)"),
                       ("object_colours_shapes", "colours+shapes (per object)"),
                       ("extra_colours", "images with extra colours")):
        print(f"{label:28s}" + "".join(f"{result[k][key]:>{w}.1%}" for k, w in
                                       (("generated", 10), ("true_frames", 8), ("vae_round_trip", 8))))
    for key, label in (("by_colour", "colour found, by colour"), ("by_shape", "colour+shape found, by shape")):
        print(f"{label}: " + ", ".join(f"{k} {v:.0%}" for k, v in result["generated"][key].items()))
    failed = 0
    for key, label in (("colours", "named colours present"), ("colours_shapes", "named colours with their shapes")):
        value = result["generated"][key]
        ok = value >= TARGET
        failed += not ok
        print(f"{label}: {value:.1%} of images (target >= {TARGET:.0%})  {'PASS' if ok else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
