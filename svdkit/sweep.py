"""Sweeps: run a grid of `generate()` settings, measure every clip, and keep every result on disk.

`svdkit.sweep` is this module, and calling it runs `sweep()`:

>>> import svdkit
>>> pipe = svdkit.load_pipeline("toy")
>>> table = svdkit.sweep(pipe, "data/example_0.png",
...                      {"motion_bucket_id": svdkit.sweep.linspace(0, 255, 8), "num_inference_steps": 10},
...                      seeds=[0, 1], out_dir="sweeps/motion")
>>> table.groupby("motion_bucket_id")["motion"].mean()        # pixels per frame, one row per bucket

The grid names generate() parameters (height, width, num_frames, num_inference_steps, min_guidance_scale,
max_guidance_scale, fps, motion_bucket_id, noise_aug_strength, decode_chunk_size), plus "guidance" (the
per-frame schedule) and "seed". A list is an axis; a single value is fixed for every point. `image` may
be a list of images: each is one more axis. The sweep runs every combination, one row per point.

How it is fast:

* stage 1 once: each image's CLIP embedding is computed once, and its VAE latents once per (image, seed,
  noise_aug_strength, size), not once per point;
* stage 3 batched: points that share num_frames, size, num_inference_steps (and whether guidance is on)
  go through the UNet together, each row with its own time ids and guidance (`batch_size`).

Every point's frames equal those of `svdkit.generate(pipe, image, seed=..., **params)`: exactly with
`batch_size=1`; batched, the UNet's matrix kernels round differently for other batch sizes, so a few
pixel values can differ by 1 (of 255).

How it keeps results (lossless and resumable). Each point is named by a hash of everything that makes its
clip: its parameters, its seed, the image's pixels, the model's weights and the svdkit version. Its files in
``OUT_DIR/points/`` are written one by one, each to a temporary name and then renamed into place:

* ``<id>.mp4``, the clip to watch (h264, lossy);
* ``<id>.npz``, the frames exactly (uint8 (F, H, W, 3), compressed);
* ``<id>.json``, last: the row (parameters, metrics, paths) and the SHA-256 of the two files above.

A point counts as done only when its JSON row parses and both checksums match, so running the same
sweep again skips what is done, and redoes a point whose files were damaged or half written (after a
crash or a kill). Another sweep into the same folder reuses every point the two have in common.
``OUT_DIR/log/`` records, per process, every point it computed.

Beyond one machine: ``python -m svdkit sweep SWEEP.toml`` runs a sweep described in a file, e.g.

    model = "toy"                       # or "svd-xt", a hub id or a folder
    images = ["data/example_0.png"]     # paths relative to this file
    seeds = [0, 1, 2]
    out_dir = "sweeps/motion"
    batch_size = "auto"

    [grid]
    motion_bucket_id = { linspace = [0, 255, 8] }   # or logspace, ints (start, stop, step), or a list
    fps = [6, 7]
    num_inference_steps = 10

The same command under ``accelerate launch`` splits the points across processes (point i goes to process
i mod N); every process writes into the same out_dir, which the atomic writes make safe. For a large
sweep on several GPUs of one machine:

    accelerate launch --multi_gpu --num_processes 4 -m svdkit sweep SWEEP.toml

Each process loads the model onto its own GPU (``cuda:0`` ... ``cuda:3``), runs its share in batches
sized to that GPU's free memory, and at the end the first process writes ``OUT_DIR/sweep.csv`` with every
row. Across machines, put out_dir on a shared filesystem and run ``accelerate launch`` with
``--num_machines``, ``--machine_rank`` and ``--main_process_ip`` as usual. If a run is cut short, start it
again, with the same or another number of processes: finished points are kept. Without GPUs, the same
``--multi_gpu --num_processes N`` starts N CPU processes that talk over gloo (accelerate's ``--cpu`` flag
alone starts only one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from svdkit import sampling
from svdkit.sampling import GENERATE_PARAMS
from svdkit.video import write_video

__all__ = ["sweep", "plan", "check_grid", "Point", "read_sweep", "load_frames", "trend", "computed_log",
           "linspace", "logspace", "ints", "AXES", "image_hash", "model_fingerprint", "main_from_toml",
           "add_sweep_parser"]

# Names a grid may use: generate()'s parameters, the guidance schedule, the seed, and generate()'s
# approximate speed-ups (see `svdkit.generate`).
SPEED_OPTIONS = {"skip_uncond": False, "cache_interval": 1}
AXES = GENERATE_PARAMS + ("guidance", "seed") + tuple(SPEED_OPTIONS)

_FILES = ("clip", "frames")  # the files of a point, besides its JSON row
_SUFFIX = {"clip": ".mp4", "frames": ".npz", "row": ".json"}


# ----------------------------------------------------------------------------------------------------
# Ranges for the grid


def _rounded(values: np.ndarray, start, stop) -> list:
    """Plain Python numbers; integers (rounded, duplicates dropped) when start and stop are both integers."""
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, stop)):
        return list(dict.fromkeys(int(round(v)) for v in values))
    return [float(v) for v in values]


def linspace(start, stop, num: int) -> list:
    """`num` evenly spaced values from start to stop, both included; integers if both ends are.

    >>> linspace(0, 255, 8)
    [0, 36, 73, 109, 146, 182, 219, 255]
    >>> linspace(0.0, 0.1, 3)
    [0.0, 0.05, 0.1]
    """
    return _rounded(np.linspace(start, stop, int(num)), start, stop)


def logspace(start, stop, num: int) -> list:
    """`num` values from start to stop spaced evenly on a log scale (start > 0); integers if both ends are.

    Rounding can merge the smallest values, so fewer than `num` may come back.

    >>> logspace(1, 255, 8)
    [1, 2, 5, 11, 24, 52, 116, 255]
    """
    if start <= 0 or stop <= 0:
        raise ValueError(f"logspace needs start and stop > 0, got {start} and {stop}")
    return _rounded(np.geomspace(start, stop, int(num)), start, stop)


def ints(start: int, stop: int, step: int = 1) -> list[int]:
    """The integers from start to stop, both included, `step` apart.

    >>> ints(3, 30, 9)
    [3, 12, 21, 30]
    """
    if step == 0:
        raise ValueError("ints: step must not be 0")
    return list(range(int(start), int(stop) + (1 if step > 0 else -1), int(step)))


_RANGES = {"linspace": linspace, "logspace": logspace, "ints": ints}
_RANGE_ARGS = {"linspace": "[start, stop, num]", "logspace": "[start, stop, num]",
               "ints": "[start, stop] or [start, stop, step]"}


# ----------------------------------------------------------------------------------------------------
# The plan: every point of the grid, named by a hash


@dataclasses.dataclass(frozen=True)
class Point:
    """One setting of the sweep: an image, a seed and the full set of generate() parameters.

    `params` holds every parameter generate() would use (defaults filled in), `guidance` the schedule as
    given ("linear", "constant", "triangle" or a tuple of numbers), `scales` the per-frame guidance it
    makes, `speed` generate()'s speed-up options, and `id` the hash that names its files.
    """

    index: int  # position in the sweep's point list
    image_index: int
    seed: int
    params: dict
    guidance: object
    scales: tuple
    speed: dict
    id: str

    @property
    def do_cfg(self) -> bool:
        """Whether the UNet runs the unguided branch too (some frame's guidance above 1), as denoise decides."""
        return max(self.scales) > 1

    def group(self) -> tuple:
        """Points with the same group can share a UNet batch (and come out as generate() makes them)."""
        p = self.params
        # skip_uncond picks the frames of the unguided pass over the whole batch: same frames, same batch
        unguided = tuple(g != 1 for g in self.scales) if self.speed["skip_uncond"] else None
        return (p["num_frames"], p["height"], p["width"], p["num_inference_steps"], p["decode_chunk_size"],
                self.do_cfg, self.speed["cache_interval"], unguided)


def _canonical(value):
    """A JSON-able form in which equal settings look the same (36 and 36.0, tuples and lists)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (np.ndarray, torch.Tensor)):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    raise TypeError(f"cannot hash a sweep value of type {type(value).__name__}: {value!r}")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def image_hash(image) -> str:
    """SHA-256 of an image's RGB pixels and size: two files with the same pixels get the same hash."""
    a = np.asarray(sampling.load_image(image), dtype=np.uint8)
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()


def model_fingerprint(pipe) -> dict:
    """What names the model in a point's hash: its name, its dtype, and a hash of samples of its weights.

    Every weight tensor of the UNet, VAE and image encoder contributes its name, shape and first and last
    16 values, so retrained or fine-tuned weights give new point ids while hashing stays quick for SVD.
    """
    info = getattr(pipe, "svdkit", None)
    h = hashlib.sha256()
    for part in ("unet", "vae", "image_encoder"):
        module = getattr(pipe, part, None)
        if module is None:
            continue
        for name, t in module.state_dict().items():
            flat = t.detach().reshape(-1)
            sample = torch.cat([flat[:16], flat[-16:]]).to("cpu").contiguous()
            h.update(f"{part}.{name}{tuple(t.shape)}{t.dtype}".encode())
            h.update(sample.view(torch.uint8).numpy().tobytes())
    name = info.model if info is not None else str(pipe.name_or_path or "unknown")
    if Path(name).is_dir():  # a local folder is named by its folder name, so moving it keeps the ids
        name = Path(name).resolve().name
    return {"model": name, "dtype": str(pipe.unet.dtype).replace("torch.", ""), "weights": h.hexdigest()[:32]}


def _images(image) -> list:
    """The sweep's images as a list, with one label each (the file stem, else image0, image1, ...)."""
    items = list(image) if isinstance(image, (list, tuple)) else [image]
    if not items:
        raise ValueError("image: give at least one image")
    labels = []
    for i, item in enumerate(items):
        if isinstance(item, (str, Path)):
            label = Path(item).stem
        elif getattr(item, "filename", ""):
            label = Path(item.filename).stem
        else:
            label = f"image{i}"
        labels.append(label if label not in labels else f"{label}_{i}")
    return list(zip(labels, items))


def _axes(grid: dict | None, seeds) -> tuple[dict, dict]:
    """Split the grid into axes (name -> values) and fixed values (name -> value)."""
    grid = dict(grid or {})
    unknown = set(grid) - set(AXES)
    if unknown:
        raise ValueError(f"grid: unknown parameter(s) {sorted(unknown)}; a grid may use {', '.join(AXES)}")
    if "seed" in grid and tuple(np.atleast_1d(seeds)) != (0,):
        raise ValueError("give the seeds either as seeds=... or as the grid's 'seed' axis, not both")
    grid.setdefault("seed", list(np.atleast_1d(seeds)))
    axes, fixed = {}, {}
    for name, value in grid.items():
        if isinstance(value, dict):  # {"linspace": [0, 255, 8]}, as a TOML file writes ranges
            kind = next(iter(value)) if len(value) == 1 else None
            if kind not in _RANGES:
                raise ValueError(f"grid[{name!r}]: a range is {{linspace|logspace|ints = [...]}}, got {value!r}")
            args = value[kind]
            if not isinstance(args, (list, tuple)) or not 2 + (kind != "ints") <= len(args) <= 3:
                raise ValueError(f"grid[{name!r}]: {kind} takes {_RANGE_ARGS[kind]}, got {args!r}")
            value = _RANGES[kind](*args)
        if isinstance(value, (list, tuple, np.ndarray, range)):
            values = list(value)
            if not values:
                raise ValueError(f"grid[{name!r}] is empty")
            axes[name] = [v.item() if isinstance(v, np.generic) else v for v in values]
        else:
            fixed[name] = value.item() if isinstance(value, np.generic) else value
    return axes, fixed


def plan(pipe, image, grid: dict | None = None, *, seeds=(0,)) -> list[Point]:
    """Every point of a sweep, in order (images, then the grid's axes in their order, then seeds), unrun.

    Validates every point's parameters as generate() does, before any model work.

    >>> points = plan(pipe, "data/example_0.png", {"motion_bucket_id": [0, 255]}, seeds=[0, 1])  # doctest: +SKIP
    >>> len(points), points[0].id[:12]                                                          # doctest: +SKIP
    (4, '3f1c...')
    """
    import svdkit

    settings = _settings(grid, seeds, lambda values, guidance: sampling.check_params(pipe, values, guidance))
    images = _images(image)
    hashes = [image_hash(item) for _, item in images]
    model = model_fingerprint(pipe)
    points = []
    for image_index in range(len(images)):
        for seed, p, guidance, scales, speed in settings:
            identity = {"image": hashes[image_index], "seed": seed, "params": p,
                        "scales": [round(g, 6) for g in scales],
                        "model": model, "svdkit": svdkit.__version__}
            # speed-ups change the clip, so they name it; at their defaults they are left out, so that the
            # ids of plain points stay what they were before the options existed
            identity.update({k: v for k, v in speed.items() if v != SPEED_OPTIONS[k]})
            points.append(Point(index=len(points), image_index=image_index, seed=seed, params=p,
                                guidance=guidance if guidance is not None else "linear", scales=scales,
                                speed=speed, id=_digest(_canonical(identity))))
    return points


def _settings(grid, seeds, check) -> list[tuple]:
    """Every combination of the grid's axes, checked: (seed, params, guidance, scales, speed) in plan order.

    `check(values, guidance)` validates one combination and fills in its defaults (`sampling.check_params`);
    any bad value raises here, before a model does any work.
    """
    axes, fixed = _axes(grid, seeds)
    # seeds vary fastest, so the seeds of one setting sit next to each other
    order = [n for n in axes if n != "seed"] + ["seed"]
    out = []
    for combo in itertools.product(*(axes[n] for n in order)):
        values = {**fixed, **dict(zip(order, combo))}
        seed = values.pop("seed")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seeds must be integers, got {seed!r}")
        guidance = values.pop("guidance", None)
        speed = {k: values.pop(k, default) for k, default in SPEED_OPTIONS.items()}
        if not isinstance(speed["skip_uncond"], bool):
            raise ValueError(f"skip_uncond must be True or False, got {speed['skip_uncond']!r}")
        if isinstance(speed["cache_interval"], bool) or not isinstance(speed["cache_interval"], (int, np.integer)) \
                or speed["cache_interval"] < 1:
            raise ValueError(f"cache_interval must be an integer >= 1, got {speed['cache_interval']!r}")
        guidance = tuple(guidance) if isinstance(guidance, (list, tuple, np.ndarray)) else guidance
        p = check(values, guidance)
        scales = tuple(float(g) for g in p.pop("guidance"))  # float32 values, exactly
        out.append((int(seed), p, guidance, scales, speed))
    return out


def check_grid(grid: dict | None = None, *, seeds=(0,), model: str = "toy") -> int:
    """Check a sweep's grid without loading the model (what `python -m svdkit sweep` does first).

    Raises the error `plan()` would, naming the parameter and its valid range; returns the number of settings
    per image. Defaults come from the model's registry row (`svdkit.MODELS`), else generic SVD ones.

    >>> check_grid({"motion_bucket_id": linspace(0, 255, 8)}, seeds=[0, 1])
    16
    >>> check_grid({"fps": [7, 0]})
    Traceback (most recent call last):
    ...
    ValueError: fps must be an integer >= 1, got 0
    """
    import warnings

    from svdkit.models import MODELS

    spec = MODELS.get(model)

    def check(values, guidance):
        if spec is None and "num_frames" not in values and isinstance(guidance, tuple):
            values = {**values, "num_frames": len(guidance)}  # the model's frame count is unknown until loaded
        with warnings.catch_warnings():  # plan() warns again, once the model is known
            warnings.simplefilter("ignore")
            return sampling.check_params(None, values, guidance, spec=spec)

    return len(_settings(grid, seeds, check))


# ----------------------------------------------------------------------------------------------------
# Files: atomic writes, checksums, done-ness


def _stem(point_id: str) -> str:
    return point_id[:20]


def _paths(out_dir: Path, point_id: str) -> dict[str, Path]:
    folder = out_dir / "points"
    return {kind: folder / (_stem(point_id) + suffix) for kind, suffix in _SUFFIX.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path: Path, write) -> None:
    """Call `write(temporary_path)`, then rename the temporary file onto `path` (atomic on one filesystem)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_json(path: Path, obj) -> None:
    _write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, default=str)))


def _write_frames(path: Path, frames: np.ndarray) -> None:
    def write(tmp: Path):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, frames=frames)
    _write_atomic(path, write)


def _read_done(out_dir: Path, point_id: str) -> dict | None:
    """The stored row of a point when every file of it is present and intact, else None."""
    paths = _paths(out_dir, point_id)
    try:
        row = json.loads(paths["row"].read_text())
        if row.get("id") != point_id:
            return None
        for kind in _FILES:
            if _sha256(paths[kind]) != row["sha256"][kind]:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return row


def load_frames(row) -> np.ndarray:
    """The exact frames of a sweep point, uint8 (F, H, W, 3), from its row (a DataFrame row or a dict)."""
    with np.load(row["frames"]) as data:
        return data["frames"]


def _remove_leftovers(out_dir: Path, points: list[Point]) -> None:
    """Delete the temporary files a killed run left behind for these points (one listing of the folder)."""
    stems = {_stem(pt.id) for pt in points}
    for entry in os.scandir(out_dir / "points"):
        if entry.name.startswith(".") and entry.name[1:].split(".")[0] in stems:
            Path(entry.path).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------
# Running


def _auto_batch_size(pipe, point: Point) -> int:
    """How many points share a UNet batch when `batch_size="auto"`.

    Off CUDA: 4 for small models (latents of at most 25 x 32 x 32; on a CPU, more rows per call stop paying off
    once they overflow its caches), else 1. On CUDA: as many as fit in the
    free memory at about 10 GiB per point for SVD-XT's 25 x 72 x 128 latents (half precision, with guidance),
    scaled by latent volume, between 1 and 16.
    """
    p = point.params
    volume = p["num_frames"] * (p["height"] // pipe.vae_scale_factor) * (p["width"] // pipe.vae_scale_factor)
    device = torch.device(pipe._execution_device)
    if device.type != "cuda":
        return 4 if volume <= 25 * 32 * 32 else 1
    free, _ = torch.cuda.mem_get_info(device)
    per_point = 10 * 2**30 * volume / (25 * 72 * 128) * (2 if pipe.unet.dtype == torch.float32 else 1)
    return int(max(1, min(16, free // max(per_point, 1))))


class _Stage1Cache:
    """Stage 1 done once: CLIP embeddings per image, VAE latents per (image, seed, noise_aug_strength, size)."""

    def __init__(self, pipe, images):
        self.pipe, self.images = pipe, images
        self.embeddings, self.latents, self.pixels = {}, {}, {}

    def start(self, point: Point) -> tuple[torch.Generator, tuple]:
        """The point's generator, advanced past the augmentation noise, and its (embeddings, noisy, latents)."""
        pipe, p = self.pipe, point.params
        image = self.images[point.image_index]
        H, W, aug = p["height"], p["width"], p["noise_aug_strength"]
        generator = torch.Generator().manual_seed(point.seed)  # as generate(): CPU, same noise everywhere
        key = (point.image_index, point.seed if aug else None, float(aug), H, W)
        if key in self.latents:
            # draw the augmentation noise anyway, so the initial latents come from the same generator state
            shape, dtype = self.pixels[(point.image_index, H, W)]
            from diffusers.utils.torch_utils import randn_tensor
            randn_tensor(shape, generator=generator, device=torch.device(pipe._execution_device), dtype=dtype)
        else:
            embeddings, noisy, latents = sampling.encode_image(
                pipe, image, generator, height=H, width=W, noise_aug_strength=aug,
                image_embeddings=self.embeddings.get(point.image_index))
            self.embeddings[point.image_index] = embeddings
            self.pixels[(point.image_index, H, W)] = (tuple(noisy.shape), noisy.dtype)
            self.latents[key] = (embeddings, noisy, latents)
        return generator, self.latents[key]


@torch.inference_mode()  # as no_grad, with less bookkeeping per operation; the numbers are the same
def _run_batch(pipe, batch: list[Point], cache: _Stage1Cache) -> list[np.ndarray]:
    """Stages 1-4 for points that share a group: one UNet batch, each row with its own conditioning."""
    p = batch[0].params
    F, H, W = p["num_frames"], p["height"], p["width"]
    sampling.set_schedule(pipe, p["num_inference_steps"])  # before initial_noise: it scales by sigma_max
    conditions, latents, guidance = [], [], []
    for point in batch:
        # 1. Encode the image (from the cache when this image, seed and augmentation were seen).
        generator, (embeddings, noisy, image_latents) = cache.start(point)
        # 2. Condition on it, with this point's fps, motion bucket and augmentation.
        q = point.params
        conditions.append(sampling.condition(embeddings, noisy, image_latents, fps=q["fps"],
                                             motion_bucket_id=q["motion_bucket_id"],
                                             noise_aug_strength=q["noise_aug_strength"]))
        latents.append(sampling.initial_noise(pipe, generator, F, H, W, embeddings.dtype))  # (1, F, 4, h, w)
        guidance.append(torch.tensor(point.scales, dtype=torch.float32))
    # 3. Denoise all of them together: latents (B, F, 4, h, w), guidance (B, F).
    out, _, _ = sampling.denoise(pipe, torch.cat(latents), sampling.Condition.cat(conditions),
                                 torch.stack(guidance), **batch[0].speed)
    # 4. Decode each video on its own, exactly as generate() does (batching the VAE saves nothing on a CPU).
    return [sampling.decode_latents(pipe, out[i: i + 1], p["decode_chunk_size"] or F) for i in range(len(batch))]


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or batch_size != "auto" and (not isinstance(batch_size, (int, np.integer))
                                                                 or batch_size < 1):
        raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got {batch_size!r}")


def _metric_functions(metrics) -> dict:
    """name -> function(frames, image) from "all", None, a list of metric names, or a dict of functions."""
    from svdkit import metrics as m

    if metrics is None or metrics is False:
        return {}
    if isinstance(metrics, str):
        if metrics != "all":
            metrics = [metrics]
        else:
            return {"__all__": lambda frames, image: m.clip_metrics(frames, image)}
    if isinstance(metrics, dict):
        return dict(metrics)
    unknown = set(metrics) - set(m.METRICS)
    if unknown:
        raise ValueError(f"metrics: unknown name(s) {sorted(unknown)}; known: {', '.join(m.METRICS)}")
    names = list(metrics)
    return {"__all__": lambda frames, image: {k: v for k, v in m.clip_metrics(frames, image).items() if k in names}}


def _measure(functions: dict, frames: np.ndarray, image) -> dict:
    out = {}
    for name, fn in functions.items():
        value = fn(frames, image)
        if name == "__all__":
            out.update(value)
        else:
            out[name] = float(value)
    return out


def _missing_metrics(functions: dict, row: dict) -> bool:
    from svdkit import metrics as m
    names = [n for n in functions if n != "__all__"]
    if "__all__" in functions:
        names += [n for n in m.METRICS]
    return any(n not in row.get("metrics", {}) for n in names)


def _row(point: Point, labels, hashes, frames, measured, out_dir, paths, shard, batch_size, seconds,
         model) -> dict:
    import svdkit
    return {
        "id": point.id, "index": point.index,
        "image": labels[point.image_index], "image_index": point.image_index, "image_hash": hashes[point.image_index],
        "seed": point.seed, **point.params,
        "guidance": point.guidance if isinstance(point.guidance, str) else "custom",
        "guidance_scales": [round(g, 6) for g in point.scales],
        **point.speed,
        "metrics": measured,
        "clip": paths["clip"].relative_to(out_dir).as_posix(),
        "frames": paths["frames"].relative_to(out_dir).as_posix(),
        "sha256": {kind: _sha256(paths[kind]) for kind in _FILES},
        "num_frames_out": int(frames.shape[0]),
        "model": model["model"], "model_weights": model["weights"], "dtype": model["dtype"],
        "svdkit_version": svdkit.__version__,
        "process_index": shard[0], "num_processes": shard[1], "pid": os.getpid(),
        "batch_size": batch_size, "seconds": round(seconds, 4),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _log(out_dir: Path, shard, point_ids, seconds) -> None:
    """Append one line per computed point to this process's log (a killed run may leave a half line)."""
    folder = out_dir / "log"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"process-{shard[0]}.jsonl", "a") as f:
        for pid in point_ids:
            f.write(json.dumps({"id": pid, "process_index": shard[0], "num_processes": shard[1],
                                "pid": os.getpid(), "seconds": round(seconds, 4),
                                "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        f.flush()


def computed_log(out_dir) -> list[dict]:
    """Every point any process computed into out_dir, from the logs, in no particular order."""
    entries = []
    for path in sorted((Path(out_dir) / "log").glob("process-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:  # the half line of a killed run
                continue
    return entries


def _frame(rows: list[dict], out_dir: Path, axes: list[str]):
    """The DataFrame of rows: image, seed and the axes first, then metrics, paths, then everything else."""
    import pandas as pd

    flat = []
    for row in rows:
        r = {k: v for k, v in row.items() if k not in ("metrics", "sha256")}
        r.update(row.get("metrics", {}))
        r["clip"] = str(out_dir / row["clip"])
        r["frames"] = str(out_dir / row["frames"])
        flat.append(r)
    df = pd.DataFrame(flat)
    metric_names = list(dict.fromkeys(k for row in rows for k in row.get("metrics", {})))
    first = ["image", "seed"] + [a for a in axes if a not in ("seed",)] + metric_names + ["clip", "frames"]
    first = [c for c in dict.fromkeys(first) if c in df.columns]
    df = df[first + [c for c in df.columns if c not in first]]
    df.attrs.update({"axes": list(axes), "metrics": metric_names, "out_dir": str(out_dir)})
    return df


def sweep(pipe, image, grid: dict | None = None, *, seeds=(0,), out_dir, batch_size="auto", metrics="all",
          progress: bool = True, shard: tuple[int, int] | None = None):
    """Generate and measure every point of a grid; keep each point on disk; return one row per point.

    Args:
      pipe: a pipeline from `load_pipeline`.
      image: one image (path, PIL, array, tensor) or a list of them.
      grid: parameter name -> list of values (an axis) or one value (fixed), or a range written as
        {"linspace": [start, stop, num]} (also "logspace", "ints"). Names: see `AXES`.
      seeds: the seeds to run every setting with (or a "seed" axis in the grid).
      out_dir: where points are kept (``points/``) and logged (``log/``); reused on the next run.
      batch_size: points per UNet batch, or "auto" (see `_auto_batch_size`); 1 reproduces generate() exactly.
      metrics: "all" (every `svdkit.metrics.METRICS`), a list of those names, a dict name -> function(frames,
        image) -> float, or None. Metrics missing from a finished point are added from its stored frames.
      progress: show a progress bar over the points, with the time left.
      shard: (index, count) to run only the points whose index is index mod count (what `accelerate
        launch` does through `main_from_toml`); the table then holds only those points.

    Returns:
      A pandas DataFrame, one row per point in plan order: image, seed, the axes, the metrics, clip (mp4
      path), frames (npz path), then every other parameter and where/when/how fast it was computed;
      `reused` is True for points found finished in out_dir.

    Raises:
      ValueError (FileNotFoundError for a missing image) naming the bad parameter and what is valid, before
      any model work and before anything is written into out_dir.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    shard = (0, 1) if shard is None else (int(shard[0]), int(shard[1]))
    if not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard}")
    _check_batch_size(batch_size)
    functions = _metric_functions(metrics)

    # 0. Plan: every point, its id, and which of them are this process's. Bad input stops here, before any
    #    model work and before anything is written.
    images = _images(image)
    labels = [label for label, _ in images]
    loaded = [sampling.load_image(item) for _, item in images]
    hashes = [image_hash(im) for im in loaded]
    axes, _ = _axes(grid, seeds)
    points = [pt for pt in plan(pipe, loaded, grid, seeds=seeds) if pt.index % shard[1] == shard[0]]
    model = model_fingerprint(pipe)
    (out_dir / "points").mkdir(parents=True, exist_ok=True)

    # 1. What is done already (intact files); add metrics it lacks from its stored frames.
    rows: dict[str, dict] = {}
    for point in points:
        row = _read_done(out_dir, point.id)
        if row is None:
            continue
        if functions and _missing_metrics(functions, row):
            frames = load_frames({"frames": out_dir / row["frames"]})
            row["metrics"] = {**row.get("metrics", {}),
                              **_measure(functions, frames, loaded[point.image_index])}
            _write_json(_paths(out_dir, point.id)["row"], row)
        row["reused"] = True
        rows[point.id] = row
    todo = [pt for pt in points if pt.id not in rows]

    # 2. Batches of points that can share a UNet call.
    groups: dict[tuple, list[Point]] = {}
    for point in todo:
        groups.setdefault(point.group(), []).append(point)
    cache = _Stage1Cache(pipe, loaded)
    bar = tqdm(total=len(points), initial=len(points) - len(todo), unit="point", desc="sweep",
               disable=not progress, smoothing=0.1)

    def save(point: Point, frames: np.ndarray, batch: int, seconds: float) -> dict:
        """Write one point: clip, frames, then its row (last, with the checksums of the other two)."""
        paths = _paths(out_dir, point.id)
        write_video(paths["clip"], frames, point.params["fps"])
        _write_frames(paths["frames"], frames)
        measured = _measure(functions, frames, loaded[point.image_index])
        row = _row(point, labels, hashes, frames, measured, out_dir, paths, shard, batch, seconds, model)
        _write_json(paths["row"], row)
        _log(out_dir, shard, [point.id], seconds)
        return {**row, "reused": False}

    def finish(pending):
        for point, future in pending:
            rows[point.id] = future.result()
        if pending:
            bar.update(len(pending))

    # 3. Run the batches. On a GPU, a writer thread saves and measures one batch while the next one computes;
    #    on a CPU that would only take cores from the UNet, so each batch is saved before the next starts.
    _remove_leftovers(out_dir, todo)
    from concurrent.futures import Future, ThreadPoolExecutor

    def now(fn, *args) -> Future:
        future = Future()
        future.set_result(fn(*args))
        return future

    overlap = torch.device(pipe._execution_device).type == "cuda"
    pending: list = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="svdkit-sweep-writer") as writer:
        submit = writer.submit if overlap else now
        try:
            for group in groups.values():
                size = _auto_batch_size(pipe, group[0]) if batch_size == "auto" else int(batch_size)
                queue = list(group)
                while queue:
                    batch, queue = queue[:size], queue[size:]
                    started = time.perf_counter()
                    try:
                        frames_list = _run_batch(pipe, batch, cache)
                    except torch.cuda.OutOfMemoryError:
                        if size == 1:
                            raise
                        torch.cuda.empty_cache()
                        size = max(1, size // 2)  # too big for this GPU: halve and retry
                        queue = batch + queue
                        continue
                    seconds = (time.perf_counter() - started) / len(batch)
                    finish(pending)  # at most one batch waits to be written
                    pending = [(pt, submit(save, pt, frames, len(batch), seconds))
                               for pt, frames in zip(batch, frames_list)]
                    bar.set_postfix_str(f"batch {len(batch)}, {seconds:.2f} s/point")
            finish(pending)
        finally:
            bar.close()
    _remove_leftovers(out_dir, points)  # also what a killed run's orphaned ffmpeg finished after that run
    return _frame([rows[pt.id] for pt in points], out_dir, list(axes))


def read_sweep(out_dir):
    """Every intact point in out_dir (from any sweep run into it), as the table `sweep()` returns."""
    out_dir = Path(out_dir)
    rows = []
    for path in sorted((out_dir / "points").glob("*.json")):
        if path.name.startswith("."):  # a temporary file
            continue
        try:
            row = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(row, dict) and "id" in row and _read_done(out_dir, row["id"]) is not None:
            rows.append(row)
    rows.sort(key=lambda r: (r.get("index", 0), r["id"]))
    return _frame(rows, out_dir, [])


def _rank_correlation(x, y) -> float:
    """Spearman's rank correlation (Pearson's on the ranks, ties averaged); nan when either side is constant."""
    import pandas as pd
    rx, ry = pd.Series(list(x), dtype=float).rank(), pd.Series(list(y), dtype=float).rank()
    if rx.nunique() < 2 or ry.nunique() < 2:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    """R^2 of the least-squares line y = a + b x."""
    if len(x) < 3 or np.ptp(x) == 0:
        return float("nan")
    fit = np.polyval(np.polyfit(x, y, 1), x)
    total = float(((y - y.mean()) ** 2).sum())
    return float(1 - ((y - fit) ** 2).sum() / total) if total > 0 else float("nan")


def trend(table, x: str, y: str = "motion") -> dict:
    """How a metric `y` follows a parameter `x` across a sweep, in numbers (what a notebook's answer is made of).

    Returns a dict of plain numbers (nan where undefined):
      values, mean, std, min, max: per value of x (sorted), over the other axes (seeds, images);
      spearman: rank correlation of x with y over every point (+1: y always rises with x);
      ratio: mean y at the largest x over mean y at the smallest (nan when the latter is 0);
      r2_linear, r2_log: how well a straight line fits the means against x, and against log(1 + x);
      loglog_slope: the slope of log(mean y) against log(x) (x, y > 0): -1 means y is proportional to 1 / x;
      noise: the mean spread (std) between points with the same x;
      distinct_steps: how many neighbouring values of x differ in mean y by more than 2 x noise, out of
      len(values) - 1.
    """
    import pandas as pd

    df = pd.DataFrame(_rows_of(table))
    stats = df.groupby(x)[y].agg(["mean", "std", "min", "max"]).sort_index()
    xs = stats.index.to_numpy(dtype=float)
    means = stats["mean"].to_numpy(dtype=float)
    noise = float(np.nan_to_num(stats["std"].to_numpy(dtype=float)).mean())
    positive = (xs > 0) & (means > 0)
    slope = float(np.polyfit(np.log(xs[positive]), np.log(means[positive]), 1)[0]) if positive.sum() >= 2 \
        else float("nan")
    steps = np.abs(np.diff(means))
    return {
        "x": x, "y": y, "values": xs.tolist(), "mean": means.tolist(),
        "std": np.nan_to_num(stats["std"].to_numpy(dtype=float)).tolist(),
        "min": stats["min"].tolist(), "max": stats["max"].tolist(),
        "spearman": _rank_correlation(df[x], df[y]),
        "ratio": float(means[-1] / means[0]) if len(means) and means[0] > 0 else float("nan"),
        "r2_linear": _r2(xs, means), "r2_log": _r2(np.log1p(np.clip(xs, 0, None)), means),
        "loglog_slope": slope, "noise": noise,
        "distinct_steps": int((steps > 2 * noise).sum()) if noise > 0 else int((steps > 0).sum()),
    }


def _rows_of(table) -> list[dict]:
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        return table.to_dict("records")
    return list(table)


# ----------------------------------------------------------------------------------------------------
# From a file, and across processes


def _config(path) -> dict:
    """Read and check a sweep's TOML file; paths in it are relative to the file."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep file at {path}")
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    known = {"model", "device", "dtype", "memory", "image", "images", "grid", "seeds", "out_dir", "batch_size",
             "metrics"}
    unknown = set(cfg) - known
    if unknown:
        raise ValueError(f"{path.name}: unknown key(s) {sorted(unknown)}; known: {', '.join(sorted(known))}")
    images = cfg.get("images", cfg.get("image"))
    if images is None or "out_dir" not in cfg:
        raise ValueError(f"{path.name}: needs images = [...] (or image = ...) and out_dir = ...")
    images = [images] if isinstance(images, str) else list(images)
    here = path.resolve().parent
    cfg["images"] = [str(here / p) for p in images]
    cfg["out_dir"] = str(here / cfg["out_dir"])
    model = cfg.setdefault("model", "toy")
    from svdkit.models import MODELS
    if model not in MODELS and (here / model).is_dir():  # a local diffusers folder next to the file
        cfg["model"] = str(here / model)
    cfg.setdefault("grid", {})
    cfg.setdefault("seeds", [0])
    # Everything that can be checked without the model, so that a typo fails in a second, not after loading it.
    for image in cfg["images"]:
        sampling.load_image(image)
    check_grid(cfg["grid"], seeds=cfg["seeds"], model=model)
    _check_batch_size(cfg.get("batch_size", "auto"))
    _metric_functions(cfg.get("metrics", "all"))
    return cfg


def main_from_toml(path, *, progress: bool = True):
    """Run the sweep a TOML file describes (see the module docstring), split across `accelerate` processes.

    Returns the full table on the first process (also written to OUT_DIR/sweep.csv), None on the others.
    """
    from accelerate import PartialState

    import svdkit

    cfg = _config(path)
    # Without CUDA (or under `accelerate launch --cpu`), processes started together talk over gloo on the CPU.
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    n, i = state.num_processes, state.process_index
    device = cfg.get("device", "auto")
    if n > 1:  # each process on its own accelerator; plain "cpu" on the CPU ("cpu:0" rounds differently)
        device = "cpu" if state.device.type == "cpu" else str(state.device)
    pipe = svdkit.load_pipeline(cfg["model"], device=device, dtype=cfg.get("dtype", "auto"),
                                memory=cfg.get("memory", "auto"))
    kwargs = dict(seeds=cfg["seeds"], out_dir=cfg["out_dir"], batch_size=cfg.get("batch_size", "auto"),
                  metrics=cfg.get("metrics", "all"))
    mine = sweep(pipe, cfg["images"], cfg["grid"], shard=(i, n), progress=progress and state.is_main_process,
                 **kwargs)
    computed = [str(x) for x in mine.loc[~mine["reused"], "id"]] if len(mine) else []
    if n > 1:
        from accelerate.utils import gather_object
        computed = gather_object(computed)  # every process's list, concatenated (this also waits for all)
    table = None
    if state.is_main_process:
        # With several processes, every point is done now: this pass only reads and checks them (and would
        # redo any a process lost).
        table = mine if n == 1 else sweep(pipe, cfg["images"], cfg["grid"], progress=False, **kwargs)
        table["reused"] = ~table["id"].isin(set(computed))
        csv = table.drop(columns=["reused"])
        _write_atomic(Path(cfg["out_dir"]) / "sweep.csv", lambda tmp: csv.to_csv(tmp, index=False))
    if n > 1:
        # Leave together, and close the process group first: a process that exits while gloo's threads still
        # run is aborted ("terminate called without an active exception"), and the launcher then fails all.
        state.wait_for_everyone()
        state.destroy_process_group()
    return table


def _command(args) -> int:
    table = main_from_toml(args.config, progress=not args.no_progress)
    if table is not None:
        out = Path(table.attrs["out_dir"])
        computed = int((~table["reused"]).sum())
        print(f"{len(table)} points ({computed} computed, {len(table) - computed} already done); "
              f"table in {out / 'sweep.csv'}, clips in {out / 'points'}/")
    return 0


def add_sweep_parser(subparsers) -> None:
    """Add the `sweep SWEEP.toml` command to an argparse subparsers object (svdkit's command line)."""
    s = subparsers.add_parser("sweep", help="run a parameter sweep described in a TOML file (resumable; "
                                            "splits across processes under accelerate launch)")
    s.add_argument("config", help="the sweep's TOML file (model, images, grid, seeds, out_dir)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=_command)


# `svdkit.sweep(...)` calls `sweep()`: the module itself is callable, so `svdkit.sweep.linspace` works too.
class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
