"""What a sweep runs: the ranges a grid is written with, its points, and the hash that names each point.

A grid maps generate() parameters (see `AXES`) to a list of values (an axis) or to one value (fixed for every
point); `plan()` expands it into `Point`s, every parameter checked and every default filled in, each with an
id that hashes everything that makes its clip. No model runs here.

>>> from svdkit.sweeps import check_grid, linspace
>>> linspace(0, 255, 8)
[0, 36, 73, 109, 146, 182, 219, 255]
>>> check_grid({"motion_bucket_id": linspace(0, 255, 8), "fps": [6, 7]}, seeds=[0, 1])   # settings per image
32
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import torch

from svdkit import sampling
from svdkit.sampling import GENERATE_PARAMS

__all__ = ["linspace", "logspace", "ints", "AXES", "SPEED_OPTIONS", "Point", "plan", "check_grid", "split_grid",
           "label_images", "image_hash", "model_fingerprint"]

# Names a grid may use: generate()'s parameters, the guidance schedule, the seed, and generate()'s
# approximate speed-ups (see `svdkit.generate`).
SPEED_OPTIONS = {"skip_uncond": False, "cache_interval": 1}
AXES = GENERATE_PARAMS + ("guidance", "seed") + tuple(SPEED_OPTIONS)

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


def label_images(image) -> list[tuple[str, object]]:
    """The sweep's images as a list of (label, image): the file stem, else image0, image1, ...

    >>> label_images(["data/example_0.png", "data/example_0.png"])
    [('example_0', 'data/example_0.png'), ('example_0_1', 'data/example_0.png')]
    """
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


def split_grid(grid: dict | None, seeds=(0,), fixed: dict | None = None) -> tuple[dict, dict]:
    """Split a sweep's settings into axes (name -> list of values) and fixed values (name -> value).

    grid: name -> list (an axis), a range such as {"linspace": [0, 255, 8]} (an axis), or one value (fixed).
    seeds: the "seed" axis, unless the grid or `fixed` names "seed".
    fixed: name -> value given as keywords (`sweep(..., num_inference_steps=25)`): each is one value, as for
      generate(); a guidance schedule may be a list of numbers.

    >>> split_grid({"motion_bucket_id": {"ints": [0, 255, 127]}, "fps": 7}, seeds=[0, 1], fixed={"num_frames": 14})
    ({'motion_bucket_id': [0, 127, 254], 'seed': [0, 1]}, {'fps': 7, 'num_frames': 14})
    """
    grid, fixed = dict(grid or {}), dict(fixed or {})
    unknown = set(grid) - set(AXES)
    if unknown:
        raise ValueError(f"grid: unknown parameter(s) {sorted(unknown)}; a grid may use {', '.join(AXES)}")
    unknown = set(fixed) - set(AXES)
    if unknown:
        raise TypeError(f"unknown keyword parameter(s) {sorted(unknown)}; a fixed parameter is one of "
                        f"{', '.join(AXES)}; a sweep's own keywords are seeds, out_dir, batch_size, metrics, "
                        "progress, shard")
    both = sorted(set(grid) & set(fixed))
    if both:
        raise ValueError(f"{both[0]} is given both in the grid and as a keyword; give it once")
    for name, value in fixed.items():
        if isinstance(value, dict) or isinstance(value, (list, tuple, np.ndarray, range)) and name != "guidance":
            where = "seeds=[...]" if name == "seed" else f"the grid: {{{name!r}: [...]}}"
            raise ValueError(f"{name}={value!r}: a keyword is one fixed value; to sweep over several, use {where}")
    if ("seed" in grid or "seed" in fixed) and tuple(np.atleast_1d(seeds)) != (0,):
        raise ValueError("give the seeds either as seeds=... or as 'seed' (in the grid or as a keyword), not both")
    if "seed" not in fixed:
        grid.setdefault("seed", list(np.atleast_1d(seeds)))
    axes, constants = {}, {}
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
            constants[name] = value.item() if isinstance(value, np.generic) else value
    constants.update({k: v.item() if isinstance(v, np.generic) else v for k, v in fixed.items()})
    return axes, constants


def plan(pipe, image, grid: dict | None = None, *, seeds=(0,), **fixed) -> list[Point]:
    """Every point of a sweep, in order (images, then the grid's axes in their order, then seeds), unrun.

    Takes what `svdkit.sweep` takes (fixed parameters as keywords too) and validates every point's parameters
    as generate() does, before any model work.

    >>> import svdkit
    >>> pipe = svdkit.load_pipeline("toy")
    >>> points = plan(pipe, "data/example_0.png", {"motion_bucket_id": [0, 255]}, seeds=[0, 1], fps=6)
    >>> [(p.params["motion_bucket_id"], p.params["fps"], p.seed) for p in points]
    [(0, 6, 0), (0, 6, 1), (255, 6, 0), (255, 6, 1)]
    >>> len(points[0].id)                     # a SHA-256, hex: names the point's files
    64
    """
    from svdkit import __version__

    settings = _settings(grid, seeds, fixed,
                         lambda values, guidance: sampling.check_params(pipe, values, guidance))
    images = label_images(image)
    hashes = [image_hash(item) for _, item in images]
    model = model_fingerprint(pipe)
    points = []
    for image_index in range(len(images)):
        for seed, p, guidance, scales, speed in settings:
            identity = {"image": hashes[image_index], "seed": seed, "params": p,
                        "scales": [round(g, 6) for g in scales],
                        "model": model, "svdkit": __version__}
            # speed-ups change the clip, so they name it; at their defaults they are left out, so that the
            # ids of plain points stay what they were before the options existed
            identity.update({k: v for k, v in speed.items() if v != SPEED_OPTIONS[k]})
            points.append(Point(index=len(points), image_index=image_index, seed=seed, params=p,
                                guidance=guidance if guidance is not None else "linear", scales=scales,
                                speed=speed, id=_digest(_canonical(identity))))
    return points


def _settings(grid, seeds, fixed, check) -> list[tuple]:
    """Every combination of the grid's axes, checked: (seed, params, guidance, scales, speed) in plan order.

    `check(values, guidance)` validates one combination and fills in its defaults (`sampling.check_params`);
    any bad value raises here, before a model does any work.
    """
    axes, fixed = split_grid(grid, seeds, fixed)
    # seeds vary fastest, so the seeds of one setting sit next to each other
    order = [n for n in axes if n != "seed"] + ["seed"] * ("seed" in axes)  # (or one fixed seed)
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


def check_grid(grid: dict | None = None, *, seeds=(0,), model: str = "toy", **fixed) -> int:
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

    return len(_settings(grid, seeds, fixed, check))


