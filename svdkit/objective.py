"""SVD's training objective, in one place: the toy's training (`svdkit.toy.train`) and `svdkit.finetune` both use it.

The UNet is trained for EDM v-prediction, the parametrisation `EulerDiscreteScheduler` (v_prediction, continuous
timesteps) samples from. For clean frame latents ``x`` (B, F, 4, h, w), scaled by the VAE's scaling factor, a noise
level ``sigma`` (B,) and Gaussian noise ``n`` like ``x``:

* ``x_noisy = x + sigma * n``; the UNet sees ``x_noisy / sqrt(sigma^2 + 1)`` concatenated on channels with the
  *unscaled* latents of the noise-augmented conditioning image, the same in every frame: 8 channels a frame;
* its timestep is ``0.25 * ln(sigma)``; its added time ids ``[fps - 1, motion_bucket_id, noise_aug_strength]``;
* its output ``v`` gives the clean estimate ``x0 = v * (-sigma / sqrt(sigma^2 + 1)) + x_noisy / (sigma^2 + 1)``;
* the loss is ``(sigma^2 + 1) / sigma^2 * |x0 - x|^2`` (EDM's weighting; the same as plain MSE on the v target),
  optionally plus the same on the frame-to-frame differences (``temporal_weight``), where the motion is;
* a ``keep`` of 0 zeroes a clip's image embedding **and** image latents: exactly the unconditional branch of the
  pipeline's classifier-free guidance, so that guidance still works after training (conditioning dropout).

Noise levels are log-normal, ``ln sigma ~ N(p_mean, p_std^2)`` (`sample_sigma`); SVD's video training shifts them
towards high noise (``p_mean`` 0.7, ``p_std`` 1.6 are `finetune`'s defaults), and the toy draws a share of them
log-uniformly over the sampler's whole range.

>>> import torch
>>> gen = torch.Generator().manual_seed(0)
>>> sample_sigma(4, gen, p_mean=0.7, p_std=1.6).shape
torch.Size([4])
>>> unet = lambda x, t, encoder_hidden_states, added_time_ids, return_dict: (torch.zeros_like(x[:, :, :4]),)
>>> x = torch.zeros(2, 3, 4, 8, 8)                         # (B, F, 4, h, w): a still, empty clip
>>> loss = diffusion_loss(unet, x, torch.zeros(2, 4, 8, 8), torch.zeros(2, 1, 32), torch.zeros(2, 3),
...                       sigma=torch.ones(2), noise=torch.zeros_like(x), keep=torch.ones(2))
>>> float(loss)                                           # nothing to denoise, nothing wrong
0.0
"""

from __future__ import annotations

import math

import torch

__all__ = ["diffusion_loss", "sample_sigma", "SIGMA_RANGE"]

SIGMA_RANGE = (0.002, 700.0)
"""The sampler's noise levels (EulerDiscreteScheduler's sigma_min, sigma_max for SVD)."""


def sample_sigma(n: int, generator: torch.Generator, *, p_mean: float, p_std: float,
                 p_uniform: float = 0.0) -> torch.Tensor:
    """``n`` noise levels (n,): log-normal ``exp(N(p_mean, p_std^2))``, but a share ``p_uniform`` of them
    log-uniform over `SIGMA_RANGE`. Always draws the same random numbers from `generator` (rand, rand, randn of n)."""
    lo, hi = SIGMA_RANGE
    return torch.where(torch.rand(n, generator=generator) < p_uniform,
                       math.log(lo) + math.log(hi / lo) * torch.rand(n, generator=generator),
                       p_mean + p_std * torch.randn(n, generator=generator)).exp()


def diffusion_loss(unet, latents: torch.Tensor, image_latents: torch.Tensor, embeddings: torch.Tensor,
                   added_time_ids: torch.Tensor, *, sigma: torch.Tensor, noise: torch.Tensor, keep: torch.Tensor,
                   temporal_weight: float = 0.0) -> torch.Tensor:
    """The EDM v-prediction loss of one batch (a scalar tensor, to call ``.backward()`` on).

    Args:
      unet: a ``UNetSpatioTemporalConditionModel`` (or anything called as one).
      latents: (B, F, 4, h, w) clean frame latents, scaled by the VAE's scaling factor.
      image_latents: (B, 4, h, w) latents of the noise-augmented conditioning image, NOT scaled.
      embeddings: (B, 1, D) CLIP image embeddings.
      added_time_ids: (B, 3) ``[fps - 1, motion_bucket_id, noise_aug_strength]``.
      sigma: (B,) noise levels; noise: (B, F, 4, h, w) standard Gaussian noise.
      keep: (B,) 1.0 to condition on the image, 0.0 to drop it (the unconditional branch of guidance).
      temporal_weight: weight of the same loss on frame-to-frame differences (0: none).
    """
    B, F = latents.shape[:2]
    image_latents = image_latents * keep.view(B, 1, 1, 1)
    embeddings = embeddings * keep.view(B, 1, 1)
    image_latents = image_latents.unsqueeze(1).expand(-1, F, -1, -1, -1)  # (B, F, 4, h, w): same every frame
    s = sigma.view(B, 1, 1, 1, 1)
    x_noisy = latents + s * noise
    model_in = torch.cat([x_noisy / (s**2 + 1).sqrt(), image_latents.to(x_noisy.dtype)], dim=2)  # (B, F, 8, h, w)
    out = unet(model_in, 0.25 * sigma.log(), encoder_hidden_states=embeddings,
               added_time_ids=added_time_ids, return_dict=False)[0]  # (B, F, 4, h, w), v
    x0 = out.float() * (-s / (s**2 + 1).sqrt()) + x_noisy / (s**2 + 1)
    weight = (s**2 + 1) / s**2  # EDM: the same as plain MSE on the v target
    loss = (weight * (x0 - latents) ** 2).mean()
    if temporal_weight:  # motion is a small part of each frame: also match the frame-to-frame changes
        loss = loss + temporal_weight * (weight * (x0.diff(dim=1) - latents.diff(dim=1)) ** 2).mean()
    return loss
