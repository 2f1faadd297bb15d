"""svdkit.viz on the tiny pipeline: every picture is checked for shape and content, not only that it draws."""

import dataclasses
import math
import types

import numpy as np
import pytest
import torch

import svdkit
from svdkit import latent_rgb, sampling, viz
from svdkit.video import to_uint8
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


def test_example_image():
    image = viz.example_image()
    assert image.mode == "RGB" and image.size == (64, 64)


# ---------------------------------------------------------------------------------------------- latent colours


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
    expected = latent_rgb.preview(run.trace.x0[1, 2], run.pipe, upscale=2)
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
    pixels = sampling.preprocess(run.pipe, run.image)
    np.testing.assert_array_equal(images[1].get_array(), to_uint8(sampling.noise_augment(pixels, 0.5, 1))[0])
    fig = viz.plot_images({"rgb": run.video.frames[0], "values": np.eye(3)})
    assert len(_images(fig)) == 2 and len(fig.axes) == 3  # the value map gets a colour bar
