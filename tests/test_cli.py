"""The command line: generate a clip from a file, and clear errors for bad input."""

import json
import re
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


@pytest.mark.slow
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


@pytest.mark.parametrize("output, message", [
    ("clip.mp3", "-o/--output must end in .mp4, .gif, .webp"),
    (".", "is a folder"),
    ("in.png/clip.mp4", "is not a writable folder"),
])
def test_generate_checks_the_output_before_any_model_work(tmp_path, monkeypatch, capsys, output, message):
    import svdkit
    from svdkit.__main__ import main

    def refuse(*args, **kwargs):
        raise AssertionError("model work started before the output was checked")
    monkeypatch.setattr(svdkit, "load_pipeline", refuse)
    monkeypatch.setattr(svdkit, "generate", refuse)
    monkeypatch.chdir(tmp_path)
    make_image().save(tmp_path / "in.png")
    assert main(["generate", "in.png", "-o", output]) == 2
    assert message in capsys.readouterr().err


def test_generate_help_gives_every_option_a_text_and_a_default(capsys):
    from svdkit.__main__ import main

    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    options = capsys.readouterr().out.split("options:")[1]
    entries = re.split(r"\n  (?=-)", options)[1:]  # one entry per option, its help text wrapped below it
    names = [e.split()[0].rstrip(",") for e in entries]
    assert {"--model", "-o", "--seed", "--motion-bucket-id", "--decode-chunk-size"} <= set(names)
    for entry in entries[1:]:  # after -h
        text = " ".join(entry.split())
        assert re.search(r"\(default[ :]|the default", text), f"no default: {text}"
    assert "14 for toy, svd; 25 for svd-xt, svd-xt-1-1" in " ".join(options.split())  # --num-frames, per model


# ----------------------------------------------------------------------------------------------------
# Loops, a chosen last frame and longer clips: the options reach generate, extend and Video.save


SMALL = ["--num-inference-steps", "2", "--num-frames", "4", "--device", "cpu", "--seed", "3"]


@pytest.fixture(scope="module")
def tiny_loaded(tiny_folder):
    import svdkit
    return svdkit.load_pipeline(str(tiny_folder), device="cpu")


def _cli_frames(tmp_path, tiny_folder, *args):
    """Run `generate` in this process into a lossless .webp; return the clip read back."""
    import svdkit
    from svdkit.__main__ import main

    image, out = tmp_path / "in.png", tmp_path / "clip.webp"
    if not image.exists():
        make_image().save(image)
    assert main(["generate", str(image), "--model", str(tiny_folder), *SMALL, "-o", str(out), *map(str, args)]) == 0
    return svdkit.read_video(out)


def test_generate_loop_and_end_image_reach_generate(tmp_path, tiny_folder, tiny_loaded):
    import numpy as np

    import svdkit

    kwargs = dict(seed=3, num_inference_steps=2, num_frames=4)
    plain = svdkit.generate(tiny_loaded, make_image(), **kwargs).frames
    looped = _cli_frames(tmp_path, tiny_folder, "--loop")
    np.testing.assert_array_equal(looped.frames, svdkit.generate(tiny_loaded, make_image(), loop=True,
                                                                 **kwargs).frames)
    assert looped.params["loop"] is True and not np.array_equal(looped.frames, plain)

    make_image(seed=1).save(tmp_path / "end.png")
    ended = _cli_frames(tmp_path, tiny_folder, "--end-image", tmp_path / "end.png")
    np.testing.assert_array_equal(ended.frames, svdkit.generate(tiny_loaded, make_image(), end_image=make_image(seed=1),
                                                                **kwargs).frames)
    assert ended.params["end_image"] is True and not np.array_equal(ended.frames, plain)


@pytest.mark.parametrize("method", ["reencode", "latents"])
def test_generate_segments_reach_extend(tmp_path, tiny_folder, tiny_loaded, method):
    import numpy as np

    import svdkit

    clip = _cli_frames(tmp_path, tiny_folder, "--segments", "3", "--overlap", "2", "--extend-method", method)
    want = svdkit.extend(tiny_loaded, make_image(), 3, overlap=2, method=method, seed=3, num_inference_steps=2,
                         num_frames=4)
    assert clip.frames.shape[0] == 4 + 2 * (4 - 2) == want.frames.shape[0]
    np.testing.assert_array_equal(clip.frames, want.frames)
    assert clip.segments == want.segments == [(0, 4), (4, 6), (6, 8)]
    assert clip.params["extend"] == {"segments": 3, "overlap": 2, "method": method}


@pytest.mark.parametrize("method, frames", [("pingpong", 2 * 4 - 2), ("crossfade", 4 - 1)])
def test_generate_save_loop_writes_the_looped_clip(tmp_path, tiny_folder, tiny_loaded, capsys, method, frames):
    import numpy as np

    import svdkit

    clip = _cli_frames(tmp_path, tiny_folder, "--save-loop", method)
    want = svdkit.generate(tiny_loaded, make_image(), seed=3, num_inference_steps=2, num_frames=4).looped(method)
    assert clip.frames.shape[0] == frames and clip.params["loop"] == method
    np.testing.assert_array_equal(clip.frames, want.frames)
    assert f"({frames} frames," in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--segments", "0"], "argument --segments: must be an integer >= 1, got 0"),
    (["--segments", "2", "--overlap", "-1"], "argument --overlap: must be an integer >= 0, got -1"),
    (["--segments", "2", "--overlap", "4"], "--overlap must be an integer in 0-3 (less than num_frames=4), got 4"),
    (["--extend-method", "warp"], "argument --extend-method: invalid choice: 'warp'"),
    (["--save-loop", "bounce"], "argument --save-loop: invalid choice: 'bounce'"),
    (["--end-image", "nope.png"], "--end-image: no file at 'nope.png'"),
    (["--end-image", "bad.png"], "--end-image: cannot read 'bad.png' as an image"),
    (["--end-image", "small.png"], "--end-image must have the size of the image, 64x64, got 32x32"),
    (["--loop", "--end-image", "in.png"], "--loop and --end-image cannot be used together"),
    (["--loop", "--segments", "2"], "--loop works on one clip only: svdkit.extend (--segments 2) takes neither "
                                    "--loop nor --end-image"),
    (["--end-image", "in.png", "--segments", "2"], "--end-image works on one clip only"),
])
def test_generate_refuses_bad_clip_options_before_loading(tmp_path, monkeypatch, capsys, args, message):
    import svdkit
    from svdkit.__main__ import main

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")
    monkeypatch.setattr(svdkit, "load_pipeline", refuse)
    monkeypatch.chdir(tmp_path)
    make_image().save(tmp_path / "in.png")
    make_image().resize((32, 32)).save(tmp_path / "small.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    try:
        code = main(["generate", "in.png", "--num-frames", "4", *args])
    except SystemExit as e:  # argparse's own refusals (types, choices)
        code = e.code
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in lines[-1], lines
    assert len(lines) == 1 or lines[0].startswith("usage:")  # one line (argparse's: after its usage lines)
