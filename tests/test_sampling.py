"""generate(): equal to the stock pipeline, capture that changes nothing, hooks, schedules and bad input."""


import numpy as np
import pytest
import torch

import svdkit
from svdkit.sampling import guidance_schedule


def stock_frames(pipe, image, seed, **params):
    out = pipe(image, generator=torch.Generator().manual_seed(seed), output_type="pil", **params).frames[0]
    return np.stack([np.asarray(f) for f in out])


BASE = dict(height=64, width=64, num_frames=6, num_inference_steps=3)
CASES = [
    {},
    dict(num_inference_steps=5, motion_bucket_id=30, fps=12),
    dict(motion_bucket_id=255, fps=3, noise_aug_strength=0.1),
    dict(noise_aug_strength=0.0, min_guidance_scale=1.0, max_guidance_scale=1.0),  # no guidance at all
    dict(min_guidance_scale=2.0, max_guidance_scale=5.0, decode_chunk_size=2),
    dict(num_frames=4, decode_chunk_size=3, width=128),
]


@pytest.mark.parametrize("params", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("seed", [0, 7])
def test_equals_stock_pipeline(tiny_pipe, image, params, seed):
    params = {**BASE, **params}
    ours = svdkit.generate(tiny_pipe, image, seed=seed, **params)
    assert ours.frames.dtype == np.uint8
    assert ours.frames.shape == (params["num_frames"], params["height"], params["width"], 3)
    np.testing.assert_array_equal(ours.frames, stock_frames(tiny_pipe, image, seed, **params))


def test_different_seeds_differ(tiny_pipe, image):
    a = svdkit.generate(tiny_pipe, image, seed=0, **BASE).frames
    b = svdkit.generate(tiny_pipe, image, seed=1, **BASE).frames
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_equals_stock_pipeline_cuda_fp16(image):
    from tests.conftest import make_tiny_pipeline
    pipe = make_tiny_pipeline().to("cuda", torch.float16)
    ours = svdkit.generate(pipe, image, seed=3, **BASE).frames.astype(int)
    np.testing.assert_allclose(ours, stock_frames(pipe, image, 3, **BASE).astype(int), atol=3)


def test_capture_changes_nothing_and_has_shapes(tiny_pipe, image):
    plain = svdkit.generate(tiny_pipe, image, seed=2, **BASE)
    video = svdkit.generate(tiny_pipe, image, seed=2, capture=True, **BASE)
    np.testing.assert_array_equal(plain.frames, video.frames)
    tr = video.trace
    steps, frames = BASE["num_inference_steps"], BASE["num_frames"]
    for name in ("x_t", "x0", "model_output_cond", "model_output_uncond"):
        assert getattr(tr, name).shape == (steps, frames, 4, 8, 8), name
    assert tr.sigmas.shape == (steps + 1,) and tr.timesteps.shape == (steps,)
    assert float(tr.sigmas[-1]) == 0 and torch.all(tr.sigmas[:-1] > tr.sigmas[1:])
    assert tr.image_latents.shape == (1, 4, 8, 8) and tr.noisy_image.shape == (1, 3, 64, 64)
    assert tr.added_time_ids.tolist() == [[6.0, 127.0, pytest.approx(0.02)]]
    np.testing.assert_allclose(tr.guidance.numpy(), np.linspace(1, 3, frames), rtol=1e-6)
    # the last step's x0 is where the sampler lands (sigma_last = 0)
    torch.testing.assert_close(tr.x0[-1], tr.latents)
    # each captured step is one Euler step: x_{i+1} = x_i + (x_i - x0_i) / sigma_i * (sigma_{i+1} - sigma_i)
    s = tr.sigmas.view(-1, 1, 1, 1, 1)
    euler = tr.x_t + (tr.x_t - tr.x0) / s[:-1] * (s[1:] - s[:-1])
    torch.testing.assert_close(euler[:-1], tr.x_t[1:], rtol=1e-4, atol=1e-4)
    assert tr.guidance_delta.shape == tr.x0.shape
    assert video.params["seed"] == 2 and video.params["motion_bucket_id"] == 127


def test_trace_save_load_roundtrip(tiny_pipe, image, tmp_path):
    tr = svdkit.generate(tiny_pipe, image, seed=0, capture="fp16", **BASE).trace
    assert tr.x0.dtype == torch.float16
    path = tr.save(tmp_path / "t.safetensors")
    back = svdkit.Trace.load(path)
    for name in ("x_t", "x0", "sigmas", "guidance", "image_embeddings", "model_output_uncond"):
        torch.testing.assert_close(getattr(back, name), getattr(tr, name))
    assert back.scaling_factor == tr.scaling_factor


def test_on_step_sees_tensors_and_can_stop(tiny_pipe, image):
    seen = []

    def hook(pipe, step, timestep, tensors):
        assert set(tensors) == set(svdkit.sampling.STEP_TENSORS)
        seen.append(step)
        return {"stop": step == 1}

    video = svdkit.generate(tiny_pipe, image, on_step=hook, **{**BASE, "num_inference_steps": 5})
    assert seen == [0, 1] and video.params["steps_run"] == 2


def test_on_step_can_replace_latents(tiny_pipe, image):
    def zero(pipe, step, timestep, tensors):
        return {"latents": torch.zeros_like(tensors["latents"])}

    a = svdkit.generate(tiny_pipe, image, on_step=zero, seed=0, **BASE).frames
    b = svdkit.generate(tiny_pipe, image, on_step=zero, seed=5, **BASE).frames
    np.testing.assert_array_equal(a, b)  # the noise no longer matters


def test_guidance_schedules():
    torch.testing.assert_close(guidance_schedule("linear", 4, 1, 4), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert guidance_schedule("constant", 3, 1, 2.5).tolist() == [2.5] * 3
    assert guidance_schedule("triangle", 5, 1, 3).tolist() == [1, 2, 3, 2, 1]
    assert guidance_schedule([1, 1.5], 2).tolist() == [1, 1.5]


def test_guidance_schedule_changes_frames_and_constant_one_equals_no_cfg(tiny_pipe, image):
    lin = svdkit.generate(tiny_pipe, image, **BASE).frames
    tri = svdkit.generate(tiny_pipe, image, guidance="triangle", **BASE).frames
    assert not np.array_equal(lin, tri)
    ones = svdkit.generate(tiny_pipe, image, guidance=[1.0] * 6, **BASE).frames
    off = stock_frames(tiny_pipe, image, 0, **BASE, min_guidance_scale=1.0, max_guidance_scale=1.0)
    np.testing.assert_array_equal(ones, off)


def test_custom_sigmas(tiny_pipe, image):
    sigmas = [80.0, 10.0, 1.0, 0.1, 0.0]
    video = svdkit.generate(tiny_pipe, image, sigmas=sigmas, capture=True, **BASE)
    assert video.trace.num_steps == 4
    np.testing.assert_allclose(video.trace.sigmas.numpy(), sigmas, rtol=1e-6)
    np.testing.assert_array_equal(video.frames, stock_frames(tiny_pipe, image, 0, sigmas=sigmas,
                                                             **{k: v for k, v in BASE.items()
                                                                if k != "num_inference_steps"}))


def test_image_kinds_agree(tiny_pipe, image, tmp_path):
    path = tmp_path / "in.png"
    image.save(path)
    arr = np.asarray(image)
    ref = svdkit.generate(tiny_pipe, image, **BASE).frames
    for other in (str(path), path, arr, torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255):
        np.testing.assert_array_equal(svdkit.generate(tiny_pipe, other, **BASE).frames, ref)


def test_rgba_and_grayscale_convert_with_warning(tiny_pipe, image):
    for mode in ("RGBA", "L", "P"):
        with pytest.warns(UserWarning, match="converting mode"):
            svdkit.generate(tiny_pipe, image.convert(mode), **{**BASE, "num_inference_steps": 1})


class Boom(Exception):
    pass


@pytest.fixture
def exploding_pipe(tiny_pipe, monkeypatch):
    """The tiny pipeline with models that raise when called: proves checks run before model work."""
    def boom(*a, **k):
        raise Boom("model work started")
    monkeypatch.setattr(tiny_pipe, "_encode_image", boom)
    monkeypatch.setattr(tiny_pipe.unet, "forward", boom)
    return tiny_pipe


@pytest.mark.parametrize("params, match", [
    (dict(height=100), r"height must be a positive multiple of 16.*nearest valid is 96"),  # the tiny UNet: 8 x 2
    (dict(width=70), r"width .*nearest valid is 64"),
    (dict(num_frames=0), r"num_frames must be an integer >= 1"),
    (dict(num_inference_steps=0), r"num_inference_steps must be an integer >= 1"),
    (dict(fps=0), r"fps must be an integer >= 1"),
    (dict(decode_chunk_size=0), r"decode_chunk_size must be an integer >= 1"),
    (dict(noise_aug_strength=-0.1), r"noise_aug_strength must be a number >= 0"),
    (dict(max_guidance_scale=float("nan")), r"max_guidance_scale must be a finite number"),
    (dict(guidance=[1.0, 2.0]), r"guidance: a schedule needs exactly num_frames=6 values"),
    (dict(guidance="wobbly"), r"guidance must be one of"),
    (dict(sigmas=[1.0, 2.0, 0.0]), r"sigmas must be a strictly decreasing"),
])
def test_bad_parameters_fail_before_model_work(exploding_pipe, image, params, match):
    with pytest.raises(ValueError, match=match):
        svdkit.generate(exploding_pipe, image, **{**BASE, **params})


def test_unknown_parameter(exploding_pipe, image):
    with pytest.raises(TypeError, match="unknown parameter.*motion_bucket"):
        svdkit.generate(exploding_pipe, image, motion_bucket=3)


def test_bad_images(exploding_pipe, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        svdkit.generate(exploding_pipe, tmp_path / "nope.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="junk.png"):
        svdkit.generate(exploding_pipe, junk)
    with pytest.raises(ValueError, match="values in \\[0, 1\\]"):
        svdkit.generate(exploding_pipe, np.full((8, 8, 3), 7.0))
    with pytest.raises(TypeError, match="PIL image, a path"):
        svdkit.generate(exploding_pipe, 42)


@pytest.mark.parametrize("params, match", [
    (dict(motion_bucket_id=300), "outside 0-255"),
    (dict(num_frames=9), "more than the 6 frames"),
])
def test_out_of_range_warns(tiny_pipe, image, params, match):
    with pytest.warns(UserWarning, match=match):
        svdkit.generate(tiny_pipe, image, **{**BASE, "num_inference_steps": 1, **params})


def test_warnings_name_the_callers_line(tiny_pipe, image):
    """Through generate's torch.no_grad wrapper, a warning points at the user's call, not inside torch."""
    with pytest.warns(UserWarning) as caught:
        svdkit.generate(tiny_pipe, image.convert("RGBA"), **{**BASE, "num_inference_steps": 1, "num_frames": 9},
                        motion_bucket_id=300)
    mine = [w for w in caught if any(s in str(w.message) for s in ("outside 0-255", "more than the 6", "mode"))]
    assert len(mine) == 3 and all(w.filename == __file__ for w in mine), [(w.filename, w.lineno) for w in mine]


def test_zero_size_image_is_refused_before_model_work(exploding_pipe):
    from PIL import Image

    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((4, 0), np.float32), torch.zeros(3, 0, 8)):
        with pytest.raises(ValueError, match="at least one pixel"):
            svdkit.generate(exploding_pipe, empty)
    with pytest.raises(ValueError, match="at least one pixel, got a 0x5 image"):
        svdkit.load_image(Image.new("RGB", (0, 5)))


# ----------------------------------------------------------------------------------------------------
# Stages 1 and 2 by hand: the pieces give what generate() used


@pytest.fixture(scope="module")
def captured(tiny_pipe):
    """One captured clip of the tiny pipeline (6 frames, 3 steps, guided), and its image."""
    from tests.conftest import make_image
    image = make_image()
    return image, svdkit.generate(tiny_pipe, image, seed=3, num_inference_steps=3, capture=True).trace


def test_encoding_by_hand_matches_generate(tiny_pipe, captured):
    from svdkit import sampling
    image, trace = captured
    pixels = sampling.preprocess(tiny_pipe, image)
    assert pixels.shape == (1, 3, 64, 64) and -1 <= pixels.min() < pixels.max() <= 1
    noisy = sampling.noise_augment(pixels, 0.02, seed=3)
    assert torch.equal(noisy, trace.noisy_image)  # the same noise generate drew first
    latents = sampling.encode_latents(tiny_pipe, noisy)
    assert latents.shape == (1, 4, 8, 8)
    assert torch.allclose(latents, trace.image_latents, atol=1e-6)  # condition latents: NOT scaled
    assert torch.allclose(sampling.clip_embedding(tiny_pipe, image), trace.image_embeddings, atol=1e-6)
    assert sampling.clip_input(tiny_pipe, image).shape == (224, 224, 3)


def test_decode_image_round_trip_shapes(tiny_pipe, captured):
    from svdkit import sampling
    pixels = sampling.preprocess(tiny_pipe, captured[0])
    back = sampling.decode_image(tiny_pipe, sampling.encode_latents(tiny_pipe, pixels))
    assert back.shape == pixels.shape and torch.isfinite(back).all()


def test_unet_input_is_scaled_noise_plus_repeated_image(captured):
    import math

    from svdkit.sampling import unet_input
    trace = captured[1]
    x = unet_input(trace, step=1)
    F = trace.x0.shape[1]
    assert x.shape == (F, 8, 8, 8)
    sigma = float(trace.sigmas[1])
    assert torch.allclose(x[:, :4], trace.x_t[1] / math.sqrt(sigma**2 + 1))
    assert torch.equal(x[:, 4:], trace.image_latents.expand(F, -1, -1, -1))


def test_upcast_vae_runs_a_half_vae_in_float32_and_puts_it_back():
    import types

    from svdkit.sampling import upcast_vae

    class HalfVAE(torch.nn.Linear):  # what upcast_vae reads of a diffusers VAE: dtype and config.force_upcast
        dtype = property(lambda self: self.weight.dtype)

    vae = HalfVAE(2, 2).half()
    vae.config = types.SimpleNamespace(force_upcast=True)
    with upcast_vae(vae):
        assert vae.weight.dtype == torch.float32
    assert vae.weight.dtype == torch.float16
    vae.config.force_upcast = False
    with upcast_vae(vae):
        assert vae.weight.dtype == torch.float16
