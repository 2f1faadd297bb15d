"""Atomic writes: the file appears whole or not at all, with the permissions a plain open() gives."""

import os
import stat

import pytest

from svdkit.files import atomic_write


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_permissions_are_those_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        with atomic_write(tmp_path / "atomic.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_write(path) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".table.") and tmp.suffix == ".csv"
            tmp.write_text("half")
            assert path.read_text() == "old"  # readers see the old file until the rename
            raise RuntimeError("writer failed")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    with atomic_write(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
