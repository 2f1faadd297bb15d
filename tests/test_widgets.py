"""svdkit.widgets: the render functions directly, and the widgets by setting their controls as a user would."""

import dataclasses
import types

import numpy as np
import pytest

import svdkit
from svdkit import latent_rgb, sampling, viz, widgets
from svdkit.video import to_uint8
from tests.conftest import make_image


@pytest.fixture(scope="module")
def run(tiny_pipe):
    image = make_image()
    video = svdkit.generate(tiny_pipe, image, seed=2, num_inference_steps=3, capture=True)
    return types.SimpleNamespace(pipe=tiny_pipe, image=image, trace=video.trace)


def _channel_images(fig):
    """The arrays of the channel panels (every image panel but the RGB one)."""
    return [ax.images[0].get_array() for ax in fig.axes if ax.images and "channel" in ax.get_title()]


def test_render_trace_view_shows_the_chosen_step_frame_and_quantity(run):
    fig = widgets.render_trace_view(run.trace, step=1, frame=4, quantity="x0", model=run.pipe)
    channels = _channel_images(fig)
    assert len(channels) == 4
    for c, array in enumerate(channels):
        np.testing.assert_allclose(array, run.trace.x0[1, 4, c].numpy())
    rgb = [ax.images[0].get_array() for ax in fig.axes if ax.images and ax.get_title() == "RGB preview"][0]
    np.testing.assert_array_equal(rgb, latent_rgb.preview(run.trace.x0[1, 4], run.pipe))
    assert "step 1" in fig._suptitle.get_text() and "frame 4" in fig._suptitle.get_text()


def test_scrubber_follows_its_controls_without_running_the_model(run, monkeypatch):
    latent_rgb.latent_rgb_factors(run.pipe)  # fit the colour map first: it is the only VAE work a preview may need
    calls = []
    hooks = [run.pipe.unet.register_forward_pre_hook(lambda *a: calls.append("unet")),
             run.pipe.vae.register_forward_pre_hook(lambda *a: calls.append("vae"))]
    monkeypatch.setattr(sampling, "generate", lambda *a, **k: pytest.fail("scrubbing must not generate"))
    monkeypatch.setattr(svdkit, "generate", lambda *a, **k: pytest.fail("scrubbing must not generate"))
    try:
        box = widgets.trace_scrubber(run.trace, model=run.pipe, height="200px")
        first_png = box.image.value
        assert first_png[:8] == b"\x89PNG\r\n\x1a\n" and box.image.layout.height == "200px"
        assert box.controls["step"].value == run.trace.num_steps - 1  # starts on the final step

        box.controls["step"].value = 0
        np.testing.assert_allclose(_channel_images(box.figure)[2], run.trace.x0[0, 0, 2].numpy())
        assert box.image.value != first_png

        box.controls["frame"].value = 5
        box.controls["quantity"].value = "x_t"
        expected = viz.trace_quantity(run.trace, "x_t")[0, 5, 0].numpy()
        np.testing.assert_allclose(_channel_images(box.figure)[0], expected)

        box.controls["quantity"].value = "delta"
        np.testing.assert_allclose(_channel_images(box.figure)[1], run.trace.guidance_delta[0, 5, 1].numpy(), rtol=1e-6)
    finally:
        for h in hooks:
            h.remove()
    assert calls == []


def test_scrubber_offers_only_what_the_trace_holds(run):
    box = widgets.trace_scrubber(dataclasses.replace(run.trace, model_output_uncond=None), model=run.pipe)
    assert list(box.controls["quantity"].options) == ["x_t", "x0", "cond"]


def test_noise_augmentation_render(run):
    fig = widgets.render_noise_augmentation(run.pipe, run.image, strength=0.3, seed=1)
    pixels = sampling.preprocess(run.pipe, run.image)
    noisy = sampling.noise_augment(pixels, 0.3, seed=1)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), to_uint8(noisy)[0])
    latents = sampling.encode_latents(run.pipe, noisy)[0]
    for c, array in enumerate(_channel_images(fig)):
        np.testing.assert_allclose(array, latents[c].numpy(), atol=1e-6)
    moved = float((latents - sampling.encode_latents(run.pipe, pixels)[0]).pow(2).mean().sqrt())
    assert f"{moved:.3g}" in fig._suptitle.get_text()


def test_noise_augmentation_slider_updates_on_release(run):
    box = widgets.noise_augmentation_slider(run.pipe, run.image, seed=1)
    slider = box.controls["strength"]
    assert slider.continuous_update is False and slider.value == pytest.approx(0.02)
    before = _channel_images(box.figure)[0].copy()
    slider.value = 0.5
    assert "0.50" in box.figure._suptitle.get_text()
    after = _channel_images(box.figure)[0]
    pixels = sampling.preprocess(run.pipe, run.image)
    expected = sampling.encode_latents(run.pipe, sampling.noise_augment(pixels, 0.5, 1))[0, 0]
    np.testing.assert_allclose(after, expected.numpy(), atol=1e-6)
    assert not np.allclose(before, after)


def test_widgets_use_patterns_that_ipywidgets_7_has(run):
    import ipywidgets as w
    box = widgets.noise_augmentation_slider(run.pipe, run.image)
    kinds = {type(child) for child in box.children}
    assert kinds <= {w.FloatSlider, w.IntSlider, w.ToggleButtons, w.HBox, w.Image, w.Output}
    assert isinstance(box, w.VBox) and isinstance(box.children[-1], w.Output)  # from interactive_output
