"""Training the toy: checkpoints are atomic and complete, a stopped training resumes to exactly the same weights,
and a run folder is never mixed up with another training's."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from svdkit.toy.checkpoint import Run, load_optimizer, optimizer_tensors, rng_state, set_rng_state

ROOT = Path(__file__).resolve().parents[1]


def test_run_keeps_the_newest_complete_checkpoints(tmp_path):
    run = Run(tmp_path, keep=2)
    assert run.latest("unet") is None and run.step("unet") == 0
    for step in (10, 20, 30):
        run.save("unet", step, {"w": torch.full((3,), float(step))}, {"loss": step / 10})
    tensors, state = run.latest("unet")
    assert state == {"loss": 3.0, "step": 30} and tensors["w"].tolist() == [30.0] * 3 and run.step("unet") == 30
    assert sorted(p.name for p in tmp_path.glob("unet-0*")) == ["unet-000020", "unet-000030"]
    # a checkpoint cut short while being written (its .tmp folder) is never the latest
    (tmp_path / "unet-000040.tmp").mkdir()
    assert run.latest("unet")[1]["step"] == 30
    run.log(stage="unet", step=1, loss=0.5)
    Run(tmp_path).log(stage="unet", step=2, loss=0.4)  # a later sitting appends
    assert [r["step"] for r in run.rows(stage="unet")] == [1, 2]


def test_optimizer_and_random_streams_round_trip():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(2):
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
    tensors, rest = optimizer_tensors(opt)
    tensors = {k: v.clone() for k, v in tensors.items()}  # as read back from a file: not the live state
    rest = json.loads(json.dumps(rest))  # it must survive JSON
    rng, gen = np.random.default_rng(5), torch.Generator().manual_seed(7)
    rng_t, rng_s = rng_state(rng, gen)
    rng_s = json.loads(json.dumps(rng_s))
    expected = (rng.random(), torch.rand(2, generator=gen), torch.rand(2))

    copy = torch.nn.Linear(3, 2)
    copy.load_state_dict(model.state_dict())
    opt2 = torch.optim.AdamW(copy.parameters(), lr=0.1)
    load_optimizer(opt2, tensors, rest)
    rng2, gen2 = np.random.default_rng(0), torch.Generator()
    set_rng_state(rng2, rng_t, rng_s, gen2)
    assert rng2.random() == expected[0] and torch.equal(torch.rand(2, generator=gen2), expected[1])
    assert torch.equal(torch.rand(2), expected[2])
    for m, o in ((model, opt), (copy, opt2)):
        m.weight.grad = torch.ones_like(m.weight)
        m.bias.grad = torch.ones_like(m.bias)
        o.step()
    assert torch.equal(model.weight, copy.weight)


def _train(capsys, *args) -> tuple[int, str, str]:
    """One training in this process, as the command line runs it: (exit code, stdout, stderr)."""
    from svdkit.toy import train

    threads = torch.get_num_threads()
    try:
        train.main(["--smoke", "--recipe", "v2-attn8", "--threads", "1", "--vae-steps", "2", "--unet-steps", "4",
                    "--eval-every", "0", *map(str, args)])
        code = 0
    except SystemExit as stop:  # argparse's errors exit 2; a refused run folder exits with its message
        code = stop.code if isinstance(stop.code, int) else 1
        if not isinstance(stop.code, int):
            print(stop.code, file=sys.stderr)
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_a_stopped_training_resumes_to_the_same_weights(tmp_path, capsys):
    from safetensors.torch import load_file

    code, _, err = _train(capsys, "--run-dir", tmp_path / "a", "--out", tmp_path / "out_a")
    assert code == 0, err[-2000:]
    code, out, _ = _train(capsys, "--run-dir", tmp_path / "b", "--out", tmp_path / "out_b", "--until-step", 2)
    assert code == 0 and "continue with --resume" in out
    assert not (tmp_path / "out_b").exists() and Run(tmp_path / "b").step("unet") == 2
    code, _, err = _train(capsys, "--run-dir", tmp_path / "b", "--out", tmp_path / "out_b")  # forgot --resume
    assert code == 2 and "--resume" in err and Run(tmp_path / "b").step("unet") == 2
    code, _, err = _train(capsys, "--run-dir", tmp_path / "b", "--out", tmp_path / "out_b", "--resume", "--seed", 3)
    assert code != 0 and "seed: 0 -> 3" in err and "recipe" not in err.split("(")[1]  # only what changed
    code, out, err = _train(capsys, "--run-dir", tmp_path / "b", "--out", tmp_path / "out_b", "--resume")
    assert code == 0 and "resumed at step 2" in out, err[-2000:]

    name = "unet/diffusion_pytorch_model.safetensors"
    a, b = load_file(str(tmp_path / "out_a" / name)), load_file(str(tmp_path / "out_b" / name))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "out_b" / "vae" / "config.json").read_text())
    assert len(config["block_out_channels"]) == 3  # a 4x VAE: 16x16 latents
    stages = [r["stage"] for r in Run(tmp_path / "b").rows()]
    assert stages.count("start") == 2 and stages[-1] == "done" and "stop" in stages  # the refused ones log nothing
    record = json.loads((tmp_path / "out_b" / "training_log.json").read_text())
    assert [r[0] for r in record["unet"]["log"]] == [0, 3]  # each logged step once, over both sittings


@pytest.mark.parametrize("args, message", [(["--checkpoint-minutes", "0"], "--checkpoint-minutes must be a number > 0"),
                                           (["--checkpoint-minutes", "nan"], "--checkpoint-minutes must be a number"),
                                           (["--vae-from", "."], "--vae-from: no trained VAE"),
                                           (["--recipe", "v3"], "invalid choice")])
def test_training_refuses_bad_options_before_any_work(args, message, tmp_path):
    done = subprocess.run([sys.executable, "-m", "svdkit.toy.train", *args, "--run-dir", str(tmp_path / "r")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and not (tmp_path / "r").exists()


def test_a_run_folder_takes_one_training_at_a_time(tmp_path):
    holder = Run(tmp_path)
    holder.lock()
    take = [sys.executable, "-c", f"from svdkit.toy.checkpoint import Run; Run({str(tmp_path)!r}).lock()"]
    other = subprocess.run(take, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert other.returncode == 1 and "is in use by another training" in other.stderr
    holder._lock.close()  # released: the next one gets it
    again = subprocess.run(take, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr


def test_averaged_weights_are_lent_for_the_block_only():
    from svdkit.toy.evaluate import averaged

    model = torch.nn.Linear(3, 2).train()
    own = [p.detach().clone() for p in model.parameters()]
    ema = [torch.full_like(p, 0.5) for p in model.parameters()]
    with averaged(model, ema):
        assert all(torch.equal(p, e) for p, e in zip(model.parameters(), ema)) and not model.training
    assert all(torch.equal(p, o) for p, o in zip(model.parameters(), own))


def test_pass_through_starts_the_decoders_last_layer_as_the_identity():
    """PyTorch's init of the 3 -> 3 temporal conv passes colour along about one direction; pass_through passes all
    three, frame by frame, and the second toy's recipes use it."""
    from diffusers import AutoencoderKLTemporalDecoder

    from svdkit.toy.recipes import RECIPES, vae_config
    from svdkit.toy.train import build_pipeline, pass_through

    recipe = RECIPES["v2-attn8"]
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(**vae_config(recipe))
    clip = torch.rand(1, 3, 4, 8, 8)  # (B, C, F, H, W): the layout time_conv_out works in
    layer = vae.decoder.time_conv_out
    with torch.no_grad():
        assert not torch.allclose(layer(clip), clip, atol=0.1)
        pass_through(vae)
        assert torch.allclose(layer(clip), clip)
    assert recipe.vae_pass_through and RECIPES["v2-attn84"].vae_pass_through and not RECIPES["v1"].vae_pass_through
    built = build_pipeline(3, recipe).vae.decoder.time_conv_out
    with torch.no_grad():
        assert torch.allclose(built(clip), clip)
