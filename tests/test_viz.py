"""svdkit.viz on the tiny pipeline: every picture is checked for shape and content, not only that it draws."""

import dataclasses
import json
import math
import types

import numpy as np
import pytest
import torch

import svdkit
from svdkit import viz
from tests.conftest import make_image

STEPS = 3


@pytest.fixture(scope="module")
def run(tiny_pipe):
    """One captured clip of the tiny pipeline (6 frames, 3 steps, guided)."""
    image = make_image()
    video = svdkit.generate(tiny_pipe, image, seed=3, num_inference_steps=STEPS, capture=True)
    return types.SimpleNamespace(pipe=tiny_pipe, image=image, video=video, trace=video.trace)


def _images(fig):
    return [ax.images[0] for ax in fig.axes if ax.images]


# ---------------------------------------------------------------------------------------------- stages 1 and 2


def test_encoding_by_hand_matches_generate(run):
    pixels = viz.preprocess(run.pipe, run.image)
    assert pixels.shape == (1, 3, 64, 64) and -1 <= pixels.min() < pixels.max() <= 1
    noisy = viz.noise_augment(pixels, 0.02, seed=3)
    assert torch.equal(noisy, run.trace.noisy_image)  # the same noise generate drew first
    latents = viz.encode_latents(run.pipe, noisy)
    assert latents.shape == (1, 4, 8, 8)
    assert torch.allclose(latents, run.trace.image_latents, atol=1e-6)  # condition latents: NOT scaled
    assert torch.allclose(viz.clip_embedding(run.pipe, run.image), run.trace.image_embeddings, atol=1e-6)
    assert viz.clip_input(run.pipe, run.image).shape == (224, 224, 3)


def test_decode_image_round_trip_shapes(run):
    pixels = viz.preprocess(run.pipe, run.image)
    back = viz.decode_image(run.pipe, viz.encode_latents(run.pipe, pixels))
    assert back.shape == pixels.shape and torch.isfinite(back).all()


def test_to_uint8_and_psnr():
    pixels = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    image = viz.to_uint8(pixels)
    assert image.shape == (1, 2, 2, 3) and image[0, 0, 0].tolist() == [0, 128, 255]
    a = np.zeros((4, 4, 3), np.uint8)
    assert viz.psnr(a, a) == math.inf
    assert viz.psnr(a, a + 10) == pytest.approx(10 * math.log10(255**2 / 100))


def test_unet_input_is_scaled_noise_plus_repeated_image(run):
    trace = run.trace
    x = viz.unet_input(trace, step=1)
    F = trace.x0.shape[1]
    assert x.shape == (F, 8, 8, 8)
    sigma = float(trace.sigmas[1])
    assert torch.allclose(x[:, :4], trace.x_t[1] / math.sqrt(sigma**2 + 1))
    assert torch.equal(x[:, 4:], trace.image_latents.expand(F, -1, -1, -1))


def test_example_image():
    image = viz.example_image()
    assert image.mode == "RGB" and image.size == (64, 64)


# ---------------------------------------------------------------------------------------------- latent colours


class _LinearVAE:
    """A stand-in VAE whose latents are given, to check that the fit recovers a known map exactly."""

    def __init__(self, z, scaling_factor):
        self.z = z
        self.config = types.SimpleNamespace(scaling_factor=scaling_factor, block_out_channels=(1, 1, 1, 1))
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def encode(self, x):
        return types.SimpleNamespace(latent_dist=types.SimpleNamespace(mode=lambda: self.z))


def test_fit_latent_rgb_recovers_a_known_linear_map():
    rng = torch.Generator().manual_seed(0)
    W = torch.randn(4, 3, generator=rng) * 0.3
    b = torch.tensor([0.1, -0.2, 0.05])
    z = torch.randn(6, 4, 2, 2, generator=rng)  # unscaled latents of 6 images of 16 x 16
    colours = torch.einsum("nchw,cd->ndhw", z * 0.5, W) + b.view(1, 3, 1, 1)  # each patch's mean colour
    texture = torch.randn(6, 3, 16, 16, generator=rng) * 0.01
    texture -= torch.nn.functional.avg_pool2d(texture, 8).repeat_interleave(8, -1).repeat_interleave(8, -2)
    images = colours.repeat_interleave(8, -1).repeat_interleave(8, -2) + texture  # patch means == colours
    W_fit, b_fit = viz.fit_latent_rgb(_LinearVAE(z, 0.5), images)
    assert W_fit.shape == (4, 3) and b_fit.shape == (3,)
    np.testing.assert_allclose(W_fit, W.numpy(), atol=1e-4)
    np.testing.assert_allclose(b_fit, b.numpy(), atol=1e-4)


def test_fitted_preview_beats_an_identity_map_on_new_images(tiny_pipe):
    from svdkit.toy import HELD_OUT_SEED, render_clip
    W, b = viz.latent_rgb_factors(tiny_pipe)  # fitted on toy-world frames of other scenes
    frames = np.stack([render_clip(HELD_OUT_SEED + i)[0] for i in range(4)])  # (4, 64, 64, 3)
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    latents = viz.encode_latents(tiny_pipe, pixels) * tiny_pipe.vae.config.scaling_factor
    fitted = viz.preview_error(latents, frames, (W, b))
    identity = viz.preview_error(latents, frames, (np.eye(4, 3), np.zeros(3)))
    assert fitted < 0.8 * identity


def test_latent_rgb_factors_sources(tiny_pipe, tmp_path, monkeypatch):
    W, b = viz.latent_rgb_factors("svd-xt")
    np.testing.assert_array_equal(W, viz.SD_LATENT_RGB)
    assert not b.any()
    W1, _ = viz.latent_rgb_factors(tiny_pipe)
    W2, _ = viz.latent_rgb_factors(tiny_pipe)
    np.testing.assert_array_equal(W1, W2)  # fitted once, then cached
    # A stored fit is found again by the VAE's fingerprint.
    path = tmp_path / "latent_rgb.json"
    monkeypatch.setattr(viz, "LATENT_RGB_PATH", path)
    entry = viz.store_latent_rgb(tiny_pipe, name="tiny")
    table = json.loads(path.read_text())
    assert table["tiny"]["vae"] == entry["vae"] and np.array(table["tiny"]["W"]).shape == (4, 3)
    np.testing.assert_allclose(viz.latent_rgb_factors("tiny")[0], np.array(entry["W"]), atol=1e-6)
    monkeypatch.setattr(viz, "_FITTED", {})
    monkeypatch.setattr(viz, "fit_latent_rgb", lambda *a: pytest.fail("should use the stored fit"))
    np.testing.assert_allclose(viz.latent_rgb_factors(tiny_pipe)[0], np.array(entry["W"]), atol=1e-6)


def test_preview_applies_the_map():
    W = np.eye(4, 3, dtype=np.float32)
    latents = torch.zeros(2, 4, 3, 5)
    latents[1, 0, 2, 4] = 1.0  # frame 1, bottom-right pixel: full red
    latents[1, 2, 0, 0] = -1.0  # frame 1, top-left pixel: no blue
    image = viz.preview(latents, (W, np.zeros(3)))
    assert image.shape == (2, 3, 5, 3) and image.dtype == np.uint8
    assert image[0].tolist() == np.full((3, 5, 3), 128).tolist()
    assert image[1, 2, 4].tolist() == [255, 128, 128]
    assert image[1, 0, 0].tolist() == [128, 128, 0]
    big = viz.preview(latents, (W, np.zeros(3)), upscale=4)
    assert big.shape == (2, 12, 20, 3) and (big[1, 8:12, 16:20] == image[1, 2, 4]).all()


def test_compare_preview_reports_the_error(run):
    fig, err = viz.compare_preview(run.pipe, run.trace.latents, frames=[0, 5])
    decoded = svdkit.decode_latents(run.pipe, run.trace.latents)
    assert err == pytest.approx(viz.preview_error(run.trace.latents, decoded, run.pipe))
    assert len(_images(fig)) == 6  # decode, preview, difference for 2 frames
    np.testing.assert_array_equal(_images(fig)[0].get_array(), decoded[0])
    assert f"{err:.1f}" in fig._suptitle.get_text()


# ---------------------------------------------------------------------------------------------- frames as arrays


def test_filmstrip_and_grid_place_frames():
    frames = np.stack([np.full((4, 5, 3), 10 * (k + 1), np.uint8) for k in range(3)])
    strip = viz.filmstrip(frames, gap=2)
    assert strip.shape == (4, 3 * 5 + 2 * 2, 3)
    for k in range(3):
        assert (strip[:, k * 7: k * 7 + 5] == 10 * (k + 1)).all()
    assert (strip[:, 5:7] == 255).all() and (strip[:, 12:14] == 255).all()
    grid = viz.frame_grid(np.stack([frames, frames[::-1]]), gap=1)
    assert grid.shape == (4 * 2 + 1, 5 * 3 + 2, 3)
    assert (grid[5:9, 0:5] == 30).all() and (grid[4] == 255).all()


def test_frame_differences_and_rmse():
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    frames[1, 0, 0] = 30  # one pixel lights up in frame 1, then goes dark again
    diffs = viz.frame_differences(frames)
    assert diffs.shape == (2, 4, 4)
    assert diffs[0, 0, 0] == 30 and diffs[1, 0, 0] == 30 and diffs.sum() == 60
    rmse = viz.frame_rmse(frames, np.zeros_like(frames))
    np.testing.assert_allclose(rmse, [0, math.sqrt(30**2 / 16), 0])


# ---------------------------------------------------------------------------------------------- the trace


def test_trace_quantities(run):
    trace = run.trace
    S, F = trace.x0.shape[:2]
    x_t = viz.trace_quantity(trace, "x_t")
    assert torch.allclose(x_t[0], trace.x_t[0] / math.sqrt(float(trace.sigmas[0]) ** 2 + 1))
    assert torch.equal(viz.trace_quantity(trace, "x0"), trace.x0)
    assert torch.equal(viz.trace_quantity(trace, "delta"), trace.guidance_delta)
    unguided = dataclasses.replace(trace, model_output_uncond=None)
    with pytest.raises(ValueError, match="guidance"):
        viz.trace_quantity(unguided, "uncond")
    with pytest.raises(ValueError, match="quantity"):
        viz.trace_quantity(trace, "noise")
    assert viz.trace_previews(trace, "x0", run.pipe).shape == (S, F, 8, 8, 3)


def test_x0_distances_shrink_to_zero(run):
    d = viz.x0_distances(run.trace)
    assert d.shape == (STEPS,)
    assert d[-1] < 1e-4 < d[0]
    assert d[-1] <= d[1] <= d[0] * 1.05


def test_denoising_video_frames_are_step_filmstrips(run):
    video = viz.denoising_video(run.trace, run.pipe, upscale=2, gap=1)
    F = run.trace.x0.shape[1]
    assert video.shape == (STEPS, 16, F * 17 - 1, 3)
    expected = viz.preview(run.trace.x0[1, 2], run.pipe, upscale=2)
    np.testing.assert_array_equal(video[1, :, 2 * 17: 2 * 17 + 16], expected)


# ---------------------------------------------------------------------------------------------- figures


def test_latent_grid_shares_one_colour_scale(run):
    latents = run.trace.latents  # (F, 4, h, w)
    fig = viz.plot_latent_grid(latents, frames=[0, 2])
    images = _images(fig)
    assert len(images) == 2 * 4
    vmax = float(latents[[0, 2]].abs().max())
    for im in images:
        assert im.norm.vmin == pytest.approx(-vmax) and im.norm.vmax == pytest.approx(vmax)
    np.testing.assert_allclose(images[4 + 3].get_array(), latents[2, 3].numpy())  # frame 2, channel 3
    assert len(fig.axes) == 8 + 1  # and one colour bar
    single = viz.plot_latent_grid(latents[0])
    assert len(_images(single)) == 4


def test_filmstrips_figure_rows(run):
    frames = run.video.frames
    fig = viz.plot_filmstrips({"a": frames, "b": frames[::-1]})
    images = _images(fig)
    assert len(images) == 2
    np.testing.assert_array_equal(images[1].get_array(), viz.filmstrip(frames[::-1]))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [str(k) for k in range(len(frames))]


def test_step_frame_grid_labels_sigmas(run):
    images = viz.trace_previews(run.trace, "x0", run.pipe)
    fig = viz.plot_step_frame_grid(images, sigmas=run.trace.sigmas)
    np.testing.assert_array_equal(_images(fig)[0].get_array(), viz.frame_grid(images, 1))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == STEPS and f"{float(run.trace.sigmas[1]):.3g}" in labels[1]


def test_frame_differences_figure(run):
    fig = viz.plot_frame_differences(run.video.frames)
    data = np.ma.filled(_images(fig)[0].get_array(), np.nan)
    diffs = viz.frame_differences(run.video.frames)
    np.testing.assert_allclose(data[:, :64], diffs[0])
    assert np.isnan(data[:, 64:66]).all()


def test_latent_histograms_against_the_noise_density(run):
    fig = viz.plot_latent_histograms(run.trace, steps=[0, 2])
    axes = [ax for ax in fig.axes if ax.patches]
    assert len(axes) == 2
    x, y = axes[0].lines[0].get_data()  # the N(0, sigma^2) density of step 0
    sigma = float(run.trace.sigmas[0])
    assert y.max() == pytest.approx(1 / (sigma * math.sqrt(2 * math.pi)), rel=1e-3)
    assert np.trapezoid(y, x) == pytest.approx(1, abs=1e-3)
    heights = np.array([p.get_height() for p in axes[0].patches])
    widths = np.array([p.get_width() for p in axes[0].patches])
    assert (heights * widths).sum() == pytest.approx(1, abs=1e-6)  # a density


def test_sigma_schedule_marks_the_step(run):
    fig = viz.plot_sigmas(run.trace.sigmas, step=1)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    xs, ys = ax.lines[0].get_data()
    np.testing.assert_allclose(ys, run.trace.sigmas[:STEPS].numpy())  # the final 0 has no place on a log axis
    marker = [line for line in ax.lines if len(line.get_xdata()) == 1][0]
    assert marker.get_xdata()[0] == 1 and marker.get_ydata()[0] == pytest.approx(float(run.trace.sigmas[1]))


def test_guidance_and_time_ids_figures(run):
    schedules = {k: svdkit.guidance_schedule(k, 6) for k in ("linear", "triangle")}
    fig = viz.plot_guidance(schedules)
    lines = fig.axes[0].lines
    assert [line.get_label() for line in lines] == ["linear", "triangle"]
    np.testing.assert_allclose(lines[1].get_ydata(), schedules["triangle"].numpy())
    fig = viz.plot_added_time_ids(run.trace.added_time_ids)
    heights = [ax.patches[0].get_height() for ax in fig.axes]
    np.testing.assert_allclose(heights, run.trace.added_time_ids[0].numpy())


def test_noise_augmentation_figure_and_images_row(run):
    fig = viz.plot_noise_augmentation(run.pipe, run.image, strengths=(0.0, 0.5), seed=1)
    images = _images(fig)
    assert len(images) == 4
    pixels = viz.preprocess(run.pipe, run.image)
    np.testing.assert_array_equal(images[1].get_array(), viz.to_uint8(viz.noise_augment(pixels, 0.5, 1))[0])
    fig = viz.plot_images({"rgb": run.video.frames[0], "values": np.eye(3)})
    assert len(_images(fig)) == 2 and len(fig.axes) == 3  # the value map gets a colour bar


# ---------------------------------------------------------------------------------------------- temporal attention


def test_temporal_attention_modules(tiny_pipe):
    names = viz.temporal_attention_modules(tiny_pipe.unet)
    assert len(names) == 4 and all(n.endswith("temporal_transformer_blocks.0.attn1") for n in names)
    assert viz._short(names[0]) == "down0.0"


def test_explicit_weights_reproduce_the_attention_output(tiny_pipe):
    name = viz.temporal_attention_modules(tiny_pipe.unet)[0]
    attn = dict(tiny_pipe.unet.named_modules())[name]
    x = torch.randn(5, 6, attn.to_q.in_features, generator=torch.Generator().manual_seed(0))  # (N, F, C)
    with torch.no_grad():
        expected = attn.processor(attn, x)
        probs = viz._attention_probs(attn, x)  # (N, heads, F, F)
        value = attn.to_v(x).view(5, 6, attn.heads, -1).transpose(1, 2)
        mixed = (probs @ value).transpose(1, 2).reshape(5, 6, -1)
        rebuilt = attn.to_out[1](attn.to_out[0](mixed))
    assert probs.shape == (5, attn.heads, 6, 6)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, attn.heads, 6))
    torch.testing.assert_close(rebuilt, expected, rtol=1e-4, atol=1e-5)


def test_recording_attention_leaves_the_clip_unchanged(run):
    from diffusers.models.attention_processor import AttnProcessor2_0
    video, maps = viz.capture_temporal_attention(run.pipe, run.image, seed=3, num_inference_steps=STEPS)
    np.testing.assert_array_equal(video.frames, run.video.frames)
    names = viz.temporal_attention_modules(run.pipe.unet)
    assert set(maps) == {(n, s) for n in names for s in range(STEPS)}
    for w in maps.values():
        assert w.shape == (6, 6) and (w >= 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(6))
    modules = dict(run.pipe.unet.named_modules())
    assert all(type(modules[n].processor) is AttnProcessor2_0 for n in names)  # processors restored
    assert not run.pipe.unet._forward_pre_hooks  # and the step counter removed


def test_recorder_filters_and_keeps_both_guidance_passes(run):
    name = viz.temporal_attention_modules(run.pipe.unet)[1]
    with viz.TemporalAttentionRecorder(run.pipe.unet, modules=name, steps=[1]) as recorder:
        svdkit.generate(run.pipe, run.image, seed=3, num_inference_steps=STEPS)
    assert list(recorder.weights) == [(name, 1)]
    assert recorder.weights[(name, 1)].shape == (2, 6, 6)  # without and with the image
    with pytest.raises(ValueError, match="not temporal attention"):
        viz.TemporalAttentionRecorder(run.pipe.unet, modules="down_blocks.0.attentions.0")


def test_attention_summary_and_heat_maps():
    F = 5
    maps = {("down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1", 0): torch.eye(F),
            ("down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1", 1): torch.full((F, F), 1 / F)}
    summary = viz.attention_summary(maps)
    assert summary["down0.0@0"] == {"self": 1.0, "reach": 0.0}
    assert summary["down0.0@1"]["self"] == pytest.approx(1 / F)
    assert summary["down0.0@1"]["reach"] == pytest.approx((F * F - 1) / (3 * F), abs=1e-4)
    assert list(viz.attention_summary(maps, steps=[1])) == ["down0.0@1"]
    fig = viz.plot_temporal_attention(maps, steps=[0])
    images = _images(fig)
    assert len(images) == 1 and images[0].axes.get_title() == "down0.0, step 0"
    np.testing.assert_array_equal(images[0].get_array(), np.eye(F))
    with pytest.raises(ValueError):
        viz.plot_temporal_attention(maps, steps=[7])
