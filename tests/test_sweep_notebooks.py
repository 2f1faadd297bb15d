"""Run the sweep notebooks (03 motion bucket, 04 fps) headless on the bundled toy and check what they measured.

Each notebook writes `out_dir/summary.json`; these tests check its numbers: on the toy, motion rises with the
bucket and falls with the conditioning fps, and playback fps changes nothing per frame.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.test_notebooks import _toy_missing, assert_clean, run_on_toy

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["03_motion_bucket_sweep.ipynb", "04_fps_comparison.ipynb"]


def toy_responds(ok: bool, message: str):
    """What the bundled toy must show: it has learned what motion_bucket_id and fps mean
    (evaluations/toy_quality.py)."""
    assert ok, f"the toy does not follow its conditioning: {message}"


@pytest.mark.notebook
@pytest.mark.skipif(_toy_missing(), reason="the bundled toy model is not built yet: python -m svdkit.toy.train")
def test_motion_bucket_notebook(tmp_path):
    summary, out = run_on_toy(NAMES[0], tmp_path, seeds=[0, 1], num_inference_steps=8, buckets=4)
    assert summary["buckets"] == [0, 85, 170, 255] and summary["points"] == 8
    motion = summary["mean_motion"]
    assert all(math.isfinite(m) and m >= 0 for m in motion)
    assert summary["distinct_steps"] >= 0 and isinstance(summary["answer"], str) and summary["answer"]
    assert Path(summary["grid_video"]).stat().st_size > 0 and Path(summary["contact_sheet"]).is_file()
    assert len(list((out / "sweep" / "points").glob("*.json"))) == 8
    # what the toy must show: it has learned its conditioning (evaluations/toy_quality.py)
    toy_responds(motion[-1] > motion[0] + 0.5 and summary["spearman"] > 0.7 and summary["distinct_steps"] >= 1
                 and "motion_bucket_id sets how much the clip moves" in summary["answer"],
                 f"the toy should move more at bucket 255 than at 0: {motion}, spearman {summary['spearman']}")


@pytest.mark.notebook
@pytest.mark.skipif(_toy_missing(), reason="the bundled toy model is not built yet: python -m svdkit.toy.train")
def test_motion_bucket_notebook_with_only_seed_set(tmp_path):
    """`-p seed 7` alone: the notebook sweeps seed 7 too and shows its clips."""
    summary, _ = run_on_toy(NAMES[0], tmp_path, seed=7, num_inference_steps=2, buckets=2)
    assert summary["seeds"] == [0, 1, 7] and summary["points"] == 6
    assert Path(summary["grid_video"]).stat().st_size > 0 and Path(summary["contact_sheet"]).is_file()


@pytest.mark.skipif(_toy_missing(), reason="the bundled toy model is not built yet: python -m svdkit.toy.train")
def test_fps_notebook(tmp_path):
    summary, _ = run_on_toy(NAMES[1], tmp_path, seeds=[0], num_inference_steps=8, fps_values=[4, 8, 24],
                      playback_rates=[4, 16])
    assert summary["fps"] == [4, 8, 24]
    motion = summary["mean_motion"]
    a, b = summary["playback"]
    assert (a["seconds"], b["seconds"]) == pytest.approx((14 / 4, 14 / 16))
    assert a["motion_px_per_frame"] == pytest.approx(b["motion_px_per_frame"], abs=0.1)  # same frames
    # what the toy must show: it has learned its conditioning (evaluations/toy_quality.py)
    toy_responds(motion[0] > motion[-1] and summary["spearman"] < -0.5 and summary["loglog_slope"] < 0,
                 f"the toy should move less per frame at fps 24 than at 4: {motion}, spearman {summary['spearman']}")


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebooks_are_clean(name):
    """Committed without outputs or execution counts; one `parameters` cell with the shared knobs."""
    code = assert_clean(NOTEBOOKS_DIR / name, ("device", "seed", "seeds", "num_inference_steps", "out_dir"))
    assert "SVDKIT_SOURCE" in code[0].source and "enable_custom_widget_manager" in code[0].source
