"""Does the toy SVD do what its knobs say? Five measurements on held-out scenes, with the stock pipeline.

    python benchmarks/toy_quality.py            # 8 scenes per setting (about 2 minutes on 2 CPU cores)
    python benchmarks/toy_quality.py --quick    # 3 scenes per setting, for CI
    python benchmarks/toy_quality.py --samples data/toy_samples   # also the README's sample strip and GIF

Every clip is made by diffusers' own ``StableVideoDiffusionPipeline`` loaded from the toy model folder:
14 frames, 64x64, 25 steps, guidance 1 -> 3, noise_aug_strength 0.02. Motion is read back from the
pixels with the world's colour detector: each palette colour that is one blob in two consecutive
frames gives one displacement of its centroid, in pixels.

1. motion follows the bucket: Spearman rank correlation of motion with motion_bucket_id >= 0.9 over
   buckets {0, 32, 64, 128, 192, 255} (fps 7), and bucket 255 moves >= 3x bucket 0;
2. fps follows its meaning: at bucket 127, pixels per frame at fps 6 >= 2x those at fps 24;
3. the first frame matches the input: PSNR >= 25 dB;
4. shapes keep their count and colour: >= 85% of frames show one blob of each colour of the scene;
5. speed: 25 steps with guidance <= 2 s and 10 steps <= 1 s (median of 5 runs).

Each line prints the measurement, the target and PASS or FAIL; the exit status is 1 if anything failed.
The same motion measure on the rendered (true) clips is printed beside it as a reference; for check 4
also the true clips' VAE round trips (encode, decode: what the encoder's own latents look like once decoded;
a reference, not a bound, since a UNet may make latents that decode cleaner) and the share of each frame index.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from svdkit.toy import MODEL_PATH  # noqa: E402
from svdkit.cli_args import count  # noqa: E402
from svdkit.video import to_model as _to_model, to_uint8  # noqa: E402
from svdkit.toy.world import HELD_OUT_SEED, describe_scene, detect_shapes, pixels_per_frame, render_clip  # noqa: E402

BUCKETS = (0, 32, 64, 128, 192, 255)
SWEEP_FPS = 7
FPS_PAIR = (6, 24)
FPS_BUCKET = 127
FIRST_SEED = HELD_OUT_SEED + 1000  # held-out scenes, distinct from the shipped examples


# ------------------------------------------------------------------------------ measurements
def motion(frames: np.ndarray) -> float:
    """Mean centroid displacement per frame (pixels) of colours seen as exactly one blob in both frames."""
    dets = [detect_shapes(f) for f in frames]  # frames: (F, H, W, 3)
    steps = []
    for a, b in zip(dets, dets[1:]):
        for colour in {d.colour for d in a}:
            da = [d for d in a if d.colour == colour]
            db = [d for d in b if d.colour == colour]
            if len(da) == 1 and len(db) == 1:
                steps.append(np.hypot(da[0].x - db[0].x, da[0].y - db[0].y))
    return float(np.mean(steps)) if steps else float("nan")


def kept_by_frame(frames: np.ndarray, seed: int) -> np.ndarray:
    """Per frame (F,): 1.0 where each colour of the scene is exactly one blob and no other colour shows."""
    want = sorted(s.colour for s in describe_scene(seed).shapes)
    return np.asarray([sorted(d.colour for d in detect_shapes(f)) == want for f in frames], float)


def shapes_kept(frames: np.ndarray, seed: int) -> float:
    """Fraction of frames in which each colour of the scene is exactly one blob, and no other colour shows."""
    return float(kept_by_frame(frames, seed).mean())


@torch.no_grad()
def vae_round_trip(vae, frames: np.ndarray) -> np.ndarray:
    """uint8 (F, H, W, 3) through the VAE and back (latent mode, temporal decoder): the encoder's
    latents of the true clip, decoded: a reference for check 4."""
    x = _to_model(frames)  # (F, 3, H, W) in [-1, 1]
    return to_uint8(vae.decode(vae.encode(x).latent_dist.mode(), num_frames=len(frames)).sample)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def spearman(x, y) -> float:
    """Spearman rank correlation (no ties expected)."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


# ------------------------------------------------------------------------------ generation
def generate(pipe, seed: int, bucket: int, fps: int, steps: int = 25) -> np.ndarray:
    """One clip of held-out scene ``seed`` with the stock pipeline, as uint8 (F, H, W, 3)."""
    from PIL import Image

    image = Image.fromarray(render_clip(seed)[0])
    frames = pipe(image, height=64, width=64, num_frames=14, num_inference_steps=steps, fps=fps,
                  motion_bucket_id=bucket, noise_aug_strength=0.02,
                  generator=torch.Generator().manual_seed(seed), output_type="np").frames[0]
    return np.clip(np.rint(frames * 255), 0, 255).astype(np.uint8)


def write_samples(prefix: Path, rows: dict, seed: int) -> None:
    """The generated clips (and the world's own clip at 255) as filmstrips (PNG) and side by side (GIF), via svdkit."""
    import svdkit
    from svdkit import viz

    fig = viz.plot_filmstrips({**rows, "world, bucket 255": render_clip(seed, 255, SWEEP_FPS)},
                              title=f"toy SVD, held-out scene {seed}, fps {SWEEP_FPS}, 25 steps")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(prefix.with_suffix(".png"), dpi=100, bbox_inches="tight")
    gap = np.full((14, 64, 2, 3), 255, np.uint8)
    side = np.concatenate([x for clip in rows.values() for x in (clip, gap)][:-1], axis=2)  # (F, 64, W, 3)
    svdkit.write_video(prefix.with_suffix(".gif"), side.repeat(2, 1).repeat(2, 2), fps=SWEEP_FPS)
    print(f"samples: {prefix.with_suffix('.png')}, {prefix.with_suffix('.gif')} ({', '.join(rows)})", flush=True)


def report(name: str, value: float, target: str, ok: bool, extra: str = "") -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {name:<44} {value:8.3f}   target {target:<12} {extra}", flush=True)
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 scenes per setting instead of 8")
    p.add_argument("--scenes", type=count(1), default=None)
    p.add_argument("--model", type=Path, default=MODEL_PATH)
    p.add_argument("--threads", type=count(1), default=2)
    p.add_argument("--samples", type=Path, default=None, metavar="PREFIX",
                   help="also write PREFIX.png (filmstrips) and PREFIX.gif (side by side) of the first scene's clips")
    args = p.parse_args(argv)
    if not (args.model / "model_index.json").is_file():
        p.error(f"--model: no diffusers pipeline folder (with model_index.json) at {args.model}")
    n = args.scenes or (3 if args.quick else 8)
    torch.set_num_threads(args.threads)

    from diffusers import StableVideoDiffusionPipeline

    pipe = StableVideoDiffusionPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    seeds = [FIRST_SEED + i for i in range(n)]
    print(f"toy SVD quality: {n} held-out scenes per setting, model {args.model}", flush=True)

    # 1. generate every setting once
    settings = [(b, SWEEP_FPS) for b in BUCKETS] + [(FPS_BUCKET, f) for f in FPS_PAIR]
    clips: dict[tuple[int, int], list[np.ndarray]] = {}
    for bucket, fps in dict.fromkeys(settings):
        clips[(bucket, fps)] = [generate(pipe, s, bucket, fps) for s in seeds]

    if args.samples:
        write_samples(args.samples, {f"bucket {b}": clips[(b, SWEEP_FPS)][0] for b in (0, 128, 255)}, seeds[0])

    true = {key: [render_clip(s, *key) for s in seeds] for key in clips}  # the world's own clips, same settings

    def mean_motion(key, true_clips=False):
        return float(np.nanmean([motion(c) for c in (true if true_clips else clips)[key]]))

    # 2. motion against the bucket
    ok = []
    print(f"\nmotion (pixels per frame) against motion_bucket_id at fps {SWEEP_FPS}:")
    sweep = [mean_motion((b, SWEEP_FPS)) for b in BUCKETS]
    for b, m in zip(BUCKETS, sweep):
        print(f"  bucket {b:3d}: generated {m:5.2f}   true {mean_motion((b, SWEEP_FPS), true_clips=True):5.2f}"
              f"   (world: {pixels_per_frame(b, SWEEP_FPS):.2f} px/frame)")
    ok.append(report("1a. Spearman(motion, bucket)", spearman(sweep, BUCKETS), ">= 0.9",
                     spearman(sweep, BUCKETS) >= 0.9))
    ratio = sweep[-1] / max(sweep[0], 1e-6)
    ok.append(report("1b. motion at 255 / motion at 0", ratio, ">= 3", ratio >= 3))

    # 3. fps
    lo, hi = (mean_motion((FPS_BUCKET, f)) for f in FPS_PAIR)
    print(f"\nmotion at bucket {FPS_BUCKET}: fps {FPS_PAIR[0]} {lo:.2f} px/frame, fps {FPS_PAIR[1]} {hi:.2f}"
          f" (true {mean_motion((FPS_BUCKET, FPS_PAIR[0]), true_clips=True):.2f} and"
          f" {mean_motion((FPS_BUCKET, FPS_PAIR[1]), true_clips=True):.2f})")
    ok.append(report(f"2. motion fps {FPS_PAIR[0]} / fps {FPS_PAIR[1]}", lo / max(hi, 1e-6), ">= 2",
                     lo / max(hi, 1e-6) >= 2))

    # 4. first frame and shapes, over every generated clip
    print()
    firsts = [psnr(c[0], render_clip(s)[0]) for key in clips for s, c in zip(seeds, clips[key])]
    ok.append(report("3. first frame PSNR (dB), mean", float(np.mean(firsts)), ">= 25", np.mean(firsts) >= 25,
                     f"(min {min(firsts):.1f})"))
    by_frame = np.mean([kept_by_frame(c, s) for key in clips for s, c in zip(seeds, clips[key])], 0)  # (F,)
    kept = float(by_frame.mean())
    kept_true = float(np.mean([shapes_kept(c, s) for key in clips for s, c in zip(seeds, true[key])]))
    # a reference, not a bound: the true clips' own latents, decoded
    kept_vae = float(np.mean([shapes_kept(vae_round_trip(pipe.vae, c), s) for key in clips
                              for s, c in zip(seeds, true[key])]))
    ok.append(report("4. frames with the scene's shapes (fraction)", kept, ">= 0.85", kept >= 0.85,
                     f"(true clips: {kept_true:.3f}, their VAE round trips: {kept_vae:.3f})"))
    print(f"   by frame, 0 to {len(by_frame) - 1}: {' '.join(f'{v:.2f}' for v in by_frame)}")

    # 5. speed
    print()
    for steps, limit in ((25, 2.0), (10, 1.0)):
        generate(pipe, seeds[0], 127, 7, steps)  # warm up
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            generate(pipe, seeds[0], 127, 7, steps)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        ok.append(report(f"5. seconds for 14 frames, {steps} steps, guidance", med, f"<= {limit:g}", med <= limit,
                         f"(median of 5, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f})"))

    print(f"\n{sum(ok)}/{len(ok)} passed")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
