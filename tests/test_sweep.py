"""The sweep engine on the tiny pipeline: same frames as generate(), stage 1 once, resumable after SIGKILL,
damaged files redone, ids that never collide, and two processes splitting one sweep."""

import doctest
import inspect
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import svdkit
from svdkit import sweeps as sw
from svdkit.sweeps import store, views
from tests.conftest import make_image

FAST = {"num_inference_steps": 2, "num_frames": 4}  # tiny pipeline, 64 x 64: a fraction of a second a point
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_pipe):
    folder = tmp_path_factory.mktemp("tiny")
    tiny_pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def _plain(value):
    """A table cell as a plain Python number, as a user would type it."""
    return value.item() if hasattr(value, "item") else value


def _env():
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("ACCELERATE_USE_CPU", None)
    return env


def test_ranges():
    assert sw.linspace(0, 255, 8) == [0, 36, 73, 109, 146, 182, 219, 255]
    assert sw.linspace(0.0, 0.1, 3) == [0.0, 0.05, 0.1]
    assert all(isinstance(v, int) for v in sw.linspace(0, 255, 8))
    assert sw.logspace(1, 255, 8) == [1, 2, 5, 11, 24, 52, 116, 255]
    assert sw.logspace(0.01, 1.0, 3) == pytest.approx([0.01, 0.1, 1.0])
    assert sw.logspace(1, 4, 8) == [1, 2, 3, 4]  # rounding merges the small ones
    assert sw.ints(3, 30, 9) == [3, 12, 21, 30] and sw.ints(30, 3, -9) == [30, 21, 12, 3]
    with pytest.raises(ValueError, match="logspace needs start and stop > 0"):
        sw.logspace(0, 255, 8)
    with pytest.raises(ValueError, match="step must not be 0"):
        sw.ints(0, 10, 0)
    # the same ranges as a TOML file writes them
    assert sw.check_grid({"motion_bucket_id": {"linspace": [0, 255, 8]}, "fps": {"ints": [3, 30, 9]}},
                         seeds=[0, 1]) == 8 * 4 * 2
    with pytest.raises(ValueError, match="a range is"):
        sw.check_grid({"fps": {"range": [3, 30]}})
    # svdkit.sweep is a plain function; the ranges live in svdkit.sweeps
    assert inspect.isfunction(svdkit.sweep) and svdkit.sweep is sw.sweep and svdkit.sweeps.linspace is sw.linspace
    finder = doctest.DocTestFinder()
    for fn in (sw.linspace, sw.logspace, sw.ints, sw.check_grid):
        for test in finder.find(fn, globs=vars(svdkit.sweeps.grid)):
            assert doctest.DocTestRunner().run(test).failed == 0, fn.__name__


def test_bad_input_fails_before_model_work(tiny_pipe, tmp_path, monkeypatch):
    """A clear error naming the parameter and what is valid, before the model runs and before any file."""
    def forbidden(*args, **kwargs):
        raise AssertionError("model work before the input was checked")

    monkeypatch.setattr(tiny_pipe.unet, "forward", forbidden)
    monkeypatch.setattr(tiny_pipe.vae, "encode", forbidden)
    monkeypatch.setattr(tiny_pipe, "_encode_image", forbidden)
    out = tmp_path / "never"
    cases = [  # the bad value sits in the grid's last point, so every point is checked before the first runs
        ({"motion_bucket": [1, 2]}, {}, r"unknown parameter\(s\) \['motion_bucket'\]; a grid may use .*fps"),
        ({"motion_bucket_id": [0, 255], "fps": [7, 0]}, {}, "fps must be an integer >= 1, got 0"),
        ({"height": [64, 100]}, {}, "height must be a positive multiple of 16.*got 100, nearest valid is 96"),
        ({"noise_aug_strength": [0.02, -1.0]}, {}, r"noise_aug_strength must be a number >= 0 \(SVD uses 0.0-0.1\)"),
        ({"max_guidance_scale": [3.0, float("nan")]}, {}, "max_guidance_scale must be a finite number >= 0"),
        ({"guidance": ["linear", "zigzag"]}, {}, "guidance must be one of .*'zigzag'"),
        ({"guidance": [[1.0, 2.0, 3.0]]}, {}, "guidance: a schedule needs exactly num_frames=4 values"),
        ({"cache_interval": [1, 0]}, {}, "cache_interval must be an integer >= 1, got 0"),
        ({"motion_bucket_id": {"logspace": [0, 255, 8]}}, {}, "logspace needs start and stop > 0"),
        ({"motion_bucket_id": []}, {}, r"grid\['motion_bucket_id'\] is empty"),
        ({"seed": [1, 2]}, {"seeds": [3]}, "not both"),
        ({}, {"seeds": [0, 1.5]}, "seeds must be integers"),
        ({}, {"batch_size": 0}, "batch_size must be 'auto' or an integer >= 1, got 0"),
        ({}, {"metrics": ["motion", "speed"]}, r"metrics: unknown name\(s\) \['speed'\]; known: motion"),
    ]
    for grid, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            sw.sweep(tiny_pipe, make_image(), {**FAST, **grid}, out_dir=out, progress=False, **kwargs)
        assert not out.exists(), grid  # nothing written, not even the folder
    with pytest.raises(FileNotFoundError, match="nope.png"):
        sw.sweep(tiny_pipe, [make_image(), tmp_path / "nope.png"], FAST, out_dir=out, progress=False)
    assert not out.exists()


def test_fixed_parameters_as_keywords(tiny_pipe, tmp_path, monkeypatch):
    """`sweep(pipe, image, grid, num_inference_steps=2)`, as generate() takes it: the same points as in the grid."""
    image, grid = make_image(), {"motion_bucket_id": [0, 255]}
    keywords = sw.sweep(tiny_pipe, image, grid, out_dir=tmp_path, metrics=None, progress=False, fps=6, **FAST)
    assert list(keywords["fps"]) == [6, 6] and list(keywords["num_inference_steps"]) == [2, 2]
    assert keywords.attrs["axes"] == ["motion_bucket_id", "seed"] and not keywords["reused"].any()
    in_grid = sw.sweep(tiny_pipe, image, {**grid, "fps": 6, **FAST}, out_dir=tmp_path, metrics=None, progress=False)
    assert in_grid["reused"].all() and list(in_grid["id"]) == list(keywords["id"])
    # one seed and a guidance schedule (a list, yet one value), as generate() takes them
    schedule = [1.0, 2.0, 2.0, 1.0]
    points = sw.plan(tiny_pipe, image, grid, seed=3, guidance=schedule, **FAST)
    assert [p.seed for p in points] == [3, 3] and points[0].scales == tuple(schedule)
    same = sw.plan(tiny_pipe, image, {**grid, "guidance": [schedule], **FAST}, seeds=[3])
    assert [p.id for p in points] == [p.id for p in same]

    def forbidden(*args, **kwargs):
        raise AssertionError("model work before the keywords were checked")

    monkeypatch.setattr(tiny_pipe.unet, "forward", forbidden)
    monkeypatch.setattr(tiny_pipe.vae, "encode", forbidden)
    monkeypatch.setattr(tiny_pipe, "_encode_image", forbidden)
    out = tmp_path / "never"
    cases = [
        ({"motion_bucket": 3}, TypeError,
         r"unknown keyword parameter\(s\) \['motion_bucket'\]; a fixed parameter is one of .*motion_bucket_id"),
        ({"outdir": "x"}, TypeError, r"\['outdir'\].*own keywords are seeds, out_dir"),
        ({"num_inference_steps": 0}, ValueError, "num_inference_steps must be an integer >= 1, got 0"),
        ({"fps": [6, 7]}, ValueError, r"fps=\[6, 7\]: a keyword is one fixed value; .* the grid: \{'fps': \[...\]\}"),
        ({"seed": [1, 2]}, ValueError, r"seed=\[1, 2\]: .* use seeds=\[...\]"),
        ({"motion_bucket_id": 9}, ValueError, "motion_bucket_id is given both in the grid and as a keyword"),
        ({"seed": 1, "seeds": [2]}, ValueError, "not both"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            sw.sweep(tiny_pipe, image, grid, out_dir=out, progress=False, **kwargs)
        assert not out.exists(), kwargs


def test_files_get_the_usual_permissions(tiny_folder, tmp_path, capsys):
    """Clips, frames, rows and sweep.csv can be shared as any file the user makes: under umask 022, rw-r--r--."""
    from svdkit.__main__ import main

    make_image().save(tmp_path / "in.png")
    (tmp_path / "s.toml").write_text(f'model = "{tiny_folder.as_posix()}"\nimages = ["in.png"]\nout_dir = "o"\n'
                                     f'[grid]\nmotion_bucket_id = [0, 255]\nnum_inference_steps = 2\nnum_frames = 4\n')
    umask = os.umask(0o022)
    try:
        with open(tmp_path / "plain.txt", "w") as f:  # what a plain open() gives
            f.write("x")
        assert main(["sweep", str(tmp_path / "s.toml"), "--no-progress"]) == 0, capsys.readouterr().err
    finally:
        os.umask(umask)
    usual = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert usual == 0o644
    files = [tmp_path / "o" / "sweep.csv", *(tmp_path / "o" / "points").iterdir()]
    assert sorted(p.suffix for p in files) == [".csv", ".json", ".json", ".mp4", ".mp4", ".npz", ".npz"]
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(usual) for p in files}


def test_cli_checks_the_sweep_file_before_loading_the_model(tmp_path, monkeypatch, capsys):
    from svdkit.__main__ import main

    def forbidden(*args, **kwargs):
        raise AssertionError("the model was loaded before the sweep file was checked")

    monkeypatch.setattr(svdkit.models, "load_pipeline", forbidden)  # what the sweep command loads with
    make_image().save(tmp_path / "in.png")
    head = 'model = "toy"\nimages = ["in.png"]\nout_dir = "o"\n'
    cases = [
        (head + "[grid]\nfps = [7, 0]\n", "fps must be an integer >= 1, got 0"),
        (head + "[grid]\nmotion_bucket_id = { linspace = [0, 255] }\n",
         "grid['motion_bucket_id']: linspace takes [start, stop, num], got [0, 255]"),
        (head + "[grid]\nmotoin_bucket_id = [0, 255]\n", "unknown parameter(s) ['motoin_bucket_id']"),
        ("batch_size = -1\n" + head, "batch_size must be 'auto' or an integer >= 1, got -1"),
        ("seed = 3\n" + head, "unknown key(s) ['seed']"),
        (head.replace("in.png", "nope.png"), "nope.png"),
    ]
    for i, (text, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.toml"
        path.write_text(text)
        assert main(["sweep", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, (text, err)
    assert not (tmp_path / "o").exists()


def test_batched_points_equal_generate(tiny_pipe, tmp_path, monkeypatch):
    """16 points in one UNet batch whose rows differ in time ids (motion bucket, fps), guidance and seed."""
    grid = {"motion_bucket_id": [0, 255], "fps": [3, 24], "max_guidance_scale": [1.5, 4.0], **FAST}
    keys = ["motion_bucket_id", "fps", "max_guidance_scale", "seed"]
    image = make_image()
    calls = {"clip": 0, "vae": 0}
    encode_clip, encode_vae = tiny_pipe._encode_image, tiny_pipe.vae.encode

    def count(kind, fn):
        def wrapped(*a, **k):
            calls[kind] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(tiny_pipe, "_encode_image", count("clip", encode_clip))
    monkeypatch.setattr(tiny_pipe.vae, "encode", count("vae", encode_vae))
    table = sw.sweep(tiny_pipe, image, grid, seeds=[0, 1], out_dir=tmp_path / "batched", batch_size=16,
                     progress=False)
    assert len(table) == 16 and not table["reused"].any() and set(table["batch_size"]) == {16}
    assert calls == {"clip": 1, "vae": 2}  # stage 1: CLIP once per image, the VAE once per (image, seed)
    monkeypatch.undo()

    references = [svdkit.generate(tiny_pipe, image, **{k: _plain(row[k]) for k in keys}, **FAST).frames.astype(int)
                  for _, row in table.iterrows()]
    for i, (_, row) in enumerate(table.iterrows()):
        frames = sw.load_frames(row).astype(int)
        distance = [np.abs(frames - ref).mean() for ref in references]
        own = np.abs(frames - references[i])
        # batched, the UNet's matrix kernels round differently for another batch size: a few values move by 1
        assert own.max() <= 1 and (own == 0).mean() >= 0.998, (dict(row[keys]), own.max(), (own == 0).mean())
        # ... while any other setting is far away, so a row conditioned like its neighbour would fail here
        assert np.argmin(distance) == i and sorted(distance)[1] > 0.5, (dict(row[keys]), sorted(distance)[:2])

    # several images: each one's embedding and latents once, each point as generate() makes it
    images = [make_image(seed=1), make_image(seed=2)]
    calls.update(clip=0, vae=0)
    monkeypatch.setattr(tiny_pipe, "_encode_image", count("clip", encode_clip))
    monkeypatch.setattr(tiny_pipe.vae, "encode", count("vae", encode_vae))
    two = sw.sweep(tiny_pipe, images, FAST, seeds=[3], out_dir=tmp_path / "images", batch_size=2, progress=False)
    assert calls == {"clip": 2, "vae": 2} and list(two["image_index"]) == [0, 1] and set(two["batch_size"]) == {2}
    monkeypatch.undo()
    for _, row in two.iterrows():
        reference = svdkit.generate(tiny_pipe, images[row["image_index"]], seed=3, **FAST).frames
        own = np.abs(sw.load_frames(row).astype(int) - reference)
        assert own.max() <= 1 and (own == 0).mean() >= 0.998

    # one point per batch: exactly generate()
    exact = sw.sweep(tiny_pipe, image, {**grid, "fps": 24, "max_guidance_scale": 4.0}, seeds=[1],
                     out_dir=tmp_path / "single", batch_size=1, progress=False)
    assert set(exact["id"]) <= set(table["id"]) and len(exact) == 2
    for _, row in exact.iterrows():
        reference = references[list(table["id"]).index(row["id"])]  # generate() with the same settings
        assert np.array_equal(sw.load_frames(row), reference)


def test_points_share_a_batch_only_when_they_can(tiny_pipe):
    points = sw.plan(tiny_pipe, make_image(), {"max_guidance_scale": [1.0, 3.0], "num_inference_steps": [2, 3],
                                               "motion_bucket_id": [0, 9]})
    groups = {p.group() for p in points}
    assert len(groups) == 4  # guidance on/off x steps; motion buckets share a batch


def test_rerun_skips_done_points_and_adds_missing_metrics(tiny_pipe, tmp_path, monkeypatch):
    import tqdm.auto

    bars = []

    class Recorded(tqdm.auto.tqdm):  # what the progress bar was told
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.shown = not kwargs.get("disable", False)  # close() disables every bar
            bars.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    grid = {"motion_bucket_id": [10, 200], **FAST}
    first = sw.sweep(tiny_pipe, make_image(), grid, out_dir=tmp_path, metrics=None, progress=False)
    assert "motion" not in first.columns and not bars[-1].shown
    again = sw.sweep(tiny_pipe, make_image(), grid, out_dir=tmp_path, metrics=["motion"], progress=False)
    assert again["reused"].all() and again["motion"].notna().all()
    more = sw.sweep(tiny_pipe, make_image(), {**grid, "motion_bucket_id": [10, 100, 200]}, out_dir=tmp_path,
                    progress=True)
    assert list(more["reused"]) == [True, False, True]
    assert len(sw.computed_log(tmp_path)) == 3  # each point computed once, ever
    assert len(sw.read_sweep(tmp_path)) == 3
    # the bar counts points, starts at those already done, and shows the time left (rate of this run's points)
    bar = bars[-1]
    assert bar.shown and (bar.total, bar.initial, bar.n, bar.unit) == (3, 2, 3, "point")
    text = bar.format_meter(**bar.format_dict)
    assert "3/3" in text and re.search(r"<\d\d:\d\d", text), text


def test_damaged_files_are_detected_and_redone(tiny_pipe, tmp_path):
    grid = {"motion_bucket_id": [0, 64, 128, 192, 255], **FAST}
    first = sw.sweep(tiny_pipe, make_image(), grid, out_dir=tmp_path, batch_size=4, progress=False)
    frames = [sw.load_frames(r) for _, r in first.iterrows()]
    rows = [Path(c).with_suffix(".json") for c in first["clip"]]
    rows[0].write_text(rows[0].read_text()[:40])                      # a truncated JSON row
    Path(first["frames"][1]).write_bytes(b"PK\x03\x04 not a zip")     # a bad npz
    Path(first["clip"][2]).unlink()                                    # a missing clip
    clip = bytearray(Path(first["clip"][3]).read_bytes())              # one flipped byte, same size
    clip[len(clip) // 2] ^= 0xFF
    Path(first["clip"][3]).write_bytes(bytes(clip))
    again = sw.sweep(tiny_pipe, make_image(), grid, out_dir=tmp_path, batch_size=4, progress=False)
    assert list(again["reused"]) == [False, False, False, False, True]
    for (_, row), before in zip(again.iterrows(), frames):
        assert np.array_equal(sw.load_frames(row), before)  # redone in the same batch of 4 as the first time
        assert store.read_point(tmp_path, row["id"]) is not None
    assert len(sw.computed_log(tmp_path)) == 5 + 4


def test_point_ids(tiny_pipe, monkeypatch):
    from svdkit.models import LoadInfo

    image = make_image()

    def ids(grid, seeds=(0,), img=image, pipe=tiny_pipe):
        return [p.id for p in sw.plan(pipe, img, grid, seeds=seeds)]

    base = ids({"motion_bucket_id": 36})
    assert base == ids({"motion_bucket_id": [36]}) == ids({"motion_bucket_id": 36.0})  # same settings, same id
    assert base == ids({"motion_bucket_id": 36, "fps": 7})  # naming a default changes nothing
    assert base == ids({"motion_bucket_id": 36}, img=np.asarray(image))  # the pixels name the image
    others = [ids({"motion_bucket_id": 37}), ids({"motion_bucket_id": 36}, seeds=[1]),
              ids({"motion_bucket_id": 36, "fps": 8}), ids({"motion_bucket_id": 36, "guidance": "triangle"}),
              ids({"motion_bucket_id": 36, "max_guidance_scale": 2.5}), ids({"motion_bucket_id": 36, "width": 128}),
              ids({"motion_bucket_id": 36, "num_inference_steps": 3}),
              ids({"motion_bucket_id": 36, "cache_interval": 2}), ids({"motion_bucket_id": 36}, img=make_image(seed=3)),
              ids({"motion_bucket_id": 36, "noise_aug_strength": 0.021})]
    assert len({base[0], *[o[0] for o in others]}) == 1 + len(others)
    # the svdkit version, the model's name and its weights name a point too
    monkeypatch.setattr(svdkit, "__version__", "999")
    assert ids({"motion_bucket_id": 36}) != base
    monkeypatch.undo()
    monkeypatch.setattr(tiny_pipe, "svdkit", LoadInfo(model="another-model", spec=None, device="cpu",
                                                      dtype="float32", memory="fast", decode_chunk_size=None),
                        raising=False)
    assert ids({"motion_bucket_id": 36}) != base
    monkeypatch.undo()
    from tests.conftest import make_tiny_pipeline
    assert ids({"motion_bucket_id": 36}, pipe=make_tiny_pipeline(seed=1)) != base  # other weights
    assert ids({"motion_bucket_id": 36}) == base
    points = sw.plan(tiny_pipe, [image, make_image(seed=1)], {"motion_bucket_id": [0, 255]}, seeds=[0, 1])
    assert len({p.id for p in points}) == len(points) == 8


# The subprocess below is killed while it writes a point: each point's npz stays under its temporary name for a
# moment before the rename, so the test can wait for one and kill then.
SCRIPT = """\
import sys, time
import numpy as np
import svdkit
from svdkit import sweeps as sw
from PIL import Image
pipe = svdkit.load_pipeline(sys.argv[1])
save = np.savez_compressed
def slow_save(f, **arrays):
    save(f, **arrays)
    f.flush()
    time.sleep(0.4)
np.savez_compressed = slow_save
sw.sweep(pipe, Image.open(sys.argv[2]), {"motion_bucket_id": sw.linspace(0, 255, 10), **%r},
         out_dir=sys.argv[3], batch_size=1, progress=False)
"""


def _rows(out: Path) -> list[Path]:
    """The finished rows (temporary files start with a dot)."""
    return [p for p in (out / "points").glob("*.json") if not p.name.startswith(".")]


def _temporary(out: Path) -> list[str]:
    return [p.name for p in (out / "points").iterdir() if p.name.startswith(".")]


def _intact(out: Path, expected: int):
    """Every point exactly once, every file whole and matching its checksum, nothing else in the folder."""
    assert not _temporary(out)
    rows = [json.loads(p.read_text()) for p in _rows(out)]
    assert len(rows) == len({r["id"] for r in rows}) == expected
    files = set()
    for r in rows:
        assert store.read_point(out, r["id"]) == r
        with np.load(out / r["frames"]) as data:
            assert data["frames"].shape[0] == FAST["num_frames"]
        assert svdkit.read_video(out / r["clip"]).frames.shape[0] == FAST["num_frames"]
        files |= {Path(r["clip"]).name, Path(r["frames"]).name, Path(r["clip"]).with_suffix(".json").name}
    assert {p.name for p in (out / "points").iterdir()} == files
    logged = [e["id"] for e in sw.computed_log(out)]
    assert len(logged) == len(set(logged))  # no point computed twice


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume(tiny_folder, tmp_path):
    image, out, script = tmp_path / "in.png", tmp_path / "out", tmp_path / "run.py"
    make_image().save(image)
    script.write_text(SCRIPT % (FAST,))
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_folder), str(image), str(out)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    try:  # wait until 3 points are done and the next one is being written
        while not ((out / "points").is_dir() and len(_rows(out)) >= 3
                   and any(n.endswith(".npz") for n in _temporary(out))):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the sweep subprocess made no progress"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = len(_rows(out))
    assert 3 <= done < 10, "the kill should land in the middle of the sweep"
    assert _temporary(out), "the kill should land in the middle of writing a point"

    table = sw.sweep(svdkit.load_pipeline(tiny_folder), make_image(), {"motion_bucket_id": sw.linspace(0, 255, 10),
                     **FAST}, out_dir=out, batch_size=1, progress=False)
    assert len(table) == 10 and table["reused"].sum() == done  # a row is there whole (renamed last) or not
    assert len(sw.computed_log(out)) == 10
    _intact(out, 10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_cli_under_accelerate_launch_splits_a_sweep(tiny_folder, tmp_path):
    """`python -m svdkit sweep` in one process, and under `accelerate launch` in two: same points, none twice."""
    make_image().save(tmp_path / "in.png")
    for name in ("one", "two"):
        (tmp_path / f"{name}.toml").write_text(textwrap.dedent(f"""\
            model = "{tiny_folder.as_posix()}"
            images = ["in.png"]
            seeds = [0, 1]
            out_dir = "{name}"
            batch_size = 1
            [grid]
            motion_bucket_id = {{ linspace = [0, 255, 3] }}
            num_inference_steps = {FAST["num_inference_steps"]}
            num_frames = {FAST["num_frames"]}
            """))
    one = subprocess.run([sys.executable, "-m", "svdkit", "sweep", "one.toml", "--no-progress"], cwd=tmp_path,
                         env=_env(), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    assert "6 points (6 computed, 0 already done)" in one.stdout, one.stdout
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), "-m", "svdkit", "sweep", "two.toml", "--no-progress"]
    two = subprocess.run(launch, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count(" points (") == 1 and "6 points (6 computed, 0 already done)" in two.stdout, two.stdout

    import pandas as pd
    a, b = pd.read_csv(tmp_path / "one" / "sweep.csv"), pd.read_csv(tmp_path / "two" / "sweep.csv")
    assert list(a["id"]) == list(b["id"]) and len(a) == 6  # the union equals the one-process run
    assert set(b["process_index"]) == {0, 1} and set(a["process_index"]) == {0}
    assert all(b["process_index"] == b["index"] % 2)  # point i went to process i mod 2
    _intact(tmp_path / "two", 6)
    logged = [e["process_index"] for e in sw.computed_log(tmp_path / "two")]
    assert sorted(logged) == [0, 0, 0, 1, 1, 1]  # every point computed once, by one process
    for (_, ra), (_, rb) in zip(a.iterrows(), b.iterrows()):
        assert np.array_equal(sw.load_frames(ra), sw.load_frames(rb))


def test_views(tiny_pipe, tmp_path):
    table = sw.sweep(tiny_pipe, make_image(), {"motion_bucket_id": [0, 127, 255], **FAST}, seeds=[0, 1],
                     out_dir=tmp_path, progress=False)
    video = views.grid_video(table[table.seed == 0], path=tmp_path / "grid.mp4")
    F, H, W, _ = video.frames.shape
    assert F == 4 and W >= 3 * 128 and H > 128 and (tmp_path / "grid.mp4").stat().st_size > 0
    sheet = views.contact_sheet(table, path=tmp_path / "sheet.png")
    assert sheet.size[1] >= 6 * 64 and (tmp_path / "sheet.png").is_file()
    fig = views.plot_metric(table, "motion_bucket_id", "motion")
    assert len(fig.axes[0].lines) == 1 and fig.axes[0].collections  # mean line, band and dots
    assert views.point_label(table.iloc[0], ["motion_bucket_id", "seed"]) == "bucket 0 seed 0"

    first = views.compare(table, 0, 255)
    assert first.frames.shape[2] > 2 * 128 and list(first.table.columns) == ["bucket 0", "bucket 255"]
    box = views.compare_widget(table)
    shown = box.result
    box.controls["b"].value = 127  # what moving the slider does
    assert box.result is not shown and "vs 127" in box.result.text
    assert not np.array_equal(box.result.frames, shown.frames)


def test_speed_benchmark_runs(capsys):
    """benchmarks/sweep_speed.py end to end at the smallest size (the real measurement is on the toy)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep_speed", REPO / "benchmarks" / "sweep_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--model", "tiny", "--points", "2", "--steps", "2", "--repeat", "1", "--target", "0"]) == 0
    out = capsys.readouterr().out
    assert "loop of pipe(...) calls" in out and "svdkit.sweep (batch 2)" in out and "speed-up:" in out
    assert re.search(r"max \|diff\| [01],", out), out  # the sweep made the loop's frames
