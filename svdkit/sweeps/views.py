"""Look at a sweep: clips side by side, a contact sheet, metric-versus-parameter plots, a two-point compare.

Everything here takes the table `svdkit.sweep()` returns (or `svdkit.sweeps.read_sweep(out_dir)`), and
returns plain things: frames as uint8 arrays (F, H, W, 3), a `Video`, a PIL image, a matplotlib `Figure`
(built without pyplot, so it works headless). The compare widget's callback, `compare()`, is a plain
function too.

>>> import tempfile
>>> import svdkit
>>> from svdkit.sweeps import views
>>> pipe = svdkit.load_pipeline("toy")
>>> table = svdkit.sweep(pipe, "data/example_0.png", {"motion_bucket_id": [0, 127, 255]}, seeds=[0, 1],
...                      num_inference_steps=4, out_dir=tempfile.mkdtemp(), progress=False)
>>> views.grid_video(table[table.seed == 0]).frames.shape   # the clips in sync, labelled; .show() plays it
(14, 142, 392, 3)
>>> views.contact_sheet(table).size                         # rows = points, columns = frames (a PIL image)
(1044, 394)
>>> fig = views.plot_metric(table, "motion_bucket_id", "motion")   # mean over seeds and their spread
>>> views.compare(table, 0, 255).frames.shape               # two points side by side, with their metrics
(14, 142, 260, 3)
>>> box = views.compare_widget(table, by="motion_bucket_id")  # pick two buckets; shows in a notebook  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from svdkit.video import Video

__all__ = ["point_label", "labelled_grid", "grid_video", "contact_sheet", "plot_metric", "compare",
           "Comparison", "compare_widget"]

# Short names for labels drawn on frames.
_SHORT = {"motion_bucket_id": "bucket", "noise_aug_strength": "aug", "num_inference_steps": "steps",
          "min_guidance_scale": "gmin", "max_guidance_scale": "gmax", "num_frames": "frames",
          "decode_chunk_size": "chunk", "cache_interval": "cache", "skip_uncond": "skip"}
_UNITS = {"motion": "px/frame", "frame_diff": "0-255 levels", "flicker": "0-255 levels", "psnr_first": "dB"}
_LABEL_COLUMNS = ("image", "motion_bucket_id", "fps", "noise_aug_strength", "num_inference_steps",
                  "min_guidance_scale", "max_guidance_scale", "guidance", "height", "width", "num_frames",
                  "decode_chunk_size", "skip_uncond", "cache_interval", "seed")


def _rows(table) -> list[dict]:
    if isinstance(table, dict):
        return [table]
    if hasattr(table, "to_dict"):
        if hasattr(table, "columns"):
            return table.to_dict("records")
        return [table.to_dict()]  # a single DataFrame row (a Series)
    return list(table)


def _frames(row: dict) -> np.ndarray:
    with np.load(row["frames"]) as data:
        return data["frames"]


def _varying(rows: list[dict]) -> list[str]:
    """The label-worthy columns whose value differs between rows."""
    out = []
    for c in _LABEL_COLUMNS:
        values = {repr(r.get(c)) for r in rows}
        if len(values) > 1:
            out.append(c)
    return out


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def point_label(row: dict, columns) -> str:
    """A short label for one point, e.g. "bucket 36 fps 7 seed 0", from the given columns."""
    return " ".join(f"{_SHORT.get(c, c)} {_fmt(row[c])}" if c != "image" else _fmt(row[c]) for c in columns)


def _labels(rows: list[dict], label) -> list[str]:
    if callable(label):
        return [str(label(r)) for r in rows]
    if label is None:
        columns = _varying(rows) or ["seed"]
    else:
        columns = [label] if isinstance(label, str) else list(label)
    return [point_label(r, columns) for r in rows]


def _resize(frames: np.ndarray, scale: float) -> np.ndarray:
    """Frames (F, H, W, 3) scaled: whole-pixel repeats when enlarging (crisp), area averaging when shrinking."""
    if scale == 1:
        return frames
    if scale > 1 and float(scale).is_integer():
        k = int(scale)
        return frames.repeat(k, axis=1).repeat(k, axis=2)
    import cv2
    h, w = max(1, round(frames.shape[1] * scale)), max(1, round(frames.shape[2] * scale))
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def _auto_scale(width: int) -> float:
    """Tiles about 128-512 pixels wide: small clips are enlarged, large ones shrunk."""
    if width < 128:
        return float(int(np.ceil(128 / width)))
    if width > 512:
        return 512 / width
    return 1.0


def _text(image, xy, text: str, fill=(255, 255, 255)):
    from PIL import ImageDraw, ImageFont
    ImageDraw.Draw(image).text(xy, text, fill=fill, font=ImageFont.load_default())


def labelled_grid(clips, labels, *, columns: int | None = None, scale: float | None = None, gap: int = 4,
                  label_height: int = 14) -> np.ndarray:
    """Clips side by side in a grid, in sync, each with its label above it: uint8 (F, H', W', 3).

    clips: a list of uint8 (F, H, W, 3) arrays of one size; shorter clips hold their last frame.
    columns: tiles per row (default: all in one row up to 8, else a near-square grid).
    scale: tile scale (default: enlarge small clips to about 128 pixels wide, shrink large ones to 512).
    """
    from PIL import Image

    clips = [np.asarray(c) for c in clips]
    if not clips:
        raise ValueError("labelled_grid: no clips")
    if len(labels) != len(clips):
        raise ValueError(f"labelled_grid: {len(clips)} clips but {len(labels)} labels")
    scale = _auto_scale(clips[0].shape[2]) if scale is None else scale
    clips = [_resize(c, scale) for c in clips]
    F = max(len(c) for c in clips)
    H, W = clips[0].shape[1:3]
    if any(c.shape[1:3] != (H, W) for c in clips):
        raise ValueError("labelled_grid: every clip must have the same frame size")
    n = len(clips)
    columns = columns or (n if n <= 8 else int(np.ceil(np.sqrt(n))))
    rows = int(np.ceil(n / columns))
    th, tw = H + label_height, W
    out = np.full((F, rows * th + (rows - 1) * gap, columns * tw + (columns - 1) * gap, 3), 24, np.uint8)
    for i, (clip, label) in enumerate(zip(clips, labels)):
        r, c = divmod(i, columns)
        y, x = r * (th + gap), c * (tw + gap)
        strip = Image.new("RGB", (tw, label_height), (24, 24, 24))
        _text(strip, (2, 1), label)
        out[:, y:y + label_height, x:x + tw] = np.asarray(strip)
        held = np.concatenate([clip, np.repeat(clip[-1:], F - len(clip), axis=0)]) if len(clip) < F else clip
        out[:, y + label_height:y + th, x:x + tw] = held
    return out


def grid_video(table, *, label=None, columns: int | None = None, fps: float | None = None, path=None,
               scale: float | None = None) -> Video:
    """The sweep's clips in one labelled video, in sync (a `Video`; `.show()` it, or give `path` to save it).

    table: sweep rows (a DataFrame, a list of rows, or one row). label: a column name, a list of them, or a
    function row -> str (default: the parameters that differ between the rows). fps: playback rate (default:
    the first row's conditioning fps).
    """
    rows = _rows(table)
    grid = labelled_grid([_frames(r) for r in rows], _labels(rows, label), columns=columns, scale=scale)
    video = Video(frames=grid, fps=float(fps or rows[0].get("fps", 7)),
                  params={"grid_of": [r.get("id") for r in rows]})
    if path is not None:
        from svdkit.video import write_video
        write_video(path, grid, video.fps)
    return video


def contact_sheet(table, *, label=None, every: int = 1, scale: float | None = None, path=None, gap: int = 2,
                  label_width: int = 120):
    """A still overview: one row per point, its frames left to right (every `every`-th), labelled on the left.

    Returns a PIL image; with `path`, also saves it (PNG).
    """
    from PIL import Image

    rows = _rows(table)
    labels = _labels(rows, label)
    clips = [_frames(r)[::every] for r in rows]
    scale = _auto_scale(clips[0].shape[2]) / 2 if scale is None else scale  # a sheet has many tiles: half size
    clips = [_resize(c, max(scale, 0.05)) for c in clips]
    H, W = clips[0].shape[1:3]
    F = max(len(c) for c in clips)
    sheet = Image.new("RGB", (label_width + F * (W + gap), len(clips) * (H + gap) - gap), (255, 255, 255))
    for r, (clip, text) in enumerate(zip(clips, labels)):
        y = r * (H + gap)
        _text(sheet, (3, y + max(0, H // 2 - 6)), text, fill=(0, 0, 0))
        for f, frame in enumerate(clip):
            sheet.paste(Image.fromarray(frame), (label_width + f * (W + gap), y))
    if path is not None:
        sheet.save(path)
    return sheet


def plot_metric(table, x: str, y: str = "motion", *, hue: str | None = None, logx: bool = False,
                truth=None, truth_label: str = "expected", title: str | None = None, ax=None):
    """A metric against a parameter: each point as a dot, the mean over the rest (seeds, images) as a line,
    and the spread (min to max) as a band.

    hue: a column drawn as separate lines (e.g. "fps"). truth: an optional function x -> value drawn dashed
    (e.g. the toy world's pixels per frame), labelled `truth_label`. Returns the matplotlib Figure.
    """
    import pandas as pd

    df = pd.DataFrame(_rows(table))
    for column in (x, y) + ((hue,) if hue else ()):
        if column not in df.columns:
            raise ValueError(f"plot_metric: no column {column!r} in the table; columns: {', '.join(df.columns)}")
    if ax is None:
        from matplotlib.figure import Figure
        fig = Figure(figsize=(6.4, 3.6), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    groups = [(None, df)] if hue is None else list(df.groupby(hue, sort=True))
    for key, part in groups:
        stats = part.groupby(x)[y].agg(["mean", "min", "max", "count"]).sort_index()
        name = y if key is None else f"{_SHORT.get(hue, hue)} {_fmt(key)}"
        line, = ax.plot(stats.index, stats["mean"], marker="o", label=f"{name} (mean)" if key is None else name)
        if (stats["count"] > 1).any():
            ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2, lw=0)
        ax.scatter(part[x], part[y], s=10, color=line.get_color(), alpha=0.6)
    if truth is not None:
        xs = np.linspace(df[x].min(), df[x].max(), 200)
        ax.plot(xs, [truth(v) for v in xs], "k--", lw=1, label=truth_label)
    if logx:
        ax.set_xscale("symlog" if (df[x] <= 0).any() else "log")
    ax.set_xlabel(x)
    ax.set_ylabel(f"{y} ({_UNITS[y]})" if y in _UNITS else y)
    n = df.groupby(x).size().max()
    ax.set_title(title or f"{y} vs {x} (line: mean of {n} per value; band: min to max)")
    ax.grid(alpha=0.3)
    if hue is not None or truth is not None:
        ax.legend(fontsize=8)
    return fig


@dataclasses.dataclass
class Comparison:
    """Two sweep points side by side: `frames` (F, H', W', 3) labelled, `table` their metrics, `text` a summary."""

    frames: np.ndarray
    table: object
    text: str
    fps: float


def _pick(rows: list[dict], by: str, value, seed) -> dict:
    matches = [r for r in rows if r[by] == value and (seed is None or r["seed"] == seed)]
    if not matches:
        raise ValueError(f"compare: no point with {by}={value!r}" + (f" and seed={seed}" if seed is not None else ""))
    return matches[0]


def compare(table, a, b, *, by: str = "motion_bucket_id", seed=None, metric: str = "motion") -> Comparison:
    """The points with `by` = a and `by` = b (same seed), side by side, with their metrics.

    This is the compare widget's callback: a plain function of its arguments.
    """
    import pandas as pd

    rows = _rows(table)
    seed = rows[0]["seed"] if seed is None else seed
    ra, rb = _pick(rows, by, a, seed), _pick(rows, by, b, seed)
    label = f"{_SHORT.get(by, by)} {{}}"
    frames = labelled_grid([_frames(ra), _frames(rb)], [label.format(_fmt(a)), label.format(_fmt(b))])
    from svdkit.metrics import METRICS
    names = [m for m in METRICS if m in ra]
    metrics = pd.DataFrame({label.format(_fmt(a)): [ra[m] for m in names],
                            label.format(_fmt(b)): [rb[m] for m in names]}, index=names)
    va, vb = ra.get(metric), rb.get(metric)
    if va is None or vb is None:
        text = f"{by} {_fmt(a)} vs {_fmt(b)}, seed {seed}"
    else:
        ratio = f"{vb / va:.2f}x" if va else "n/a (the first is still)"
        text = (f"{by} {_fmt(a)} vs {_fmt(b)}, seed {seed}: {metric} {va:.3g} vs {vb:.3g} "
                f"(the second is {ratio} the first)")
    return Comparison(frames=frames, table=metrics, text=text, fps=float(ra.get("fps", 7)))


def _show_comparison(box, **kwargs):
    from IPython.display import display

    box.result = compare(box.table, **kwargs, by=box.by)
    print(box.result.text)
    Video(frames=box.result.frames, fps=box.result.fps).show(codec="gif")
    display(box.result.table)


def compare_widget(table, *, by: str = "motion_bucket_id", height: str = "420px"):
    """Pick two values of `by` (and a seed) and see their clips side by side with their metrics.

    Returns an ipywidgets VBox; `box.controls` are its sliders, `box.result` the `Comparison` now shown.
    Sliders update on release (`continuous_update=False`); the output area has a fixed height.
    """
    import ipywidgets as w

    rows = _rows(table)
    values = sorted({r[by] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    if len(values) < 2:
        raise ValueError(f"compare_widget: the table has a single {by}; nothing to compare")
    layout = w.Layout(width="420px")
    style = {"description_width": "90px"}
    controls = {
        "a": w.SelectionSlider(options=values, value=values[0], description=f"{_SHORT.get(by, by)} A",
                               continuous_update=False, layout=layout, style=style),
        "b": w.SelectionSlider(options=values, value=values[-1], description=f"{_SHORT.get(by, by)} B",
                               continuous_update=False, layout=layout, style=style),
        "seed": w.Dropdown(options=seeds, value=seeds[0], description="seed", layout=w.Layout(width="200px"),
                           style=style),
    }
    box = w.VBox([])
    box.add_class("svdkit-compare")  # lets a browser test find it
    box.table, box.by, box.controls = rows, by, controls
    out = w.interactive_output(functools.partial(_show_comparison, box), controls)
    out.layout = w.Layout(height=height, overflow="auto")
    box.children = (w.HBox([controls["a"], controls["b"]]), controls["seed"], out)
    return box
