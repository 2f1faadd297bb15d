"""How much faster is `svdkit.sweep` than calling the pipeline once per setting? Measured side by side.

    python benchmarks/sweep_speed.py                         # the bundled toy, 8 motion buckets, 25 steps
    python benchmarks/sweep_speed.py --model untrained-toy   # the toy's architecture, untrained (no weights needed)
    python benchmarks/sweep_speed.py --model tiny            # the tests' tiny pipeline
    python benchmarks/sweep_speed.py --write                 # also append the results to benchmarks/RESULTS.md

Both sides make the same 8 clips (motion_bucket_id 0, 36, ..., 255; seed 0; the model's defaults otherwise):

* loop: 8 calls of diffusers' own `pipe(image, motion_bucket_id=..., generator=...)`, frames as numpy;
* sweep: one `svdkit.sweep(...)` into an empty folder, which encodes the image once, runs the 8 points
  through the UNet together, and also writes every clip (mp4), its exact frames (npz), its metrics and its
  JSON row.

One warm-up call runs first, so neither side pays for the first call; then `--repeat` rounds alternate the
two, and each side's best round counts (a busy machine slows single rounds). Prints both times, the ratio,
and how far the sweep's frames are from the loop's (batching changes float rounding: a few values by 1 of 255).

It also prints the ceiling: every point needs its own `num_inference_steps` guided UNet passes (the points
differ in their time ids, which enter every block), so no sweep engine can take less than the UNet alone at
its most efficient batch size. That floor is timed here on the same inputs, at batch 1 and at the sweep's
batch size, and `loop time / floor` is the best speed-up this machine allows.
Exit status 1 when the sweep is less than `--target` (2) times faster.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import svdkit
from svdkit import sweeps
from svdkit.cli_args import count

ROOT = Path(__file__).resolve().parents[1]


def _tests():
    """The test suite's helpers (tests/conftest.py: the tiny pipeline, a test image) from this checkout."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import tests.conftest
    return tests.conftest


def batch_size(text: str):
    """An argparse type: "auto" or an integer >= 1."""
    if text == "auto":
        return text
    try:
        return count(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1, got {text!r}") from None


def load(model: str):
    if model == "toy":
        return svdkit.load_pipeline("toy")
    if model == "untrained-toy":
        from svdkit.toy.train import build_pipeline
        return build_pipeline().to("cpu")
    if model == "tiny":
        return _tests().make_tiny_pipeline(num_frames=14)
    return svdkit.load_pipeline(model)


@torch.inference_mode()
def unet_floor(pipe, table, rounds: int = 3) -> dict:
    """Seconds per point of the UNet passes alone (guided), at batch 1 and at the sweep's batch size."""
    row = table.iloc[0]
    steps, frames = int(row["num_inference_steps"]), int(row["num_frames"])
    h, w = int(row["height"]) // pipe.vae_scale_factor, int(row["width"]) // pipe.vae_scale_factor
    unet = pipe.unet
    c = unet.config
    out = {}
    for b in sorted({1, int(table["batch_size"].max())}):
        n = 2 * b  # with guidance, each point is two rows: unconditional and conditional
        x = torch.randn(n, frames, c.in_channels, h, w, dtype=unet.dtype, device=unet.device)
        emb = torch.randn(n, 1, c.cross_attention_dim, dtype=unet.dtype, device=unet.device)
        ids = torch.tensor([[6.0, 127.0, 0.02]] * n, dtype=unet.dtype, device=unet.device)
        t = torch.full((n,), 0.5, dtype=unet.dtype, device=unet.device)
        unet(x, t, emb, added_time_ids=ids)  # warm-up
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(steps):
                unet(x, t, emb, added_time_ids=ids)
            best = min(best, time.perf_counter() - started)
        out[b] = best / b
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy", help="toy (default), untrained-toy, tiny, or any load_pipeline name")
    parser.add_argument("--points", type=count(2), default=8, help="motion buckets from 0 to 255 (default 8)")
    parser.add_argument("--steps", type=count(1), default=None, help="num_inference_steps (default: the model's, 25)")
    parser.add_argument("--image", default=None, help="input image (default data/example_0.png, else a test image)")
    parser.add_argument("--batch-size", type=batch_size, default="auto",
                        help="points per UNet batch in the sweep (default auto)")
    parser.add_argument("--repeat", type=count(1), default=3, help="rounds of loop-then-sweep; each side's best counts")
    parser.add_argument("--target", type=float, default=2.0, help="required speed-up (default 2)")
    parser.add_argument("--write", action="store_true", help="also append the results to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    lines = []

    def say(text: str) -> None:  # print a result, and keep it for --write
        print(text, flush=True)
        lines.append(text)

    if args.model == "toy":
        from svdkit.toy import MODEL_PATH
        if not (MODEL_PATH / "model_index.json").is_file():
            print(f"The toy model is missing from {MODEL_PATH}; use --model untrained-toy (same architecture, "
                  "same speed) or --model tiny.", file=sys.stderr)
            return 2
    pipe = load(args.model)
    pipe.set_progress_bar_config(disable=True)
    example = ROOT / "data" / "example_0.png"
    if args.image:
        image = svdkit.load_image(args.image)
    elif example.is_file():
        image = svdkit.load_image(example)
    else:
        image = _tests().make_image()
    p = svdkit.sampling.check_params(pipe, {} if args.steps is None else {"num_inference_steps": args.steps})
    buckets = sweeps.linspace(0, 255, args.points)
    common = dict(height=p["height"], width=p["width"], num_frames=p["num_frames"],
                  num_inference_steps=p["num_inference_steps"], fps=p["fps"],
                  noise_aug_strength=p["noise_aug_strength"], decode_chunk_size=p["decode_chunk_size"],
                  min_guidance_scale=p["min_guidance_scale"], max_guidance_scale=p["max_guidance_scale"])
    say(f"model {args.model}: {args.points} motion buckets {buckets}, {p['num_frames']} frames "
        f"{p['height']}x{p['width']}, {p['num_inference_steps']} steps, torch threads {torch.get_num_threads()}")

    def call(bucket):
        return pipe(image, motion_bucket_id=bucket, generator=torch.Generator().manual_seed(0), output_type="np",
                    **common).frames[0]

    call(buckets[0])  # warm-up for both sides
    grid = {"motion_bucket_id": buckets, **{k: v for k, v in common.items() if v is not None}}
    loop_times, sweep_times = [], []
    for _ in range(args.repeat):  # alternate the two, and keep each one's best: robust to a busy machine
        started = time.perf_counter()
        loop = [(np.asarray(call(b)) * 255).round().astype(np.uint8) for b in buckets]
        loop_times.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            table = svdkit.sweep(pipe, image, grid, seeds=[0], out_dir=out, batch_size=args.batch_size, progress=False)
            sweep_times.append(time.perf_counter() - started)
            frames = [sweeps.load_frames(row) for _, row in table.iterrows()]
            batch = int(table["batch_size"].max())
    loop_s, sweep_s = min(loop_times), min(sweep_times)

    diffs = [np.abs(a.astype(int) - b.astype(int)) for a, b in zip(loop, frames)]
    ratio = loop_s / sweep_s
    say(f"loop of pipe(...) calls: {loop_s:7.2f} s  ({loop_s / len(buckets):.2f} s a clip)  "
        f"rounds: {' '.join(f'{t:.1f}' for t in loop_times)}")
    say(f"svdkit.sweep (batch {batch}):  {sweep_s:7.2f} s  ({sweep_s / len(buckets):.2f} s a clip, "
        f"files and metrics included)  rounds: {' '.join(f'{t:.1f}' for t in sweep_times)}")
    say(f"speed-up: {ratio:.2f}x (target >= {args.target:g}x)  {'PASS' if ratio >= args.target else 'FAIL'}")
    floor = unet_floor(pipe, table)
    best = min(floor.values())
    per_batch = ", ".join(f"{s:.2f} s a point at batch {b}" for b, s in floor.items())
    say(f"ceiling: the UNet passes alone take {per_batch};"
        f" no sweep can beat {loop_s / len(buckets):.2f} / {best:.2f} = {loop_s / len(buckets) / best:.2f}x here")
    say(f"frames vs the loop: max |diff| {max(d.max() for d in diffs)}, "
        f"{100 * min((d == 0).mean() for d in diffs):.3f}% of values equal (worst clip)")
    if args.write:
        from report import append_results  # benchmarks/report.py, beside this script
        append_results("sweep_speed: svdkit.sweep against a loop of pipeline calls", lines)
        print("appended to benchmarks/RESULTS.md")
    return 0 if ratio >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
