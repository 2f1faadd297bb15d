"""Text -> first frame -> video: input checks, the bundled toy text-to-image folder with stock diffusers, its
tokenizer offline, the training script's smoke mode, the widget callback, and notebook 05 under papermill."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from svdkit import text
from svdkit.toy import TEXT_MODEL_PATH
from svdkit.toy.world import HELD_OUT_SEED, PALETTE, SHAPE_KINDS, caption, render_clip
from tests.test_notebooks import _toy_missing, run_on_toy

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "05_text_to_video.ipynb"
needs_text_model = pytest.mark.skipif(not (TEXT_MODEL_PATH / "model_index.json").is_file(),
                                      reason="the toy text model is not built (python -m svdkit.toy.train_text)")


@pytest.fixture
def no_model_work(monkeypatch):
    """Fail the test if anything tries to load a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")
    monkeypatch.setattr(text, "load_text_pipeline", refuse)
    monkeypatch.setattr("svdkit.models.load_pipeline", refuse)


@pytest.mark.parametrize("kwargs, name", [
    (dict(prompt=""), "prompt"),
    (dict(prompt="   "), "prompt"),
    (dict(prompt=3), "prompt"),
    (dict(prompt=["a red circle"]), "prompt"),
    (dict(height=100), "height"),
    (dict(width=0), "width"),
    (dict(height=64.0), "height"),
    (dict(seed=-1), "seed"),
    (dict(num_inference_steps=0), "num_inference_steps"),
    (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(model=5), "model"),
])
def test_text_to_image_bad_input(no_model_work, kwargs, name):
    args = dict(prompt="a red circle on a grey background") | kwargs
    with pytest.raises(ValueError, match=name):
        text.text_to_image(args.pop("prompt"), **args)


def test_prompt_to_video_bad_input(no_model_work):
    with pytest.raises(ValueError, match="prompt"):
        text.prompt_to_video("")
    with pytest.raises(ValueError, match="height"):
        text.prompt_to_video("a red circle", height=96)
    with pytest.raises(ValueError, match="text_steps"):
        text.prompt_to_video("a red circle", text_steps=0)


@pytest.mark.filterwarnings("error::UserWarning")  # and with no library warning on the way
def test_unreachable_model_fails_fast_and_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        text.load_text_pipeline("svdkit-tests/no-such-text-model")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("svdkit.models._hub_reachable", lambda *a, **k: False)
    with pytest.raises(OSError, match="cannot be reached"):
        text.load_text_pipeline("svdkit-tests/no-such-text-model")


def test_registry():
    assert {"toy", "sd-turbo", "sdxl-turbo"} <= set(text.TEXT_MODELS)
    assert text.TEXT_MODELS["sd-turbo"].repo_id == "stabilityai/sd-turbo"
    assert all(s.guidance_scale == 0.0 and s.num_inference_steps <= 4
               for k, s in text.TEXT_MODELS.items() if "turbo" in k)


def test_fit_image_covers_then_crops():
    from PIL import Image
    a = np.zeros((512, 512, 3), np.uint8)
    a[:, 256:] = 255  # right half white
    fitted = text.fit_image(Image.fromarray(a), 576, 1024)
    assert fitted.size == (1024, 576)
    out = np.asarray(fitted)
    assert out[:, :500].max() < 10 and out[:, 524:].min() > 245  # the halves stay halves: nothing stretched
    with pytest.raises(ValueError, match="width"):
        text.fit_image(fitted, 64, 65)


def test_detector_reads_the_rendered_world():
    seeds = range(HELD_OUT_SEED, HELD_OUT_SEED + 150)
    checks = [text.check_prompt(render_clip(s, num_frames=1)[0], caption(s)) for s in seeds]
    assert np.mean([c["colours_ok"] for c in checks]) == 1.0
    assert np.mean([c["shapes_ok"] for c in checks]) == 1.0
    # the shape moments survive the slight blur of a drawing, and another scene's caption fails
    import cv2
    blurred = [text.check_prompt(cv2.GaussianBlur(render_clip(s, num_frames=1)[0], (0, 0), 0.7), caption(s))
               for s in seeds]
    assert np.mean([c["shapes_ok"] for c in blurred]) >= 0.97
    wrong = [text.check_prompt(render_clip(s, num_frames=1)[0], caption(s + 1)) for s in seeds]
    assert np.mean([c["shapes_ok"] for c in wrong]) <= 0.1
    assert text.parse_prompt("a red circle, a blue square and a yellow thing") == [
        ("red", "circle"), ("blue", "square"), ("yellow", None)]


def test_detector_calls_a_cross_no_shape():
    # by their moments alone an X reads as a square (mass on the diagonals) and a plus as a diamond
    import cv2
    image = np.full((64, 64, 3), 40, np.uint8)
    cv2.line(image, (10, 10), (26, 26), PALETTE["red"], 4)
    cv2.line(image, (26, 10), (10, 26), PALETTE["red"], 4)
    image[40:56, 44:48] = PALETTE["blue"]
    image[46:50, 38:54] = PALETTE["blue"]
    found = {o.colour: o for o in text.find_objects(image)}
    assert found["red"].corners < 0.70 and found["blue"].corners > 0.80
    assert found["red"].shape == found["blue"].shape == "none"
    assert max(found["red"].solidity, found["blue"].solidity) < text.MIN_SOLIDITY
    assert not text.check_prompt(image, "a red square and a blue diamond")["shapes_ok"]


@needs_text_model
def test_stock_pipeline_loads_the_shipped_folder():
    from diffusers import AutoPipelineForText2Image, StableDiffusionPipeline

    files = [p for p in TEXT_MODEL_PATH.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 15 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    assert (TEXT_MODEL_PATH / "training_log.json").is_file()
    pipe = StableDiffusionPipeline.from_pretrained(TEXT_MODEL_PATH)
    assert pipe.safety_checker is None and pipe.vae_scale_factor == 4
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle on a grey background", num_inference_steps=2, guidance_scale=3.0,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert image.shape == (64, 64, 3)
    auto = AutoPipelineForText2Image.from_pretrained(TEXT_MODEL_PATH)
    assert type(auto).__name__ == "StableDiffusionPipeline"


@needs_text_model
def test_tokenizer_round_trips_offline(tmp_path, monkeypatch):
    from transformers import CLIPTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = CLIPTokenizer.from_pretrained(TEXT_MODEL_PATH / "tokenizer")
    for word in [*PALETTE, *SHAPE_KINDS, "background", "gradient"]:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word  # each world word: one token
    prompt = caption(HELD_OUT_SEED)
    ids = tokenizer(prompt).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ,", ",").strip() == prompt
    tokenizer.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path)
    assert again(prompt).input_ids == ids and again.model_max_length == tokenizer.model_max_length
    assert tokenizer("a purple hexagon").input_ids[1:-1]  # unknown words still tokenize, byte by byte


@needs_text_model
def test_text_to_image_draws_at_the_video_resolution():
    image = text.text_to_image("a green square on a slate background", seed=2, num_inference_steps=3)
    assert image.size == (64, 64) and image.mode == "RGB"
    again = text.text_to_image("a green square on a slate background", seed=2, num_inference_steps=3)
    assert np.array_equal(np.asarray(image), np.asarray(again))
    wide = text.text_to_image("a green square on a slate background", seed=2, num_inference_steps=3,
                              height=64, width=128)
    assert wide.size == (128, 64)


@needs_text_model
def test_prompt_to_video_callback(tiny_pipe):
    # The notebook's button calls this; a tiny random SVD keeps it fast and independent of the toy SVD.
    result = text.prompt_to_video("a blue circle on a brown background", video_model=tiny_pipe, seed=1,
                                  text_steps=2, num_inference_steps=2, num_frames=4)
    assert result.image.size == (64, 64)
    assert result.frames.shape == (4, 64, 64, 3) and result.frames.dtype == np.uint8
    summary = result.summary()
    json.dumps(summary)
    assert summary["wanted"] == [["blue", "circle"]] and summary["frames_shape"] == [4, 64, 64, 3]


def _train_smoke(out: Path, *extra: str) -> str:
    run = subprocess.run([sys.executable, "-m", "svdkit.toy.train_text", "--smoke", "--out", str(out), *extra],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "reloaded with StableDiffusionPipeline.from_pretrained: image (64, 64, 3)" in run.stdout
    return run.stdout


@pytest.mark.slow
def test_training_smoke_and_vae_reuse(tmp_path):
    from safetensors.torch import load_file

    first, again = tmp_path / "first", tmp_path / "again"
    _train_smoke(first)
    log = json.loads((first / "training_log.json").read_text())
    assert log["vae"]["log"] and log["diffusion"]["log"] and log["diffusion"]["held_out_checks"]
    assert (first / "tokenizer" / "vocab.json").is_file() and (first / "tokenizer" / "merges.txt").is_file()
    assert (first / "loss.png").is_file() and (first / "vae" / "vae_log.json").is_file()

    # Redoing only the diffusion stage on the saved VAE gives the weights of the whole run, bit for bit.
    _train_smoke(again, "--vae-from", str(first))
    assert json.loads((again / "training_log.json").read_text())["vae"]["log"] == log["vae"]["log"]
    for part in ("vae", "unet"):
        a = load_file(first / part / "diffusion_pytorch_model.safetensors")
        b = load_file(again / part / "diffusion_pytorch_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    a, b = (load_file(d / "text_encoder" / "model.safetensors") for d in (first, again))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@needs_text_model
def test_benchmark_prints_the_rates(tmp_path):
    out = tmp_path / "quality.json"
    run = subprocess.run([sys.executable, str(ROOT / "evaluations" / "toy_text_quality.py"), "--n", "4",
                          "--steps", "2", "--threads", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert run.returncode in (0, 1), run.stderr[-3000:]  # 1: below the target, which 2 steps may well be
    assert "named colours with their shapes:" in run.stdout and "(target >= 80%)" in run.stdout
    result = json.loads(out.read_text())
    assert result["n"] == 4 and result["true_frames"]["colours_shapes"] == 1.0
    assert 0.0 <= result["generated"]["colours_shapes"] <= result["generated"]["colours"] <= 1.0


@pytest.mark.notebook
@needs_text_model
@pytest.mark.skipif(_toy_missing(), reason="the toy SVD is not built (python -m svdkit.toy.train)")
def test_notebook_05_runs(tmp_path):
    summary, out = run_on_toy(NOTEBOOK.name, tmp_path, num_inference_steps=2, text_steps=3, seeds=[0, 1])
    assert summary["frames_shape"] == [14, 64, 64, 3] and summary["image_size"] == [64, 64]
    assert summary["wanted"] == [["red", "circle"], ["blue", "square"]]
    assert summary["widget"]["frames_shape"] == [14, 64, 64, 3]
    assert (out / "first_frame.png").is_file() and (out / "clip.mp4").is_file()


def test_notebook_05_is_committed_clean():
    import nbformat
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for knob in ('model = "toy"', "device", "seed", "num_inference_steps", "out_dir", "prompt"):
        assert knob in tagged[0].source
    assert "SVDKIT_SOURCE" in code[0].source and "enable_custom_widget_manager" in code[0].source
