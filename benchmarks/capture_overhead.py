"""What does `capture=True` cost? Times generate() with and without capture, side by side in one run.

    python benchmarks/capture_overhead.py            # the bundled toy, 14 frames, 25 steps, 7 repeats
    python benchmarks/capture_overhead.py --repeats 3 --steps 10
    python benchmarks/capture_overhead.py --write    # also append the results to benchmarks/RESULTS.md

Runs alternate (plain, capture, plain, capture, ...) so that both see the same machine load; the ratio of
the medians is printed. Target: capture costs under 10% extra time (ratio < 1.10).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import svdkit

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="toy")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--write", action="store_true", help="also append the results to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    pipe = svdkit.load_pipeline(args.model)
    image = ROOT / "data" / "example_0.png"
    kwargs = dict(num_inference_steps=args.steps, seed=0)
    plain = svdkit.generate(pipe, image, **kwargs)  # warm-up, and the reference frames
    captured = svdkit.generate(pipe, image, capture=True, **kwargs)
    assert np.array_equal(plain.frames, captured.frames), "capture changed the frames"

    times = {"plain": [], "capture": []}
    for _ in range(args.repeats):
        for mode in times:
            start = time.perf_counter()
            svdkit.generate(pipe, image, capture=(mode == "capture"), **kwargs)
            times[mode].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["capture"] / med["plain"]
    tr = captured.trace
    mb = sum(t.numel() * t.element_size() for t in tr._tensors().values()) / 2**20
    verdict = "PASS" if ratio < 1.10 else "FAIL"
    lines = [f"model {args.model}, {tr.x0.shape[1]} frames, {args.steps} steps, {args.repeats} repeats, "
             f"{torch.get_num_threads()} threads",
             f"plain   median {med['plain']:.3f} s   (runs: {', '.join(f'{t:.3f}' for t in times['plain'])})",
             f"capture median {med['capture']:.3f} s   (runs: {', '.join(f'{t:.3f}' for t in times['capture'])})",
             f"trace size {mb:.2f} MiB",
             f"{verdict}  capture / plain = {ratio:.3f}   target < 1.10"]
    print("\n".join(lines))
    if args.write:
        from report import append_results  # benchmarks/report.py, beside this script
        append_results("capture_overhead: what capture=True costs", lines)
        print("appended to benchmarks/RESULTS.md")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
