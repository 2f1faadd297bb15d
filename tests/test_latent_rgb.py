"""svdkit.latent_rgb: the least-squares fit, where a model's map comes from, and the preview it gives."""

import json
import types

import numpy as np
import pytest
import torch

from svdkit import latent_rgb, viz
from svdkit.sampling import encode_latents


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
    W_fit, b_fit = latent_rgb.fit_latent_rgb(_LinearVAE(z, 0.5), images)
    assert W_fit.shape == (4, 3) and b_fit.shape == (3,)
    np.testing.assert_allclose(W_fit, W.numpy(), atol=1e-4)
    np.testing.assert_allclose(b_fit, b.numpy(), atol=1e-4)


def test_fitted_preview_beats_an_identity_map_on_new_images(tiny_pipe):
    from svdkit.toy import HELD_OUT_SEED, render_clip
    W, b = latent_rgb.latent_rgb_factors(tiny_pipe)  # fitted on toy-world frames of other scenes
    frames = np.stack([render_clip(HELD_OUT_SEED + i)[0] for i in range(4)])  # (4, 64, 64, 3)
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    latents = encode_latents(tiny_pipe, pixels) * tiny_pipe.vae.config.scaling_factor
    fitted = viz.preview_error(latents, frames, (W, b))
    identity = viz.preview_error(latents, frames, (np.eye(4, 3), np.zeros(3)))
    assert fitted < 0.8 * identity


def test_latent_rgb_factors_sources(tiny_pipe, tmp_path, monkeypatch):
    W, b = latent_rgb.latent_rgb_factors("svd-xt")
    np.testing.assert_array_equal(W, latent_rgb.SD_LATENT_RGB)
    assert not b.any()
    W1, _ = latent_rgb.latent_rgb_factors(tiny_pipe)
    W2, _ = latent_rgb.latent_rgb_factors(tiny_pipe)
    np.testing.assert_array_equal(W1, W2)  # fitted once, then cached
    # A stored fit is found again by the VAE's fingerprint.
    path = tmp_path / "latent_rgb.json"
    monkeypatch.setattr(latent_rgb, "LATENT_RGB_PATH", path)
    entry = latent_rgb.store_latent_rgb(tiny_pipe, name="tiny")
    table = json.loads(path.read_text())
    assert table["tiny"]["vae"] == entry["vae"] and np.array(table["tiny"]["W"]).shape == (4, 3)
    np.testing.assert_allclose(latent_rgb.latent_rgb_factors("tiny")[0], np.array(entry["W"]), atol=1e-6)
    monkeypatch.setattr(latent_rgb, "_FITTED", {})
    monkeypatch.setattr(latent_rgb, "fit_latent_rgb", lambda *a: pytest.fail("should use the stored fit"))
    np.testing.assert_allclose(latent_rgb.latent_rgb_factors(tiny_pipe)[0], np.array(entry["W"]), atol=1e-6)


def test_preview_applies_the_map():
    W = np.eye(4, 3, dtype=np.float32)
    latents = torch.zeros(2, 4, 3, 5)
    latents[1, 0, 2, 4] = 1.0  # frame 1, bottom-right pixel: full red
    latents[1, 2, 0, 0] = -1.0  # frame 1, top-left pixel: no blue
    image = latent_rgb.preview(latents, (W, np.zeros(3)))
    assert image.shape == (2, 3, 5, 3) and image.dtype == np.uint8
    assert image[0].tolist() == np.full((3, 5, 3), 128).tolist()
    assert image[1, 2, 4].tolist() == [255, 128, 128]
    assert image[1, 0, 0].tolist() == [128, 128, 0]
    big = latent_rgb.preview(latents, (W, np.zeros(3)), upscale=4)
    assert big.shape == (2, 12, 20, 3) and (big[1, 8:12, 16:20] == image[1, 2, 4]).all()
