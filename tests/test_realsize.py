"""Real-size SVD without a download, and the approximate speed-ups of generate().

The real-size architecture is only ever built on the meta device here (shapes, no memory): its parameter
counts and FLOPs are checked against SVD's known sizes. Everything that runs, runs on the tiny stand-in
(`weights="random-tiny"`: the same block layout, a few channels).
"""

import numpy as np
import pytest
import torch

import svdkit
from svdkit.models import LoadInfo
from svdkit.speed import StepCache, _unet_forward, build_random_pipeline, count_flops
from tests.conftest import make_image

STEPS, FRAMES = 4, 8
SMALL = dict(num_inference_steps=STEPS, num_frames=FRAMES, height=64, width=64)


@pytest.fixture(scope="module")
def meta_xt():
    return build_random_pipeline(25, device="meta")


@pytest.fixture(scope="module")
def tiny_xt():
    return svdkit.load_pipeline("svd-xt", weights="random-tiny", device="cpu")


@pytest.fixture(scope="module")
def reference(tiny_xt):
    """The exact clip (no speed-ups) of the tiny stand-in, with its trace."""
    return svdkit.generate(tiny_xt, make_image(), seed=0, capture=True, **SMALL)


def relative_error(video, reference) -> float:
    return float((video.trace.latents - reference.trace.latents).abs().mean() / reference.trace.latents.abs().mean())


def frame_mae(a, b) -> float:
    return float(np.abs(a.frames.astype(int) - b.frames.astype(int)).mean())


# ----------------------------------------------------------------------------------------------------
# The real size, on the meta device


def test_real_size_parameter_counts(meta_xt):
    count = {name: sum(p.numel() for p in getattr(meta_xt, name).parameters())
             for name in ("unet", "vae", "image_encoder")}
    assert count["unet"] == pytest.approx(1.525e9, rel=0.005)  # SVD's UNet: 1.52 B
    assert count["vae"] == pytest.approx(97.7e6, rel=0.005)  # the temporal-decoder VAE: 98 M
    assert count["image_encoder"] == pytest.approx(632e6, rel=0.005)  # CLIP ViT-H/14 vision tower: 632 M
    assert all(p.is_meta for p in meta_xt.unet.parameters())
    assert meta_xt.random_weights


def test_real_size_configs_are_svds(meta_xt):
    unet, vae, clip, sched = (meta_xt.unet.config, meta_xt.vae.config, meta_xt.image_encoder.config,
                              meta_xt.scheduler.config)
    assert unet.num_frames == 25 and tuple(unet.block_out_channels) == (320, 640, 1280, 1280)
    assert unet.cross_attention_dim == 1024 and tuple(unet.num_attention_heads) == (5, 10, 20, 20)
    assert tuple(vae.block_out_channels) == (128, 256, 512, 512) and vae.scaling_factor == 0.18215
    assert (clip.hidden_size, clip.num_hidden_layers, clip.patch_size, clip.projection_dim) == (1280, 32, 14, 1024)
    assert sched.prediction_type == "v_prediction" and sched.use_karras_sigmas and sched.sigma_max == 700.0
    assert sched.timestep_type == "continuous" and sched.timestep_spacing == "leading"
    assert build_random_pipeline(14, device="meta").unet.config.num_frames == 14  # SVD (not XT)


def test_real_size_flops():
    flops = count_flops(25, height=576, width=1024)
    # One UNet call with guidance (2 x 25 frames at 576x1024): 160 TFLOP, i.e. 80 TFLOP per 25-frame video.
    assert flops["unet"] / 1e12 == pytest.approx(159.9, rel=0.01)
    assert flops["decode"] / 1e12 == pytest.approx(173.6, rel=0.01)  # decoding 25 frames
    # A cached step still runs the full-resolution blocks, where most of the attention is: ~42% of a call.
    assert 0.35 < flops["unet_shallow"] / flops["unet"] < 0.5
    assert flops["clip"] < flops["encode"] < flops["unet"] / 10


# ----------------------------------------------------------------------------------------------------
# Random weights, said out loud


def test_random_tiny_runs_and_says_random(tiny_xt):
    assert tiny_xt.random_weights is True
    assert repr(tiny_xt.svdkit).endswith("RANDOM WEIGHTS") and "weights='random-tiny'" in repr(tiny_xt.svdkit)
    video = svdkit.generate(tiny_xt, make_image(), num_inference_steps=1)
    assert video.frames.shape == (25, 64, 128, 3)  # SVD-XT's 25 frames, at the stand-in's default 64x128
    assert video.params["random_weights"] is True and "RANDOM WEIGHTS" in repr(video)
    info = LoadInfo(model="toy", spec=None, device="cpu", dtype="float32", memory="fast", decode_chunk_size=None)
    assert "RANDOM" not in repr(info)


def test_bad_weights_arguments():
    with pytest.raises(ValueError, match="weights must be one of"):
        svdkit.load_pipeline("svd-xt", weights="imagenet")
    with pytest.raises(ValueError, match="builds an SVD architecture"):
        svdkit.load_pipeline("toy", weights="random")
    with pytest.raises(ValueError, match="size must be one of"):
        build_random_pipeline(25, size="huge", device="meta")


def test_compile_is_opt_in_and_lazy():
    pipe = svdkit.load_pipeline("svd", weights="random-tiny", device="cpu", compile=True)
    assert pipe.svdkit.compiled and pipe.unet.config.num_frames == 14
    assert pipe.unet.down_blocks[0]._compiled_call_impl is not None  # compiled at the first call, not here
    assert pipe.vae.decoder._compiled_call_impl is not None


# ----------------------------------------------------------------------------------------------------
# Step caching


def count_block_calls(unet) -> tuple[dict, list]:
    counts, handles = {}, []
    blocks = {f"down{i}": b for i, b in enumerate(unet.down_blocks)}
    blocks.update({"mid": unet.mid_block}, **{f"up{i}": b for i, b in enumerate(unet.up_blocks)})
    for name, block in blocks.items():
        counts[name] = 0
        def count(module, args, output, name=name):
            counts[name] += 1
        handles.append(block.register_forward_hook(count))
    return counts, handles


def test_split_forward_is_the_unet(tiny_xt):
    torch.manual_seed(0)
    x, emb, ids = torch.randn(2, 25, 8, 8, 16), torch.randn(2, 1, 32), torch.tensor([[6.0, 127, 0.02]] * 2)
    with torch.no_grad():
        expected = tiny_xt.unet(x, torch.tensor(500.0), encoder_hidden_states=emb, added_time_ids=ids).sample
        full, deep = _unet_forward(tiny_xt.unet, x, torch.tensor(500.0), emb, ids)
        cached, _ = _unet_forward(tiny_xt.unet, x, torch.tensor(500.0), emb, ids, deep=deep)
    assert torch.equal(full, expected)
    assert torch.equal(cached, expected)  # same inputs, same deep features: the same result
    with pytest.raises(ValueError, match="cache_interval"):
        StepCache(tiny_xt.unet, 0)


def test_cache_interval_skips_deep_blocks_and_changes_little(tiny_xt, reference):
    counts, handles = count_block_calls(tiny_xt.unet)
    try:
        cached = svdkit.generate(tiny_xt, make_image(), seed=0, capture=True, cache_interval=2, **SMALL)
    finally:
        for h in handles:
            h.remove()
    # steps 0, 2 run the whole UNet; steps 1, 3 only the first down block and the last up block
    assert counts["down0"] == counts["up3"] == STEPS
    assert counts["down1"] == counts["down3"] == counts["mid"] == counts["up0"] == counts["up2"] == STEPS // 2
    assert cached.params["cache_interval"] == 2
    err = relative_error(cached, reference)
    assert 0 < err < 0.05, err  # measured 0.020 of the final latents' mean size; frames 0.54/255 apart
    assert frame_mae(cached, reference) < 2
    with pytest.raises(ValueError, match="cache_interval"):
        svdkit.generate(tiny_xt, make_image(), cache_interval=0)


# ----------------------------------------------------------------------------------------------------
# skip_uncond


def test_skip_uncond_is_exact_when_every_frame_is_guided(tiny_xt):
    image = make_image()
    small = {**SMALL, "num_inference_steps": 2}
    for guidance in ("constant", [1.0] * FRAMES):  # every frame guided / no frame guided: nothing to split
        a = svdkit.generate(tiny_xt, image, guidance=guidance, **small)
        b = svdkit.generate(tiny_xt, image, guidance=guidance, skip_uncond=True, **small)
        np.testing.assert_array_equal(a.frames, b.frames)


def test_skip_uncond_drops_unguided_frames_and_changes_little(tiny_xt, reference):
    seen = []
    handle = tiny_xt.unet.conv_in.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[0]))
    try:
        video = svdkit.generate(tiny_xt, make_image(), seed=0, capture=True, skip_uncond=True, **SMALL)
    finally:
        handle.remove()
    # linear guidance 1 -> 3: frame 0 has scale 1, so the unconditional video has one frame fewer
    assert seen == [FRAMES, FRAMES - 1] * STEPS
    assert torch.equal(video.trace.model_output_uncond[:, 0], video.trace.model_output_cond[:, 0])
    err = relative_error(video, reference)
    # Not exact, and not small on 8 frames: the temporal layers mix frames, and the unconditional video loses
    # one of 8 (its frames also shift one position). Measured 0.146 of the latents' size, frames 3.9/255 apart.
    assert 0 < err < 0.3, err


# ----------------------------------------------------------------------------------------------------
# The loop's predict functions


def test_the_loop_takes_its_prediction_from_outside(tiny_xt):
    """denoise() with fast_prediction and no speed-up is the plain loop; with caching it is generate's."""
    from svdkit import sampling
    from svdkit.speed import fast_prediction

    torch.manual_seed(0)
    cond = sampling.Condition(torch.randn(1, 1, 32), torch.randn(1, 4, 8, 8), torch.zeros(1, 3, 64, 64),
                              torch.tensor([[6.0, 127, 0.02]]))
    sampling.set_schedule(tiny_xt, 2)
    x_t, t = torch.randn(1, FRAMES, 4, 8, 8), tiny_xt.scheduler.timesteps[0]
    guidance = sampling.guidance_schedule("linear", FRAMES)[None]  # (1, F)
    plain = sampling.unet_prediction(tiny_xt, x_t, t, cond, guided=True)
    fast = fast_prediction(sampling.unet_prediction, guidance)(tiny_xt, x_t, t, cond, guided=True, step=0)
    assert all(torch.equal(a, b) for a, b in zip(plain, fast))
    assert plain[0].shape == plain[1].shape == (1, FRAMES, 4, 8, 8)
    assert sampling.unet_prediction(tiny_xt, x_t, t, cond, guided=False)[0] is None

    cached = svdkit.generate(tiny_xt, make_image(), seed=0, cache_interval=2, **SMALL)
    generator = torch.Generator().manual_seed(0)
    embeddings, noisy, image_latents = sampling.encode_image(tiny_xt, make_image(), generator, height=64, width=64,
                                                             noise_aug_strength=0.02)
    cond = sampling.condition(embeddings, noisy, image_latents, fps=7, motion_bucket_id=127, noise_aug_strength=0.02)
    sampling.set_schedule(tiny_xt, STEPS)
    latents = sampling.initial_noise(tiny_xt, generator, FRAMES, 64, 64, embeddings.dtype)
    predict = fast_prediction(sampling.unet_prediction, guidance, cache_interval=2)
    latents, steps_run, _ = sampling.denoise(tiny_xt, latents, cond, guidance, predict=predict)
    assert steps_run == STEPS and predict.cache.calls == {"full": STEPS // 2, "shallow": STEPS // 2}
    np.testing.assert_array_equal(sampling.decode_latents(tiny_xt, latents), cached.frames)
