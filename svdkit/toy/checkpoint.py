"""Resumable training runs: a folder of atomic checkpoints and a log that every sitting appends to.

A run can be stopped at any moment (a closed laptop, a killed job) and continued later with ``--resume``: at most
the steps since the last checkpoint are lost, and a checkpoint is never seen half-written. Everything is stored as
safetensors (tensors) and JSON (numbers, random-generator states): nothing is unpickled on resume.

Layout of a run folder::

    log.jsonl                  one JSON object a line: training rows, evaluations, starts and stops
    lock                       held by the training that runs in the folder (one at a time)
    <stage>-latest.json        names the newest complete checkpoint of a stage ("vae", "unet")
    <stage>-000600/            tensors.safetensors + state.json, written as <stage>-000600.tmp/ then renamed

>>> import tempfile, torch
>>> run = Run(tempfile.mkdtemp())
>>> run.save("unet", 3, {"w": torch.ones(2)}, {"note": "three steps"})
>>> tensors, state = run.latest("unet")
>>> state["step"], tensors["w"].tolist()
(3, [1.0, 1.0])
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from svdkit.files import atomic_write

__all__ = ["Run", "resume", "save_training", "optimizer_tensors", "load_optimizer", "rng_state", "set_rng_state"]


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path) as tmp:  # a reader sees the old content or the new, never a mix
        tmp.write_text(text)


class Run:
    """One training run's folder: ``save`` / ``latest`` checkpoints per stage, ``log`` rows, ``due`` for timing.

    Args:
        folder: created if missing.
        every_minutes: ``due()`` turns True this long after the last save (or the start).
        keep: complete checkpoints kept per stage (older ones are deleted after a new one is in place).
    """

    def __init__(self, folder, *, every_minutes: float = 10.0, keep: int = 2):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.every = 60.0 * every_minutes
        self.keep = keep
        self._last = time.monotonic()
        self._lock = None

    def lock(self) -> None:
        """Hold the folder for this process: a second training started on it stops at once with a clear message,
        instead of both writing the same checkpoints. Released when the process ends."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return
        self._lock = open(self.folder / "lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SystemExit(f"{self.folder} is in use by another training; wait for it to stop, or use another "
                             "--run-dir") from None

    # -- the log
    def log(self, **row) -> None:
        """Append one JSON line (with the wall-clock time) to ``log.jsonl``; earlier sittings' lines stay."""
        row = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), **row}
        with open(self.folder / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rows(self, **match) -> list[dict]:
        """The log's rows whose fields equal ``match`` (e.g. ``stage="eval"``), oldest first."""
        path = self.folder / "log.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in rows if all(r.get(k) == v for k, v in match.items())]

    def curve(self, stage: str, *fields: str) -> list[tuple]:
        """A stage's logged rows over every sitting as (step, *fields), one per step (a step redone after a resume
        keeps its last row)."""
        rows = {r["step"]: tuple(r[f] for f in fields) for r in self.rows(stage=stage)}
        return [(step, *rows[step]) for step in sorted(rows)]

    def check_same(self, record: dict) -> None:
        """Refuse (SystemExit, one line) to mix two trainings in one folder: ``record`` must match the first start's."""
        record = json.loads(json.dumps(record))  # as the log holds it (tuples become lists)
        starts = self.rows(stage="start")
        old = {k: starts[0].get(k) for k in record} if starts else record
        if old != record:
            changed = ", ".join(f"{k}: {old[k]} -> {record[k]}" for k in record if old[k] != record[k])
            raise SystemExit(f"--run-dir {self.folder} holds another training ({changed}); "
                             "use another --run-dir, or the same settings")

    # -- checkpoints
    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every

    def save(self, stage: str, step: int, tensors: dict, state: dict) -> None:
        """Write checkpoint ``step`` of ``stage`` atomically, then drop the oldest beyond ``keep``."""
        from safetensors.torch import save_file

        name = f"{stage}-{step:06d}"
        tmp = self.folder / (name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "tensors.safetensors"))
        _write_text(tmp / "state.json", json.dumps({**state, "step": step}))
        final = self.folder / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _write_text(self.folder / f"{stage}-latest.json", json.dumps({"checkpoint": name, "step": step}))
        for old in sorted(self.folder.glob(f"{stage}-[0-9]*"))[:-self.keep]:
            if old.is_dir() and old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        self._last = time.monotonic()

    def step(self, stage: str) -> int:
        """The step of the newest complete checkpoint of ``stage`` (0 if none), without loading it."""
        pointer = self.folder / f"{stage}-latest.json"
        return int(json.loads(pointer.read_text())["step"]) if pointer.exists() else 0

    def latest(self, stage: str) -> tuple[dict, dict] | None:
        """The newest complete checkpoint of ``stage`` as (tensors, state), or None."""
        from safetensors.torch import load_file

        pointer = self.folder / f"{stage}-latest.json"
        if not pointer.exists():
            return None
        folder = self.folder / json.loads(pointer.read_text())["checkpoint"]
        return load_file(str(folder / "tensors.safetensors")), json.loads((folder / "state.json").read_text())


# ---------------------------------------------------------------------------------- optimizer and RNG states
def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str = "opt.") -> tuple[dict, dict]:
    """An optimizer's state as (tensors, JSON-able rest), for :meth:`Run.save`."""
    sd = opt.state_dict()
    tensors = {f"{prefix}{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items() if torch.is_tensor(v)}
    scalars = {f"{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items() if not torch.is_tensor(v)}
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict, rest: dict, prefix: str = "opt.") -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            i, name = key[len(prefix):].split(".", 1)
            state.setdefault(int(i), {})[name] = value
    for key, value in rest["scalars"].items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def rng_state(rng: np.random.Generator, gen: torch.Generator | None = None) -> tuple[dict, dict]:
    """numpy, torch-global and (optionally) one torch Generator state, as (tensors, JSON-able)."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if gen is not None:
        tensors["rng.gen"] = gen.get_state()
    return tensors, {"numpy": rng.bit_generator.state}


def set_rng_state(rng: np.random.Generator, tensors: dict, rest: dict, gen: torch.Generator | None = None) -> None:
    rng.bit_generator.state = rest["numpy"]
    torch.set_rng_state(tensors["rng.torch"])
    if gen is not None:
        gen.set_state(tensors["rng.gen"])


# ---------------------------------------------------------------------------------- a training loop's state
def resume(run: Run | None, stage: str, model, opt, rng, gen=None, ema=None) -> int:
    """Load the newest checkpoint of ``stage`` into the model, optimizer, EMA and random streams; the step it
    reached (0 if there is none)."""
    found = run.latest(stage) if run is not None else None
    if found is None:
        return 0
    tensors, state = found
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    load_optimizer(opt, tensors, state["optimizer"])
    set_rng_state(rng, tensors, state["rng"], gen)
    if ema is not None:
        for (n, _), e in zip(model.named_parameters(), ema):
            e.copy_(tensors[f"ema.{n}"])
    print(f"{stage}: resumed at step {state['step']} from {run.folder}", flush=True)
    return int(state["step"])


def save_training(run: Run, stage: str, step: int, model, opt, rng, gen=None, ema=None, **extra) -> None:
    """Checkpoint ``stage`` at ``step``: the model, optimizer, random streams and (if given) the EMA weights."""
    opt_t, opt_s = optimizer_tensors(opt)
    rng_t, rng_s = rng_state(rng, gen)
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()}, **opt_t, **rng_t}
    if ema is not None:
        tensors.update({f"ema.{n}": e for (n, _), e in zip(model.named_parameters(), ema)})
    run.save(stage, step, tensors, {"optimizer": opt_s, "rng": rng_s, **extra})
