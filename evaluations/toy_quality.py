"""Does the toy SVD do what its knobs say, on any simple picture? Measured with the stock diffusers pipeline.

    python evaluations/toy_quality.py                    # the shipped model, 8 pictures of each kind per setting
    python evaluations/toy_quality.py --model DIR --reference svdkit/toy/model   # a candidate beside the shipped one
    python evaluations/toy_quality.py --samples data/toy_samples     # also the README's sample strip and GIF

Every clip is made by diffusers' own ``StableVideoDiffusionPipeline`` loaded from the model folder: 14 frames,
64x64, 25 steps, guidance 1 -> 3, noise_aug_strength 0.02. Two kinds of first frame:

* **world** - held-out scenes of the world the model was trained on (``svdkit.toy.world``), and
* **drawn** - simple pictures drawn here with PIL by code that shares nothing with the world's renderer: discs,
  boxes, triangles and diamonds in colours outside the world's palette (orange, purple, pink, white, ...), on
  backgrounds of other colours, flat or a two-colour gradient.

Checks (each line prints the measurement, the target and PASS or FAIL; the exit status is 1 if anything failed):

1. shapes kept: over buckets 0, 128 and 255, >= 85% of frames show each shape as one blob of its colour and
   nothing else (``svdkit.toy.world.shapes_kept``), on both kinds together, and >= 75% at bucket 255;
2. motion follows the knobs (world scenes, read back from the pixels): Spearman >= 0.9 of motion against buckets
   {0, 32, 64, 128, 192, 255} at fps 7, bucket 255 >= 3x bucket 0, and at bucket 127 fps 6 >= 2x fps 24;
3. the first frame matches the input: PSNR >= 25 dB on each kind;
4. speed: 25 steps with guidance <= 4 s and 10 steps <= 2 s (median of 5), with ``--reference`` timed in turn.

Beside check 1 it prints the same share for the world's own clips and for their VAE round trips (references).
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

from svdkit.cli_args import count
from svdkit.metrics import psnr
from svdkit.toy import MODEL_PATH, model_world
from svdkit.toy.world import (
    HELD_OUT_SEED,
    detect_shapes,
    pixels_per_frame,
    render_background,
    render_clip,
    scene_colours,
    shapes_kept,
)
from svdkit.video import to_model, to_uint8

BUCKETS = (0, 32, 64, 128, 192, 255)
KEPT_BUCKETS = (0, 128, 255)
SWEEP_FPS = 7
FPS_PAIR = (6, 24)
FPS_BUCKET = 127
FIRST_SEED = HELD_OUT_SEED + 1000  # held-out scenes, distinct from the shipped examples and the training curves

# colours that are none of the palette's (svdkit.toy.world.PALETTE): shapes, and backgrounds
DRAWN_COLOURS = {"orange": (255, 140, 0), "purple": (128, 40, 200), "pink": (255, 120, 190), "white": (250, 250, 250),
                 "lime": (170, 255, 60), "crimson": (170, 0, 40), "black": (10, 10, 10), "gold": (200, 160, 20)}
DRAWN_BACKGROUNDS = [(0, 110, 110), (30, 90, 30), (20, 30, 110), (120, 120, 40), (200, 200, 210), (90, 20, 60),
                     (60, 170, 230), (150, 100, 60)]


# ------------------------------------------------------------------------------ pictures
def drawn_picture(index: int, size: int = 64) -> tuple[np.ndarray, dict, np.ndarray]:
    """Picture ``index``, drawn with PIL: (image (H, W, 3) uint8, shape colours name -> RGB, background (H, W, 3)).

    1-3 shapes of distinct colours that stand out from the background, not overlapping, flat or gradient background.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([index, 77])
    top = np.asarray(DRAWN_BACKGROUNDS[index % len(DRAWN_BACKGROUNDS)], float)
    if index % 2:  # a vertical gradient to a darker shade
        bottom = top * 0.6
        bg = top + (bottom - top) * np.linspace(0, 1, size)[:, None, None]
        bg = np.broadcast_to(bg, (size, size, 3))
    else:
        bg = np.broadcast_to(top, (size, size, 3))
    bg = np.rint(bg).astype(np.uint8)
    far = [c for c in DRAWN_COLOURS if min(np.linalg.norm(np.asarray(DRAWN_COLOURS[c], float) - bg[y, 0])
                                           for y in (0, size - 1)) > 120]
    names = list(rng.choice(far, size=min(len(far), int(rng.integers(1, 4))), replace=False))
    image = Image.fromarray(bg.copy())
    draw = ImageDraw.Draw(image)
    placed: list[tuple[float, float, float]] = []
    colours = {}
    for name in names:
        r = float(rng.uniform(5, 10))
        for _ in range(50):
            x, y = rng.uniform(r + 1, size - r - 1, size=2)
            if all(np.hypot(x - px, y - py) > r + pr + 3 for px, py, pr in placed):
                break
        else:
            continue
        placed.append((x, y, r))
        rgb = DRAWN_COLOURS[name]
        kind = rng.integers(4)
        if kind == 0:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=rgb)
        elif kind == 1:
            draw.rectangle([x - 0.8 * r, y - 0.8 * r, x + 0.8 * r, y + 0.8 * r], fill=rgb)
        elif kind == 2:
            draw.polygon([(x, y - r), (x + 0.87 * r, y + 0.5 * r), (x - 0.87 * r, y + 0.5 * r)], fill=rgb)
        else:
            draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=rgb)
        colours[name] = rgb
    return np.asarray(image), colours, bg.astype(np.float32)


def world_picture(seed: int, world: str) -> tuple[np.ndarray, dict, np.ndarray]:
    return render_clip(seed, num_frames=1, world=world)[0], scene_colours(seed, world=world), \
        render_background(seed, world=world)


# ------------------------------------------------------------------------------ measurements
def motion(frames: np.ndarray, colours: dict, background: np.ndarray) -> float:
    """Mean centroid displacement per frame (pixels) of the shapes seen as exactly one blob in both frames."""
    dets = [detect_shapes(f, colours, background=background) for f in frames]  # frames: (F, H, W, 3)
    steps = []
    for a, b in zip(dets, dets[1:]):
        for name in {d.colour for d in a}:
            da = [d for d in a if d.colour == name]
            db = [d for d in b if d.colour == name]
            if len(da) == 1 and len(db) == 1:
                steps.append(np.hypot(da[0].x - db[0].x, da[0].y - db[0].y))
    return float(np.mean(steps)) if steps else float("nan")


@torch.no_grad()
def vae_round_trip(vae, frames: np.ndarray) -> np.ndarray:
    """uint8 (F, H, W, 3) through the VAE and back (latent mode, temporal decoder): a reference for check 1."""
    x = to_model(frames)  # (F, 3, H, W) in [-1, 1]
    return to_uint8(vae.decode(vae.encode(x).latent_dist.mode(), num_frames=len(frames)).sample)


def spearman(x, y) -> float:
    """Spearman rank correlation (no ties expected)."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


# ------------------------------------------------------------------------------ generation
def generate(pipe, image: np.ndarray, bucket: int, fps: int, seed: int, steps: int = 25) -> np.ndarray:
    """One clip from ``image`` with the stock pipeline, as uint8 (F, H, W, 3)."""
    from PIL import Image

    frames = pipe(Image.fromarray(image), height=64, width=64, num_frames=14, num_inference_steps=steps, fps=fps,
                  motion_bucket_id=bucket, noise_aug_strength=0.02,
                  generator=torch.Generator().manual_seed(seed), output_type="np").frames[0]
    return np.clip(np.rint(frames * 255), 0, 255).astype(np.uint8)


def seconds(pipe, image: np.ndarray, steps: int, repeats: int = 5) -> float:
    generate(pipe, image, 127, 7, 0, steps)  # warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate(pipe, image, 127, 7, 0, steps)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_samples(prefix: Path, rows: dict, truth: np.ndarray, title: str) -> None:
    """The generated clips (and the world's own clip at 255) as filmstrips (PNG) and side by side (GIF), via svdkit."""
    import svdkit
    from svdkit import viz

    fig = viz.plot_filmstrips({**rows, "world, bucket 255": truth}, title=title)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(prefix.with_suffix(".png"), dpi=100, bbox_inches="tight")
    gap = np.full((14, 64, 2, 3), 255, np.uint8)
    side = np.concatenate([x for clip in [*rows.values(), truth] for x in (clip, gap)][:-1], axis=2)  # (F, 64, W, 3)
    svdkit.write_video(prefix.with_suffix(".gif"), side.repeat(2, 1).repeat(2, 2), fps=SWEEP_FPS)
    print(f"samples: {prefix.with_suffix('.png')}, {prefix.with_suffix('.gif')}", flush=True)


LINES: list[str] = []  # everything printed, for --write


def say(text: str = "") -> None:
    print(text, flush=True)
    LINES.append(text)


def report(name: str, value: float, target: str, ok: bool, extra: str = "") -> bool:
    say(f"{'PASS' if ok else 'FAIL'}  {name:<48} {value:8.3f}   target {target:<10} {extra}")
    return ok


def _load(folder: Path):
    from diffusers import StableVideoDiffusionPipeline

    pipe = StableVideoDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 pictures of each kind per setting instead of 8")
    p.add_argument("--scenes", type=count(1), default=None, help="pictures of each kind per setting (default 8)")
    p.add_argument("--model", type=Path, default=MODEL_PATH, help="the pipeline folder to measure")
    p.add_argument("--reference", type=Path, default=None, help="another pipeline folder, timed beside --model")
    p.add_argument("--world", choices=("palette", "broad"), default=None,
                   help="the world of the held-out scenes (default: the one --model was trained on)")
    p.add_argument("--threads", type=count(1), default=2)
    p.add_argument("--no-speed", action="store_true", help="skip check 4 (timings want an otherwise idle machine)")
    p.add_argument("--write", action="store_true", help="also append the results to benchmarks/RESULTS.md")
    p.add_argument("--samples", type=Path, default=None, metavar="PREFIX",
                   help="also write PREFIX.png (filmstrips) and PREFIX.gif (side by side) of a moving scene's clips")
    args = p.parse_args(argv)
    for name, folder in (("--model", args.model), ("--reference", args.reference)):
        if folder is not None and not (folder / "model_index.json").is_file():
            p.error(f"{name}: no diffusers pipeline folder (with model_index.json) at {folder}")
    n = args.scenes or (3 if args.quick else 8)
    world = args.world or model_world(args.model)
    torch.set_num_threads(args.threads)
    pipe = _load(args.model)
    seeds = [FIRST_SEED + i for i in range(n)]
    pictures = {"world": [world_picture(s, world) for s in seeds], "drawn": [drawn_picture(i) for i in range(n)]}
    say(f"toy SVD quality: {n} pictures of each kind per setting, model folder {args.model.name}, world {world}")

    # 1. generate every setting once
    ok = []
    clips = {(kind, b, SWEEP_FPS): [generate(pipe, img, b, SWEEP_FPS, i) for i, (img, _, _) in enumerate(pics)]
             for kind, pics in pictures.items() for b in KEPT_BUCKETS}
    for b, fps in [(b, SWEEP_FPS) for b in BUCKETS] + [(FPS_BUCKET, f) for f in FPS_PAIR]:
        if ("world", b, fps) not in clips:
            clips[("world", b, fps)] = [generate(pipe, img, b, fps, i)
                                        for i, (img, _, _) in enumerate(pictures["world"])]

    if args.samples:  # the first held-out scene whose shapes move far (not one at the centre)
        i = int(np.argmax([np.abs(render_clip(s, 255, SWEEP_FPS, world=world)[-1].astype(int)
                                  - render_clip(s, 255, SWEEP_FPS, world=world)[0]).sum() for s in seeds]))
        write_samples(args.samples, {f"bucket {b}": clips[("world", b, SWEEP_FPS)][i] for b in KEPT_BUCKETS},
                      render_clip(seeds[i], 255, SWEEP_FPS, world=world),
                      f"toy SVD, held-out scene {seeds[i]}, fps {SWEEP_FPS}, 25 steps")

    # 2. shapes kept and first frames, on both kinds of picture
    by_kind, at_top, firsts = {}, [], {}
    for kind, pics in pictures.items():
        shares = []
        for b in KEPT_BUCKETS:
            for (img, colours, bg), clip in zip(pics, clips[(kind, b, SWEEP_FPS)]):
                k = float(shapes_kept(clip, colours, bg).mean())
                shares.append(k)
                at_top += [k] if b == 255 else []
                firsts.setdefault(kind, []).append(psnr(clip[0], img))
        by_kind[kind] = float(np.mean(shares))
    true = [float(shapes_kept(render_clip(s, b, SWEEP_FPS, world=world), c, bg).mean())
            for s, (_, c, bg) in zip(seeds, pictures["world"]) for b in KEPT_BUCKETS]
    trip = [float(shapes_kept(vae_round_trip(pipe.vae, render_clip(s, b, SWEEP_FPS, world=world)), c, bg).mean())
            for s, (_, c, bg) in zip(seeds, pictures["world"]) for b in KEPT_BUCKETS]
    kept = float(np.mean(list(by_kind.values())))
    say(f"\nshapes kept over buckets {KEPT_BUCKETS}: world {by_kind['world']:.3f}, drawn {by_kind['drawn']:.3f}"
          f" (the world's own clips {np.mean(true):.3f}, their VAE round trips {np.mean(trip):.3f})")
    ok.append(report("1a. frames keeping their shapes (both kinds)", kept, ">= 0.85", kept >= 0.85))
    ok.append(report("1b. the same at bucket 255", float(np.mean(at_top)), ">= 0.75", np.mean(at_top) >= 0.75))

    # 3. motion against the knobs, on world scenes
    def mean_motion(b, fps, truth=False):
        pics = pictures["world"]
        made = [render_clip(s, b, fps, world=world) for s in seeds] if truth else clips[("world", b, fps)]
        return float(np.nanmean([motion(c, colours, bg) for c, (_, colours, bg) in zip(made, pics)]))

    say(f"\nmotion (pixels per frame) against motion_bucket_id at fps {SWEEP_FPS}:")
    sweep = [mean_motion(b, SWEEP_FPS) for b in BUCKETS]
    for b, m in zip(BUCKETS, sweep):
        say(f"  bucket {b:3d}: generated {m:5.2f}   true {mean_motion(b, SWEEP_FPS, truth=True):5.2f}"
              f"   (world: {pixels_per_frame(b, SWEEP_FPS):.2f} px/frame)")
    ok.append(report("2a. Spearman(motion, bucket)", spearman(sweep, BUCKETS), ">= 0.9",
                     spearman(sweep, BUCKETS) >= 0.9))
    ratio = sweep[-1] / max(sweep[0], 1e-6)
    ok.append(report("2b. motion at 255 / motion at 0", ratio, ">= 3", ratio >= 3))
    lo, hi = (mean_motion(FPS_BUCKET, f) for f in FPS_PAIR)
    ok.append(report(f"2c. motion fps {FPS_PAIR[0]} / fps {FPS_PAIR[1]} (bucket {FPS_BUCKET})", lo / max(hi, 1e-6),
                     ">= 2", lo / max(hi, 1e-6) >= 2, f"({lo:.2f} and {hi:.2f} px/frame)"))

    # 4. first frames
    say()
    for kind, values in firsts.items():
        ok.append(report(f"3. first-frame PSNR (dB), {kind}", float(np.mean(values)), ">= 25",
                         np.mean(values) >= 25, f"(min {min(values):.1f})"))

    # 5. speed, the reference timed in turn with the same picture
    say()
    image = pictures["world"][0][0]
    reference = _load(args.reference) if args.reference else None
    for steps, limit in () if args.no_speed else ((25, 4.0), (10, 2.0)):
        med = seconds(pipe, image, steps)
        extra = f"(median of 5, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f})"
        if reference is not None:
            ref = seconds(reference, image, steps)
            extra += f"; reference {ref:.2f} s, ratio {med / ref:.2f}"
        ok.append(report(f"4. seconds for 14 frames, {steps} steps, guidance", med, f"<= {limit:g}", med <= limit,
                         extra))

    say(f"\n{sum(ok)}/{len(ok)} passed")
    if args.write:  # the benchmarks' results file, through their writer
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
        from report import append_results
        append_results(f"toy_quality: {args.model.name} ({world} world)", LINES)
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
