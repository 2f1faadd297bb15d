"""The command line: generate a clip from a file, and clear errors for bad input."""

import json
import subprocess
import sys

import pytest

from tests.conftest import make_image


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_pipe):
    folder = tmp_path_factory.mktemp("tiny")
    tiny_pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def run(*args):
    return subprocess.run([sys.executable, "-m", "svdkit", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_help_lists_commands():
    out = run("--help")
    assert out.returncode == 0 and "generate" in out.stdout and "notebooks" in out.stdout


def test_generate_writes_clip_and_record(tmp_path, tiny_folder):
    image = tmp_path / "in.png"
    make_image().save(image)
    out = run("generate", image, "--model", tiny_folder, "--num-inference-steps", 2, "--num-frames", 4,
              "--motion-bucket-id", 90, "--fps", 9, "--seed", 4, "-o", tmp_path / "clip.mp4")
    assert out.returncode == 0, out.stderr
    record = json.loads((tmp_path / "clip.json").read_text())
    assert record["motion_bucket_id"] == 90 and record["fps"] == 9 and record["seed"] == 4
    assert (tmp_path / "clip.mp4").stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["--height", "100"], "height must be a positive multiple of 64"),
    (["--fps", "0"], "fps must be an integer >= 1"),
])
def test_bad_input_is_one_clear_line(tmp_path, tiny_folder, args, message):
    image = tmp_path / "in.png"
    make_image().save(image)
    out = run("generate", image, "--model", tiny_folder, *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_missing_image(tmp_path):
    out = run("generate", tmp_path / "nope.png")
    assert out.returncode == 2 and "nope.png" in out.stderr and "Traceback" not in out.stderr


def test_notebooks_stops_a_stuck_cell_and_goes_on(tmp_path):
    """The main job gives each cell a time limit: a cell past it fails its notebook with a clear line, and the
    next notebook still runs, with the -p values typed as papermill types them."""
    from tests.test_headless import _notebook

    for name, source in (("00_stuck.ipynb", "import time\ntime.sleep(seconds)"),
                         ("01_fine.ipynb", "open(out_dir + '/seen.txt', 'w').write(repr((seconds, seeds, note)))")):
        _notebook(tmp_path / name, source,
                  parameters="model = device = out_dir = None\nseconds = 0\nseeds = []\nnote = ''")
    out = run("notebooks", "--folder", tmp_path, "-o", tmp_path / "out", "--cell-timeout", 3,
              "-p", "seconds", 120, "-p", "seeds", "[0, 1]", "-p", "note", "a b")
    assert out.returncode == 1, out.stderr[-2000:]
    assert "FAILED: CellTimeout: 00_stuck.ipynb: a cell ran past cell_timeout=3 s" in out.stdout, out.stdout
    assert "1 of 2 notebooks ran" in out.stdout
    assert (tmp_path / "out" / "00_stuck" / "00_stuck.html").is_file()
    assert (tmp_path / "out" / "01_fine" / "seen.txt").read_text() == "(120, [0, 1], 'a b')"


@pytest.mark.parametrize("args, message", [
    (["--cell-timeout", "-1"], "--cell-timeout must be >= 0 seconds"),
    (["--cell-timeout", "inf"], "--cell-timeout must be >= 0 seconds"),
    (["-p", "model", "svd"], "-p model: set it with --model"),
])
def test_notebooks_bad_options_are_one_clear_line(tmp_path, args, message):
    out = run("notebooks", "--folder", tmp_path, *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
