"""Run the notebooks headless with papermill on the bundled toy model and check what they measured.

Every notebook writes `out_dir/summary.json`; a test here runs it with small parameters and checks the values
in that summary, not only that it exists. To add a notebook, write its percent script notebooks/NN_name.py, run
`jupytext --sync notebooks/NN_name.py` (notebooks/jupytext.toml pairs it with NN_name.ipynb) and add one row to
NOTEBOOKS: the file, the parameters papermill overrides (model, device and out_dir are set for every row) and a
function that checks the summary. The tests at the end, which execute nothing, keep every pair in sync and clean.

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


def check_longer_and_looping(summary: dict, out: Path) -> None:
    chain = summary["chain"]
    assert set(chain) == {"reencode", "latents"}
    for c in chain.values():
        assert c["frames"] == 14 + 3 * 13 and c["segments"] == [[0, 14], [14, 27], [27, 40], [40, 53]]
        assert len(c["drift"]) == 4 and all(math.isfinite(d["colour_shift"]) and d["sharpness"] > 0 for d in c["drift"])
    assert chain["reencode"]["drift"][0] == chain["latents"]["drift"][0], "the first segment is the same clip"
    # the targets on the toy: a generated loop closes the seam and keeps the motion; end_image gains 5 dB
    assert summary["seam_plain"] > 1.5 >= summary["seam_loop"], summary["loops"]
    assert summary["motion_kept_loop"] >= 0.5 and summary["flow_kept_loop"] >= 0.5, summary["loops"]
    assert summary["loops"]["pingpong"]["seam"] <= 1.5
    assert summary["end_fidelity_gain"] >= 5, (summary["end_fidelity_plain"], summary["end_fidelity_end_image"])
    assert all(Path(v).stat().st_size > 0 for v in summary["videos"]) and summary["answer"]
def check_fine_tuning(summary: dict, out: Path) -> None:
    fall = summary["falls"]
    truth = summary["truth_acceleration"]
    assert fall["truth"]["track_error"] < 1 and abs(fall["truth"]["acceleration"] - truth) < 0.03
    for method in ("lora", "full"):
        assert fall[method]["track_error"] < 0.6 * fall["before"]["track_error"], \
            f"after fine-tuning, held-out shapes should fall as gravity says: {fall}"
    assert all(summary["held_out_loss"][m] < summary["held_out_loss"]["before"] for m in ("lora", "full"))
    curves = summary["held_out_loss_by_step"]  # [steps done, held-out loss], every steps // 4 steps
    steps = summary["steps"]
    for method in ("lora", "full"):
        assert [s for s, _ in curves[method]] == [0, steps // 4, steps // 2, 3 * steps // 4, steps]
        assert all(math.isfinite(loss) for _, loss in curves[method])
        assert curves[method][-1][1] == summary["held_out_loss"][method] < curves[method][0][1], curves[method]
    ranks = summary["lora_ranks"]  # lora_rank 16 and the ranks the test asks for
    assert set(ranks) == {"4", "16"} and ranks["16"]["held_out_loss_by_step"] == curves["lora"]
    assert all(math.isfinite(loss) for rank in ranks.values() for _, loss in rank["held_out_loss_by_step"])
    assert ranks["16"]["params"] == 4 * ranks["4"]["params"] > 0, "LoRA's weights are proportional to its rank"
    for rank in ranks.values():
        assert [s for s, _ in rank["held_out_loss_by_step"]] == [s for s, _ in curves["lora"]]
        assert math.isfinite(rank["track_error"]) and rank["track_error"] > 0
        assert rank["held_out_loss"] < summary["held_out_loss"]["before"], ranks
    assert abs(fall["full"]["start_speed"]) < abs(fall["before"]["start_speed"]), "dropped from rest"
    response = summary["bucket_response"]
    assert set(response) == {"buckets", "truth", "before", "lora", "full"}
    assert response["before"][-1] > response["before"][0] + 1, "the base model follows the bucket"
    assert all(0 < a < 1 and 0 < b < 1 for a, b in summary["losses"].values())
    assert summary["reloaded_same"] is True
    assert "adapter_model.safetensors" in summary["files"]["lora"] and "unet.safetensors" in summary["files"]["full"]
    assert {"finetune.json", "loss.json", "checkpoints"} <= set(summary["files"]["full"])


NOTEBOOKS = [
    pytest.param("00_quickstart.ipynb", {"num_inference_steps": 6, "motions": [10, 255]}, check_quickstart,
                 id="00_quickstart"),
    pytest.param("01_encoding.ipynb", {"num_inference_steps": 4}, check_encoding, id="01_encoding"),
    pytest.param("02_denoising.ipynb", {"num_inference_steps": 6}, check_denoising, id="02_denoising"),
    pytest.param("06_toy_world.ipynb", {"num_inference_steps": 10, "train_steps": 4, "pool_scenes": 2,
                                        "buckets": [0, 255]}, check_toy_world, id="06_toy_world"),
    pytest.param("08_longer_and_looping.ipynb", {"num_inference_steps": 10, "seeds": [0, 1]}, check_longer_and_looping,
                 id="08_longer_and_looping"),
    pytest.param("07_fine_tuning.ipynb", {"held_out": 5, "buckets": [0, 255], "lora_ranks": [4], "steps": 60},
                 check_fine_tuning,
                 id="07_fine_tuning"),
]


# ---------------------------------------------------------------------------------------------- tests


def test_kernel_is_this_python():
    """papermill's "python3" kernel must be the interpreter running the tests (the one with svdkit)."""
    from jupyter_client.manager import KernelManager
    command = KernelManager(kernel_name="python3").format_kernel_cmd()
    assert Path(command[0]).resolve() == Path(sys.executable).resolve(), command


def run_on_toy(name: str, tmp_path: Path, **params) -> tuple[dict, Path]:
    """Run notebooks/`name` headless on the toy, on the CPU, into tmp_path; returns (its summary.json, its out_dir).
    No cell may show the same picture twice (a cell ending in `fig` under inline plotting does)."""
    import nbformat
    out = tmp_path / "out"
    parameters = {"model": "toy", "device": "cpu", "out_dir": str(out), **params}
    executed = run_notebook(NOTEBOOKS_DIR / name, tmp_path / name, parameters, cell_timeout=300, progress_bar=False)
    for cell in nbformat.read(executed, as_version=4).cells:
        pictures = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        assert len(pictures) == len(set(pictures)), f"{name} shows a picture twice in the cell\n{cell.source}"
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


@pytest.mark.parametrize("name", [p.values[0] for p in NOTEBOOKS])
def test_committed_notebooks_are_clean(name):
    """Notebooks are committed without outputs or execution counts, with one cell tagged `parameters`."""
    assert_clean(NOTEBOOKS_DIR / name)


# ---------------------------------------------------------------------------------------------- the pairs

SCRIPTS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))


def read_pair(stem: str) -> tuple:
    """(the script notebooks/<stem>.py, the notebook notebooks/<stem>.ipynb), both read by jupytext."""
    import jupytext
    return (jupytext.read(NOTEBOOKS_DIR / f"{stem}.py", fmt="py:percent"),
            jupytext.read(NOTEBOOKS_DIR / f"{stem}.ipynb"))


def _cells(nb) -> list:
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


def test_every_notebook_has_its_script():
    """Each notebooks/NN_name.ipynb is paired with its source, the percent script notebooks/NN_name.py."""
    notebooks = {p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")}
    assert notebooks and notebooks == {p.stem for p in SCRIPTS}, \
        f"without a script: {sorted(notebooks - {p.stem for p in SCRIPTS})}; " \
        f"without a notebook: {sorted({p.stem for p in SCRIPTS} - notebooks)} (jupytext --sync notebooks/*.py)"


@pytest.mark.parametrize("stem", [p.stem for p in SCRIPTS])
def test_pair_is_in_sync_and_clean(stem):
    """The .ipynb holds the script's cells (type, source, tags), no outputs or execution counts, one cell tagged
    `parameters` and the python3 kernel that papermill starts."""
    script, notebook = read_pair(stem)
    assert _cells(notebook) == _cells(script), f"{stem}.ipynb differs from {stem}.py: jupytext --sync notebooks/*.py"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), f"{stem}.ipynb has outputs"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_setup_cell_is_the_same_everywhere():
    """Every notebook starts its code with the same setup cell (install svdkit if missing, Colab widgets)."""
    first = {p.stem: next(c.source for c in read_pair(p.stem)[0].cells if c.cell_type == "code") for p in SCRIPTS}
    assert len(set(first.values())) == 1, f"the first code cells differ: {first}"
    assert "SVDKIT_SOURCE" in first[SCRIPTS[0].stem] and "enable_custom_widget_manager" in first[SCRIPTS[0].stem]


# ---------------------------------------------------------------------------------------------- single overrides

# A value to try for each parameter whose default, None, does not tell what it takes.
WHEN_NONE = {"seed": 7, "image": "data/example_0.png", "attention_steps": [0], "text_model": "toy", "text_steps": 3,
             "end_image": "data/example_1.png"}
# What must hold once a notebook has derived its values, whichever parameter was overridden.
CONSISTENT = {"03_motion_bucket_sweep": ["seed in seeds"], "04_fps_comparison": ["seed in seeds"],
              "08_longer_and_looping": ["seed in seeds"]}


def plausible(name: str, default):
    """Another value a user might give `name`: a different number, one element of a list, the same string."""
    if default is None:
        assert name in WHEN_NONE, f"{name} defaults to None: add a value to try to WHEN_NONE"
        return WHEN_NONE[name]
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 7
    if isinstance(default, float):
        return default / 2
    if isinstance(default, list):
        return default[-1:]
    return default


@pytest.mark.parametrize("stem", [p.stem for p in SCRIPTS])
def test_any_single_override_survives(stem):
    """papermill runs the parameters cell, then one cell of overrides, then the rest. The parameters cell is plain
    assignments of literals; what follows from them is computed in the code cell right after it, tagged `derived`
    (if any). For every parameter on its own, that cell must keep the override and leave the values consistent."""
    import ast
    assert set(CONSISTENT) <= {p.stem for p in SCRIPTS}, "CONSISTENT names a notebook that is not there"
    code = [c for c in read_pair(stem)[0].cells if c.cell_type == "code"]
    at = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    derived = [c for c in code if "derived" in c.metadata.get("tags", [])]
    assert derived in ([], [code[at + 1]]), "the cell tagged `derived` comes right after the parameters cell"
    defaults = {}
    for statement in ast.parse(code[at].source).body:
        assert isinstance(statement, ast.Assign) and len(statement.targets) == 1, ast.unparse(statement)
        try:
            defaults[statement.targets[0].id] = ast.literal_eval(statement.value)
        except ValueError:
            pytest.fail(f"{stem}: the parameters cell sets {ast.unparse(statement)}, which papermill does not "
                        "update when another parameter is overridden: compute it in a cell tagged `derived`")
    for name, default in defaults.items():
        value = plausible(name, default)
        scope = {}
        exec(code[at].source, scope)
        exec(f"{name} = {value!r}", scope)
        for cell in derived:
            exec(cell.source, scope)
        assert scope[name] == value, f"{stem}: -p {name} {value!r} was changed to {scope[name]!r}"
        for rule in CONSISTENT.get(stem, []):
            assert eval(rule, scope), f"{stem}: after -p {name} {value!r}, {rule} is false"
