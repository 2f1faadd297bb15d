"""How a sweep keeps its points on disk: three files per point, named by the point's id, checked by SHA-256.

In ``OUT_DIR/points/``, each point has ``<id>.mp4`` (the clip), ``<id>.npz`` (the exact frames) and
``<id>.json`` (its row, written last, with the SHA-256 of the other two); ``<id>`` is the first 20 hex digits
of the point's id. Every file is written through `svdkit.files.atomic_write`, so each is whole or absent, and
a point counts as done only when its row parses and both checksums match (`read_point`).
``OUT_DIR/log/process-<i>.jsonl`` lists every point process i computed, one JSON line each.

>>> from svdkit.sweeps import store
>>> paths = store.point_paths("sweeps/demo", "3f1c" * 16)       # a point id is 64 hex digits
>>> paths["row"].as_posix(), sorted(paths)
('sweeps/demo/points/3f1c3f1c3f1c3f1c3f1c.json', ['clip', 'frames', 'row'])
>>> store.read_point("sweeps/demo", "3f1c" * 16) is None       # not there (or damaged): not done
True
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from svdkit.files import atomic_write

__all__ = ["read_sweep", "load_frames", "computed_log", "point_paths", "checksums", "write_json", "write_frames",
           "read_point", "remove_leftovers", "log_computed", "to_table"]

_FILES = ("clip", "frames")  # the files of a point, besides its JSON row
_SUFFIX = {"clip": ".mp4", "frames": ".npz", "row": ".json"}


def _stem(point_id: str) -> str:
    return point_id[:20]


def point_paths(out_dir, point_id: str) -> dict[str, Path]:
    """The files of a point: {"clip": .mp4, "frames": .npz, "row": .json} in ``out_dir/points/``."""
    folder = Path(out_dir) / "points"
    return {kind: folder / (_stem(point_id) + suffix) for kind, suffix in _SUFFIX.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checksums(paths: dict[str, Path]) -> dict[str, str]:
    """SHA-256 of a point's clip and frames (what its row stores, and `read_point` checks)."""
    return {kind: _sha256(paths[kind]) for kind in _FILES}


def write_json(path: Path, obj) -> None:
    """Write a point's row as JSON, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=str))


def write_frames(path: Path, frames: np.ndarray) -> None:
    """Write a point's exact frames, uint8 (F, H, W, 3), as a compressed .npz, atomically."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, frames=frames)


def read_point(out_dir, point_id: str) -> dict | None:
    """The stored row of a point when every file of it is present and intact, else None."""
    paths = point_paths(out_dir, point_id)
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




def remove_leftovers(out_dir, point_ids) -> None:
    """Delete the temporary files a killed run left behind for these points (one listing of the folder)."""
    stems = {_stem(pid) for pid in point_ids}
    for entry in os.scandir(Path(out_dir) / "points"):
        if entry.name.startswith(".") and entry.name[1:].split(".")[0] in stems:
            Path(entry.path).unlink(missing_ok=True)


def log_computed(out_dir, shard, point_ids, seconds) -> None:
    """Append one line per computed point to this process's log (a killed run may leave a half line)."""
    folder = Path(out_dir) / "log"
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


def to_table(rows: list[dict], out_dir, axes: list[str]):
    """The DataFrame of rows: image, seed and the axes first, then metrics, paths, then everything else."""
    import pandas as pd

    out_dir = Path(out_dir)
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
        if isinstance(row, dict) and "id" in row and read_point(out_dir, row["id"]) is not None:
            rows.append(row)
    rows.sort(key=lambda r: (r.get("index", 0), r["id"]))
    return to_table(rows, out_dir, [])


