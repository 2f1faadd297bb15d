"""Temporal attention: which frames each frame looks at, recorded while SVD runs.

SVD's UNet mixes frames in its temporal transformer blocks: at every spatial position, each frame attends to
every frame of the clip. `TemporalAttentionRecorder` computes those softmax weights explicitly while the UNet
runs (and leaves its output untouched), averaged over heads and positions: one F x F map per module and step.

>>> import svdkit
>>> from svdkit import attention
>>> pipe = svdkit.load_pipeline("toy")
>>> video, maps = attention.capture_temporal_attention(pipe, "data/example_0.png", num_inference_steps=4, steps=[3])
>>> key = next(iter(maps)); key[1], tuple(maps[key].shape)   # (module name, step): an (F, F) map
(3, (14, 14))
>>> float(maps[key].sum(-1).mean())                           # each row spreads one unit of attention
1.0
>>> summary = attention.attention_summary(maps)               # {"module@step": {"self": ..., "reach": ...}}

The maps' layout: row i of an (F, F) map says how frame i spreads its attention over all frames (sums to 1).
"""

from __future__ import annotations

import math

import torch

from svdkit.sampling import generate

__all__ = ["temporal_attention_modules", "TemporalAttentionRecorder", "capture_temporal_attention",
           "attention_summary", "short_name"]


def temporal_attention_modules(unet) -> list[str]:
    """Names of the UNet's temporal self-attention modules (attn1 of each temporal transformer block), in order."""
    return [name for name, _ in unet.named_modules()
            if name.endswith(".attn1") and ".temporal_transformer_blocks." in name]


def short_name(name: str) -> str:
    """A short label for a temporal attention module.

    >>> short_name("up_blocks.1.attentions.0.temporal_transformer_blocks.0.attn1")
    'up1.0'
    """
    s = name.replace(".temporal_transformer_blocks.0.attn1", "").replace(".temporal_transformer_blocks.", ".t")
    s = s.replace(".attn1", "").replace(".attentions.", ".")
    return s.replace("down_blocks.", "down").replace("up_blocks.", "up").replace("mid_block", "mid")


def _attention_probs(attn, hidden_states: torch.Tensor) -> torch.Tensor:
    """The softmax weights of a self-attention module, computed explicitly: (N, heads, L, L), float32.

    hidden_states (N, L, C): for a temporal block, N = batch * h * w positions and L = frames.
    """
    x = hidden_states
    if attn.group_norm is not None:
        x = attn.group_norm(x.transpose(1, 2)).transpose(1, 2)
    query, key = attn.to_q(x), attn.to_k(x)
    N, L, inner = key.shape
    head_dim = inner // attn.heads
    query = query.view(N, -1, attn.heads, head_dim).transpose(1, 2)  # (N, heads, L, d)
    key = key.view(N, -1, attn.heads, head_dim).transpose(1, 2)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    scores = query.float() @ key.float().transpose(-1, -2) / math.sqrt(head_dim)  # the scale SDPA uses
    return scores.softmax(dim=-1)


class _RecordingProcessor:
    """An attention processor that records the weights and returns exactly what the original processor returns."""

    def __init__(self, original, recorder: TemporalAttentionRecorder, name: str):
        self.original, self.recorder, self.name = original, recorder, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        self.recorder._record(self.name, attn, hidden_states)
        return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


class TemporalAttentionRecorder:
    """Record the frame-to-frame attention weights of temporal attention modules while the UNet runs.

    A context manager: while inside, the chosen modules carry a processor that computes the softmax weights
    explicitly, averages them over heads and spatial positions, and hands back the original output untouched.

    Attributes:
      weights: {(module name, step): tensor (B, F, F)}, B the UNet batch (with guidance: row 0 without the image,
        row 1 with it); row i of an F x F map says how frame i spreads its attention over all frames (sums to 1).

    >>> with TemporalAttentionRecorder(pipe.unet, steps=[0]) as rec:    # doctest: +SKIP
    ...     video = svdkit.generate(pipe, image, num_inference_steps=4)
    >>> sorted(rec.weights)[0]                                            # doctest: +SKIP
    ('down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1', 0)
    """

    def __init__(self, unet, modules=None, steps=None, *, chunk: int = 4096):
        available = temporal_attention_modules(unet)
        if isinstance(modules, str):
            modules = [modules]
        if modules is not None:
            missing = [m for m in modules if m not in available]
            if missing:
                raise ValueError(f"not temporal attention modules of this UNet: {missing}; available: {available}")
        self.modules = available if modules is None else list(modules)
        self.steps = None if steps is None else {int(s) for s in ([steps] if isinstance(steps, int) else steps)}
        self.weights: dict[tuple[str, int], torch.Tensor] = {}
        self._unet, self._chunk = unet, chunk
        self._calls, self._step, self._batch = 0, 0, 1
        self._originals, self._handle = {}, None

    def _before_unet(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self._step, self._batch = self._calls, sample.shape[0]
        self._calls += 1

    @torch.no_grad()
    def _record(self, name: str, attn, hidden_states: torch.Tensor):
        if self.steps is not None and self._step not in self.steps:
            return
        B = self._batch
        positions = hidden_states.shape[0] // B  # rows are batch-major: (B * h * w, F, C)
        rows = []
        for b in range(B):
            total = 0
            for start in range(b * positions, (b + 1) * positions, self._chunk):
                stop = min(start + self._chunk, (b + 1) * positions)
                total = total + _attention_probs(attn, hidden_states[start:stop]).sum(dim=(0, 1))  # (F, F)
            rows.append(total / (positions * attn.heads))
        self.weights[(name, self._step)] = torch.stack(rows).cpu()

    def __enter__(self):
        modules = dict(self._unet.named_modules())
        self._handle = self._unet.register_forward_pre_hook(self._before_unet, with_kwargs=True)
        for name in self.modules:
            attn = modules[name]
            self._originals[name] = attn.processor
            attn.set_processor(_RecordingProcessor(attn.processor, self, name))
        return self

    def __exit__(self, *exc):
        modules = dict(self._unet.named_modules())
        for name, processor in self._originals.items():
            modules[name].set_processor(processor)
        self._originals = {}
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        return False


def capture_temporal_attention(pipe, image, *, modules=None, steps=None, seed: int = 0, **kwargs):
    """Generate a clip while recording temporal attention.

    Returns (video, maps): maps[(module name, step)] is the (F, F) frame-to-frame attention of the pass WITH the
    image (averaged over heads and positions). kwargs go to `generate()`.
    """
    with TemporalAttentionRecorder(pipe.unet, modules, steps) as recorder:
        video = generate(pipe, image, seed=seed, **kwargs)
    return video, {key: w[-1] for key, w in recorder.weights.items()}


def attention_summary(maps: dict, steps=None) -> dict:
    """Two numbers per map, keyed 'module@step': `self`, the mean weight a frame gives itself, and `reach`, the mean
    distance in frames between a frame and what it attends to (uniform attention over 14 frames gives about 4.6).

    steps: only the maps of these steps (default: all).
    """
    out = {}
    for key, w in maps.items():
        if steps is not None and isinstance(key, tuple) and key[1] not in steps:
            continue
        w = torch.as_tensor(w).float()
        F = w.shape[-1]
        distance = (torch.arange(F)[:, None] - torch.arange(F)[None, :]).abs().float()
        label = f"{short_name(key[0])}@{key[1]}" if isinstance(key, tuple) else str(key)
        out[label] = {"self": round(float(w.diagonal().mean()), 4),
                      "reach": round(float((w * distance).sum(1).mean()), 4)}
    return out
