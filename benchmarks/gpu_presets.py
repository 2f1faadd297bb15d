"""Measure svdkit's memory presets and speed-ups against the stock diffusers pipeline, for SVD-XT.

One run measures, for each configuration, on one clip (25 frames, 576x1024, 25 steps, guidance 1 -> 3):
seconds per denoising step, end-to-end seconds, peak GPU memory (PyTorch's allocator and the driver's view),
the speed-up over stock, and the achieved TFLOP/s against the FLOPs of the run (counted on the meta device),
as a fraction of the GPU's dense fp16/bf16 peak and of a big matmul measured on the spot.

The weights are random (`load_pipeline(..., weights="random")`): time and memory depend on the architecture,
not on what the weights learned. Frames are compared with the "fast" configuration's frames (mean absolute
difference, 0-255) to show what the approximate speed-ups change.

    python benchmarks/gpu_presets.py                              # on a CUDA GPU: the real size
    python benchmarks/gpu_presets.py --configs stock,fast,low     # some configurations only
    python benchmarks/gpu_presets.py --configs fast+compile --append   # add to an earlier JSON
    python benchmarks/gpu_presets.py --tiny                       # a tiny stand-in on the CPU (CI)
    python benchmarks/gpu_presets.py --write                      # also append the table to benchmarks/RESULTS.md

Without CUDA, --tiny is implied. Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import svdkit
from svdkit.speed import count_flops, to_channels_last

# name: (what it is, load_pipeline keywords, generate keywords). "stock" calls the diffusers pipeline itself.
CONFIGS: dict[str, tuple[str, dict, dict]] = {
    "stock": ("diffusers StableVideoDiffusionPipeline.__call__, everything on the GPU, its defaults",
              dict(memory="fast"), {}),
    "fast": ("svdkit.generate, memory='fast': everything on the GPU, CFG batched, SDPA attention",
             dict(memory="fast"), {}),
    "fast+channels_last": ("fast, with the UNet and VAE in channels_last memory format",
                           dict(memory="fast"), dict(channels_last=True)),
    "fast+compile": ("fast, UNet blocks and VAE decoder compiled (load_pipeline(compile=True))",
                     dict(memory="fast", compile=True), {}),
    "fast+cache2": ("fast, step caching: full UNet every 2nd step (generate(cache_interval=2))",
                    dict(memory="fast"), dict(cache_interval=2)),
    "fast+cache3": ("fast, step caching: full UNet every 3rd step", dict(memory="fast"), dict(cache_interval=3)),
    "fast+compile+cache2": ("fast, compiled, and step caching every 2nd step",
                            dict(memory="fast", compile=True), dict(cache_interval=2)),
    "fast+skip_uncond": ("fast, unconditional pass only on frames with guidance != 1 (generate(skip_uncond=True))",
                         dict(memory="fast"), dict(skip_uncond=True)),
    "balanced": ("memory='balanced': model CPU offload, decoding 8 frames at a time", dict(memory="balanced"), {}),
    "low": ("memory='low': offload, UNet forward chunking, decoding 2 frames at a time", dict(memory="low"), {}),
}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
TINY_SKIP = ("compile",)  # compiling on a CPU needs a C++ toolchain and minutes: not for CI

# Dense fp16/bf16 tensor-core peaks from the vendor's spec sheets, TFLOP/s (no sparsity).
SPEC_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class _DriverPeak:
    """Samples the driver's used memory (total - free, every process and the CUDA context) in a thread."""

    def __init__(self, device: str, every: float = 0.02):
        self.device, self.every, self.peak = device, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            free, total = torch.cuda.mem_get_info()
            self.peak = max(self.peak, total - free)
            time.sleep(self.every)

    def __enter__(self):
        if self.device.startswith("cuda"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            free, total = torch.cuda.mem_get_info()
            self.peak = max(self.peak, total - free)


def _spec_peak(name: str) -> float | None:
    for key, value in SPEC_PEAK_TFLOPS.items():  # most specific first
        if all(word in name for word in key.split()):
            return value
    return None


def measure_matmul_tflops(device: str, dtype: torch.dtype, n: int = 8192, iters: int = 30) -> float | None:
    """The TFLOP/s of a big square matmul: what this GPU really reaches on the easiest workload."""
    if not device.startswith("cuda"):
        return None
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    _sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - start) / 1e12


def run_flops(flops: dict, uncond_reduced: dict, steps: int, gen: dict) -> int:
    """The FLOPs of one clip under a configuration (guidance on, as with SVD's 1 -> 3 ramp)."""
    k = gen.get("cache_interval", 1)
    full = -(-steps // k)  # steps 0, k, 2k, ... run the full UNet
    if gen.get("skip_uncond"):  # two calls per step: conditional (1 x F), unconditional (1 x F-1)
        unet = full * (flops["unet"] / 2 + uncond_reduced["unet"])
        unet += (steps - full) * (flops["unet_shallow"] / 2 + uncond_reduced["unet_shallow"])
    else:
        unet = full * flops["unet"] + (steps - full) * flops["unet_shallow"]
    return int(unet + flops["decode"] + flops["encode"] + flops["clip"])


def input_image(width: int, height: int):
    """A smooth synthetic RGB image (the weights are random: any image will do)."""
    from PIL import Image
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 37.0) * np.cos(y / 23.0)], -1)
    return Image.fromarray((rgb * 255).astype(np.uint8))


def run_config(name: str, args, image, device: str, dtype: str) -> tuple[dict, np.ndarray]:
    """Load, warm up, then time one clip; returns (result row, frames)."""
    doc, load_kw, gen = CONFIGS[name]
    gen = dict(gen)
    channels_last = gen.pop("channels_last", False)
    cuda = device.startswith("cuda")
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    pipe = svdkit.load_pipeline(args.model, weights="random-tiny" if args.tiny else "random", device=device,
                                dtype=dtype, **load_kw)
    if channels_last:
        to_channels_last(pipe)
    load_s = time.perf_counter() - started
    weights_gib = torch.cuda.memory_allocated() / 2**30 if cuda else None
    size = dict(height=args.height, width=args.width, num_frames=args.frames)

    marks: list[float] = []
    finite = []

    def tick(latents):
        _sync(device)
        marks.append(time.perf_counter())
        if len(marks) == args.steps:  # random weights in half precision: check nothing overflowed
            finite.append(bool(torch.isfinite(latents).all()))

    def clip(steps: int) -> np.ndarray:
        if name == "stock":
            out = pipe(image, **size, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
                       output_type="np", callback_on_step_end=lambda p, i, t, kw: (tick(kw["latents"]), kw)[1]
                       ).frames[0]
            return (out * 255).round().astype(np.uint8)
        return svdkit.generate(pipe, image, seed=0, num_inference_steps=steps, **size,
                               on_step=lambda p, i, t, tensors: tick(tensors["latents"]), **gen).frames

    # Warm up on a GPU: the first calls pay cuDNN's choices, allocator growth and any compilation.
    started = time.perf_counter()
    if cuda:
        clip(max(2, gen.get("cache_interval", 1)))
        _sync(device)
    warmup_s = time.perf_counter() - started
    marks.clear()
    finite.clear()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with _DriverPeak(device) as driver:
        started = time.perf_counter()
        frames = clip(args.steps)
        _sync(device)
        ended = time.perf_counter()
    row = dict(config=name, doc=doc, load=load_kw, generate=gen, channels_last=channels_last,
               seconds_total=ended - started, seconds_per_step=(marks[-1] - marks[0]) / (len(marks) - 1),
               seconds_decode=ended - marks[-1], seconds_load=load_s, seconds_warmup=warmup_s,
               latents_finite=finite[-1],
               weights_gib=weights_gib,
               peak_allocated_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
               peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
               driver_peak_used_gib=driver.peak / 2**30 if cuda else None)
    pipe = None  # drop the weights before the next configuration loads its own
    return row, frames


def derive(result: dict) -> dict:
    """Add the ratios, FLOP rates and targets that follow from the measured rows."""
    rows = {r["config"]: r for r in result["results"]}
    flops, steps = result["flops"], result["steps"]
    reduced = dict(unet=result["flops_skip_uncond_call"], unet_shallow=result["flops_skip_uncond_call_shallow"])
    spec, matmul = result["peak_tflops"]["spec"], result["peak_tflops"]["matmul_measured"]

    def ok(r):
        return r is not None and not r.get("error")

    stock = rows["stock"] if ok(rows.get("stock")) else None
    for r in rows.values():
        if r.get("error"):
            continue
        total = run_flops(flops, reduced, steps, r["generate"])
        denoise = total - flops["decode"] - flops["encode"] - flops["clip"]
        r["flops_total"] = total
        r["achieved_tflops"] = total / r["seconds_total"] / 1e12
        r["denoise_tflops"] = denoise / steps / r["seconds_per_step"] / 1e12
        r["speedup_vs_stock"] = stock["seconds_total"] / r["seconds_total"] if stock else None
        r["step_speedup_vs_stock"] = stock["seconds_per_step"] / r["seconds_per_step"] if stock else None
        r["fraction_of_spec_peak"] = r["achieved_tflops"] / spec if spec else None
        r["fraction_of_matmul_peak"] = r["achieved_tflops"] / matmul if matmul else None
    fast = rows["fast"] if ok(rows.get("fast")) else None
    result["compute_limit_seconds"] = dict(
        at_spec_peak=fast["flops_total"] / spec / 1e12 if fast and spec else None,
        at_matmul_peak=fast["flops_total"] / matmul / 1e12 if fast and matmul else None)
    # The targets, on a GPU: fast at least 1.5x stock (exact: no generate() speed-up, the frames of stock), and
    # low under 8 GiB as the driver sees it (what decides an out-of-memory error).
    low = rows.get("low")
    result["targets"] = None if result["size"] == "tiny" else dict(
        fast_1_5x_stock={n: dict(speedup=r["speedup_vs_stock"], exact=not r["generate"],
                                 met=r["speedup_vs_stock"] >= 1.5)
                         for n, r in rows.items() if n.startswith("fast") and ok(r) and ok(stock)},
        low_under_8_gib=dict(driver_peak_used_gib=low["driver_peak_used_gib"],
                             met=low["driver_peak_used_gib"] < 8) if ok(low) else None)
    return result


def _flops(x: float) -> str:
    return f"{x / 1e12:.1f} T" if x >= 1e11 else f"{x / 1e9:.2f} G"


def table(result: dict) -> str:
    cols = [("config", "{}", 22), ("s/step", "{:.3f}", 8), ("total s", "{:.2f}", 8), ("x stock", "{:.2f}", 7),
            ("alloc GiB", "{:.1f}", 9), ("driver GiB", "{:.1f}", 10), ("step TFLOP/s", "{:.3g}", 12),
            ("% spec", "{:.0%}", 7), ("MAE vs fast", "{:.2f}", 11)]
    keys = ["config", "seconds_per_step", "seconds_total", "speedup_vs_stock", "peak_allocated_gib",
            "driver_peak_used_gib", "denoise_tflops", "fraction_of_spec_peak", "frame_mae_vs_fast"]
    lines = [" ".join(f"{c:>{w}}" for c, _, w in cols)]
    for r in result["results"]:
        if r.get("error"):
            lines.append(f"{r['config']:>22} {r['error'][:100]}")
            continue
        cells = [("-" if r[k] is None else fmt.format(r[k])) for k, (_, fmt, _) in zip(keys, cols)]
        lines.append(" ".join(f"{c:>{w}}" for c, (_, _, w) in zip(cells, cols)))
    f = result["flops"]
    lines.append(f"{result['device']}, {result['dtype']}, {result['num_frames']} frames {result['height']}x"
                 f"{result['width']}, {result['steps']} steps, random weights. FLOPs: UNet call (2 x "
                 f"{result['num_frames']} frames) {_flops(f['unet'])}, cached call {_flops(f['unet_shallow'])}, "
                 f"decode {_flops(f['decode'])}, encode {_flops(f['encode'])}, CLIP {_flops(f['clip'])}.")
    limit, peak = result["compute_limit_seconds"], result["peak_tflops"]
    if limit["at_spec_peak"]:
        lines.append(f"Compute limit of one clip: {limit['at_spec_peak']:.2f} s at the spec peak ({peak['spec']:.0f}"
                     f" TFLOP/s), {limit['at_matmul_peak']:.2f} s at the measured matmul peak "
                     f"({peak['matmul_measured']:.0f} TFLOP/s).")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="the tiny stand-in (implied without CUDA)")
    ap.add_argument("--model", default="svd-xt", choices=["svd", "svd-xt", "svd-xt-1-1"])
    ap.add_argument("--configs", default=None, help=f"comma-separated, from: {', '.join(CONFIGS)}")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (25; 2 with --tiny)")
    ap.add_argument("--frames", type=int, default=None, help="frames (the model's: 25 for svd-xt; 4 with --tiny)")
    ap.add_argument("--height", type=int, default=None, help="576 (64 with --tiny)")
    ap.add_argument("--width", type=int, default=None, help="1024 (64 with --tiny)")
    ap.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"], help="on a GPU (fp32 on the CPU)")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gpu_presets[_tiny].json)")
    ap.add_argument("--append", action="store_true", help="merge into the rows of an earlier run in --out")
    ap.add_argument("--write", action="store_true", help="also append the table to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)

    cuda = torch.cuda.is_available()
    args.tiny = args.tiny or not cuda
    device = "cuda" if cuda else "cpu"
    dtype = args.dtype if cuda else "fp32"
    spec = svdkit.MODELS[args.model]
    # The tiny stand-in only proves the script runs: 4 frames, 64x64, 2 steps, so that CI takes seconds.
    args.frames = args.frames or (4 if args.tiny else spec.num_frames)
    args.steps = args.steps or (2 if args.tiny else spec.num_inference_steps)
    args.height = args.height or (64 if args.tiny else spec.height)
    args.width = args.width or (64 if args.tiny else spec.width)
    if args.steps < 2:
        ap.error("--steps must be >= 2 (seconds per step is measured between steps)")
    names = args.configs.split(",") if args.configs else [
        n for n in CONFIGS if not (args.tiny and any(s in n for s in TINY_SKIP))]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    out = Path(args.out or Path(__file__).parent / "results" / f"gpu_presets{'_tiny' if args.tiny else ''}.json")

    # 1. FLOPs of each model call, counted on the meta device (no memory, a few seconds), and the GPU's peaks.
    size = dict(height=args.height, width=args.width, size="tiny" if args.tiny else "real")
    flops = count_flops(args.frames, **size)
    reduced = count_flops(args.frames - 1, batch=1, **size)  # skip_uncond's unconditional call (linear ramp)
    gpu_name = torch.cuda.get_device_name() if cuda else (platform.processor() or "cpu")
    result = dict(
        benchmark="gpu_presets", size=size["size"], model=args.model, device=gpu_name, dtype=dtype,
        num_frames=args.frames, height=args.height, width=args.width, steps=args.steps,
        guidance="linear 1 -> 3", random_weights=True,
        versions=dict(svdkit=svdkit.__version__, torch=torch.__version__,
                      diffusers=__import__("diffusers").__version__, cuda=torch.version.cuda),
        flops=flops, flops_skip_uncond_call=reduced["unet"], flops_skip_uncond_call_shallow=reduced["unet_shallow"],
        peak_tflops=dict(spec=_spec_peak(gpu_name) if cuda else None,
                         matmul_measured=measure_matmul_tflops(device, DTYPES[dtype])),
        results=[])
    same_run = ("size", "model", "device", "dtype", "num_frames", "height", "width", "steps")
    # "fast"'s frames, kept outside the repository for a later --append run on the same machine
    reference_path = Path(tempfile.gettempdir()) / f"svdkit_{out.stem}_fast_frames.npy"
    if args.append and out.is_file():
        earlier = json.loads(out.read_text())
        if any(earlier.get(k) != result[k] for k in same_run):
            raise SystemExit(f"--append: {out} was measured with other settings "
                             f"({ {k: earlier.get(k) for k in same_run} })")
        result["results"] = [r for r in earlier["results"] if r["config"] not in names]

    # 2. Each configuration: load, warm up, time one clip, and compare its frames with "fast"'s.
    image = input_image(args.width, args.height)
    frames = {}
    for name in names:
        print(f"... {name}", file=sys.stderr, flush=True)
        try:
            row, frames[name] = run_config(name, args, image, device, dtype)
        except torch.cuda.OutOfMemoryError as e:  # what this benchmark is partly about: record it, go on
            doc, load_kw, gen = CONFIGS[name]
            row = dict(config=name, doc=doc, load=load_kw, generate=gen, error=f"out of memory: {e}".splitlines()[0])
        gc.collect()
        result["results"].append(row)
    if "fast" in frames:
        np.save(reference_path, frames["fast"])
    reference = frames["fast"] if "fast" in frames else np.load(reference_path) if reference_path.is_file() else None
    for row in result["results"]:
        if row["config"] in frames:
            mine = frames[row["config"]].astype(np.int16)
            row["frame_mae_vs_fast"] = None if reference is None else float(np.abs(mine - reference).mean())
    order = list(CONFIGS)
    result["results"].sort(key=lambda r: order.index(r["config"]))

    # 3. Ratios, FLOP rates, targets; print and write.
    derive(result)
    print(table(result))
    if args.write:
        from report import append_results  # benchmarks/report.py, beside this script
        append_results(f"gpu_presets: memory presets and speed-ups, {args.model}"
                       f"{' (tiny stand-in)' if args.tiny else ''}", table(result))
        print("appended to benchmarks/RESULTS.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
