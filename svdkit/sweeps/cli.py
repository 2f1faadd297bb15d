"""A sweep from a TOML file, split across processes: ``python -m svdkit sweep SWEEP.toml``, also under
``accelerate launch`` (the file's keys, and running on several GPUs or machines: see `svdkit.sweeps`).

The file is read and checked (images, grid, batch size, metrics) before the model loads, so a typo fails in a
second. The first process writes ``OUT_DIR/sweep.csv`` with every row when all are done.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from svdkit import models, sampling
from svdkit.files import atomic_write
from svdkit.sweeps.grid import check_grid
from svdkit.sweeps.run import check_batch_size, metric_functions, sweep

__all__ = ["main_from_toml", "add_sweep_parser"]


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
    if model not in models.MODELS and (here / model).is_dir():  # a local diffusers folder next to the file
        cfg["model"] = str(here / model)
    cfg.setdefault("grid", {})
    cfg.setdefault("seeds", [0])
    # Everything that can be checked without the model, so that a typo fails in a second, not after loading it.
    for image in cfg["images"]:
        sampling.load_image(image)
    check_grid(cfg["grid"], seeds=cfg["seeds"], model=model)
    check_batch_size(cfg.get("batch_size", "auto"))
    metric_functions(cfg.get("metrics", "all"))
    return cfg


def main_from_toml(path, *, progress: bool = True):
    """Run the sweep a TOML file describes (see `svdkit.sweeps`), split across `accelerate` processes.

    Returns the full table on the first process (also written to OUT_DIR/sweep.csv), None on the others.
    """
    from accelerate import PartialState

    cfg = _config(path)
    # Without CUDA (or under `accelerate launch --cpu`), processes started together talk over gloo on the CPU.
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    n, i = state.num_processes, state.process_index
    device = cfg.get("device", "auto")
    if n > 1:  # each process on its own accelerator; plain "cpu" on the CPU ("cpu:0" rounds differently)
        device = "cpu" if state.device.type == "cpu" else str(state.device)
    pipe = models.load_pipeline(cfg["model"], device=device, dtype=cfg.get("dtype", "auto"),
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
        with atomic_write(Path(cfg["out_dir"]) / "sweep.csv") as tmp:
            csv.to_csv(tmp, index=False)
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


