"""svdkit.attention on the tiny pipeline: the recorded weights are the UNet's own, and recording changes nothing."""

import types

import numpy as np
import pytest
import torch

import svdkit
from svdkit import attention, viz
from tests.conftest import make_image

STEPS = 3


@pytest.fixture(scope="module")
def run(tiny_pipe):
    """One clip of the tiny pipeline (6 frames, 3 steps, guided)."""
    image = make_image()
    video = svdkit.generate(tiny_pipe, image, seed=3, num_inference_steps=STEPS)
    return types.SimpleNamespace(pipe=tiny_pipe, image=image, video=video)


def _images(fig):
    return [ax.images[0] for ax in fig.axes if ax.images]


def test_temporal_attention_modules(tiny_pipe):
    names = attention.temporal_attention_modules(tiny_pipe.unet)
    assert len(names) == 4 and all(n.endswith("temporal_transformer_blocks.0.attn1") for n in names)
    assert attention.short_name(names[0]) == "down0.0"


def test_explicit_weights_reproduce_the_attention_output(tiny_pipe):
    name = attention.temporal_attention_modules(tiny_pipe.unet)[0]
    attn = dict(tiny_pipe.unet.named_modules())[name]
    x = torch.randn(5, 6, attn.to_q.in_features, generator=torch.Generator().manual_seed(0))  # (N, F, C)
    with torch.no_grad():
        expected = attn.processor(attn, x)
        probs = attention._attention_probs(attn, x)  # (N, heads, F, F)
        value = attn.to_v(x).view(5, 6, attn.heads, -1).transpose(1, 2)
        mixed = (probs @ value).transpose(1, 2).reshape(5, 6, -1)
        rebuilt = attn.to_out[1](attn.to_out[0](mixed))
    assert probs.shape == (5, attn.heads, 6, 6)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, attn.heads, 6))
    torch.testing.assert_close(rebuilt, expected, rtol=1e-4, atol=1e-5)


def test_recording_attention_leaves_the_clip_unchanged(run):
    from diffusers.models.attention_processor import AttnProcessor2_0
    video, maps = attention.capture_temporal_attention(run.pipe, run.image, seed=3, num_inference_steps=STEPS)
    np.testing.assert_array_equal(video.frames, run.video.frames)
    names = attention.temporal_attention_modules(run.pipe.unet)
    assert set(maps) == {(n, s) for n in names for s in range(STEPS)}
    for w in maps.values():
        assert w.shape == (6, 6) and (w >= 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(6))
    modules = dict(run.pipe.unet.named_modules())
    assert all(type(modules[n].processor) is AttnProcessor2_0 for n in names)  # processors restored
    assert not run.pipe.unet._forward_pre_hooks  # and the step counter removed


def test_recorder_filters_and_keeps_both_guidance_passes(run):
    name = attention.temporal_attention_modules(run.pipe.unet)[1]
    with attention.TemporalAttentionRecorder(run.pipe.unet, modules=name, steps=[1]) as recorder:
        svdkit.generate(run.pipe, run.image, seed=3, num_inference_steps=STEPS)
    assert list(recorder.weights) == [(name, 1)]
    assert recorder.weights[(name, 1)].shape == (2, 6, 6)  # without and with the image
    with pytest.raises(ValueError, match="not temporal attention"):
        attention.TemporalAttentionRecorder(run.pipe.unet, modules="down_blocks.0.attentions.0")


def test_attention_summary_and_heat_maps():
    F = 5
    maps = {("down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1", 0): torch.eye(F),
            ("down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1", 1): torch.full((F, F), 1 / F)}
    summary = attention.attention_summary(maps)
    assert summary["down0.0@0"] == {"self": 1.0, "reach": 0.0}
    assert summary["down0.0@1"]["self"] == pytest.approx(1 / F)
    assert summary["down0.0@1"]["reach"] == pytest.approx((F * F - 1) / (3 * F), abs=1e-4)
    assert list(attention.attention_summary(maps, steps=[1])) == ["down0.0@1"]
    fig = viz.plot_temporal_attention(maps, steps=[0])
    images = _images(fig)
    assert len(images) == 1 and images[0].axes.get_title() == "down0.0, step 0"
    np.testing.assert_array_equal(images[0].get_array(), np.eye(F))
    with pytest.raises(ValueError):
        viz.plot_temporal_attention(maps, steps=[7])
