"""Writing a file so that no reader ever sees half of it: write beside it, flush to disk, rename into place.

`atomic_write(path)` hands out a fresh, empty file in the same folder; when the block ends, that file is synced
to disk and renamed onto `path` in one step (`os.replace`, atomic on one filesystem). If the block raises, or
the process is killed, `path` keeps what it had, and at most a temporary file is left: its name starts with a
dot, then the target's stem (``.<stem>.<random><suffix>``), so a folder's leftovers are easy to find.

The finished file has the usual permissions, those a plain ``open(path, "w")`` gives (0o666 less the umask):
a clip or a table made here can be shared like any other file.

>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "note.txt"
>>> with atomic_write(path) as tmp:          # tmp: an empty file beside path; write it by name
...     _ = tmp.write_text("done")
>>> path.read_text(), [p.name for p in path.parent.iterdir()]
('done', ['note.txt'])
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write"]


def _create_beside(path: Path) -> Path:
    """A new empty file named ``.<stem>.<random><suffix>`` in path's folder, created as open() would create it."""
    for _ in range(100):
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}{path.suffix}"
        try:
            # mode 0o666: the kernel applies the umask, as for a plain open() (tempfile.mkstemp would give 0o600)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


def _sync(path: Path) -> None:
    """Flush a file's data to disk, so that the rename never lands before the contents."""
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows syncs only writable handles
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path) -> Iterator[Path]:
    """Write `path` all at once: yields a temporary path beside it, renamed onto `path` when the block ends.

    Write the temporary file by name (any writer that opens it for writing will do: `Path.write_text`,
    `np.savez_compressed` on an open file, ffmpeg). On success it is synced to disk and replaces `path`; on
    an error it is removed and `path` is left as it was. The folder must exist.

    Args:
      path: the final file (str or Path).

    Yields:
      The temporary file's Path (empty, already created, with the permissions a plain open() gives).
    """
    path = Path(path)
    tmp = _create_beside(path)
    try:
        yield tmp
        _sync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
