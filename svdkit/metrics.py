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

Across a sweep, `trend(table, x, y)` says in numbers how a metric follows a parameter (rank correlation, fits,
noise between seeds).

Motion is measured where the picture changes: a shape sliding k pixels a frame over a still background reads
about k, however small the shape. That makes it comparable with the toy world's ground truth,
`svdkit.toy.pixels_per_frame(motion_bucket_id, fps)`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["METRICS", "clip_metrics", "motion", "motion_per_frame", "frame_difference", "flicker",
           "psnr", "ssim", "PSNR_CAP", "trend",
           # longer clips and loops (svdkit.extend, generate(loop=..., end_image=...))
           "LOOP_METRICS", "seam", "largest_step", "drift", "end_fidelity", "sharpness"]

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

# One sentence per metric of longer clips and loops (`seam`, `drift`, `end_fidelity`).
LOOP_METRICS: dict[str, str] = {
    "seam": "the change from the last frame back to the first over the clip's median frame-to-frame change "
            "(1.0: the loop's jump looks like any other step)",
    "largest_step": "the largest frame-to-frame change inside the clip over the median one (a jump that a loop "
                    "moved inside the clip stands out)",
    "drift": "per segment of a chained clip, how its first frame differs from the original picture: mean colour "
             "shift, sharpness relative to the picture, PSNR and SSIM",
    "end_fidelity": "PSNR in dB of the last frame against the picture the clip should end on",
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

    from svdkit.inputs import load_image

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


# ----------------------------------------------------------------------------------------------------
# Longer clips and loops: the jump at the seam, the drift of chained segments, the fidelity of a chosen end


def _steps(frames: np.ndarray) -> np.ndarray:
    """Mean absolute change of each step t -> t + 1, in 0-255 levels: (F - 1,)."""
    return np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))


def seam(frames) -> float:
    """The change from the last frame back to the first, over the clip's median frame-to-frame change (1.0: the
    loop's jump looks like any other step; inf when only the jump moves; 1.0 for a still clip).

    >>> clip = np.zeros((5, 8, 8, 3), np.uint8)
    >>> for t in range(5): clip[t] = 10 * t          # a steady fade: 10 levels a step, 40 back to the start
    >>> seam(clip), seam(np.concatenate([clip, clip[-2:0:-1]]))   # as it is, and played ping-pong
    (4.0, 1.0)
    """
    frames = _check(frames)
    if len(frames) < 2:
        return 1.0
    jump = float(np.abs(frames[-1].astype(np.float32) - frames[0].astype(np.float32)).mean())
    median = float(np.median(_steps(frames)))
    if median == 0:
        return 1.0 if jump == 0 else float("inf")
    return jump / median


def largest_step(frames) -> float:
    """The largest change between consecutive frames over the median one (1.0: every step alike; a cut stands out).

    >>> clip = np.zeros((5, 8, 8, 3), np.uint8)
    >>> for t in range(5): clip[t] = 10 * t + 30 * (t >= 3)   # 10 levels a step, and one jump of 40
    >>> largest_step(clip)
    4.0
    """
    frames = _check(frames)
    if len(frames) < 2:
        return 1.0
    steps = _steps(frames)
    median = float(np.median(steps))
    if median == 0:
        return 1.0 if steps.max() == 0 else float("inf")
    return float(steps.max()) / median


def sharpness(image) -> float:
    """The variance of the Laplacian of a uint8 image (H, W, 3) in grey, a common focus measure (0: flat)."""
    import cv2

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 of shape (H, W, 3), got {image.dtype} {image.shape}")
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def drift(frames, image, segments) -> list[dict]:
    """How far each segment's first frame has drifted from the original picture: colour shift, sharpness, fidelity.

    frames: a joined clip (F, H, W, 3); image: the original picture (anything `svdkit.load_image` reads, resized
    to the clip's size when they differ); segments: [start, stop) pairs (`Video.segments`). One dict per
    segment: `colour_shift`, the mean absolute difference of the per-channel mean colour, in 0-255 levels;
    `sharpness`, its Laplacian variance over the picture's (1.0: as sharp, lower: blurred); `psnr_first` and
    `ssim_first` against the picture (moving content lowers them too, so compare them between segments).

    >>> clip = np.full((6, 16, 16, 3), 100, np.uint8); clip[3:] += 20   # the second segment is 20 levels brighter
    >>> [round(d["colour_shift"]) for d in drift(clip, clip[0], [(0, 3), (3, 6)])]
    [0, 20]
    """
    frames = _check(frames)
    reference = _as_frame(image, frames.shape[1], frames.shape[2])
    ref_colour = reference.reshape(-1, 3).astype(np.float64).mean(axis=0)
    ref_sharpness = sharpness(reference)
    out = []
    for k, (start, stop) in enumerate(segments):
        if not 0 <= start < stop <= len(frames):
            raise ValueError(f"segments: each must be a [start, stop) range inside the {len(frames)} frames, "
                             f"got {(start, stop)}")
        first = frames[start]
        colour = first.reshape(-1, 3).astype(np.float64).mean(axis=0)
        out.append({"segment": k, "start": int(start),
                    "colour_shift": float(np.abs(colour - ref_colour).mean()),
                    "sharpness": sharpness(first) / ref_sharpness if ref_sharpness > 0 else float("nan"),
                    "psnr_first": psnr(first, reference), "ssim_first": ssim(first, reference)})
    return out


def end_fidelity(frames, end_image) -> float:
    """PSNR in dB of the clip's last frame against the picture it should end on (resized to the clip's size).

    >>> clip = np.zeros((3, 8, 8, 3), np.uint8)
    >>> end_fidelity(clip, clip[-1])
    100.0
    """
    frames = _check(frames)
    return psnr(frames[-1], _as_frame(end_image, frames.shape[1], frames.shape[2]))


# ----------------------------------------------------------------------------------------------------
# Across clips: how a metric follows a parameter


def _records(table) -> list[dict]:
    """Rows as dicts, from a DataFrame or a list of dicts."""
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        return table.to_dict("records")
    return list(table)


def _rank_correlation(x, y) -> float:
    """Spearman's rank correlation (Pearson's on the ranks, ties averaged); nan when either side is constant."""
    import pandas as pd
    rx, ry = pd.Series(list(x), dtype=float).rank(), pd.Series(list(y), dtype=float).rank()
    if rx.nunique() < 2 or ry.nunique() < 2:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    """R^2 of the least-squares line y = a + b x."""
    if len(x) < 3 or np.ptp(x) == 0:
        return float("nan")
    fit = np.polyval(np.polyfit(x, y, 1), x)
    total = float(((y - y.mean()) ** 2).sum())
    return float(1 - ((y - fit) ** 2).sum() / total) if total > 0 else float("nan")


def trend(table, x: str, y: str = "motion") -> dict:
    """How a metric `y` follows a parameter `x` across a sweep, in numbers (what a notebook's answer is made of).

    table: a sweep's table (`svdkit.sweep` returns one) or a list of dicts, one per clip.

    Returns a dict of plain numbers (nan where undefined):
      values, mean, std, min, max: per value of x (sorted), over the other axes (seeds, images);
      spearman: rank correlation of x with y over every point (+1: y always rises with x);
      ratio: mean y at the largest x over mean y at the smallest (nan when the latter is 0);
      r2_linear, r2_log: how well a straight line fits the means against x, and against log(1 + x);
      loglog_slope: the slope of log(mean y) against log(x) (x, y > 0): -1 means y is proportional to 1 / x;
      noise: the mean spread (std) between points with the same x;
      distinct_steps: how many neighbouring values of x differ in mean y by more than 2 x noise, out of
      len(values) - 1.

    >>> rows = [{"fps": f, "seed": s, "motion": 12 / f + 0.01 * s} for f in (3, 6, 12, 24) for s in (0, 1)]
    >>> t = trend(rows, "fps")
    >>> t["values"], round(t["spearman"], 2), round(t["loglog_slope"], 2), t["distinct_steps"]
    ([3.0, 6.0, 12.0, 24.0], -0.98, -1.0, 3)
    """
    import pandas as pd

    df = pd.DataFrame(_records(table))
    stats = df.groupby(x)[y].agg(["mean", "std", "min", "max"]).sort_index()
    xs = stats.index.to_numpy(dtype=float)
    means = stats["mean"].to_numpy(dtype=float)
    noise = float(np.nan_to_num(stats["std"].to_numpy(dtype=float)).mean())
    positive = (xs > 0) & (means > 0)
    slope = float(np.polyfit(np.log(xs[positive]), np.log(means[positive]), 1)[0]) if positive.sum() >= 2 \
        else float("nan")
    steps = np.abs(np.diff(means))
    return {
        "x": x, "y": y, "values": xs.tolist(), "mean": means.tolist(),
        "std": np.nan_to_num(stats["std"].to_numpy(dtype=float)).tolist(),
        "min": stats["min"].tolist(), "max": stats["max"].tolist(),
        "spearman": _rank_correlation(df[x], df[y]),
        "ratio": float(means[-1] / means[0]) if len(means) and means[0] > 0 else float("nan"),
        "r2_linear": _r2(xs, means), "r2_log": _r2(np.log1p(np.clip(xs, 0, None)), means),
        "loglog_slope": slope, "noise": noise,
        "distinct_steps": int((steps > 2 * noise).sum()) if noise > 0 else int((steps > 0).sum()),
    }
