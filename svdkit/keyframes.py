"""Keyframes: steer chosen frames toward given latents while the stack is denoised (loops, end images, chaining).

At every Euler step the sampler predicts each frame's clean latents x0 and moves x_t toward it. To pull frame j
toward target latents z, move its x0 part of the way to z, `x0' = x0 + w_j (z - x0)`, and take the step from
there. The step is `x_next = x_t + (x0 - x_t) (1 - sigma_next / sigma)`, so the change to the latents is
`(x0' - x0) (1 - sigma_next / sigma)`: `steer` returns an `on_step` hook that adds exactly that, for the first
`until` fraction of the steps, and then leaves the last steps free to refine the details. The other frames are
not touched, but the UNet's temporal layers see the steered ones, so the motion bends toward them.

`generate(..., end_image=picture)` steers the last half of the frames toward the picture's latents, with weights
falling from 1 on the last frame (`end_weights`); `generate(..., loop=True)` is the case where that
picture is the input image, so the clip comes back to where it started. `svdkit.extend` steers the first frames
of each new segment toward the last frames of the one before.

>>> import torch
>>> from svdkit.keyframes import end_weights, steer
>>> {j: round(w, 2) for j, w in end_weights(14).items()}   # steered less the further from the end
{13: 1.0, 12: 0.73, 11: 0.51, 10: 0.33, 9: 0.18, 8: 0.08, 7: 0.02}
>>> hook = steer({13: torch.zeros(4, 8, 8)}, until=1.0)   # pull the last of 14 frames toward zero latents
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["steer", "end_weights", "chain_hooks", "STEER_UNTIL"]

STEER_UNTIL = 0.8
"""The fraction of the denoising steps during which frames are steered; the last 20% are left free. On the toy
(4 seeds, 10 and 25 steps) this brings the seam of `loop=True` to about 0.75 of a median step, with the largest
step inside the clip at about 1.55 medians (1.4 without the loop); 0.6-0.7 leaves the loop open at 10 steps."""


def end_weights(num_frames: int, frames: int | None = None) -> dict[int, float]:
    """How strongly `end_image` pulls each of the last frames: {frame index: weight}, 1 on the last frame.

    frames: how many of the last frames are steered (default num_frames // 2, at least 1); the weights fall
    quadratically, (1 - j / frames)^2 for the j-th frame from the end, so the motion turns gently. (On the toy,
    a third of the frames closes loops as well but with a jump of 2.2 median steps inside the clip; two thirds
    keep less of the motion.)
    """
    frames = max(1, num_frames // 2) if frames is None else frames
    if not 1 <= frames <= num_frames:
        raise ValueError(f"frames must be in 1-{num_frames} (num_frames), got {frames!r}")
    return {num_frames - 1 - j: (1 - j / frames) ** 2 for j in range(frames)}


def steer(targets: dict[int, torch.Tensor], weights: dict[int, float] | None = None, *,
          until: float = STEER_UNTIL) -> Callable:
    """An `on_step` hook that pulls frame j's x0 estimate toward `targets[j]` by `weights[j]` (default 1).

    targets: {frame index: scaled latents (4, h, w)}, in the space of the frames' latents (the VAE's latents
    times its scaling factor). until: steer during the first `until` fraction of the steps (0 < until <= 1);
    with 1 and weight 1 the frame ends exactly on its target.
    """
    if not 0 < until <= 1:
        raise ValueError(f"until must be in (0, 1] (a fraction of the steps), got {until!r}")
    weights = {j: 1.0 for j in targets} if weights is None else weights
    if set(weights) != set(targets):
        raise ValueError(f"weights must name the same frames as targets, got {sorted(weights)} and {sorted(targets)}")

    def hook(pipe, step, timestep, tensors):
        sigmas = pipe.scheduler.sigmas
        if step >= until * (len(sigmas) - 1):
            return {}
        latents, x0 = tensors["latents"], tensors["x0"]  # (B, F, 4, h, w) each
        keep = 1 - float(sigmas[step + 1]) / float(sigmas[step])  # how much of x0 this step takes in
        latents = latents.clone()
        for j, z in targets.items():
            z = z.to(latents.device, latents.dtype)
            latents[:, j] += weights[j] * (z - x0[:, j]) * keep
        return {"latents": latents}

    return hook


def chain_hooks(*hooks: Callable | None) -> Callable:
    """One `on_step` hook that runs `hooks` in order, each seeing the latents the one before returned."""
    hooks = [h for h in hooks if h is not None]

    def hook(pipe, step, timestep, tensors):
        tensors, out = dict(tensors), {}
        for h in hooks:
            result = h(pipe, step, timestep, tensors) or {}
            if "latents" in result:
                tensors["latents"] = out["latents"] = result["latents"]
            if result.get("stop"):
                out["stop"] = True
        return out

    return hook

