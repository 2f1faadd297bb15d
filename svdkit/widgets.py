"""Notebook widgets: scrub through a captured trace, slide the noise augmentation.

Each widget is built by one function that returns its box; what it shows comes from a pure render function
(arguments in, `Figure` out) that works without widgets, so tests and scripts can call it directly. Widgets use
`interactive_output` with their own layout and a picture of fixed height, patterns that work on ipywidgets 7
(Colab) and 8 (JupyterLab 4); sliders that make the model work update on release (`continuous_update=False`).

>>> import svdkit
>>> from svdkit import viz, widgets
>>> pipe = svdkit.load_pipeline("toy")
>>> video = svdkit.generate(pipe, viz.example_image(), num_inference_steps=8, capture=True)
>>> box = widgets.trace_scrubber(video.trace, model=pipe)   # display(box) in a notebook  # doctest: +SKIP
>>> box.controls["step"].value = 3                          # what moving the slider does  # doctest: +SKIP
>>> box.figure                                              # the figure now shown  # doctest: +SKIP
<Figure size 1000x230 with 6 Axes>
>>> fig = widgets.render_trace_view(video.trace, step=3, model=pipe)   # the same figure, with no widget
>>> len(fig.axes)                                           # 4 channels, their colour bar, the RGB preview
6

(Outside a notebook kernel, building a widget prints a terminal "clear line" code, from ipywidgets: hence the
skipped lines above.)
"""

from __future__ import annotations

import functools

import numpy as np

from svdkit import sampling, viz
from svdkit.latent_rgb import preview
from svdkit.video import to_uint8

__all__ = ["render_trace_view", "trace_scrubber", "render_noise_augmentation", "noise_augmentation_slider"]


def _png(fig, dpi: int = 100) -> bytes:
    import io
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _show(box, render, **kwargs):
    """The callback every widget here uses: render a figure, keep it as `box.figure`, show it as `box.image`'s PNG."""
    box.figure = render(**kwargs)
    box.image.value = _png(box.figure)


def _build(controls: dict, render, height: str, rows: list, css_class: str):
    """Lay out `rows` of controls above an image of fixed height that shows `render(**control values)`.

    The picture goes to an Image widget rather than into the Output widget of `interactive_output` (which stays
    below it, empty unless a callback fails): headless runners such as papermill can stall on Output widgets that
    receive displays, and an image's state is kept when the notebook is saved with its widgets.
    """
    import ipywidgets as w
    box = w.VBox(rows)
    box.add_class(css_class)  # a handle for styling and for browser tests
    box.controls = controls
    box.image = w.Image(format="png", layout=w.Layout(height=height, max_width="100%", object_fit="contain"))
    out = w.interactive_output(functools.partial(_show, box, render), controls)
    box.children = tuple(rows) + (box.image, out)
    return box


# ----------------------------------------------------------------------------------------------------
# Trace scrubber


def render_trace_view(trace, step: int = 0, frame: int = 0, quantity: str = "x0", model="toy"):
    """One frame at one step of a trace: its latent channels on one colour scale, and their RGB preview.

    quantity: one of `viz.QUANTITIES` ("x_t", "x0", "cond", "uncond", "delta"). Uses only the trace: no model work.
    """
    z = viz.trace_quantity(trace, quantity)[step, frame].numpy()  # (4, h, w)
    colours = preview(z, model)  # (h, w, 3)
    vmax = float(np.abs(z).max()) or 1.0
    C = z.shape[0]
    fig = viz.figure(2.0 * (C + 1) + 0.8, 2.4)
    axes = fig.subplots(1, C + 1)
    for c in range(C):
        im = axes[c].imshow(z[c], cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        axes[c].set_title(f"channel {c}", fontsize=8)
        viz.hide_ticks(axes[c])
    fig.colorbar(im, ax=axes[:C].tolist(), shrink=0.8)
    axes[C].imshow(colours, interpolation="nearest")
    axes[C].set_title("RGB preview", fontsize=8)
    viz.hide_ticks(axes[C])
    sigma = float(trace.sigmas[step])
    fig.suptitle(f"{viz.QUANTITIES[quantity]}: step {step} (σ={sigma:.3g}), frame {frame}", fontsize=9)
    return fig


def trace_scrubber(trace, model="toy", *, height: str = "280px"):
    """Scrub a captured trace: step and frame sliders, and a toggle between x_t, x0, the UNet outputs with and
    without the image, and the guidance delta. Shows `render_trace_view`; never runs the model.

    Returns the widget box; `box.controls` holds the controls by name, `box.figure` the figure shown last and
    `box.image` the Image widget showing it.
    """
    import ipywidgets as w
    steps, frames = trace.x0.shape[:2]
    options = [q for q in viz.QUANTITIES if trace.model_output_uncond is not None or q not in ("uncond", "delta")]
    controls = {
        "step": w.IntSlider(value=steps - 1, min=0, max=steps - 1, description="step"),
        "frame": w.IntSlider(value=0, min=0, max=frames - 1, description="frame"),
        "quantity": w.ToggleButtons(options=options, value="x0", description="show"),
    }
    render = functools.partial(render_trace_view, trace, model=model)
    return _build(controls, render, height, [w.HBox([controls["step"], controls["frame"]]), controls["quantity"]],
                  "svdkit-scrubber")


# ----------------------------------------------------------------------------------------------------
# Noise augmentation


def render_noise_augmentation(pipe, image, strength: float = 0.02, seed: int = 0, *, vmax: float | None = None):
    """The image with noise augmentation at `strength` (the noise `generate(seed=seed)` would add), and the four
    channels of its VAE latents on one colour scale (default: fixed by the clean image's latents, so strengths
    compare), titled with how far the latents moved from the clean image's."""
    pixels = sampling.preprocess(pipe, image)  # (1, 3, H, W) in [-1, 1]
    clean = sampling.encode_latents(pipe, pixels)[0]  # (4, h, w)
    noisy = sampling.noise_augment(pixels, strength, seed)
    z = sampling.encode_latents(pipe, noisy)[0]
    vmax = float(clean.abs().max()) * 1.5 if vmax is None else vmax
    C = z.shape[0]
    fig = viz.figure(2.0 * (C + 1) + 0.8, 2.4)
    axes = fig.subplots(1, C + 1)
    axes[0].imshow(to_uint8(noisy)[0])
    axes[0].set_title(f"image + {strength:.2f} · noise", fontsize=8)
    viz.hide_ticks(axes[0])
    for c in range(C):
        im = axes[c + 1].imshow(z[c].numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        axes[c + 1].set_title(f"latent channel {c}", fontsize=8)
        viz.hide_ticks(axes[c + 1])
    fig.colorbar(im, ax=axes[1:].tolist(), shrink=0.8)
    moved = float((z - clean).pow(2).mean().sqrt())
    fig.suptitle(f"noise_aug_strength {strength:.2f}: latents moved {moved:.3g} (RMS) from the clean image's",
                 fontsize=9)
    return fig


def noise_augmentation_slider(pipe, image, seed: int = 0, *, value: float = 0.02, max_strength: float = 1.0,
                              height: str = "280px"):
    """A noise_aug_strength slider showing `render_noise_augmentation`: the augmented image and its latents.

    The VAE encodes on each release of the slider. Returns the box (`box.controls`, `box.figure`, `box.image`).
    """
    import ipywidgets as w
    controls = {"strength": w.FloatSlider(value=value, min=0.0, max=max_strength, step=0.01, readout_format=".2f",
                                          description="noise_aug", continuous_update=False)}
    render = functools.partial(render_noise_augmentation, pipe, image, seed=seed)
    return _build(controls, render, height, [controls["strength"]], "svdkit-noise-augmentation")
