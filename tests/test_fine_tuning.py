"""svdkit.finetune on the tiny seeded pipeline: it learns, it resumes to the same weights after a kill, its weights
load into a stock diffusers pipeline, and bad input is refused before any training."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from svdkit.fine_tuning import finetune, prepare_clips, trainable_parameters, validation_loss
from svdkit.toy import render_clip
from tests.conftest import make_tiny_pipeline

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 6  # the tiny pipeline's frame count


def _clips(seeds, num_frames=8):
    return [render_clip(s, 180, fps=7, num_frames=num_frames) for s in seeds]


def _frames(pipe, image):
    return pipe(image, height=64, width=64, num_frames=FRAMES, num_inference_steps=2, motion_bucket_id=100,
                generator=torch.Generator().manual_seed(0), output_type="np").frames[0]


def test_a_few_steps_lower_the_loss_on_held_out_clips(tmp_path):
    pipe = make_tiny_pipeline()
    held_out = prepare_clips(pipe, _clips(range(1_000_000, 1_000_004)))
    before = validation_loss(pipe, held_out)
    result = finetune(pipe, _clips(range(8)), method="full", out_dir=tmp_path, steps=12, lr=2e-3, batch_size=2,
                      progress=False)
    after = validation_loss(pipe, held_out)
    assert after < 0.8 * before, (before, after)
    assert len(result.losses) == 12 and [s for s, _ in result.losses] == list(range(12))
    record = json.loads((tmp_path / "finetune.json").read_text())
    assert record["status"] == "done" and record["settings"]["method"] == "full" and len(record["clips"]) == 8
    assert all(0 <= c["motion_bucket_id"] <= 255 and c["fps"] == 7 for c in record["clips"])
    assert set(record["versions"]) == {"svdkit", "diffusers", "peft", "torch"}


def test_the_held_out_loss_measured_during_a_run_leaves_the_run_unchanged(tmp_path):
    """Notebook 07 measures validation_loss from finetune's callback: the run's losses and weights stay the same."""
    held_out = prepare_clips(make_tiny_pipeline(), _clips(range(1_000_000, 1_000_002)))
    runs, measured = [], []
    for watch in (False, True):
        pipe = make_tiny_pipeline()
        callback = (lambda step, loss, pipe=pipe: measured.append(validation_loss(pipe, held_out))) if watch else None
        result = finetune(pipe, _clips(range(3)), method="lora", out_dir=tmp_path / str(watch), steps=3, lr=1e-2,
                          rank=4, batch_size=2, progress=False, callback=callback)
        runs.append((result.losses, {n: p.clone() for n, p in trainable_parameters(pipe.unet, "lora").items()}))
    (losses, weights), (watched_losses, watched_weights) = runs
    assert len(measured) == 3 and len(set(measured)) == 3, measured  # measured at every step, as the weights moved
    assert watched_losses == losses
    assert weights.keys() == watched_weights.keys() and all(torch.equal(weights[k], watched_weights[k])
                                                            for k in weights)


def test_temporal_trains_only_the_temporal_layers(tmp_path):
    pipe = make_tiny_pipeline()
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    finetune(pipe, _clips(range(2)), method="temporal", out_dir=tmp_path, steps=2, lr=1e-2, progress=False)
    temporal = set(trainable_parameters(pipe.unet, "temporal"))
    changed = {k for k, v in pipe.unet.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= temporal
    from safetensors.torch import load_file
    assert set(load_file(str(tmp_path / "unet.safetensors"))) == temporal


_KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {root!r})
from svdkit.fine_tuning import finetune
from svdkit.toy import render_clip
from tests.conftest import make_tiny_pipeline
stop = int(sys.argv[2])
def kill(step, loss):
    if step == stop:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, as a crash or an out-of-memory kill
clips = [render_clip(s, 180, fps=7, num_frames=8) for s in range(3)]
finetune(make_tiny_pipeline(), clips, method="lora", out_dir=sys.argv[1], steps=6, lr=1e-2, rank=4,
         checkpoint_every=2, progress=False, callback=kill, resume="--resume" in sys.argv)
"""


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_KILLED_RUN.format(root=str(ROOT))))
    whole = subprocess.run([sys.executable, str(script), str(tmp_path / "a"), "-1"], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = subprocess.run([sys.executable, str(script), str(tmp_path / "b"), "3"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -9 and not (tmp_path / "b" / "adapter_model.safetensors").exists()
    assert json.loads((tmp_path / "b" / "checkpoints" / "finetune-latest.json").read_text())["step"] == 2
    again = subprocess.run([sys.executable, str(script), str(tmp_path / "b"), "-1"], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode != 0 and "resume=True" in again.stderr  # the same run, not asked to resume
    resumed = subprocess.run([sys.executable, str(script), str(tmp_path / "b"), "-1", "--resume"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0 and all(torch.equal(a[k], b[k]) for k in a)
    assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)  # it did train
    losses = json.loads((tmp_path / "b" / "loss.json").read_text())["rows"]
    assert [r[0] for r in losses] == list(range(6))  # each step once, over both sittings


@pytest.mark.parametrize("method", ["lora", "full"])
def test_weights_load_into_a_stock_pipeline_with_identical_frames(method, tmp_path, image):
    """The module docstring's recipe, with diffusers and peft only; and load_pipeline(folder, finetuned=...)."""
    from diffusers import StableVideoDiffusionPipeline
    from safetensors.torch import load_file

    import svdkit

    def stock_pipeline():
        pipe = StableVideoDiffusionPipeline.from_pretrained(base, use_safetensors=True)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    base = tmp_path / "base"
    make_tiny_pipeline().save_pretrained(base)
    trained = stock_pipeline()
    finetune(trained, _clips(range(3)), method=method, out_dir=tmp_path / "ft", steps=3, lr=1e-2, rank=4,
             progress=False)
    expected = _frames(trained, image)
    assert not np.array_equal(expected, _frames(stock_pipeline(), image)), "the fine-tune changed nothing"

    stock = stock_pipeline()
    if method == "lora":
        from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
        inject_adapter_in_model(LoraConfig.from_pretrained(tmp_path / "ft"), stock.unet)
        set_peft_model_state_dict(stock.unet, load_file(tmp_path / "ft" / "adapter_model.safetensors"))
    else:
        stock.unet.load_state_dict(load_file(tmp_path / "ft" / "unet.safetensors"), strict=False)
    assert np.array_equal(_frames(stock, image), expected)

    loaded = svdkit.load_pipeline(str(base), device="cpu", finetuned=tmp_path / "ft")
    assert np.array_equal(_frames(loaded, image), expected)
    assert loaded.svdkit.finetuned == str(tmp_path / "ft")


def _refused(tmp_path, match, clips=None, **kwargs):
    pipe = make_tiny_pipeline()
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        finetune(pipe, _clips(range(1)) if clips is None else clips, out_dir=out, progress=False, **kwargs)
    return out


def test_bad_input_is_refused_before_any_training(tmp_path):
    assert not _refused(tmp_path, r"method must be one of 'lora', 'temporal', 'full'; got 'dora'",
                        method="dora").exists()
    assert not _refused(tmp_path, r"steps must be an integer >= 1; got 0", steps=0).exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not _refused(tmp_path, r"clips: no videos .* in the folder", clips=empty).exists()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert not _refused(tmp_path, r"clips: cannot read .*broken.mp4", clips=[broken]).exists()
    short = [render_clip(0, num_frames=4)]
    assert not _refused(tmp_path, r"array 0 has 4 frames; .* needs at least 6", clips=short).exists()
    assert not _refused(tmp_path, r"uint8 of shape \(F, H, W, 3\)", clips=[np.zeros((8, 64, 64))]).exists()


def test_an_out_dir_of_another_run_is_refused(tmp_path):
    finetune(make_tiny_pipeline(), _clips(range(1)), method="lora", out_dir=tmp_path / "out", steps=1, rank=4,
             progress=False)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    _refused(tmp_path, r"out_dir .* holds another run \(other settings steps\)", method="lora", steps=2, rank=4)
    _refused(tmp_path, r"out_dir .* holds another run \(other clips\)", clips=_clips([5]), method="lora", steps=1,
             rank=4)
    _refused(tmp_path, r"holds this run already: pass resume=True", method="lora", steps=1, rank=4)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == files


def test_clips_are_fitted_to_the_model_and_their_conditioning_measured(tmp_path):
    import svdkit

    wide = np.zeros((7, 60, 120, 3), np.uint8)
    wide[:, 20:40, 50:70] = 200  # a still square in the middle: it stays in the centre crop
    path = svdkit.write_video(tmp_path / "wide.mp4", np.repeat(wide, 2, axis=0), fps=12)
    fast = render_clip(3, 255, fps=6, num_frames=8)
    rows = prepare_clips(make_tiny_pipeline(), [path, fast], fps=None)
    assert rows[0]["frames"].shape == (14, 64, 64, 3) and rows[0]["fps"] == pytest.approx(12)
    assert rows[0]["motion_bucket_id"] < 10 and rows[0]["frames"][:, 32, 32].mean() > 150
    assert rows[1]["fps"] == 7 and rows[1]["motion_bucket_id"] > 150  # arrays: fps 7 unless given
    assert prepare_clips(make_tiny_pipeline(), [fast], motion_bucket_id=40)[0]["motion_bucket_id"] == 40


def test_memory_options_and_validation_clips_run_on_the_cpu(tmp_path):
    """Gradient checkpointing and bf16 autocast (CPU autocast here; CUDA in benchmarks/finetune_memory.py) train
    the same parameters; validation clips and the loss curve are written."""
    pipe = make_tiny_pipeline()
    result = finetune(pipe, _clips(range(2)), method="temporal", out_dir=tmp_path, steps=2, lr=1e-3,
                      gradient_checkpointing=True, mixed_precision="bf16", validate_every=1, progress=False)
    assert all(np.isfinite(loss) for _, loss in result.losses)
    assert sorted(p.name for p in (tmp_path / "validation").iterdir()) == ["step-000001.json", "step-000001.mp4",
                                                                          "step-000002.json", "step-000002.mp4"]
    assert (tmp_path / "loss.png").stat().st_size > 0
    assert not pipe.unet.is_gradient_checkpointing and all(p.dtype == torch.float32 for p in pipe.unet.parameters())
