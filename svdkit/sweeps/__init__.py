"""Sweeps: run a grid of `generate()` settings, measure every clip, and keep every result on disk.

`svdkit.sweep()` runs one; this package holds what goes with it: the ranges a grid is written with
(`linspace`, `logspace`, `ints`), reading results back (`read_sweep`, `load_frames`), and pictures of them
(`svdkit.sweeps.views`). How a metric follows a parameter, in numbers, is `svdkit.metrics.trend`.

>>> import tempfile
>>> import svdkit
>>> from svdkit import sweeps
>>> pipe = svdkit.load_pipeline("toy")
>>> table = svdkit.sweep(pipe, "data/example_0.png", {"motion_bucket_id": sweeps.linspace(0, 255, 3)},
...                      seeds=[0, 1], num_inference_steps=4, out_dir=tempfile.mkdtemp(), progress=False)
>>> table[["motion_bucket_id", "seed"]].values.tolist()           # one row per point, seeds vary fastest
[[0, 0], [0, 1], [128, 0], [128, 1], [255, 0], [255, 1]]
>>> means = table.groupby("motion_bucket_id")["motion"].mean()    # pixels per frame, one row per bucket
>>> sweeps.load_frames(table.iloc[0]).shape                       # the exact frames, uint8 (F, H, W, 3)
(14, 64, 64, 3)

The grid names generate() parameters (height, width, num_frames, num_inference_steps, min_guidance_scale,
max_guidance_scale, fps, motion_bucket_id, noise_aug_strength, decode_chunk_size), plus "guidance" (the
per-frame schedule), "seed" and generate()'s speed-ups (`AXES`). A list is an axis; a single value is fixed
for every point, and fixed values may also be given as keywords, as to generate() (`num_inference_steps=4`
above). `image` may be a list of images: each is one more axis. The sweep runs every combination, one row per
point. Bad input fails before any model work, naming the parameter and what is valid.

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
``OUT_DIR/points/`` are written one by one, each to a temporary name and then renamed into place
(`svdkit.files.atomic_write`; they get the usual file permissions):

* ``<id>.mp4``, the clip to watch (h264, lossy);
* ``<id>.npz``, the frames exactly (uint8 (F, H, W, 3), compressed);
* ``<id>.json``, last: the row (parameters, metrics, paths) and the SHA-256 of the two files above.

A point counts as done only when its JSON row parses and both checksums match, so running the same
sweep again skips what is done, and redoes a point whose files were damaged or half written (after a
crash or a kill). Another sweep into the same folder reuses every point the two have in common.
``OUT_DIR/log/`` records, per process, every point it computed (`computed_log`).

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

The modules: `grid` (ranges, points and their ids), `store` (files, checksums, logs, the table), `run` (the
engine, `sweep`), `cli` (the TOML file and `accelerate`), `views` (clips side by side, plots, compare).
"""

from svdkit.sweeps import views
from svdkit.sweeps.cli import main_from_toml
from svdkit.sweeps.grid import AXES, Point, check_grid, image_hash, ints, linspace, logspace, model_fingerprint, plan
from svdkit.sweeps.run import sweep
from svdkit.sweeps.store import computed_log, load_frames, read_sweep

__all__ = [
    # run a sweep, and the ranges to write its grid with
    "sweep", "linspace", "logspace", "ints", "AXES",
    # its results
    "read_sweep", "load_frames", "computed_log", "views",
    # before running: the points, and checks without a model
    "plan", "check_grid", "Point", "image_hash", "model_fingerprint",
    # from a TOML file, across processes (python -m svdkit sweep)
    "main_from_toml",
]
