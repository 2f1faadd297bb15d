"""Running a sweep: stage 1 once per image and seed, stage 3 in batches, every point measured and kept.

`sweep()` is the whole engine (see `svdkit.sweeps` for a guide); what it reuses, plans and stores comes from
`svdkit.sweeps.grid` and `svdkit.sweeps.store`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from svdkit import sampling
from svdkit.sweeps.grid import Point, image_hash, label_images, model_fingerprint, plan, split_grid
from svdkit.sweeps.store import (
    checksums,
    load_frames,
    log_computed,
    point_paths,
    read_point,
    remove_leftovers,
    to_table,
    write_frames,
    write_json,
)
from svdkit.video import write_video

__all__ = ["sweep", "check_batch_size", "metric_functions"]


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
    # 3. Denoise all of them together: latents (B, F, 4, h, w), guidance (B, F); the speed options of the batch
    #    (its points share them) plug in through the prediction function, as in generate().
    scales, speed = torch.stack(guidance), batch[0].speed
    predict = sampling.unet_prediction
    if speed["skip_uncond"] or speed["cache_interval"] > 1:
        from svdkit.speed import fast_prediction
        predict = fast_prediction(sampling.unet_prediction, scales, **speed)
    out, _, _ = sampling.denoise(pipe, torch.cat(latents), sampling.Condition.cat(conditions), scales,
                                 predict=predict)
    # 4. Decode each video on its own, exactly as generate() does (batching the VAE saves nothing on a CPU).
    return [sampling.decode_latents(pipe, out[i: i + 1], p["decode_chunk_size"] or F) for i in range(len(batch))]


def check_batch_size(batch_size) -> None:
    """Raise a ValueError unless batch_size is "auto" or an integer >= 1."""
    if isinstance(batch_size, bool) or batch_size != "auto" and (not isinstance(batch_size, (int, np.integer))
                                                                 or batch_size < 1):
        raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got {batch_size!r}")


def metric_functions(metrics) -> dict:
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
    from svdkit import __version__

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
        "sha256": checksums(paths),
        "num_frames_out": int(frames.shape[0]),
        "model": model["model"], "model_weights": model["weights"], "dtype": model["dtype"],
        "svdkit_version": __version__,
        "process_index": shard[0], "num_processes": shard[1], "pid": os.getpid(),
        "batch_size": batch_size, "seconds": round(seconds, 4),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def sweep(pipe, image, grid: dict | None = None, *, seeds=(0,), out_dir, batch_size="auto", metrics="all",
          progress: bool = True, shard: tuple[int, int] | None = None, **fixed):
    """Generate and measure every point of a grid; keep each point on disk; return one row per point.

    `sweep(pipe, image, {"motion_bucket_id": [0, 127, 255]}, out_dir="sweeps/demo", num_inference_steps=25)`
    runs three clips, each as `generate(pipe, image, motion_bucket_id=..., num_inference_steps=25)` would make
    it; see `svdkit.sweeps` for a runnable example, the files it keeps and running it on several GPUs.

    Args:
      pipe: a pipeline from `load_pipeline`.
      image: one image (path, PIL, array, tensor) or a list of them.
      grid: parameter name -> list of values (an axis) or one value (fixed), or a range written as
        {"linspace": [start, stop, num]} (also "logspace", "ints"). Names: see `AXES`.
      **fixed: parameters fixed for every point, as keywords, as `generate()` takes them (a name from `AXES`,
        one value each; a parameter goes either in the grid or here).
      seeds: the seeds to run every setting with (or a "seed" axis in the grid).
      out_dir: where points are kept (``points/``) and logged (``log/``); reused on the next run.
      batch_size: points per UNet batch, or "auto" (by free memory on a GPU; 4 for small models on a CPU, else
        1); 1 reproduces generate() exactly.
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
      ValueError (FileNotFoundError for a missing image; TypeError for an unknown keyword) naming the bad
      parameter and what is valid, before any model work and before anything is written into out_dir.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    shard = (0, 1) if shard is None else (int(shard[0]), int(shard[1]))
    if not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard}")
    check_batch_size(batch_size)
    functions = metric_functions(metrics)
    axes, _ = split_grid(grid, seeds, fixed)  # names and shapes of the settings; values are checked by plan()

    # 0. Plan: every point, its id, and which of them are this process's. Bad input stops here, before any
    #    model work and before anything is written.
    images = label_images(image)
    labels = [label for label, _ in images]
    loaded = [sampling.load_image(item) for _, item in images]
    hashes = [image_hash(im) for im in loaded]
    points = [pt for pt in plan(pipe, loaded, grid, seeds=seeds, **fixed) if pt.index % shard[1] == shard[0]]
    model = model_fingerprint(pipe)
    (out_dir / "points").mkdir(parents=True, exist_ok=True)

    # 1. What is done already (intact files); add metrics it lacks from its stored frames.
    rows: dict[str, dict] = {}
    for point in points:
        row = read_point(out_dir, point.id)
        if row is None:
            continue
        if functions and _missing_metrics(functions, row):
            frames = load_frames({"frames": out_dir / row["frames"]})
            row["metrics"] = {**row.get("metrics", {}),
                              **_measure(functions, frames, loaded[point.image_index])}
            write_json(point_paths(out_dir, point.id)["row"], row)
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
        paths = point_paths(out_dir, point.id)
        write_video(paths["clip"], frames, point.params["fps"])
        write_frames(paths["frames"], frames)
        measured = _measure(functions, frames, loaded[point.image_index])
        row = _row(point, labels, hashes, frames, measured, out_dir, paths, shard, batch, seconds, model)
        write_json(paths["row"], row)
        log_computed(out_dir, shard, [point.id], seconds)
        return {**row, "reused": False}

    def finish(pending):
        for point, future in pending:
            rows[point.id] = future.result()
        if pending:
            bar.update(len(pending))

    # 3. Run the batches. On a GPU, a writer thread saves and measures one batch while the next one computes;
    #    on a CPU that would only take cores from the UNet, so each batch is saved before the next starts.
    remove_leftovers(out_dir, [pt.id for pt in todo])
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
    # also what a killed run's orphaned ffmpeg finished after that run
    remove_leftovers(out_dir, [pt.id for pt in points])
    return to_table([rows[pt.id] for pt in points], out_dir, list(axes))


