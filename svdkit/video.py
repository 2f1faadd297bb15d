"""`Video`, the result of `generate()`, reading and writing clips, and the two pixel layouts.

Frames are uint8 arrays laid out (F, H, W, 3). Video files go through mediapy; when no `ffmpeg` is on the
PATH, the binary bundled with imageio-ffmpeg is used. The models see pixels the other way round: floats
(..., 3, H, W) in [-1, 1]. `to_model` and `to_uint8` convert between the two, and nothing else does.

>>> import numpy as np, svdkit
>>> clip = svdkit.Video(frames=np.zeros((14, 64, 64, 3), np.uint8), fps=7)
>>> path = clip.save("black.mp4")               # also writes black.json, the parameter record
>>> svdkit.read_video(path).frames.shape
(14, 64, 64, 3)
>>> from svdkit.video import to_model, to_uint8
>>> pixels = to_model(clip.frames)                 # (F, 3, H, W) floats in [-1, 1]
>>> tuple(pixels.shape), float(pixels.min()), bool((to_uint8(pixels) == clip.frames).all())
((14, 3, 64, 64), -1.0, True)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svdkit.files import atomic_write

__all__ = ["Video", "read_video", "write_video", "to_model", "to_uint8"]


@functools.cache
def _mediapy():
    """Import mediapy, point it at an ffmpeg, and adapt it to ffmpeg >= 7.

    mediapy 1.2.7 passes `-vsync`, an option that newer ffmpeg builds (such as the one imageio-ffmpeg ships)
    no longer accept; `-fps_mode` (ffmpeg >= 5.1) means the same, so the arguments are translated.
    """
    import mediapy

    if shutil.which("ffmpeg") is None:
        import imageio_ffmpeg
        mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
    exe = shutil.which(mediapy._config.ffmpeg_name_or_path) or str(mediapy._config.ffmpeg_name_or_path)
    out = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout
    match = re.search(r"version n?(\d+)\.(\d+)", out)
    if match and (int(match[1]), int(match[2])) >= (5, 1) and not getattr(mediapy._run_ffmpeg, "_svdkit", False):
        original = mediapy._run_ffmpeg
        vsync = {"0": "passthrough", "1": "cfr", "2": "vfr", "-1": "auto"}

        def run_ffmpeg(args, *a, **kw):
            args = list(args)
            for i, arg in enumerate(args[:-1]):
                if arg == "-vsync":
                    args[i], args[i + 1] = "-fps_mode", vsync.get(args[i + 1], args[i + 1])
            return original(args, *a, **kw)

        run_ffmpeg._svdkit = True
        mediapy._run_ffmpeg = run_ffmpeg
    return mediapy


def write_video(path, frames: np.ndarray, fps: float) -> Path:
    """Write uint8 frames (F, H, W, 3) to mp4, gif or webp, atomically (temporary file, then rename)."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 of shape (F, H, W, 3), got {frames.dtype} {frames.shape}")
    suffix = path.suffix.lower()
    if suffix not in {".mp4", ".gif", ".webp"}:
        raise ValueError(f"path must end in .mp4, .gif or .webp, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        if suffix == ".webp":
            from PIL import Image
            images = [Image.fromarray(f) for f in frames]
            images[0].save(tmp, format="WEBP", save_all=True, append_images=images[1:],
                           duration=round(1000 / fps), loop=0, lossless=True)
        else:
            codec = "gif" if suffix == ".gif" else "h264"
            kwargs = {} if codec == "gif" else {"crf": 12}
            _mediapy().write_video(tmp, frames, fps=fps, codec=codec, **kwargs)
    return path


def _read_frames(path: Path) -> tuple[np.ndarray, float]:
    if path.suffix.lower() == ".webp":
        from PIL import Image, ImageSequence
        with Image.open(path) as im:
            duration = im.info.get("duration", 100) or 100
            frames = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
        return frames, 1000 / duration
    video = _mediapy().read_video(path)
    return np.asarray(video)[..., :3], float(video.metadata.fps)


def read_video(path) -> Video:
    """Read a clip written by `Video.save` (or any mp4/gif/webp), with its JSON record when one is beside it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No video at {path}")
    frames, fps = _read_frames(path)
    sidecar = path.with_suffix(".json")
    params = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    segments = params.get("segments")
    return Video(frames=frames, fps=params.get("playback_fps", fps), params=params,
                 segments=[tuple(s) for s in segments] if segments else None)


@dataclasses.dataclass
class Video:
    """A generated clip.

    Attributes:
      frames: uint8 array (F, H, W, 3).
      fps: playback rate in frames per second (by default, the fps the model was conditioned on).
      params: the full record: model, seed, every generation parameter, and the svdkit, diffusers and torch
        versions.
      trace: the captured denoising trajectory (`Trace`) when generated with `capture=True`, else None.
      segments: for a clip joined from several (`svdkit.extend`), each segment's frames as [start, stop)
        pairs of frame indices, in order; else None.
    """

    frames: np.ndarray
    fps: float = 7
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    trace: Any = None
    segments: list[tuple[int, int]] | None = None

    def __repr__(self) -> str:
        f, h, w, _ = self.frames.shape
        note = " RANDOM WEIGHTS" if self.params.get("random_weights") else ""
        model = self.params.get("model", "?")
        return f"Video({f} frames, {w}x{h}, fps={self.fps}, model={model!r}{note}, trace={self.trace is not None})"

    def show(self, **kwargs):
        """Show the clip in a notebook (mediapy), looping."""
        return _mediapy().show_video(self.frames, fps=self.fps, **kwargs)

    def save(self, path, *, loop: str | None = None) -> Path:
        """Write the clip (.mp4, .gif or .webp) and its parameter record beside it as JSON (same stem).

        loop: None writes the frames as they are; "pingpong" or "crossfade" writes `self.looped(loop)`.
        """
        clip = self if loop is None else self.looped(loop)
        path = write_video(path, clip.frames, clip.fps)
        with atomic_write(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps({**clip.params, "playback_fps": clip.fps}, indent=2, default=str))
        return path

    def looped(self, method: str = "crossfade", *, fade: int | None = None) -> Video:
        """The clip made to play seamlessly in a loop, cheaply, from its frames alone (no model).

        method: "pingpong" plays the frames forward, then backward (2F - 2 frames; every step, the wrap included,
        is one the clip already has, but the motion reverses); "crossfade" fades the last `fade` frames into the
        first ones (F - fade frames; the motion keeps its direction, the faded frames show both pictures at once).
        fade: how many frames are faded, 1 to F // 2 (default F // 4, at least 1).

        >>> import numpy as np
        >>> clip = Video(frames=np.arange(6, dtype=np.uint8).repeat(3).reshape(6, 1, 1, 3) * 40)
        >>> clip.looped("pingpong").frames[:, 0, 0, 0].tolist()
        [0, 40, 80, 120, 160, 200, 160, 120, 80, 40]
        >>> clip.looped("crossfade", fade=2).frames[:, 0, 0, 0].tolist()   # 160 -> 0 and 200 -> 40, faded
        [107, 93, 80, 120]
        """
        frames = self.frames
        n = len(frames)
        if method == "pingpong":
            out = np.concatenate([frames, frames[-2:0:-1]]) if n > 2 else frames.copy()
        elif method == "crossfade":
            fade = max(1, n // 4) if fade is None else fade
            if not isinstance(fade, (int, np.integer)) or not 1 <= fade <= n // 2:
                raise ValueError(f"fade must be an integer in 1-{n // 2} (half the {n} frames), got {fade!r}")
            a = (np.arange(1, fade + 1) / (fade + 1)).reshape(-1, 1, 1, 1)  # weight of the head, rising
            head = (1 - a) * frames[n - fade:].astype(np.float64) + a * frames[:fade].astype(np.float64)
            out = np.concatenate([head.round().astype(np.uint8), frames[fade:n - fade]])
        else:
            raise ValueError(f"loop must be 'pingpong' or 'crossfade', got {method!r}")
        # a joined clip's segment boundaries do not hold for the looped frames: the record keeps no "segments"
        params = {k: v for k, v in self.params.items() if k != "segments"}
        return Video(frames=out, fps=self.fps, params={**params, "loop": method})


# ----------------------------------------------------------------------------------------------------
# Pixels as the models see them


def to_model(frames) -> torch.Tensor:
    """uint8 frames (..., H, W, 3) -> float32 pixels (..., 3, H, W) in [-1, 1], the VAE's range."""
    x = torch.from_numpy(np.require(frames, requirements=["C", "W"])).float() / 127.5 - 1.0  # read-only: copied
    return x.movedim(-1, -3)


def to_uint8(pixels) -> np.ndarray:
    """Pixels in [-1, 1], (..., 3, H, W), to uint8 frames (..., H, W, 3): clamped, then rounded."""
    x = torch.as_tensor(pixels).detach().to("cpu", torch.float32)
    x = ((x + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.movedim(-3, -1).numpy()
