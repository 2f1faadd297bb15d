"""Numbers for a clip: how much it moves, how true its first frame stays to the input, how much it flickers.

Every function takes uint8 frames laid out (F, H, W, 3), the layout of `Video.frames`, and returns a float.

>>> import numpy as np
>>> from svdkit import metrics
>>> still = np.full((14, 64, 64, 3), 90, np.uint8)
>>> metrics.motion(still), metrics.flicker(still)
(0.0, 0.0)
>>> metrics.clip_metrics(still, image=still[0])["ssim_first"]
1.0
>>> print(metrics.METRICS["motion"])  # one sentence per metric
mean optical-flow speed (Farneback), in pixels per frame, of the pixels that change between frames

Motion is measured where the picture changes: a shape sliding k pixels a frame over a still background reads
about k, however small the shape. That makes it comparable with the toy world's ground truth,
`svdkit.toy.pixels_per_frame(motion_bucket_id, fps)`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["METRICS", "clip_metrics", "motion", "motion_per_frame", "frame_difference", "flicker",
           "psnr", "ssim", "PSNR_CAP"]

PSNR_CAP = 100.0
"""PSNR of identical images, in dB (the true value is infinite; a finite cap keeps tables and JSON plain)."""

# One sentence per metric: what `clip_metrics` returns, under these names.
METRICS: dict[str, str] = {
    "motion": "mean optical-flow speed (Farneback), in pixels per frame, of the pixels that change between "
              "frames",
    "frame_diff": "mean absolute difference between consecutive frames, in 0-255 intensity levels",
    "flicker": "mean absolute second temporal difference |f[t+1] - 2 f[t] + f[t-1]|, in 0-255 levels: "
               "energy that changes direction from frame to frame, as flicker does (steady motion adds a little)",
    "psnr_first": f"PSNR in dB of the first frame against the input image (higher is closer; identical is "
                  f"capped at {PSNR_CAP:g})",
    "ssim_first": "SSIM of the first frame against the input image (1 is identical; Gaussian window, "
                  "sigma 1.5, averaged over RGB)",
}

_CHANGE_THRESHOLD = 4  # intensity levels: a pixel "changes" when its grey value moves by more than this


def _check(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 of shape (F, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def _grey(frames: np.ndarray) -> list[np.ndarray]:
    import cv2
    return [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]


def motion_per_frame(frames, *, threshold: int = _CHANGE_THRESHOLD) -> np.ndarray:
    """The motion between each pair of consecutive frames, in pixels per frame: an array (F - 1,).

    Dense Farneback optical flow from frame t to t + 1; its magnitude is averaged over the pixels whose grey
    value changes by more than `threshold` levels (0 when none does).

    >>> motion_per_frame(np.zeros((3, 64, 64, 3), np.uint8)).tolist()
    [0.0, 0.0]
    """
    import cv2

    grey = _grey(_check(frames))
    out = np.zeros(max(len(grey) - 1, 0))
    for t, (a, b) in enumerate(zip(grey[:-1], grey[1:])):
        changed = np.abs(a.astype(np.int16) - b.astype(np.int16)) > threshold  # (H, W)
        if not changed.any():
            continue
        # pyramid scale 0.5, 3 levels, 15-pixel window, 3 iterations, polynomial of 5 pixels, sigma 1.2
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)  # (H, W, 2): dx, dy
        out[t] = float(np.linalg.norm(flow, axis=-1)[changed].mean())
    return out


def motion(frames, *, threshold: int = _CHANGE_THRESHOLD) -> float:
    """Mean optical-flow speed of the changing pixels, in pixels per frame, over the whole clip.

    >>> clip = np.zeros((4, 64, 64, 3), np.uint8)
    >>> for t in range(4): clip[t, 20:40, 10 + 2 * t: 30 + 2 * t] = 200   # a square, 2 px a frame
    >>> round(motion(clip))
    2
    """
    per_frame = motion_per_frame(frames, threshold=threshold)
    return float(per_frame.mean()) if len(per_frame) else 0.0


def frame_difference(frames) -> float:
    """Mean absolute difference between consecutive frames, in 0-255 levels (0 for a still clip)."""
    frames = _check(frames).astype(np.float32)
    return float(np.abs(np.diff(frames, axis=0)).mean()) if len(frames) > 1 else 0.0


def flicker(frames) -> float:
    """Mean absolute second temporal difference, in 0-255 levels: 0 for a still clip or a steady fade."""
    frames = _check(frames).astype(np.float32)
    if len(frames) < 3:
        return 0.0
    return float(np.abs(frames[2:] - 2 * frames[1:-1] + frames[:-2]).mean())


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"images must both be (H, W, 3) of the same shape, got {a.shape} and {b.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio of two uint8 images (H, W, 3), or clips (F, H, W, 3), of the same shape, in dB.

    Identical inputs give `PSNR_CAP` (100.0), not infinity, and nothing is ever above it: tables, plots and JSON
    stay plain numbers.

    >>> img = np.zeros((8, 8, 3), np.uint8)
    >>> psnr(img, img), round(psnr(img, img + 16), 2)
    (100.0, 24.05)
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim not in (3, 4) or a.shape[-1] != 3:
        raise ValueError(f"psnr: a and b must both be (H, W, 3) images or (F, H, W, 3) clips of the same shape, "
                         f"got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0:
        return PSNR_CAP
    return float(min(PSNR_CAP, 10 * np.log10(255.0 ** 2 / mse)))


def ssim(a, b) -> float:
    """Structural similarity of two uint8 images (H, W, 3), averaged over the RGB channels (1 when identical).

    The usual constants (K1 = 0.01, K2 = 0.03, L = 255) and an 11 x 11 Gaussian window of sigma 1.5.

    >>> img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    >>> ssim(img, img), ssim(img, 255 - img) < 0
    (1.0, True)
    """
    import cv2

    def blur(x):  # local means under the Gaussian window
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    a, b = _pair(a, b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    value = float(ssim_map.mean())
    return 1.0 if np.array_equal(a, b) else value  # exactly 1, not 0.9999999


def _as_frame(image, height: int, width: int) -> np.ndarray:
    """`image` (anything `load_image` reads) as uint8 (H, W, 3) at the clip's size."""
    from PIL import Image

    from svdkit.sampling import load_image

    pil = load_image(image)
    if pil.size != (width, height):
        pil = pil.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(pil, dtype=np.uint8)


def clip_metrics(frames, image=None) -> dict[str, float]:
    """Every metric in `METRICS` for one clip; the first-frame ones only when the input `image` is given.

    `image` may be anything `svdkit.load_image` reads; it is resized to the clip's size when they differ.
    """
    frames = _check(frames)
    out = {"motion": motion(frames), "frame_diff": frame_difference(frames), "flicker": flicker(frames)}
    if image is not None:
        reference = _as_frame(image, frames.shape[1], frames.shape[2])
        out["psnr_first"] = psnr(frames[0], reference)
        out["ssim_first"] = ssim(frames[0], reference)
    return out
