"""Does the toy VAE's latent space fight motion, or lose colours? Two cheap diagnostics of a VAE alone.

    python evaluations/latent_mixes.py                       # the shipped VAE
    python evaluations/latent_mixes.py --model DIR           # another pipeline folder (or a run folder with vae/)

Wherever a UNet's estimate hesitates between two positions of a shape, it produces something like the average of
their latents. With a latent grid whose cells are as large as the shape moves, that average decodes as a blob of
another colour (the first toy's blue disc moved 8 px, one latent cell, came back cyan): the drift seen in
generated clips. A good latent space decodes every such mix as the shape's own colour, blended only with the
background. For each palette colour and each shift, a disc of radius 7 on a dull background is encoded at x and
x + shift, the two latents averaged, and the mix decoded; it is a *colour change* when 6 or more pixels lie
farther than 60 (RGB) from every blend of the disc's colour and the background.

The second diagnostic round-trips flat frames of one colour each. A decoder whose last GroupNorm has one channel
per group (32 channels at full resolution, 32 groups) subtracts each channel's mean over the frame: it cannot say
what colour a flat background is, and returns it greyish (the first toy's VAE gives flat red 200, 30, 30 back as
108, 97, 92). ``flat_colour_error`` is the mean RGB distance of such round trips.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from svdkit.toy import MODEL_PATH, PALETTE
from svdkit.toy.world import _blobs, _explain

SHIFTS = (0, 2, 4, 6, 8, 12, 16)
BACKGROUND = (70, 70, 70)


def disc(x: float, rgb, *, y: float = 32.0, radius: float = 7.0, size: int = 64) -> np.ndarray:
    """A disc of colour ``rgb`` centred at (x, y) on the dull background, 4x4 supersampled: (H, W, 3) uint8."""
    s = (np.arange(size * 4) + 0.5) / 4
    inside = ((s[None, :] - x) ** 2 + (s[:, None] - y) ** 2 <= radius**2).reshape(size, 4, size, 4).mean((1, 3))
    img = np.asarray(BACKGROUND, float) * (1 - inside[..., None]) + np.asarray(rgb, float) * inside[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@torch.no_grad()
def decoded_mix(vae, rgb, shift: float, x: float = 24.0) -> np.ndarray:
    """The decoded halfway mix of the latents of the disc at x and at x + shift, (H, W, 3) uint8."""
    pair = np.stack([disc(x, rgb), disc(x + shift, rgb)])
    pixels = torch.from_numpy(pair).float().permute(0, 3, 1, 2) / 127.5 - 1  # (2, 3, H, W)
    z = vae.encode(pixels).latent_dist.mode().mean(0, keepdim=True)  # (1, 4, h, w)
    out = vae.decode(z, num_frames=1).sample[0]  # (3, H, W)
    return ((out.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def colour_changed(image: np.ndarray, rgb, *, max_distance: float = 60.0, min_area: int = 6) -> bool:
    """True when ``image`` shows a colour that is no blend of ``rgb`` and the background (a blob of ``min_area``)."""
    distance, _ = _explain(image.astype(np.float32), [np.asarray(BACKGROUND, np.float32), np.asarray(rgb, np.float32)])
    return bool(_blobs(distance > max_distance, min_area))


FLAT_COLOURS = ((200, 30, 30), (30, 200, 60), (20, 60, 160), (230, 230, 60), (40, 40, 40), (230, 230, 230))


@torch.no_grad()
def flat_colour_error(vae, colours=FLAT_COLOURS) -> float:
    """Mean RGB distance (0..441) between flat 64x64 frames of ``colours`` and their VAE round trips."""
    frames = np.stack([np.full((64, 64, 3), c, np.uint8) for c in colours])
    pixels = torch.from_numpy(frames).float().permute(0, 3, 1, 2) / 127.5 - 1  # (N, 3, H, W)
    back = vae.decode(vae.encode(pixels).latent_dist.mode(), num_frames=1).sample.clamp(-1, 1)
    back = ((back + 1) * 127.5).permute(0, 2, 3, 1).numpy()
    return float(np.linalg.norm(back - frames, axis=-1).mean())


def colour_changes(vae, colours: dict = PALETTE, shifts=SHIFTS) -> dict[str, list[bool]]:
    """For each colour, one flag per shift: did the halfway mix change colour?"""
    return {name: [colour_changed(decoded_mix(vae, rgb, s), rgb) for s in shifts] for name, rgb in colours.items()}


def main(argv=None) -> int:
    from diffusers import AutoencoderKLTemporalDecoder

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=MODEL_PATH, help="a folder holding vae/ (pipeline or run folder)")
    args = p.parse_args(argv)
    if not (args.model / "vae" / "config.json").is_file():
        p.error(f"--model: no vae/config.json in {args.model}")
    vae = AutoencoderKLTemporalDecoder.from_pretrained(args.model / "vae").eval()
    table = colour_changes(vae)
    print(f"colour changes of halfway latent mixes, disc radius 7, VAE {args.model / 'vae'}")
    print("shift (px):  " + "".join(f"{s:>4}" for s in SHIFTS))
    for name, flags in table.items():
        print(f"{name:<12}" + "".join(f"{'  X ' if f else '  . '}" for f in flags))
    total = sum(map(sum, table.values()))
    print(f"{total} of {len(table) * len(SHIFTS)} mixes changed colour")
    print(f"flat frames of {len(FLAT_COLOURS)} colours come back {flat_colour_error(vae):.0f} (RGB distance) away")
    return 0


if __name__ == "__main__":
    sys.exit(main())
