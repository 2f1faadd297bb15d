"""The toy world's physics, the shipped toy model folder, and the training script's smoke run."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from svdkit.toy import (
    MODEL_PATH,
    caption,
    describe_scene,
    detect_shapes,
    pixels_per_frame,
    render_clip,
    shape_positions,
)

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ the world
def test_render_is_deterministic_and_seeded():
    a = render_clip(11, motion_bucket_id=200, fps=6)
    assert a.shape == (14, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_clip(11, motion_bucket_id=200, fps=6))
    assert not np.array_equal(a, render_clip(12, motion_bucket_id=200, fps=6))
    # the scene comes from the seed alone: the first frame does not depend on the motion knobs
    assert np.array_equal(a[0], render_clip(11, motion_bucket_id=3, fps=25)[0])


def test_displacement_per_frame_is_speed_over_fps():
    assert pixels_per_frame(255, fps=6) == pytest.approx(4.0)
    assert pixels_per_frame(127.5, fps=6) == pytest.approx(2.0)
    pos = shape_positions(21, motion_bucket_id=255, fps=6)  # (F, N, 2)
    steps = np.linalg.norm(np.diff(pos, axis=0), axis=-1)  # (F-1, N)
    # a frame that contains a bounce moves less; every other frame moves exactly speed / fps
    assert np.all(steps <= 4.0 + 1e-9)
    assert np.median(steps) == pytest.approx(4.0)


def test_bucket_zero_is_still():
    clip = render_clip(5, motion_bucket_id=0, fps=7)
    assert (clip == clip[0]).all()


def test_fps_6_moves_four_times_fps_24():
    slow = shape_positions(8, motion_bucket_id=100, fps=24, num_frames=2)
    fast = shape_positions(8, motion_bucket_id=100, fps=6, num_frames=2)
    d_slow = np.linalg.norm(slow[1] - slow[0], axis=-1)
    d_fast = np.linalg.norm(fast[1] - fast[0], axis=-1)
    assert d_fast == pytest.approx(4 * d_slow)


def test_shapes_head_away_from_the_centre():
    """The direction is random (the start is) but readable from the first frame: straight out from the centre."""
    for seed in range(1_000_000, 1_000_020):
        pos = shape_positions(seed, motion_bucket_id=20, fps=30, num_frames=2)  # 0.06 px: no bounce yet
        outward = pos[0] - 32.0
        step = pos[1] - pos[0]
        cos = (outward * step).sum(-1) / np.linalg.norm(outward, axis=-1) / np.linalg.norm(step, axis=-1)
        assert np.all(cos > 0.999), (seed, cos)


def test_subpixel_motion_is_visible():
    clip = render_clip(9, motion_bucket_id=8, fps=30)  # about 0.025 px per frame
    assert not np.array_equal(clip[0], clip[-1])


def test_detector_finds_the_scene():
    for seed in (1_000_000, 1_000_001, 1_000_002):
        scene = describe_scene(seed)
        pos = shape_positions(seed)[0]
        dets = detect_shapes(render_clip(seed)[0])
        assert len(dets) == len(scene.shapes)  # shapes start apart, so none is hidden in frame 0
        for shape, (x, y) in zip(scene.shapes, pos):
            (found,) = [d for d in dets if d.colour == shape.colour]
            assert np.hypot(found.x - x, found.y - y) < 0.5, (seed, shape, found)


def test_caption_names_every_shape():
    text = caption(2)
    for shape in describe_scene(2).shapes:
        assert f"{shape.colour} {shape.kind}" in text
    assert text.endswith("background")


def test_example_images_are_first_frames():
    from PIL import Image

    readme = (ROOT / "data" / "README.md").read_text()
    assert "render_clip" in readme
    img = np.asarray(Image.open(ROOT / "data" / "example_0.png").convert("RGB"))
    assert img.shape == (64, 64, 3)
    assert np.array_equal(img, render_clip(1_000_000)[0])


# ------------------------------------------------------------------------------ the broad world
def test_broad_scenes_stand_out_and_vary():
    """Broad scenes: deterministic; 1-3 shapes whose colours stand 120 apart from each other and from both ends of the
    background's gradient; white, black and saturated shapes, dull and saturated backgrounds, a range of sizes."""
    import colorsys

    from svdkit.toy.world import _MIN_CONTRAST

    scenes = [describe_scene(s, world="broad") for s in range(1_000_000, 1_000_200)]
    assert scenes[0] == describe_scene(1_000_000, world="broad") and scenes[0] != describe_scene(1_000_000)
    names, sats, radii = set(), [], []
    for scene in scenes:
        assert 1 <= len(scene.shapes) <= 3
        bg = np.asarray(scene.background.rgb, float)
        ends = [np.clip(bg + d, 0, 255) for d in (-scene.background.strength, scene.background.strength)]
        colours = [np.asarray(s.rgb, float) for s in scene.shapes]
        for i, c in enumerate(colours):
            assert min(np.linalg.norm(c - o) for o in ends + colours[:i]) >= _MIN_CONTRAST
        names |= {s.colour for s in scene.shapes}
        sats.append(colorsys.rgb_to_hsv(*(bg / 255))[1])
        radii += [s.radius for s in scene.shapes]
    assert {"white", "black"} <= names and len(names) >= 12
    assert min(sats) < 0.1 and max(sats) > 0.8 and min(radii) < 5.5 and max(radii) > 10
    assert caption(1_000_005, world="broad").startswith(("a ", "an "))
    with pytest.raises(ValueError, match="world must be one of"):
        describe_scene(1, world="wide")


def test_shapes_kept_reads_true_clips_and_flags_what_falls_apart():
    from svdkit.toy.world import render_background, scene_colours, shapes_kept

    kept = []
    for seed in range(1_000_000, 1_000_030):
        clip = render_clip(seed, 255, 6, world="broad")
        kept.append(shapes_kept(clip, scene_colours(seed, world="broad"), render_background(seed, world="broad")))
    assert np.mean([k[0] for k in kept]) >= 0.95 and np.mean(kept) >= 0.95  # only overlaps split a shape

    seed = next(s for s in range(1_000_000, 1_000_100) if len(describe_scene(s, world="broad").shapes) == 2)
    colours, bg = scene_colours(seed, world="broad"), render_background(seed, world="broad")
    clip = render_clip(seed, 100, 7, world="broad")
    assert shapes_kept(clip, colours, bg).all()
    first = describe_scene(seed, world="broad").shapes[0]
    changed = clip.copy()
    mask = np.linalg.norm(changed[4].astype(float) - first.rgb, axis=-1) < 30
    changed[4][mask] = 255 - np.asarray(first.rgb)  # the shape turns its opposite colour
    stray = clip.copy()
    stray[7, 2:6, 2:6] = (255 - bg[3, 3]).astype(np.uint8)  # a 16-pixel smudge no colour of the scene explains
    split = clip.copy()
    (x, y) = shape_positions(seed, 100, 7, world="broad")[9, 0]
    split[9, :, int(x) - 1: int(x) + 2] = bg[:, int(x) - 1: int(x) + 2]  # a background stripe cuts the shape in two
    for damaged, frame in ((changed, 4), (stray, 7), (split, 9)):
        expect = [f != frame for f in range(len(clip))]
        assert shapes_kept(damaged, colours, bg).tolist() == expect


def test_detector_finds_broad_shapes_by_their_colours():
    from svdkit.toy.world import render_background, scene_colours

    for seed in range(1_000_000, 1_000_010):
        scene = describe_scene(seed, world="broad")
        pos = shape_positions(seed, world="broad")[0]
        if any(np.hypot(*(pos[i] - pos[j])) < scene.shapes[i].radius + scene.shapes[j].radius + 2
               for i in range(len(pos)) for j in range(i)):
            continue  # overlapping at the start: one may hide the other
        dets = detect_shapes(render_clip(seed, world="broad")[0], scene_colours(seed, world="broad"),
                             background=render_background(seed, world="broad"))
        assert len(dets) == len(scene.shapes), seed
        for d, (x, y) in zip(sorted(dets, key=lambda d: d.colour), pos):
            assert np.hypot(d.x - x, d.y - y) < 0.6, (seed, d)


# ------------------------------------------------------------------------------ the model
@pytest.mark.skipif(not (MODEL_PATH / "model_index.json").exists(), reason="toy model not trained yet")
def test_shipped_model_runs_with_stock_diffusers():
    import torch
    from diffusers import StableVideoDiffusionPipeline
    from PIL import Image

    sizes = sum(f.stat().st_size for f in MODEL_PATH.rglob("*.safetensors"))
    assert sizes < 25e6
    assert not list(MODEL_PATH.rglob("*.bin")) and not list(MODEL_PATH.rglob("*.pt"))
    pipe = StableVideoDiffusionPipeline.from_pretrained(MODEL_PATH)
    pipe.set_progress_bar_config(disable=True)
    image = Image.open(ROOT / "data" / "example_0.png")
    frames = pipe(image, height=64, width=64, num_frames=14, num_inference_steps=4,
                  generator=torch.Generator().manual_seed(0), output_type="np").frames[0]
    assert frames.shape == (14, 64, 64, 3)
    assert np.isfinite(frames).all()


@pytest.mark.slow
def test_training_smoke_run(tmp_path):
    out = tmp_path / "model"
    done = subprocess.run([sys.executable, "-m", "svdkit.toy.train", "--smoke", "--out", str(out),
                           "--run-dir", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "frames (14, 64, 64, 3)" in done.stdout
    assert (out / "training_log.json").exists() and (out / "loss.png").exists()
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").exists()


@pytest.mark.parametrize("args, name", [(["--unet-steps", "-1"], "--unet-steps"),
                                        (["--pool-scenes", "0"], "--pool-scenes"), (["--threads", "two"], "--threads")])
def test_training_rejects_bad_counts_before_any_work(args, name, tmp_path):
    done = subprocess.run([sys.executable, "-m", "svdkit.toy.train", *args, "--out", str(tmp_path / "m")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and name in done.stderr and "must be an integer >=" in done.stderr
    assert not (tmp_path / "m").exists() and "vae" not in done.stdout


def test_vae_training_weighs_shapes_and_crops_on_the_latent_grid():
    """The VAE's loss weights: 1 on the background, 1 + weight on a shape and 3 pixels around it; its crops keep
    one window for every frame of a chunk, at multiples of 8 pixels (the latent grid)."""
    import torch

    from svdkit.toy.train import crop, shape_weights
    from svdkit.video import to_model

    clip = render_clip(3, 255, 7, num_frames=4)  # (4, 64, 64, 3)
    w = shape_weights(to_model(clip), 10.0)[:, 0]  # (4, 64, 64)
    saturated = clip.max(-1).astype(int) - clip.min(-1) > 100
    assert torch.all(w[torch.from_numpy(saturated)] == 11.0)
    far = np.ones_like(saturated)  # pixels more than 4 away from any shape pixel
    for dy in range(-4, 5):
        for dx in range(-4, 5):
            far &= ~np.roll(saturated, (dy, dx), axis=(1, 2))
    assert torch.all(w[torch.from_numpy(far)] == 1.0) and 0.0 < saturated.mean() < 0.5

    rng = np.random.default_rng(0)
    offsets = set()
    for _ in range(50):
        window = crop(clip, 32, rng)
        assert window.shape == (4, 32, 32, 3)
        hits = [(y, x) for y in range(0, 33, 8) for x in range(0, 33, 8)
                if all(np.array_equal(window[f], clip[f, y: y + 32, x: x + 32]) for f in range(4))]
        assert hits
        offsets.add(hits[0])
    assert len(offsets) > 5


def test_generate_on_the_toy_says_when_a_picture_is_beyond_it():
    """A picture the toy's VAE cannot give back gets a warning naming the measured round trip and what the toy
    knows, at the caller's line; the toy's own pictures get none. Sizes follow the loaded model, not SVD's 64."""
    import warnings

    import svdkit
    from svdkit.inputs import size_multiple

    pipe = svdkit.load_pipeline("toy")
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[:] = (20, 70, 30)  # dark green, with a white disc and a blue square: colours the first toy never saw
    yy, xx = np.mgrid[:64, :64]
    picture[(yy - 20) ** 2 + (xx - 20) ** 2 < 81] = (250, 250, 250)
    picture[36:50, 36:50] = (40, 90, 245)
    with pytest.warns(UserWarning, match=r"cannot draw this picture: its VAE gives it back at only \d+\.\d dB") as w:
        svdkit.generate(pipe, picture, num_inference_steps=1)
    assert [x.filename for x in w if "cannot draw" in str(x.message)] == [__file__]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the toy SVD")
        svdkit.generate(pipe, ROOT / "data" / "example_0.png", num_inference_steps=1)
    m = size_multiple(pipe)
    assert m == 2 ** (len(pipe.vae.config.block_out_channels) - 1) * 2 ** (len(pipe.unet.config.down_block_types) - 1)
    example = ROOT / "data" / "example_0.png"
    assert svdkit.generate(pipe, example, height=64 + m, width=64, num_inference_steps=1).frames.shape[1] == 64 + m
    with pytest.raises(ValueError, match=f"height must be a positive multiple of {m}"):
        svdkit.generate(pipe, example, height=64 + m // 2, num_inference_steps=1)
