"""load_pipeline(): the registry, local folders, presets, and fast, clear failures without weights."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import svdkit
from svdkit.models import resolve_dtype


def test_registry():
    assert set(svdkit.MODELS) >= {"toy", "svd", "svd-xt", "svd-xt-1-1"}
    assert svdkit.MODELS["svd"].num_frames == 14 and svdkit.MODELS["svd-xt"].num_frames == 25
    assert svdkit.MODELS["svd-xt-1-1"].fps == 6 and svdkit.MODELS["svd"].height == 576


def test_load_local_folder(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "m", safe_serialization=True)
    assert not list((tmp_path / "m").rglob("*.bin")), "weights must be safetensors"
    pipe = svdkit.load_pipeline(str(tmp_path / "m"), memory="low")
    assert type(pipe).__name__ == "StableVideoDiffusionPipeline"
    assert pipe.svdkit.device == "cpu" and pipe.svdkit.dtype == "float32" and pipe.svdkit.memory == "low"
    assert pipe.svdkit.decode_chunk_size == 2
    video = svdkit.generate(pipe, __import__("tests.conftest", fromlist=["x"]).make_image(),
                            num_frames=4, num_inference_steps=2)
    assert video.params["decode_chunk_size"] == 2


def test_missing_weights_fail_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(OSError, match=r"(?s)'svd-xt'.*stable-video-diffusion-img2vid-xt.*HF_HOME"):
        svdkit.load_pipeline("svd-xt")
    assert time.perf_counter() - start < 30


def test_missing_weights_fail_fast_unreachable(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr("svdkit.models._hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(OSError, match=r"(?s)cannot be reached.*hf download"):
        svdkit.load_pipeline("svd")


def test_bad_arguments():
    with pytest.raises(ValueError, match="memory must be one of"):
        svdkit.load_pipeline("toy", memory="huge")
    with pytest.raises(ValueError, match="dtype must be"):
        resolve_dtype("int3", "cpu")
    assert resolve_dtype("auto", "cuda") == torch.float16 and resolve_dtype("auto", "cpu") == torch.float32


def test_misspelt_name_lists_the_valid_names(monkeypatch, tmp_path):
    """A name that is neither in the registry, a folder, nor shaped like a hub id ('owner/name') is a typo: the
    error names the valid names at once, instead of talking of the Hugging Face cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ValueError, match=r"'svd-xtt' is not a known name \(did you mean 'svd-xt'\?\).*"
                                         r"known names: toy, svd, svd-xt, svd-xt-1-1"):
        svdkit.load_pipeline("svd-xtt")
    with pytest.raises(ValueError, match="known names: toy, svd"):
        svdkit.load_pipeline(str(tmp_path / "no-such-folder" / "deeper"))
    with pytest.raises(OSError, match="not in the local Hugging Face cache"):  # a hub id goes on to the cache
        svdkit.load_pipeline("someone/svd-finetune")


QUIET = """
import svdkit
pipe = svdkit.load_pipeline("toy")
video = svdkit.generate(pipe, "data/example_0.png", num_inference_steps=2)
image = svdkit.text_to_image("a red circle on a grey background", num_inference_steps=2)
print(video.frames.shape, image.size, type(pipe.feature_extractor).__name__)
"""


def test_loading_and_generating_says_nothing():
    """No library warning, note or loading bar reaches a learner: stderr stays empty. A fresh process, so that
    notes printed once, at import, count; Python's default warning filters, which show what a notebook shows
    (FutureWarning, UserWarning; DeprecationWarning only from the notebook's own code)."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", QUIET], capture_output=True, text=True, cwd=root, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "(14, 64, 64, 3) (64, 64) CLIPImageProcessorPil"
    assert out.stderr == ""
