"""Measure what fine-tuning SVD-XT costs: peak GPU memory and seconds per step of `svdkit.finetune`.

For each method (lora, temporal, full), with and without gradient checkpointing, at 14 and 25 frames and at
576x1024 and 320x512, one short run of `svdkit.finetune` on one synthetic clip, batch 1, bf16 autocast (where the
GPU has it), AdamW: the peak memory PyTorch's allocator held during the training steps (after the clip's latents
and embeddings are cached), and the mean seconds of the steps after the first. A configuration that runs out of
memory is reported as such. The weights are random (`load_pipeline("svd-xt", weights="random")`): time and memory
depend on the architecture, not on what the weights learned. LoRA keeps the frozen UNet in fp16; temporal and full
hold it in fp32 (see the `svdkit.finetune` docstring).

    python benchmarks/finetune_memory.py                      # on a CUDA GPU: the real size, every configuration
    python benchmarks/finetune_memory.py --methods lora --frames 14 --sizes 576x1024
    python benchmarks/finetune_memory.py --tiny               # a tiny stand-in on the CPU (CI)
    python benchmarks/finetune_memory.py --write              # also append the table to benchmarks/RESULTS.md

Without CUDA, --tiny is implied. Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import svdkit
from svdkit.fine_tuning import trainable_parameters

METHODS = ("lora", "temporal", "full")


def synthetic_clip(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 (F, H, W, 3): a bright square sliding over a gradient, so that the frames differ."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, 0.5 + 0 * x], -1) * 200
    frames = np.repeat(base[None], num_frames, 0)
    side = max(4, height // 6)
    colour = rng.integers(0, 255, 3)
    for t in range(num_frames):
        left = (t * max(1, width // (4 * num_frames))) % (width - side)
        frames[t, height // 3: height // 3 + side, left: left + side] = colour
    return frames.astype(np.uint8)


def run_config(method: str, checkpointing: bool, frames: int, height: int, width: int, *, tiny: bool, steps: int,
               device: str) -> dict:
    """One short fine-tune; returns its row (peak memory in GiB on CUDA, None on the CPU)."""
    pipe = svdkit.load_pipeline("svd-xt", weights="random-tiny" if tiny else "random", device=device,
                                dtype="fp32" if tiny else "fp16", memory="fast")
    clip = synthetic_clip(frames + 1, height, width)
    times = []

    def tick(step, loss):  # after each step; the first one's time (optimizer state, warm-up) is left out
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    row = dict(method=method, checkpointing=checkpointing, frames=frames, height=height, width=width)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        try:
            svdkit.finetune(pipe, [clip], method=method, out_dir=out, steps=steps, num_frames=frames,
                            height=height, width=width, fps=7, motion_bucket_id=127,
                            gradient_checkpointing=checkpointing, progress=False, callback=tick,
                            checkpoint_every=10**6)
            row["status"] = "ok"
        except torch.cuda.OutOfMemoryError:
            row["status"] = "out of memory"
    row["trained_parameters_m"] = round(sum(p.numel() for p in trainable_parameters(pipe.unet, method).values())
                                        / 1e6, 3)
    row["seconds_per_step"] = float(np.mean(np.diff(times))) if len(times) >= 2 else None
    row["peak_allocated_gib"] = (round(torch.cuda.max_memory_allocated() / 2**30, 2)
                                 if device.startswith("cuda") else None)
    del pipe
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return row


def table(rows: list[dict]) -> list[str]:
    lines = [f"{'method':9} {'ckpt':5} {'frames':>6} {'size':>9} {'trained M':>10} {'peak GiB':>9} {'s/step':>8}"
             "  status"]
    for r in rows:
        peak = "-" if r["peak_allocated_gib"] is None else f"{r['peak_allocated_gib']:.2f}"
        sec = "-" if r["seconds_per_step"] is None else f"{r['seconds_per_step']:.3f}"
        lines.append(f"{r['method']:9} {'yes' if r['checkpointing'] else 'no':5} {r['frames']:>6} "
                     f"{r['height']}x{r['width']:<4} {r['trained_parameters_m']:>10.2f} {peak:>9} {sec:>8}  "
                     f"{r['status']}")
    return lines


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="the tiny stand-in on the CPU (implied without CUDA)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of " + ", ".join(METHODS))
    ap.add_argument("--frames", default=None, help="comma-separated frame counts (14,25; 4 with --tiny)")
    ap.add_argument("--sizes", default=None, help="comma-separated HxW (576x1024,320x512; 64x64 with --tiny)")
    ap.add_argument("--steps", type=int, default=None, help="steps a run (4; 2 with --tiny); the first is not timed")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/finetune_memory[_tiny].json)")
    ap.add_argument("--write", action="store_true", help="also append the table to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    methods = args.methods.split(",")
    if not set(methods) <= set(METHODS):
        ap.error(f"--methods must be of {', '.join(METHODS)}; got {args.methods}")
    frames = [int(f) for f in (args.frames or ("4" if tiny else "14,25")).split(",")]
    sizes = [tuple(int(v) for v in s.split("x")) for s in (args.sizes or ("64x64" if tiny else "576x1024,320x512"))
             .split(",")]
    steps = args.steps or (2 if tiny else 4)
    device = "cpu" if tiny else "cuda"
    torch.manual_seed(0)
    rows = []
    for f in frames:
        for h, w in sizes:
            for method in methods:
                for checkpointing in (False, True):
                    rows.append(run_config(method, checkpointing, f, h, w, tiny=tiny, steps=steps, device=device))
                    print(table(rows)[-1], flush=True)
    gpu = torch.cuda.get_device_name() if cuda and not tiny else None
    result = {"model": "svd-xt", "size": "tiny" if tiny else "real", "random_weights": True, "device": gpu or "cpu",
              "steps": steps, "batch_size": 1, "optimizer": "adamw", "mixed_precision": "auto", "results": rows}
    out = Path(args.out or Path(__file__).parent / "results" / f"finetune_memory{'_tiny' if tiny else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    lines = table(rows)
    print("\n".join(lines))
    if args.write:
        sys.path.insert(0, str(Path(__file__).parent))
        from report import append_results
        append_results("finetune_memory" + (" (tiny, CPU)" if tiny else f" ({gpu})"), lines)
    return result


if __name__ == "__main__":
    main()
