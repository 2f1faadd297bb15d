"""Longer clips: chain segments, each one starting from the last frame of the one before.

SVD makes 14 or 25 frames. `extend` makes more by generating `segments` clips in a row, each conditioned on the
end of the previous one, and joins them, dropping the frames that a segment repeats at its start (`overlap`).
`Video.segments` says where each segment lies in the joined clip. Two ways to start the next segment:

* "reencode": what users do by hand: decode the previous segment, take its frame `F - overlap` as the next
  input image and run `generate` on it (its own CLIP embedding, its own VAE encoding, its own noise
  augmentation). Every segment goes once more through the VAE and the model's habits, and drifts.
* "latents": keep more of the previous segment: the next segment is conditioned on the previous segment's
  final latents of that frame directly (no decode and re-encode), keeps the ORIGINAL picture's CLIP
  embedding, and its first `overlap` frames are steered onto the previous segment's last `overlap` frames
  during denoising (`svdkit.keyframes.steer`), so the UNet's temporal layers see the motion that came before.

Segment k is seeded with `seed + k`. `svdkit.metrics.drift(video.frames, image, video.segments)` measures how
far each segment has drifted from the original picture.

>>> import svdkit
>>> pipe = svdkit.load_pipeline("toy")
>>> long = svdkit.extend(pipe, "data/example_0.png", segments=3, num_inference_steps=4)
>>> long.frames.shape, long.segments                    # 14 + 13 + 13 frames: one repeated frame dropped twice
((40, 64, 64, 3), [(0, 14), (14, 27), (27, 40)])
"""

from __future__ import annotations

import time

import numpy as np
import torch

from svdkit.inputs import check_params, load_image
from svdkit.keyframes import steer
from svdkit.sampling import condition, decode_latents, denoise, generate, initial_noise, set_schedule
from svdkit.video import Video, to_model

__all__ = ["extend", "EXTEND_METHODS"]

EXTEND_METHODS = ("reencode", "latents")


class _LastLatents:
    """An `on_step` hook that keeps the latents (B, F, 4, h, w) after the latest step: the final ones, at the end."""

    latents: torch.Tensor | None = None

    def __call__(self, pipe, step, timestep, tensors):
        self.latents = tensors["latents"]
        return {}


@torch.no_grad()
def extend(pipe, image, segments: int = 2, *, overlap: int = 1, method: str = "reencode", seed: int = 0,
           guidance=None, sigmas=None, progress: bool = False, **params) -> Video:
    """Generate `segments` clips in a row, each from the end of the one before, joined into one `Video`.

    Args:
      pipe, image, seed, guidance, sigmas, progress, **params: as in `generate` (segment k uses seed + k).
      segments: how many clips to chain, >= 1 (1: the same frames as `generate`).
      overlap: how many frames consecutive segments share, 0 to num_frames - 1: the next segment starts from
        the previous one's frame num_frames - overlap (the last frame for 0 and 1) and its first `overlap`
        frames, repeats of frames already there, are dropped from the joined clip; 0 drops nothing (the seam
        shows the last frame twice, nearly).
      method: "reencode" (decode, take the frame, generate from it) or "latents" (continue from the previous
        segment's latents and original embedding, steering the overlap); see the module's docstring.

    Returns:
      A `Video` of F + (segments - 1) * (F - overlap) frames; `video.segments` holds each segment's
      [start, stop) in it, and `video.params` the first segment's record with an "extend" entry.
    """
    # 0. Check inputs, before any model work.
    if not isinstance(segments, (int, np.integer)) or isinstance(segments, bool) or segments < 1:
        raise ValueError(f"segments must be an integer >= 1, got {segments!r}")
    if method not in EXTEND_METHODS:
        raise ValueError(f"method must be one of {EXTEND_METHODS}, got {method!r}")
    p = check_params(pipe, params, guidance, sigmas)
    F = p["num_frames"]
    if not isinstance(overlap, (int, np.integer)) or isinstance(overlap, bool) or not 0 <= overlap < F:
        raise ValueError(f"overlap must be an integer in 0-{F - 1} (less than num_frames={F}), got {overlap!r}")
    image = load_image(image)
    start = F - max(int(overlap), 1)  # the frame of a segment that the next one starts from
    started = time.perf_counter()

    last = _LastLatents()
    first = generate(pipe, image, seed=seed, guidance=guidance, sigmas=sigmas, progress=progress, on_step=last,
                     **params)
    clips, frames, latents = [first.frames], first.frames, last.latents  # (F, H, W, 3), (1, F, 4, h, w)
    embeddings = None
    for k in range(1, int(segments)):
        if method == "reencode":
            frames = generate(pipe, frames[start], seed=seed + k, guidance=guidance, sigmas=sigmas,
                              progress=progress, **params).frames
        else:
            if embeddings is None:  # the original picture's CLIP embedding, (1, 1, D), for every segment
                embeddings = pipe._encode_image(image, pipe._execution_device, 1, False)
            frames, latents = _continue(pipe, embeddings, frames[start], latents, start, int(overlap), seed + k,
                                        p, sigmas, progress)
        clips.append(frames[overlap:])

    bounds, at = [], 0
    for clip in clips:
        bounds.append((at, at + len(clip)))
        at += len(clip)
    record = {**first.params, "extend": {"segments": int(segments), "overlap": int(overlap), "method": method},
              "segment_seeds": [int(seed) + k for k in range(int(segments))], "segments": bounds}
    record["seconds"] = round(time.perf_counter() - started, 4)  # every segment's, not the first one's
    return Video(frames=np.concatenate(clips), fps=first.fps, params=record, segments=bounds)


def _continue(pipe, embeddings, start_frame, prev_latents, start: int, overlap: int, seed: int, p: dict, sigmas,
              progress: bool):
    """The "latents" method's next segment: (frames (F, H, W, 3), latents (1, F, 4, h, w))."""
    F, H, W = p["num_frames"], p["height"], p["width"]
    generator = torch.Generator().manual_seed(int(seed))
    # 1. The image latents are the previous segment's final latents of its frame `start`, unscaled (as stage 1
    #    makes them); noisy_image is that frame's pixels, (1, 3, H, W), kept for the record only.
    image_latents = prev_latents[:, start] / pipe.vae.config.scaling_factor  # (1, 4, h, w)
    noisy_image = to_model(start_frame)[None].to(embeddings.device, embeddings.dtype)
    # 2. Condition every frame on them, with the original picture's embedding.
    cond = condition(embeddings, noisy_image, image_latents.to(embeddings.dtype), fps=p["fps"],
                     motion_bucket_id=p["motion_bucket_id"], noise_aug_strength=p["noise_aug_strength"])
    # 3. Denoise from fresh noise, the first `overlap` frames steered onto the previous segment's last ones.
    set_schedule(pipe, p["num_inference_steps"], sigmas)
    latents = initial_noise(pipe, generator, F, H, W, embeddings.dtype)  # (1, F, 4, h, w)
    targets = {j: prev_latents[0, start + j] for j in range(overlap)}
    hook = steer(targets, until=1.0) if targets else None
    latents, _, _ = denoise(pipe, latents, cond, p["guidance"].unsqueeze(0), on_step=hook, progress=progress)
    # 4. Decode.
    return decode_latents(pipe, latents, p["decode_chunk_size"] or F), latents
