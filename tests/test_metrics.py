"""Clip metrics on synthetic clips whose answer is known: a textured square moving k pixels a frame."""

import doctest

import numpy as np
import pytest

from svdkit import metrics


def moving_square(k: int, num_frames: int = 8, size: int = 64, side: int = 24, seed: int = 0) -> np.ndarray:
    """A textured square sliding right by k pixels a frame over a flat background: uint8 (F, H, W, 3)."""
    import cv2
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (side, side, 3)).astype(np.float32), (0, 0), 1.0)
    texture = (texture - texture.min()) / (texture.max() - texture.min()) * 200 + 30
    frames = np.full((num_frames, size, size, 3), 90, np.float32)
    for t in range(num_frames):
        x = 4 + k * t
        frames[t, 20:20 + side, x:x + side] = texture
    return frames.astype(np.uint8)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_motion_measures_pixels_per_frame(k):
    assert metrics.motion(moving_square(k)) == pytest.approx(k, rel=0.1)


def test_motion_per_frame_has_one_value_per_pair():
    per_frame = metrics.motion_per_frame(moving_square(2, num_frames=6))
    assert per_frame.shape == (5,) and np.allclose(per_frame, 2, rtol=0.1)


def test_still_clip_measures_zero():
    still = np.repeat(moving_square(0)[:1], 8, axis=0)
    m = metrics.clip_metrics(still, image=still[0])
    assert m["motion"] == 0 and m["frame_diff"] == 0 and m["flicker"] == 0
    assert m["psnr_first"] == metrics.PSNR_CAP and m["ssim_first"] == 1.0


def test_toy_world_motion_follows_its_speed():
    from svdkit.toy import pixels_per_frame, render_clip
    for bucket, fps in [(64, 6), (255, 12), (255, 6)]:
        truth = pixels_per_frame(bucket, fps)
        assert metrics.motion(render_clip(1_000_003, bucket, fps)) == pytest.approx(truth, rel=0.15)


def test_frame_difference_and_flicker():
    rng = np.random.default_rng(1)
    base = rng.integers(20, 200, (1, 16, 16, 3)).astype(np.uint8)
    fade = np.concatenate([base + 2 * t for t in range(5)]).astype(np.uint8)  # +2 levels a frame, steadily
    assert metrics.frame_difference(fade) == pytest.approx(2.0)
    assert metrics.flicker(fade) == pytest.approx(0.0)
    blink = np.concatenate([base + 10 * (t % 2) for t in range(5)]).astype(np.uint8)  # on, off, on, ...
    assert metrics.frame_difference(blink) == pytest.approx(10.0)
    assert metrics.flicker(blink) == pytest.approx(20.0)


def test_psnr_and_ssim():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert metrics.psnr(img, img) == metrics.PSNR_CAP and metrics.ssim(img, img) == 1.0
    noisy = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(img + rng.normal(0, 40, img.shape), 0, 255).astype(np.uint8)
    assert 25 < metrics.psnr(img, noisy) < 30  # sigma 10: about 28 dB
    assert 1 > metrics.ssim(img, noisy) > metrics.ssim(img, noisier) > 0
    flat = np.full((32, 32, 3), 128, np.uint8)
    assert metrics.ssim(flat, flat + 1) == pytest.approx(1.0, abs=1e-3)  # a tiny uniform shift


def test_psnr_of_clips_and_its_exact_value():
    a = np.zeros((4, 4, 3), np.uint8)
    assert metrics.psnr(a, a + 10) == pytest.approx(10 * np.log10(255**2 / 100))  # MSE 100
    clip = np.zeros((3, 4, 4, 3), np.uint8)
    other = clip.copy()
    other[1] = 20  # one frame of three off by 20: MSE 400 / 3
    assert metrics.psnr(clip, other) == pytest.approx(10 * np.log10(255**2 * 3 / 400))
    assert metrics.psnr(clip, clip) == metrics.PSNR_CAP == 100.0
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(clip, clip[0])


def test_first_frame_metrics_resize_the_input():
    from PIL import Image
    clip = moving_square(1)
    big = Image.fromarray(clip[0]).resize((128, 128), Image.Resampling.NEAREST)
    m = metrics.clip_metrics(clip, image=big)
    assert m["ssim_first"] > 0.9 and m["psnr_first"] > 25


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="uint8 of shape"):
        metrics.motion(np.zeros((4, 8, 8, 3), np.float32))


def test_every_metric_is_documented_and_doctests_pass():
    clip = moving_square(2)
    assert set(metrics.clip_metrics(clip, image=clip[0])) == set(metrics.METRICS)
    assert all(text and ". " not in text for text in metrics.METRICS.values())  # one sentence each
    result = doctest.testmod(metrics, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_trend_reads_a_curve():
    rows = [{"motion_bucket_id": b, "seed": s, "motion": 0.01 * b + 0.05 * s}
            for b in (0, 85, 170, 255) for s in (0, 1)]
    t = metrics.trend(rows, "motion_bucket_id")
    assert t["values"] == [0, 85, 170, 255] and t["spearman"] > 0.9 and t["r2_linear"] == pytest.approx(1)
    assert t["distinct_steps"] == 3 and t["noise"] == pytest.approx(0.0354, abs=1e-3)
    fps = [{"fps": f, "seed": 0, "motion": 12 / f} for f in (3, 6, 12, 24)]
    t = metrics.trend(fps, "fps")
    assert t["spearman"] == pytest.approx(-1) and t["loglog_slope"] == pytest.approx(-1)
