"""The toy world: coloured shapes sliding across a 64x64 frame, where SVD's knobs have a physical meaning.

Every clip is a pure function of its arguments:

* ``seed`` picks the *scene*: a background, 1-3 shapes (kind, colour, size, start); each shape heads away
  from the centre of the frame, so its direction is random (as its start is) yet visible in the first frame;
* ``motion_bucket_id`` sets the speed, in pixels per **second**: 0 is still, 255 is :data:`MAX_SPEED`;
* ``fps`` sets how much of a second passes between frames, so one frame moves ``speed / fps`` pixels.

That is the meaning SVD's own conditioning has: at the same bucket, a clip "filmed" at fps 6 moves
4x as far per frame as one at fps 24.

>>> from svdkit.toy.world import render_clip, caption, pixels_per_frame
>>> clip = render_clip(seed=3, motion_bucket_id=255, fps=6)
>>> clip.shape, clip.dtype                      # (F, H, W, 3)
((14, 64, 64, 3), dtype('uint8'))
>>> pixels_per_frame(255, fps=6), pixels_per_frame(255, fps=24)
(4.0, 1.0)
>>> caption(3)  # doctest: +SKIP
'a green circle and a red triangle on a dark grey background'

Shapes bounce off the edges of the frame. Positions are floats and frames are supersampled, so even
a tenth of a pixel per frame shows up in the pixels. :func:`detect_shapes` finds the shapes again
from their colours, so the same measurement works on rendered and on generated clips.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = [
    # the scene
    "Shape", "Background", "Scene", "describe_scene", "caption",
    # the physics
    "MAX_SPEED", "pixels_per_frame", "shape_positions",
    # the pixels
    "render_clip", "render_frame",
    # reading a clip back
    "Detection", "detect_shapes", "scene_colours", "render_background", "shapes_kept",
    "PALETTE", "SHAPE_KINDS", "HELD_OUT_SEED", "WORLDS", "colour_name",
]

MAX_SPEED = 24.0
"""Pixels per second at motion_bucket_id 255 in a 64-pixel frame (4 px/frame at fps 6)."""

HELD_OUT_SEED = 1_000_000
"""Seeds from here up are never used for training: evaluation and examples draw from them."""

SHAPE_KINDS = ("circle", "square", "triangle", "diamond")

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 70),
    "blue": (40, 90, 245),
    "yellow": (245, 215, 30),
    "magenta": (225, 50, 225),
    "cyan": (40, 220, 230),
}
"""Shape colours, all saturated and at least ~130 apart in RGB, so a nearest-colour test separates them."""

_BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "dark grey": (40, 40, 40),
    "grey": (95, 95, 95),
    "slate": (50, 58, 75),
    "brown": (78, 62, 50),
}
# Backgrounds are dull (max - min channel < 30): nothing in them looks like a palette colour.

_NATIVE = 64  # the size the scene is laid out in; other sizes scale positions, radii and speed
_SUPERSAMPLE = 4  # coverage samples per pixel, per axis


# --------------------------------------------------------------------------------------- the scene
@dataclasses.dataclass(frozen=True)
class Shape:
    """One solid shape. Lengths are in pixels of a 64x64 frame; ``direction`` is in radians (y points down)."""

    kind: str
    colour: str  # a name, for captions
    radius: float
    start: tuple[float, float]  # (x, y) centre at frame 0
    direction: float
    rgb: tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Background:
    """A plain background (``strength`` 0) or a linear gradient around ``rgb`` along ``angle``."""

    name: str
    rgb: tuple[int, int, int]
    strength: float  # +-strength is added to each channel across the frame
    angle: float

    @property
    def gradient(self) -> bool:
        return self.strength > 0


@dataclasses.dataclass(frozen=True)
class Scene:
    """Everything that ``seed`` decides: the background and the shapes, drawn in order."""

    seed: int
    background: Background
    shapes: tuple[Shape, ...]


WORLDS = ("palette", "broad")
"""The two scene distributions. ``"palette"``: the six :data:`PALETTE` colours on four dull backgrounds (what the
shipped toy SVD and the toy text-to-image model were trained on). ``"broad"``: shapes in any saturated colour, white
or black, of a wider range of sizes and possibly overlapping, on a background of any colour, dull or saturated, flat
or a gentle gradient: the simple pictures a learner draws. The physics is the same in both."""

_NAMED_HUES = ((0, "red"), (25, "orange"), (50, "yellow"), (80, "lime"), (120, "green"), (160, "teal"),
               (185, "cyan"), (220, "blue"), (265, "purple"), (295, "magenta"), (330, "pink"), (360, "red"))
_MIN_CONTRAST = 120.0  # RGB distance a broad scene keeps between any two of its colours (background included)


def colour_name(rgb) -> str:
    """A plain name for an RGB colour (0..255), as a caption would say it.

    >>> colour_name((230, 40, 40)), colour_name((250, 250, 250)), colour_name((20, 60, 30))
    ('red', 'white', 'dark green')
    """
    import colorsys

    h, s, v = colorsys.rgb_to_hsv(*(np.asarray(rgb, float) / 255.0))
    if s < 0.25 or v < 0.12:
        return next(name for limit, name in ((0.15, "black"), (0.35, "dark grey"), (0.6, "grey"),
                                             (0.85, "light grey"), (1.01, "white")) if v < limit)
    hue = min(_NAMED_HUES, key=lambda item: abs(item[0] - 360 * h))[1]
    return ("dark " if v < 0.45 else "pale " if s < 0.5 else "") + hue


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def _start_and_direction(rng: np.random.Generator, radius: float, shapes: list, overlap: bool):
    """A start inside the frame (away from the shapes already placed unless ``overlap``), and the direction straight
    out from the centre. The start is random, so the direction is too, but the first frame shows it: a tiny model can
    learn where things go instead of having to invent a direction. (A random angle is still drawn, and used only for
    a shape at the very centre.)"""
    for _ in range(20):
        x, y = rng.uniform(radius, _NATIVE - radius, size=2)
        if overlap or all(math.hypot(x - s.start[0], y - s.start[1]) > radius + s.radius + 2 for s in shapes):
            break
    angle = float(rng.uniform(0, 2 * math.pi))
    dx, dy = x - _NATIVE / 2, y - _NATIVE / 2
    return (float(x), float(y)), (math.atan2(dy, dx) if math.hypot(dx, dy) > 1.0 else angle)


def _palette_scene(seed: int) -> Scene:
    rng = np.random.default_rng([int(seed), 0x70E])
    name = list(_BACKGROUNDS)[rng.integers(len(_BACKGROUNDS))]
    strength = float(rng.uniform(12, 28)) if rng.random() < 0.5 else 0.0
    background = Background(name, _BACKGROUNDS[name], strength, float(rng.uniform(0, 2 * math.pi)))

    n = int(rng.integers(1, 4))
    colours = rng.choice(list(PALETTE), size=n, replace=False)
    shapes: list[Shape] = []
    for colour in colours:
        kind = SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))]
        radius = float(rng.uniform(6.0, 9.5))
        start, direction = _start_and_direction(rng, radius, shapes, overlap=False)
        shapes.append(Shape(str(kind), str(colour), radius, start, direction, PALETTE[str(colour)]))
    return Scene(int(seed), background, tuple(shapes))


def _broad_scene(seed: int) -> Scene:
    rng = np.random.default_rng([int(seed), 0xB20AD])
    if rng.random() < 0.5:  # dull
        rgb = _hsv(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.12, 0.8))
    else:  # saturated
        rgb = _hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.95))
    strength = float(rng.uniform(10, 35)) if rng.random() < 0.5 else 0.0
    background = Background(colour_name(rgb), rgb, strength, float(rng.uniform(0, 2 * math.pi)))
    # the background's colours run from rgb - strength to rgb + strength (clipped): keep shapes away from both ends
    ends = [np.clip(np.asarray(rgb, float) + d, 0, 255) for d in (-strength, strength)]

    n = int(rng.integers(1, 4))
    shapes: list[Shape] = []
    for _ in range(n):
        for _ in range(100):
            u = rng.random()
            if u < 0.1:
                colour = _hsv(rng.random(), rng.uniform(0, 0.08), rng.uniform(0.92, 1.0))  # white
            elif u < 0.2:
                colour = _hsv(rng.random(), rng.uniform(0, 0.3), rng.uniform(0.0, 0.1))  # black
            else:
                colour = _hsv(rng.random(), rng.uniform(0.65, 1.0), rng.uniform(0.7, 1.0))
            others = ends + [np.asarray(s.rgb, float) for s in shapes]
            if min(np.linalg.norm(np.asarray(colour, float) - o) for o in others) >= _MIN_CONTRAST:
                break
        else:
            break  # no colour stands out from this background and the shapes so far: fewer shapes
        kind = SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))]
        radius = float(rng.uniform(4.5, 11.0))
        start, direction = _start_and_direction(rng, radius, shapes, overlap=rng.random() < 0.15)
        shapes.append(Shape(str(kind), colour_name(colour), radius, start, direction, colour))
    return Scene(int(seed), background, tuple(shapes))


def describe_scene(seed: int, *, world: str = "palette") -> Scene:
    """The scene of ``seed`` in ``world`` (see :data:`WORLDS`): deterministic, independent of the motion knobs.

    >>> scene = describe_scene(1_000_000)
    >>> 1 <= len(scene.shapes) <= 3
    True
    >>> describe_scene(1_000_000, world="broad") == describe_scene(1_000_000, world="broad")
    True
    """
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    return _palette_scene(seed) if world == "palette" else _broad_scene(seed)


def caption(seed: int, *, world: str = "palette") -> str:
    """A one-line description of the scene, e.g. "a red circle and a blue square on a grey background".

    >>> caption(1_000_000).startswith("a ")
    True
    """
    scene = describe_scene(seed, world=world)
    things = [f"{_article(s.colour)} {s.colour} {s.kind}" for s in scene.shapes]
    listed = things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
    bg = scene.background
    return f"{listed} on {_article(bg.name)} {bg.name}{' gradient' if bg.gradient else ''} background"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# ------------------------------------------------------------------------------------- the physics
def pixels_per_frame(motion_bucket_id: float, fps: float, *, size: int = _NATIVE) -> float:
    """How far every shape moves between two frames: ``speed / fps``, speed proportional to the bucket.

    >>> pixels_per_frame(0, fps=7), pixels_per_frame(127.5, fps=6)
    (0.0, 2.0)
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    speed = MAX_SPEED * float(motion_bucket_id) / 255.0 * size / _NATIVE  # pixels per second
    return speed / float(fps)


def _bounce(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold free straight-line positions back into [lo, hi], as a ball bouncing between two walls."""
    span = hi - lo
    if span <= 0:
        return np.full_like(p, (lo + hi) / 2)
    u = np.mod(p - lo, 2 * span)
    return lo + np.where(u <= span, u, 2 * span - u)


def shape_positions(seed: int, motion_bucket_id: float = 127, fps: float = 7, num_frames: int = 14,
                    *, size: int = _NATIVE, world: str = "palette", gravity: float = 0.0) -> np.ndarray:
    """Ground-truth centres of every shape in every frame, in pixels, as ``(F, N, 2)`` with (x, y) last.

    ``gravity`` (pixels per second squared in a 64-pixel frame; 0, the world the toy was trained on, by default)
    pulls every shape down: ``y = y0 + vy t + gravity t^2 / 2``; a shape that reaches the floor (or the ceiling)
    stays there instead of bouncing, and keeps sliding sideways.

    >>> pos = shape_positions(5, motion_bucket_id=255, fps=6)
    >>> step = np.linalg.norm(pos[1] - pos[0], axis=-1)   # 4 px, unless a shape just bounced
    """
    scene = describe_scene(seed, world=world)
    scale = size / _NATIVE
    step = pixels_per_frame(motion_bucket_id, fps, size=size)
    t = np.arange(num_frames, dtype=np.float64)[:, None]  # (F, 1) frames elapsed
    out = np.empty((num_frames, len(scene.shapes), 2))  # (F, N, 2)
    for i, s in enumerate(scene.shapes):
        r = s.radius * scale
        for axis, (p0, v) in enumerate(zip(s.start, (math.cos(s.direction), math.sin(s.direction)))):
            free = p0 * scale + v * step * t[:, 0]
            if axis == 1 and gravity:
                fall = 0.5 * gravity * scale * (t[:, 0] / fps) ** 2
                out[:, i, axis] = np.clip(free + fall, r, size - r)
            else:
                out[:, i, axis] = _bounce(free, r, size - r)
    return out


# -------------------------------------------------------------------------------------- the pixels
def _inside(kind: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Which sample points, relative to the centre, fall inside a shape; every kind fits in radius ``r``."""
    if kind == "circle":
        return dx * dx + dy * dy <= r * r
    if kind == "square":
        return (np.abs(dx) <= 0.8 * r) & (np.abs(dy) <= 0.8 * r)
    if kind == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if kind == "triangle":  # equilateral, pointing up, circumradius r (its centroid is the centre)
        return (math.sqrt(3) * np.abs(dx) - dy <= r) & (dy <= r / 2)
    raise ValueError(f"unknown shape kind {kind!r}")


def _background(bg: Background, size: int) -> np.ndarray:
    """The static background as float RGB, (H, W, 3)."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5  # pixel centres, in [-0.5, 0.5]
    ramp = 2 * (xx * math.cos(bg.angle) + yy * math.sin(bg.angle))  # about -1 .. 1 across the frame
    return np.asarray(bg.rgb, np.float64) + (bg.strength * ramp)[..., None]


def render_frame(scene: Scene, centres: np.ndarray, *, size: int = _NATIVE,
                 background: np.ndarray | None = None) -> np.ndarray:
    """Draw ``scene`` with its shapes at ``centres`` ``(N, 2)``; returns float RGB ``(H, W, 3)`` in 0..255.

    Each shape's coverage of each pixel is the fraction of 4x4 sub-samples inside it (antialiasing).
    """
    img = _background(scene.background, size) if background is None else background.copy()
    n = _SUPERSAMPLE
    offsets = (np.arange(n) + 0.5) / n  # sub-sample positions inside a pixel
    scale = size / _NATIVE
    for s, (cx, cy) in zip(scene.shapes, centres):
        r = s.radius * scale
        reach = r + 1  # every kind fits in this box
        x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, size)
        y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, size)
        if x0 >= x1 or y0 >= y1:
            continue
        xs = (np.arange(x0, x1)[:, None] + offsets).ravel() - cx  # (w*n,)
        ys = (np.arange(y0, y1)[:, None] + offsets).ravel() - cy  # (h*n,)
        hit = _inside(s.kind, xs[None, :], ys[:, None], r)  # (h*n, w*n)
        cover = hit.reshape(y1 - y0, n, x1 - x0, n).mean(axis=(1, 3))[..., None]  # (h, w, 1)
        patch = img[y0:y1, x0:x1]
        img[y0:y1, x0:x1] = patch * (1 - cover) + np.asarray(s.rgb, np.float64) * cover
    return img


def render_clip(seed: int, motion_bucket_id: float = 127, fps: float = 7, num_frames: int = 14,
                *, size: int = 64, world: str = "palette", gravity: float = 0.0) -> np.ndarray:
    """Render the clip of scene ``seed`` at the speed that ``motion_bucket_id`` and ``fps`` mean.

    Args:
        seed: picks the scene (see :func:`describe_scene`); seeds >= ``HELD_OUT_SEED`` are never trained on.
        motion_bucket_id: 0..255, speed in pixels per second is ``MAX_SPEED * bucket / 255``.
        fps: frames per second of the clip; each frame advances ``1 / fps`` seconds.
        num_frames: frames to render, the first at time 0.
        size: frame height and width in pixels (the scene scales with it).
        world: which scene distribution ``seed`` draws from, one of :data:`WORLDS`.
        gravity: pixels per second squared pulling the shapes down (see :func:`shape_positions`); 0 by default,
            the world the toy SVD was trained on; notebook 07 teaches it this motion.

    Returns:
        uint8 array, (F, H, W, 3).

    >>> clip = render_clip(0, motion_bucket_id=0)
    >>> bool((clip == clip[0]).all())                     # bucket 0 is a still clip
    True
    """
    scene = describe_scene(seed, world=world)
    centres = shape_positions(seed, motion_bucket_id, fps, num_frames, size=size, world=world,
                              gravity=gravity)  # (F, N, 2)
    bg = _background(scene.background, size)
    frames = [render_frame(scene, c, size=size, background=bg) for c in centres]
    return np.clip(np.rint(np.stack(frames)), 0, 255).astype(np.uint8)  # (F, H, W, 3)


# ---------------------------------------------------------------------------- reading a clip back
@dataclasses.dataclass(frozen=True)
class Detection:
    """One blob of one palette colour: its centroid (x, y) in pixels and its area in pixels."""

    colour: str
    x: float
    y: float
    area: int


def _as_pixels(frame) -> np.ndarray:
    img = np.asarray(frame)
    return img.astype(np.float32) * (255.0 if img.dtype.kind == "f" and img.max() <= 1.0 else 1.0)


def _blobs(mask: np.ndarray, min_area: int) -> list[tuple[float, float, int]]:
    """Connected blobs (8-neighbours) of a boolean mask with at least ``min_area`` pixels: (x, y, area) each."""
    import cv2

    if not mask.any():
        return []
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    # centroids are of pixel indices; +0.5 puts them in the same frame as shape_positions
    return [(float(centroids[j][0] + 0.5), float(centroids[j][1] + 0.5), int(stats[j, cv2.CC_STAT_AREA]))
            for j in range(1, count) if stats[j, cv2.CC_STAT_AREA] >= min_area]


def detect_shapes(frame: np.ndarray, colours: dict | None = None, *, background: np.ndarray | None = None,
                  max_distance: float = 90.0, min_area: int = 6) -> list[Detection]:
    """Find the shapes in one frame from their colours.

    Each pixel is given the nearest of ``colours`` (name -> RGB, 0..255; default the :data:`PALETTE`) when it lies
    within ``max_distance`` of it, and, if ``background`` (the expected background, (H, W, 3)) is given, nearer to that
    colour than to the background at that pixel. Then each colour's connected blobs of at least ``min_area`` pixels
    are reported.

    Args:
        frame: uint8 or float RGB, (H, W, 3), 0..255 (floats in 0..1 are scaled up).

    >>> dets = detect_shapes(render_clip(7)[0])
    >>> sorted(d.colour for d in dets) == sorted(s.colour for s in describe_scene(7).shapes)
    True
    """
    img = _as_pixels(frame)
    colours = PALETTE if colours is None else colours
    names = list(colours)
    rgb = np.asarray([colours[c] for c in names], np.float32).reshape(-1, 3)  # (K, 3)
    dist = np.linalg.norm(img[:, :, None, :] - rgb, axis=-1)  # (H, W, K)
    nearest = dist.argmin(-1)
    close = dist.min(-1) <= max_distance
    if background is not None:
        close &= dist.min(-1) < np.linalg.norm(img - np.asarray(background, np.float32), axis=-1)
    return [Detection(name, x, y, area) for k, name in enumerate(names)
            for x, y, area in _blobs(close & (nearest == k), min_area)]


def scene_colours(seed: int, *, world: str = "palette") -> dict[str, tuple[int, int, int]]:
    """The colours of a scene's shapes, one key per shape (``"0:red"``, ``"1:white"``, ... in drawing order)."""
    return {f"{i}:{s.colour}": s.rgb for i, s in enumerate(describe_scene(seed, world=world).shapes)}


def render_background(seed: int, *, size: int = _NATIVE, world: str = "palette") -> np.ndarray:
    """The scene's background alone, float RGB (H, W, 3) in 0..255: what every pixel shows where no shape is."""
    return np.clip(_background(describe_scene(seed, world=world).background, size), 0, 255)


def _explain(img: np.ndarray, ends: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Explain each pixel as a blend of two of the scene's colours ``ends`` (each (3,) or (H, W, 3)), as antialiased
    edges are. Returns the distance to the nearest blend (H, W) and the index of the colour that dominates it (H, W)."""
    best = np.full(img.shape[:2], np.inf, np.float32)
    label = np.zeros(img.shape[:2], np.int64)
    for i, a in enumerate(ends):
        for j in range(i + 1, len(ends)):
            a_, b_ = np.broadcast_to(a, img.shape), np.broadcast_to(ends[j], img.shape)
            ab = b_ - a_
            t = np.clip(((img - a_) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-6), 0, 1)
            d = np.linalg.norm(img - (a_ + t[..., None] * ab), axis=-1)
            better = d < best - 2.0  # ties (within rounding) go to the pairs tried first, the background's
            best = np.where(better, d, best)
            label = np.where(better, np.where(t > 0.5, j, i), label)
    return best, label


def shapes_kept(frames: np.ndarray, colours: dict, background: np.ndarray, *, max_distance: float = 60.0,
                min_area: int = 6) -> np.ndarray:
    """Per frame (F,): True where each shape shows as exactly one blob of its colour, and nothing else shows.

    Every pixel is explained as the nearest blend of two of the scene's colours (the background at that pixel and the
    shapes' ``colours``), as antialiased edges are, and labelled with the colour that dominates the blend. A frame
    keeps its shapes when each colour's label forms exactly one blob of at least ``min_area`` pixels, and no blob of
    ``min_area`` pixels or more lies farther than ``max_distance`` from every such blend (a colour the scene does not
    have: a shape turning cyan, a stray smudge). This works on any picture whose colours
    are known, rendered by the world or drawn by other code.

    Args:
        frames: uint8 (F, H, W, 3) (or one frame, (H, W, 3)).
        colours: name -> RGB of each shape; two shapes of one colour are not told apart, give distinct colours.
        background: the expected background, (H, W, 3) or (3,), 0..255.

    >>> clip = render_clip(7, 255, 6)
    >>> bool(shapes_kept(clip, scene_colours(7), render_background(7)).all())
    True
    """
    frames = np.asarray(frames)
    frames = frames[None] if frames.ndim == 3 else frames
    bg = np.broadcast_to(np.asarray(background, np.float32), frames.shape[1:]).astype(np.float32)
    rgb = [np.asarray(c, np.float32) for c in colours.values()]
    kept = []
    for frame in frames:
        distance, label = _explain(_as_pixels(frame), [bg, *rgb])  # label (H, W): 0 background, k shape k
        one_each = all(len(_blobs(label == k + 1, min_area)) == 1 for k in range(len(rgb)))
        stray = _blobs(distance > max_distance, min_area)
        kept.append(one_each and not stray)
    return np.asarray(kept)
