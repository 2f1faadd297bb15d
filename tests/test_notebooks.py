"""Run the notebooks headless with papermill on the bundled toy model and check what they measured.

Every notebook writes `out_dir/summary.json`; a test here runs it with small parameters and checks the values
in that summary, not only that it exists. To add a notebook, add one row to NOTEBOOKS: the file, the parameters
papermill overrides (model, device and out_dir are set for every row) and a function that checks the summary.

Run with the virtual environment's Python (`.venv/bin/python -m pytest tests/test_notebooks.py`): papermill
starts the "python3" kernel, which is the interpreter running the tests.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from svdkit.headless import run_notebook

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def _toy_missing() -> bool:
    from svdkit.toy import MODEL_PATH
    return not (MODEL_PATH / "model_index.json").is_file()


# ---------------------------------------------------------------------------------------------- checks


def check_quickstart(summary: dict, out: Path) -> None:
    assert summary["frames_shape"] == [14, 64, 64, 3]
    clip = Path(summary["clip"])
    assert clip.is_file() and clip.stat().st_size > 0 and clip.with_suffix(".json").is_file()
    motion = summary["motion_by_bucket"]
    assert set(motion) == {"10", "255"} and all(math.isfinite(v) and v >= 0 for v in motion.values())
    assert motion["255"] > motion["10"], "the toy should move more at motion_bucket_id 255 than at 10"


def check_encoding(summary: dict, out: Path) -> None:
    assert summary["latent_shape"] == [1, 4, 8, 8]  # B x 4 x H/8 x W/8
    assert summary["reconstruction_psnr"] > 18, "the toy VAE should reconstruct its own world (random: ~10 dB)"
    assert summary["condition_latents_gap"] < 1e-5  # generate's condition latents are the unscaled ones
    assert summary["clip_embedding_gap"] < 1e-5
    assert summary["added_time_ids"] == pytest.approx([6, 127, 0.02])  # fps - 1
    assert summary["unet_input_shape"] == [14, 8, 8, 8]  # 4 noisy + 4 image channels per frame
    assert summary["condition_spread_across_frames"] == 0


def check_denoising(summary: dict, out: Path) -> None:
    steps = summary["num_inference_steps"]
    sigmas = summary["sigmas"]
    assert len(sigmas) == steps + 1 and all(a > b for a, b in zip(sigmas, sigmas[1:]))
    d = summary["x0_distance_to_final"]
    assert len(d) == steps
    assert d[-1] < 1e-3 * d[0], "the last x0 prediction is the final latents"
    assert all(b <= a * 1.05 for a, b in zip(d, d[1:])), f"x0 should get closer to the final latents: {d}"
    assert 0 <= summary["preview_rmse"] < 40, "the fitted colour preview should come close to the decoder"
    g = summary["guidance"]
    assert len(g) == 14 and g[0] == pytest.approx(1) and g[-1] == pytest.approx(3)
    assert set(summary["guidance_change"]) == {"constant", "triangle"}
    assert all(v > 0 for v in summary["guidance_change"].values()), "other schedules should change the clip"
    assert summary["attention_output_unchanged"] is True
    assert summary["attention_row_sum_error"] < 1e-4
    assert summary["attention"] and all(0 < a["self"] <= 1 and a["reach"] >= 0 for a in summary["attention"].values())
    assert (out / "denoising.gif").is_file()


def check_toy_world(summary: dict, out: Path) -> None:
    assert summary["train_steps"] == 4 and len(summary["losses"]) == 2  # logged at the first and last step
    assert all(math.isfinite(v) and v > 0 for v in summary["losses"])
    assert summary["pool_shape"] == [2, 4, 24, 4, 8, 8]  # scenes, speeds, frames, channels, h, w
    assert summary["mini_frames_shape"] == [14, 64, 64, 3]
    assert summary["disk_mb"] <= 25, "the bundled toy must stay small"
    assert 1e6 < summary["unet_parameters"] < 2e7
    true = summary["true_motion_by_bucket"]
    assert true["0"] == 0 and true["255"] > 2, "the world's own clips: still at 0, fast at 255"
    motion = summary["motion_by_bucket"]
    assert motion["255"] > 3 * motion["0"] + 0.2, f"the bundled toy should listen to motion_bucket_id: {motion}"


NOTEBOOKS = [
    pytest.param("00_quickstart.ipynb", {"num_inference_steps": 6, "motions": [10, 255]}, check_quickstart,
                 id="00_quickstart"),
    pytest.param("01_encoding.ipynb", {"num_inference_steps": 4}, check_encoding, id="01_encoding"),
    pytest.param("02_denoising.ipynb", {"num_inference_steps": 6}, check_denoising, id="02_denoising"),
    pytest.param("06_toy_world.ipynb", {"num_inference_steps": 10, "train_steps": 4, "pool_scenes": 2,
                                        "buckets": [0, 255]}, check_toy_world, id="06_toy_world"),
]


# ---------------------------------------------------------------------------------------------- tests


def test_kernel_is_this_python():
    """papermill's "python3" kernel must be the interpreter running the tests (the one with svdkit)."""
    from jupyter_client.manager import KernelManager
    command = KernelManager(kernel_name="python3").format_kernel_cmd()
    assert Path(command[0]).resolve() == Path(sys.executable).resolve(), command


def run_on_toy(name: str, tmp_path: Path, **params) -> tuple[dict, Path]:
    """Run notebooks/`name` headless on the toy, on the CPU, into tmp_path; returns (its summary.json, its out_dir)."""
    out = tmp_path / "out"
    parameters = {"model": "toy", "device": "cpu", "out_dir": str(out), **params}
    run_notebook(NOTEBOOKS_DIR / name, tmp_path / name, parameters, cell_timeout=300, progress_bar=False)
    return json.loads((out / "summary.json").read_text()), out


@pytest.mark.notebook
@pytest.mark.skipif(_toy_missing(), reason="the bundled toy model is not built yet: python -m svdkit.toy.train")
@pytest.mark.parametrize("name, params, check", NOTEBOOKS)
def test_notebook(name, params, check, tmp_path):
    check(*run_on_toy(name, tmp_path, **params))


def assert_clean(path: Path, knobs=("device", "seed", "num_inference_steps", "out_dir")) -> list:
    """A committed notebook has no outputs or execution counts and one `parameters` cell setting `knobs`;
    returns its code cells."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'model = "toy"' in tagged[0].source
    for knob in knobs:
        assert f"\n{knob} = " in "\n" + tagged[0].source
    return code


def assert_matches_generator(script: str) -> None:
    """Every notebook that `notebooks/<script>` writes is, cell for cell, what the committed file holds."""
    import importlib.util

    import nbformat
    sys.path.insert(0, str(NOTEBOOKS_DIR))  # the sweep generator imports make_notebooks
    try:
        spec = importlib.util.spec_from_file_location(Path(script).stem, NOTEBOOKS_DIR / script)
        generator = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generator)
    finally:
        sys.path.remove(str(NOTEBOOKS_DIR))
    for name, cells in generator.NOTEBOOKS.items():
        committed = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
        built = generator.build(cells, Path(name).stem)
        assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells], \
            f"{name} differs from notebooks/{script}: run python notebooks/{script}"


@pytest.mark.parametrize("name", [p.values[0] for p in NOTEBOOKS])
def test_committed_notebooks_are_clean(name):
    """Notebooks are committed without outputs or execution counts, with one cell tagged `parameters`."""
    assert_clean(NOTEBOOKS_DIR / name)


def test_committed_notebooks_match_their_generator():
    """notebooks/make_notebooks.py writes 00-02 and 06; the committed files must be what it writes now."""
    assert_matches_generator("make_notebooks.py")
