"""Run a notebook headless with papermill: a time limit on every cell, and no kernel reply left unread.

>>> from pathlib import Path
>>> from svdkit.headless import run_notebook
>>> out = Path("out/00_quickstart").resolve()            # the kernel runs in the notebook's folder
>>> path = run_notebook("notebooks/00_quickstart.ipynb", out / "00_quickstart.ipynb",
...                     parameters={"model": "toy", "out_dir": str(out)}, cell_timeout=600)

`python -m svdkit notebooks` (the main job) and the notebook tests run every notebook through `run_notebook`.
It is `papermill.execute_notebook` with one change in how the client waits for a cell's reply.

Why: nbclient (papermill's client) waits for each cell's `execute_reply` on the kernel's shell socket. When a
cell writes into an `ipywidgets.Output` (as svdkit's widgets do), nbclient keeps a copy of that widget and
sends its new state to the kernel on the same shell socket while it waits. With pyzmq's asyncio sockets, such a
send now and then swallows the wake-up of a reply that arrives at about the same moment: the reply sits
unread until the wait times out, and with no time limit the run waits forever with the kernel idle. A cell
that writes no Output widget never sends, and never showed the stall (benchmarks/headless_replies.py measures
both). Here the client waits for a reply in slices of `REPLY_POLL_SECONDS`: a missed wake-up costs at most
one slice, because the end of each slice checks the socket directly.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
import os
import queue
import time
from collections.abc import Mapping
from pathlib import Path

# jupyter_client comes with every Jupyter kernel (ipykernel); papermill and nbclient only with svdkit's
# `notebooks` and `test` extras, so `run_notebook` imports them when it runs.
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from traitlets import Type

__all__ = ["run_notebook", "CellTimeout", "reply_waits", "KernelManager", "REPLY_POLL_SECONDS"]

REPLY_POLL_SECONDS = 0.5  # the longest a reply may wait unread after a missed wake-up


class CellTimeout(RuntimeError):
    """A notebook cell ran longer than the time limit given to `run_notebook`."""


class _ShellChannel(AsyncZMQSocketChannel):
    """The shell channel, but a wait for a message never lasts longer than REPLY_POLL_SECONDS at a time."""

    async def get_msg(self, timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = REPLY_POLL_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await super().get_msg(timeout=min(REPLY_POLL_SECONDS, left))
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise


class _KernelClient(AsyncKernelClient):
    shell_channel_class = Type(_ShellChannel)


class KernelManager(AsyncKernelManager):
    """papermill's kernel manager with the sliced shell wait; pass it as `kernel_manager_class=`."""

    client_factory = Type(klass=_KernelClient)  # what client() builds


def reply_waits(executed) -> list[float]:
    """Seconds from each code cell's reply (as the kernel stamped it) to the cell's end (as papermill recorded
    it), in cell order, for a notebook executed by papermill: more than REPLY_POLL_SECONDS means a reply that
    the client had and did not read."""
    def when(stamp: str) -> dt.datetime:
        t = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)

    cells = json.loads(Path(executed).read_text())["cells"]
    return [(when(c["metadata"]["papermill"]["end_time"]) - when(c["metadata"]["execution"]["shell.execute_reply"]))
            .total_seconds() for c in cells if c["cell_type"] == "code"]


def _whole_seconds(cell_timeout) -> int | None:
    """The cell time limit as nbclient takes it, whole seconds (rounded up), or None for no limit; a clear
    ValueError for anything else."""
    if cell_timeout is None:
        return None
    if isinstance(cell_timeout, bool) or not isinstance(cell_timeout, numbers.Real) or not (
            0 < cell_timeout < math.inf):
        raise ValueError(f"cell_timeout must be a number of seconds > 0, or None for no limit; got {cell_timeout!r}")
    return math.ceil(cell_timeout)


def run_notebook(path, output, parameters: dict | None = None, cwd=None, cell_timeout: float | None = None,
                 kernel_name: str = "python3", **papermill_kwargs) -> Path:
    """Execute the notebook at `path` into `output` with papermill; returns `output` as a Path.

    Args:
      path: the notebook to run (it is not changed).
      output: where the executed notebook is written (also when a cell fails).
      parameters: values for the cell tagged `parameters`.
      cwd: the kernel's working folder (default: the notebook's folder).
      cell_timeout: seconds one cell may run (nbclient counts whole seconds: 2.5 waits 3); None: no limit.
        A cell that runs longer stops the run with `CellTimeout`, which names the cell and the limit.
      **papermill_kwargs: passed on to `papermill.execute_notebook` (e.g. `progress_bar=False`).
    """
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        raise FileNotFoundError(f"path: no notebook at {path!r}")
    if not isinstance(output, (str, os.PathLike)):
        raise ValueError(f"output must be a path for the executed notebook; got {output!r}")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise ValueError(f"parameters must be a dict of name -> value, or None; got {type(parameters).__name__}")
    seconds = _whole_seconds(cell_timeout)
    try:
        import papermill
        from nbclient.exceptions import CellTimeoutError
    except ImportError as e:
        raise ImportError(f"run_notebook needs papermill ({e}): pip install 'svdkit[notebooks]'") from e
    path, output = Path(path), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(path), str(output), parameters=dict(parameters or {}),
                                   cwd=str(cwd or path.parent), kernel_name=kernel_name,
                                   execution_timeout=seconds, kernel_manager_class=KernelManager,
                                   **papermill_kwargs)
    except CellTimeoutError as e:
        raise CellTimeout(f"{path.name}: a cell ran past cell_timeout={cell_timeout:g} s and was stopped "
                          f"(the executed notebook, up to that cell, is in {output})\n{e}") from e
    return output
