"""Longer clips and loops: extend's segments, generate(loop=, end_image=), Video.looped, and their metrics."""

import numpy as np
import pytest
import torch

import svdkit
from svdkit import metrics
from svdkit.keyframes import chain_hooks, end_weights, steer
from tests.test_notebooks import _toy_missing
from tests.test_sampling import BASE, Boom, exploding_pipe  # noqa: F401  (a fixture)

# ---------------------------------------------------------------------------------------------- generate


def test_no_loop_and_no_end_image_change_nothing(tiny_pipe, image):
    plain = svdkit.generate(tiny_pipe, image, seed=3, **BASE)
    same = svdkit.generate(tiny_pipe, image, seed=3, loop=False, end_image=None, **BASE)
    np.testing.assert_array_equal(plain.frames, same.frames)
    assert plain.params.keys() == same.params.keys() and "loop" not in same.params


def test_loop_is_end_image_equal_to_image(tiny_pipe, image):
    looped = svdkit.generate(tiny_pipe, image, seed=1, loop=True, **BASE)
    ended = svdkit.generate(tiny_pipe, image, seed=1, end_image=image, **BASE)
    plain = svdkit.generate(tiny_pipe, image, seed=1, **BASE)
    np.testing.assert_array_equal(looped.frames, ended.frames)
    assert np.abs(looped.frames.astype(int) - plain.frames).mean() > 0.1, "loop=True should change the clip"
    assert looped.params["loop"] is True and ended.params["end_image"] is True


def test_steer_to_the_end_lands_exactly_on_the_target(tiny_pipe, image):
    """With until=1 and weight 1, the steered frame's final latents are the target; a user's hook still runs."""
    target = torch.full((4, 8, 8), 0.5)
    seen = []
    hook = chain_hooks(steer({5: target}, until=1.0), lambda pipe, i, t, x: seen.append(i))
    video = svdkit.generate(tiny_pipe, image, capture=True, on_step=hook, **BASE)
    torch.testing.assert_close(video.trace.latents[5], target)
    assert not torch.allclose(video.trace.latents[4], target)
    assert seen == [0, 1, 2]


def test_end_weights():
    assert end_weights(14, frames=4) == {13: 1.0, 12: 0.5625, 11: 0.25, 10: 0.0625}
    assert list(end_weights(14)) == list(range(13, 6, -1)) and end_weights(2) == {1: 1.0}
    with pytest.raises(ValueError, match="frames must be in 1-6"):
        end_weights(6, frames=7)
    with pytest.raises(ValueError, match=r"until must be in \(0, 1\]"):
        steer({0: torch.zeros(4, 8, 8)}, until=0)


# ---------------------------------------------------------------------------------------------- extend


@pytest.mark.parametrize("method", ["reencode", "latents"])
def test_one_segment_is_generate(tiny_pipe, image, method):
    one = svdkit.extend(tiny_pipe, image, segments=1, method=method, seed=2, **BASE)
    np.testing.assert_array_equal(one.frames, svdkit.generate(tiny_pipe, image, seed=2, **BASE).frames)
    assert one.segments == [(0, 6)]


@pytest.mark.parametrize("method", ["reencode", "latents"])
@pytest.mark.parametrize("overlap, lengths", [(0, [6, 6, 6]), (1, [6, 5, 5]), (3, [6, 3, 3])])
def test_segments_and_frame_count(tiny_pipe, image, method, overlap, lengths):
    video = svdkit.extend(tiny_pipe, image, segments=3, overlap=overlap, method=method, **BASE)
    starts = np.cumsum([0, *lengths])
    assert video.frames.shape == (sum(lengths), 64, 64, 3)
    assert video.segments == [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]
    assert video.params["segments"] == video.segments and video.params["segment_seeds"] == [0, 1, 2]
    assert video.params["extend"] == {"segments": 3, "overlap": overlap, "method": method}


def test_reencode_starts_from_the_frame_and_drops_the_overlap(tiny_pipe, image):
    first = svdkit.generate(tiny_pipe, image, seed=4, **BASE).frames
    video = svdkit.extend(tiny_pipe, image, segments=2, overlap=2, seed=4, **BASE)
    second = svdkit.generate(tiny_pipe, first[6 - 2], seed=5, **BASE).frames  # from frame F - overlap
    np.testing.assert_array_equal(video.frames[:6], first)
    np.testing.assert_array_equal(video.frames[6:], second[2:])  # its first two frames repeat first[4:6]


def test_latents_method_differs_from_reencode(tiny_pipe, image):
    a = svdkit.extend(tiny_pipe, image, segments=2, method="reencode", **BASE).frames
    b = svdkit.extend(tiny_pipe, image, segments=2, method="latents", **BASE).frames
    np.testing.assert_array_equal(a[:6], b[:6])
    assert np.abs(a[6:].astype(int) - b[6:]).mean() > 0.1


def test_segments_survive_save_and_read(tiny_pipe, image, tmp_path):
    video = svdkit.extend(tiny_pipe, image, segments=2, **{**BASE, "num_inference_steps": 1})
    back = svdkit.read_video(video.save(tmp_path / "long.webp"))
    assert back.segments == video.segments and len(back.frames) == 11


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, match", [
    (dict(segments=0), r"segments must be an integer >= 1, got 0"),
    (dict(segments=2.5), r"segments must be an integer >= 1"),
    (dict(segments=True), r"segments must be an integer >= 1"),
    (dict(overlap=6), r"overlap must be an integer in 0-5 \(less than num_frames=6\), got 6"),
    (dict(overlap=-1), r"overlap must be an integer in 0-5"),
    (dict(method="latent"), r"method must be one of \('reencode', 'latents'\)"),
    (dict(height=100), r"height must be a positive multiple"),
])
def test_extend_refuses_bad_input_before_model_work(exploding_pipe, image, kwargs, match):  # noqa: F811
    with pytest.raises(ValueError, match=match):
        svdkit.extend(exploding_pipe, image, **{"segments": 2, **BASE, **kwargs})


def test_generate_refuses_bad_loop_and_end_image(exploding_pipe, image):  # noqa: F811
    with pytest.raises(ValueError, match="loop=True and end_image cannot be used together"):
        svdkit.generate(exploding_pipe, image, loop=True, end_image=image, **BASE)
    with pytest.raises(ValueError, match=r"end_image must have the size of image, 64x64, got 32x64"):
        svdkit.generate(exploding_pipe, image, end_image=np.zeros((64, 32, 3), np.uint8), **BASE)
    with pytest.raises(ValueError, match="loop must be True or False"):
        svdkit.generate(exploding_pipe, image, loop="pingpong", **BASE)
    with pytest.raises(Boom):  # a good end_image gets as far as the model
        svdkit.generate(exploding_pipe, image, end_image=np.zeros((64, 64, 3), np.uint8), **BASE)


# ---------------------------------------------------------------------------------------------- cheap loops


def ramp(n=8, size=8) -> np.ndarray:
    """A clip whose frame t is a flat grey of 20 t levels: (n, size, size, 3)."""
    return (np.arange(n, dtype=np.uint8) * 20)[:, None, None, None].repeat(size, 1).repeat(size, 2).repeat(3, 3)


def test_pingpong_and_crossfade():
    clip = svdkit.Video(frames=ramp(), fps=5, params={"seed": 1})
    pp = clip.looped("pingpong")
    assert len(pp.frames) == 14 and metrics.seam(pp.frames) == 1.0 and pp.params == {"seed": 1, "loop": "pingpong"}
    cf = clip.looped("crossfade")  # fade 2: 6 frames, the last two faded into the first two
    assert len(cf.frames) == 6 and cf.fps == 5 and cf.params["loop"] == "crossfade"
    np.testing.assert_array_equal(cf.frames[2:], clip.frames[2:6])
    assert cf.frames[0, 0, 0, 0] == round(2 / 3 * 120 + 1 / 3 * 0)  # mostly frame 6, a third of frame 0
    assert metrics.seam(clip.frames) == 7.0 and metrics.seam(cf.frames) < 7.0
    with pytest.raises(ValueError, match="fade must be an integer in 1-4"):
        clip.looped("crossfade", fade=5)
    with pytest.raises(ValueError, match="loop must be 'pingpong' or 'crossfade'"):
        clip.looped("boomerang")


def test_save_loop_writes_the_looped_frames(tmp_path):
    clip = svdkit.Video(frames=ramp(), fps=5)
    back = svdkit.read_video(clip.save(tmp_path / "loop.webp", loop="pingpong"))
    assert len(back.frames) == 14 and back.params["loop"] == "pingpong"
    assert len(svdkit.read_video(clip.save(tmp_path / "plain.webp")).frames) == 8
    joined = svdkit.Video(frames=ramp(), fps=5, params={"segments": [[0, 4], [4, 8]]}, segments=[(0, 4), (4, 8)])
    assert svdkit.read_video(joined.save(tmp_path / "joined.webp")).segments == [(0, 4), (4, 8)]
    looped = svdkit.read_video(joined.save(tmp_path / "joined_loop.webp", loop="pingpong"))
    assert looped.segments is None and "segments" not in looped.params  # 14 frames: the boundaries no longer hold


# ---------------------------------------------------------------------------------------------- metrics


def sliding_square(n=12, step=3, size=48) -> np.ndarray:
    clip = np.full((n, size, size, 3), 40, np.uint8)
    for t in range(n):
        x = (4 + step * t) % (size - 10)
        clip[t, 15:25, x:x + 10] = (200, 60, 60)
    return clip


def test_seam():
    clip = sliding_square()
    assert metrics.seam(clip) > 1.0
    assert metrics.seam(np.concatenate([clip, clip[-2:0:-1]])) == pytest.approx(1.0)
    still = np.full((4, 8, 8, 3), 9, np.uint8)
    assert metrics.seam(still) == 1.0
    assert metrics.seam(np.concatenate([still, still[:1] + 50])) == float("inf")


def test_drift_sees_colour_blur_and_fidelity():
    import cv2
    picture = sliding_square(n=1)[0]
    clip = np.repeat(picture[None], 9, axis=0)  # a still clip: only the drift changes the frames
    clip[3:] = np.clip(clip[3:].astype(int) + 15, 0, 255).astype(np.uint8)  # segment 1: brighter
    clip[6:] = np.stack([cv2.GaussianBlur(f, (7, 7), 2) for f in clip[6:]])  # segment 2: brighter and blurred
    d = metrics.drift(clip, picture, [(0, 3), (3, 6), (6, 9)])
    assert [x["segment"] for x in d] == [0, 1, 2] and [x["start"] for x in d] == [0, 3, 6]
    assert d[0]["colour_shift"] == 0 and d[0]["sharpness"] == 1.0 and d[0]["psnr_first"] == metrics.PSNR_CAP
    assert d[1]["colour_shift"] == pytest.approx(15, abs=0.5) and d[2]["sharpness"] < 0.5 * d[1]["sharpness"]
    assert d[0]["psnr_first"] > d[1]["psnr_first"] > d[2]["psnr_first"]
    with pytest.raises(ValueError, match=r"segments: each must be a \[start, stop\) range inside the 9 frames"):
        metrics.drift(clip, picture, [(0, 10)])


def test_end_fidelity_is_psnr_of_the_last_frame():
    clip = sliding_square()
    assert metrics.end_fidelity(clip, clip[-1]) == metrics.PSNR_CAP
    assert metrics.end_fidelity(clip, clip[0]) == pytest.approx(metrics.psnr(clip[-1], clip[0]))
    assert set(metrics.LOOP_METRICS) == {"seam", "largest_step", "drift", "end_fidelity"}


def test_largest_step():
    clip = sliding_square(n=6, step=2)
    assert metrics.largest_step(clip) == pytest.approx(1.0)
    cut = np.concatenate([clip, 255 - clip])
    assert metrics.largest_step(cut) > 5
    assert metrics.largest_step(np.zeros((3, 4, 4, 3), np.uint8)) == 1.0


# ---------------------------------------------------------------------------------------------- on the toy


@pytest.mark.skipif(_toy_missing(), reason="the bundled toy model is not built yet: python -m svdkit.toy.train")
def test_loop_and_end_image_on_the_toy():
    """The targets on the toy: loop=True closes the seam to <= 1.5 keeping half the motion; end_image gains 5 dB."""
    from svdkit.toy import render_clip
    pipe = svdkit.load_pipeline("toy")
    kw = dict(seed=0, motion_bucket_id=127, num_inference_steps=10)
    plain = svdkit.generate(pipe, "data/example_0.png", **kw).frames
    looped = svdkit.generate(pipe, "data/example_0.png", loop=True, **kw).frames
    assert metrics.seam(plain) > 2 and metrics.seam(looped) <= 1.5
    assert metrics.frame_difference(looped) >= 0.5 * metrics.frame_difference(plain)
    end = render_clip(1_000_000, motion_bucket_id=127)[-1]  # where the world's own clip ends
    ended = svdkit.generate(pipe, "data/example_0.png", end_image=end, **kw).frames
    assert metrics.end_fidelity(ended, end) >= metrics.end_fidelity(plain, end) + 5
