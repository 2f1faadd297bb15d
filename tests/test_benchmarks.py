"""benchmarks/gpu_presets.py runs end to end at the tiny size (as CI runs it) and writes a sane JSON; the pictures
and references of evaluations/toy_quality.py and the helpers of studies/toy_x0_error.py mean what they say."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "gpu_presets_tiny.json"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_presets.py"), "--tiny", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout, time.perf_counter() - started


@pytest.mark.slow
def test_tiny_benchmark_json(tiny_run):
    result, stdout, seconds = tiny_run
    assert result["size"] == "tiny" and result["random_weights"] is True
    assert result["steps"] >= 2 and result["num_frames"] >= 2
    assert set(result["flops"]) == {"unet", "unet_shallow", "decode", "encode", "clip"}
    assert all(v > 0 for v in result["flops"].values())
    assert result["flops"]["unet_shallow"] < result["flops"]["unet"]
    rows = {r["config"]: r for r in result["results"]}
    assert {"stock", "fast", "fast+cache2", "fast+skip_uncond", "balanced", "low"} <= set(rows)
    for name, r in rows.items():
        for key in ("seconds_total", "seconds_per_step", "seconds_decode", "flops_total", "achieved_tflops",
                    "speedup_vs_stock", "step_speedup_vs_stock"):
            assert r[key] > 0, (name, key)
        assert r["seconds_per_step"] < r["seconds_total"] and r["latents_finite"] is True
        for key in ("peak_allocated_gib", "driver_peak_used_gib", "fraction_of_spec_peak", "frame_mae_vs_fast"):
            assert key in r, (name, key)
    assert rows["stock"]["speedup_vs_stock"] == 1
    # the exact configurations make the same frames; the approximate ones are measured against them
    assert rows["fast"]["frame_mae_vs_fast"] == 0 and rows["stock"]["frame_mae_vs_fast"] == 0
    assert rows["fast+cache2"]["flops_total"] < rows["fast"]["flops_total"]
    assert rows["fast+skip_uncond"]["flops_total"] < rows["fast"]["flops_total"]
    assert "step TFLOP/s" in stdout and "fast+cache2" in stdout
    print(f"tiny benchmark: {seconds:.1f} s")


@pytest.mark.slow
def test_append_merges_rows(tiny_run, tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_presets", ROOT / "benchmarks" / "gpu_presets.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result, _, _ = tiny_run
    out = tmp_path / "gpu_presets_tiny.json"
    out.write_text(json.dumps(result))
    merged = bench.main(["--tiny", "--out", str(out), "--configs", "fast+cache3", "--append"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(merged))
    assert [r["config"] for r in merged["results"]] == [r["config"] for r in result["results"]]
    kept = {r["config"]: r for r in merged["results"]}
    assert kept["stock"]["seconds_total"] == result["results"][0]["seconds_total"]  # from the first run
    assert kept["fast+cache3"]["speedup_vs_stock"] > 0  # re-derived against the kept stock row


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_toy_quality_pictures_and_references():
    """The drawn pictures are deterministic, of colours outside the world's palette, and read back as kept; a frame
    that lost its shapes is flagged; the VAE round trip is the toy VAE's own reconstruction."""
    import numpy as np
    from diffusers import AutoencoderKLTemporalDecoder

    from svdkit.metrics import psnr
    from svdkit.toy import MODEL_PATH, PALETTE
    from svdkit.toy.world import HELD_OUT_SEED, render_clip, shapes_kept

    bench = _load_script(ROOT / "evaluations" / "toy_quality.py")
    for i in range(8):
        image, colours, bg = bench.drawn_picture(i)
        again = bench.drawn_picture(i)[0]
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and np.array_equal(image, again)
        assert 1 <= len(colours) <= 3 and not set(colours.values()) & set(PALETTE.values())
        assert shapes_kept(image, colours, bg).all(), i
        still = np.stack([image] * 4)
        still[2] = bg.astype(np.uint8)  # frame 2 loses every shape
        assert shapes_kept(still, colours, bg).tolist() == [True, True, False, True]

    seed = HELD_OUT_SEED + 7
    clip = render_clip(seed, 200, 7)  # (F, H, W, 3)
    vae = AutoencoderKLTemporalDecoder.from_pretrained(MODEL_PATH / "vae").eval()
    back = bench.vae_round_trip(vae, clip)
    assert back.shape == clip.shape and back.dtype == np.uint8
    assert psnr(back[0], clip[0]) > 20 and not np.array_equal(back, clip)
    assert bench.model_world(MODEL_PATH) == "palette"  # the shipped toy: the first world


def test_toy_quality_names_a_missing_model(tmp_path):
    for option in ("--model", "--reference"):
        proc = subprocess.run([sys.executable, str(ROOT / "evaluations" / "toy_quality.py"), option, str(tmp_path)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and f"{option}: no diffusers pipeline folder" in proc.stderr, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


def test_toy_x0_error_splits_and_estimates():
    """split_error's global part is a per-frame, per-channel offset and its local part the rest; x0_estimates
    returns the true latents, the copy of the first frame, and the UNet's estimates, all (F, 4, h, w)."""
    import torch
    from diffusers import StableVideoDiffusionPipeline

    from svdkit.toy import MODEL_PATH
    from svdkit.toy.world import HELD_OUT_SEED, render_clip

    bench = _load_script(ROOT / "studies" / "toy_x0_error.py")
    truth = torch.randn(14, 4, 8, 8)
    assert bench.split_error(truth + 0.5, truth) == pytest.approx((0.25, 0.25, 0.0), abs=1e-6)
    bump = truth.clone()
    bump[3, 1, 2, 2] += 8.0  # one cell: mostly local, a little global
    total, glob, local = bench.split_error(bump, truth)
    assert total == pytest.approx(glob + local) and local > 50 * glob > 0

    pipe = StableVideoDiffusionPipeline.from_pretrained(MODEL_PATH)
    gen = torch.Generator().manual_seed(0)
    still = bench.x0_estimates(pipe, bench.encode_clip(pipe, render_clip(HELD_OUT_SEED + 5, 0, 7), 0, gen), 0.5, gen)
    moving = bench.x0_estimates(pipe, bench.encode_clip(pipe, render_clip(HELD_OUT_SEED + 5, 255, 7), 255, gen), 0.5,
                                gen)
    assert set(still) == {"truth", "copy", "conditional", "guided"}
    assert all(v.shape == (14, 4, 8, 8) for v in still.values())
    # a still clip is its first frame repeated; a moving one is not, and at low noise the UNet does far better
    assert bench.split_error(still["copy"], still["truth"])[0] < 0.01
    copy_error = bench.split_error(moving["copy"], moving["truth"])[0]
    assert bench.split_error(moving["conditional"], moving["truth"])[0] < copy_error / 5


def test_latent_mixes_count_colour_changes():
    """A disc and its blend edges are no colour change; a cyan centre in a blue disc is. On the first toy VAE the
    diagnostic finds what was measured by hand: the blue disc's halfway mix at 2 px stays blue, at 8 px (one latent
    cell) it does not."""
    import numpy as np
    from diffusers import AutoencoderKLTemporalDecoder

    from svdkit.toy import MODEL_PATH, PALETTE

    bench = _load_script(ROOT / "evaluations" / "latent_mixes.py")
    blue = PALETTE["blue"]
    image = bench.disc(30.3, blue)
    assert not bench.colour_changed(image, blue)
    tinted = image.copy()
    tinted[30:35, 28:33] = PALETTE["cyan"]
    assert bench.colour_changed(tinted, blue)

    vae = AutoencoderKLTemporalDecoder.from_pretrained(MODEL_PATH / "vae").eval()
    flags = bench.colour_changes(vae, {"blue": blue}, shifts=(0, 2, 8))["blue"]
    assert flags == [False, False, True]
    assert np.array_equal(bench.decoded_mix(vae, blue, 0).shape, (64, 64, 3))
    # the first VAE's decoder ends in a GroupNorm of one channel per group: flat colours come back greyish
    assert bench.flat_colour_error(vae) > 60


def test_results_writer_appends_dated_machine_labelled_sections(tmp_path):
    """benchmarks/report.py (what `--write` calls): the first call writes the header, each call one section with
    the date, the machine, the command and the printed lines, and nothing before it changes."""
    import datetime as dt

    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    path = tmp_path / "RESULTS.md"
    report.append_results("capture_overhead", ["plain median 1.460 s", "PASS  capture / plain = 1.02"], path=path,
                          command="python benchmarks/capture_overhead.py --write", when=dt.date(2026, 12, 2))
    first = path.read_text()
    assert first.startswith(report.HEADER) and first.count("\n## ") == 1
    assert "\n## 2026-12-02: capture_overhead\n" in first
    assert f"- machine: {report.machine_label()}\n" in first and "CPUs" in report.machine_label()
    assert "- command: `python benchmarks/capture_overhead.py --write`" in first
    assert "```text\nplain median 1.460 s\nPASS  capture / plain = 1.02\n```\n" in first
    report.append_results("sweep_speed", "speed-up: 1.14x", path=path)  # a string, today, this command line
    second = path.read_text()
    assert second.startswith(first) and second.count("\n## ") == 2
    assert f"\n## {dt.date.today().isoformat()}: sweep_speed\n" in second and "speed-up: 1.14x\n```" in second


@pytest.mark.slow
def test_finetune_memory_benchmark_runs_tiny(tmp_path):
    """benchmarks/finetune_memory.py at the tiny size on the CPU: every method, with and without checkpointing."""
    out = tmp_path / "finetune_memory_tiny.json"
    script = ROOT / "benchmarks" / "finetune_memory.py"
    proc = subprocess.run([sys.executable, str(script), "--tiny", "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["size"] == "tiny" and result["random_weights"] is True
    rows = {(r["method"], r["checkpointing"]): r for r in result["results"]}
    assert set(rows) == {(m, c) for m in ("lora", "temporal", "full") for c in (False, True)}
    assert all(r["status"] == "ok" and r["seconds_per_step"] > 0 for r in rows.values())
    trained = {m: rows[(m, False)]["trained_parameters_m"] for m in ("lora", "temporal", "full")}
    assert 0 < trained["lora"] < trained["full"] and 0 < trained["temporal"] < trained["full"]
    assert "full" in proc.stdout and "s/step" in proc.stdout
