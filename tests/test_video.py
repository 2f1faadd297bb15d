"""Video I/O: write then read back (mp4, gif, webp) through mediapy and the bundled ffmpeg."""

import json
import os
import stat

import numpy as np
import pytest
import torch

import svdkit


def moving_square(frames=10, size=64):
    clip = np.full((frames, size, size, 3), 40, np.uint8)
    for i in range(frames):
        clip[i, 20:36, 4 + 3 * i: 20 + 3 * i] = (220, 60, 30)
    return clip


@pytest.mark.parametrize("suffix, tol", [(".mp4", 6.0), (".gif", 6.0), (".webp", 0.0)])
def test_write_read_roundtrip(tmp_path, suffix, tol):
    clip = svdkit.Video(frames=moving_square(), fps=8, params={"model": "test", "seed": 3})
    path = clip.save(tmp_path / f"clip{suffix}")
    back = svdkit.read_video(path)
    assert back.frames.shape == clip.frames.shape and back.frames.dtype == np.uint8
    assert np.abs(back.frames.astype(float) - clip.frames).mean() <= tol
    assert back.fps == 8 and back.params["seed"] == 3
    assert json.loads(path.with_suffix(".json").read_text())["model"] == "test"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_saved_files_get_the_usual_permissions(tmp_path):
    """A clip and its record are written atomically, yet readable as any file the user makes (umask 022)."""
    umask = os.umask(0o022)
    try:
        path = svdkit.Video(frames=moving_square(3), fps=5).save(tmp_path / "a.mp4")
    finally:
        os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (path, path.with_suffix(".json"))}
    assert modes == {"a.mp4": 0o644, "a.json": 0o644}


def test_mediapy_reads_with_new_ffmpeg(tmp_path):
    """mediapy 1.2.7 passes -vsync, which ffmpeg >= 7 rejects; svdkit translates it."""
    path = svdkit.write_video(tmp_path / "a.mp4", moving_square(6), fps=5)
    from svdkit.video import _mediapy
    video = _mediapy().read_video(path)
    assert video.shape[:3] == (6, 64, 64) and video.metadata.fps == 5


def test_bad_video_arguments(tmp_path):
    with pytest.raises(ValueError, match="must end in .mp4, .gif or .webp"):
        svdkit.write_video(tmp_path / "a.avi", moving_square(2), fps=5)
    with pytest.raises(ValueError, match="uint8 of shape"):
        svdkit.write_video(tmp_path / "a.mp4", moving_square(2).astype(float), fps=5)
    with pytest.raises(FileNotFoundError):
        svdkit.read_video(tmp_path / "missing.mp4")


def test_to_uint8_and_to_model_convert_between_the_layouts():
    from svdkit.video import to_model, to_uint8
    pixels = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)  # (B, 3, H, W)
    image = to_uint8(pixels)
    assert image.shape == (1, 2, 2, 3) and image[0, 0, 0].tolist() == [0, 128, 255]
    assert to_uint8(torch.full((3, 1, 1), 5.0)).tolist() == [[[255, 255, 255]]]  # clamped, (3, H, W) too
    clip = moving_square(frames=3)  # (F, H, W, 3) uint8
    x = to_model(clip)
    assert x.shape == (3, 3, 64, 64) and x.dtype == torch.float32
    assert float(x.min()) == pytest.approx(30 / 127.5 - 1) and float(x.max()) == pytest.approx(220 / 127.5 - 1)
    np.testing.assert_array_equal(to_uint8(x), clip)  # a round trip loses nothing
