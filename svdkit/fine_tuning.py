"""Fine-tune an SVD model on your own clips: LoRA adapters, the temporal layers only, or the whole UNet.

`finetune(pipe, clips, method=..., out_dir=...)` trains the UNet with SVD's own objective (`svdkit.objective`, the
loss the toy SVD was trained with) and writes everything to `out_dir`; `svdkit.load_pipeline(model,
finetuned=out_dir)` loads the base model with the fine-tune applied.

>>> import svdkit, tempfile
>>> from svdkit.toy import render_clip
>>> pipe = svdkit.load_pipeline("toy")
>>> clips = [render_clip(seed, 200, fps=7, num_frames=16) for seed in range(4)]   # uint8 (F, H, W, 3) each
>>> out = tempfile.mkdtemp()
>>> result = finetune(pipe, clips, method="lora", out_dir=out, steps=2, progress=False)
>>> sorted(p.name for p in result.out_dir.iterdir())
['adapter_config.json', 'adapter_model.safetensors', 'checkpoints', 'finetune.json', 'loss.json', 'loss.png']
>>> tuned = svdkit.load_pipeline("toy", finetuned=out)

**Without svdkit**, in a stock diffusers pipeline (a LoRA through peft)::

    from diffusers import StableVideoDiffusionPipeline
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors.torch import load_file
    pipe = StableVideoDiffusionPipeline.from_pretrained("stabilityai/stable-video-diffusion-img2vid-xt")
    inject_adapter_in_model(LoraConfig.from_pretrained("ft/lora"), pipe.unet)          # method="lora"
    set_peft_model_state_dict(pipe.unet, load_file("ft/lora/adapter_model.safetensors"))
    # pipe.unet.load_state_dict(load_file("ft/full/unet.safetensors"), strict=False)   # "temporal" or "full"

**The clips.** A folder of videos, a list of video paths, or a list of uint8 arrays (F, H, W, 3). Each is resized to
cover the model's resolution and centre-cropped to it; training windows of the model's frame count are drawn from
anywhere in a longer clip. Each clip's conditioning is measured, not assumed:

* ``fps``: the file's frame rate (or ``fps=``; arrays without it get 7, SVD's default);
* ``motion_bucket_id``: from the clip's measured motion by one rule, `motion_bucket` (or ``motion_bucket_id=``):
  the optical-flow speed of what moves (`svdkit.metrics.motion`, pixels per frame) times fps, as a share of the
  frame width per second, 255 at `FULL_SPEED` widths a second. It is the toy world's own physics read backwards
  (notebook 07 shows the calibration); for real footage treat it as a starting point and pass your own;
* noise augmentation: drawn afresh for each sample, ``ln(aug) ~ N(-3.0, 0.5^2)`` (median 0.05, 95% within
  0.02-0.13, around inference's 0.02); SVD's training code is not public: our choice, ``noise_aug`` changes it.

The frames' VAE latents and the CLIP embedding of every frame that can start a window are computed once and cached;
only the conditioning image is encoded at each step (its noise augmentation is new each time).

**The methods.** ``"lora"``: low-rank adapters (peft) on the attention projections ``to_q, to_k, to_v, to_out.0`` of
the spatial transformer blocks (``lora_temporal=True`` adds the temporal ones; ``target_modules`` replaces the
choice; ``rank``, ``lora_alpha``); the adapters start at zero, so step 0 is the base model. ``"temporal"``: only the
temporal layers (`TEMPORAL_PARTS`: temporal transformer blocks, temporal res-blocks and their mixing weights).
``"full"``: every UNet weight.

**Memory, and what each option costs.**

* ``gradient_checkpointing=True``: activations are recomputed in the backward pass instead of stored: much less
  activation memory (what dominates at 576x1024), about a third more time a step.
* ``mixed_precision`` ``"bf16"``/``"fp16"`` (``"auto"``: bf16 on a CUDA GPU that has it, else none): matrix
  products in half precision under autocast, weights and optimizer state stay fp32 (fp16 adds a gradient scaler);
  about half the activation memory and faster on tensor cores, at a small cost in precision. For ``"lora"`` the
  frozen base weights stay in the pipeline's dtype (fp16 on a GPU by default: half their memory); ``"temporal"`` and
  ``"full"`` hold the UNet in fp32.
* ``optimizer="adamw8bit"`` (needs bitsandbytes, CUDA only): Adam's two moments in 8 bits, a quarter of AdamW's
  8 bytes a trained weight; matters for ``"full"`` (1.5 B weights: 12 GB of AdamW state), little for LoRA.

**What is written to out_dir.** ``finetune.json``: the base model, the method, every option, each clip with its
measured conditioning, the library versions, and the status; the weights as safetensors:
``adapter_model.safetensors`` with peft's ``adapter_config.json`` (lora), or ``unet.safetensors`` with the trained
UNet tensors under their state-dict names (temporal, full); ``loss.json``, every step's loss; ``checkpoints/``,
written atomically every ``checkpoint_every`` steps and at the end; ``loss.png``, the curve; with
``validate_every``, ``validation/`` clips. ``resume=True`` continues from the last checkpoint after a crash or a
kill, and reaches the same weights as a run never interrupted (same seed, same machine).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from svdkit.files import atomic_write
from svdkit.objective import diffusion_loss, sample_sigma

__all__ = ["finetune", "FineTune", "METHODS", "load_finetuned", "motion_bucket", "FULL_SPEED", "TEMPORAL_PARTS",
           "prepare_clips", "validation_loss", "trainable_parameters"]

METHODS = ("lora", "temporal", "full")
TEMPORAL_PARTS = ("temporal_transformer_blocks", "temporal_res_block", "time_mixer", "time_pos_embed")
"""A UNet parameter is "temporal" when its name contains one of these."""

FULL_SPEED = 0.375
"""Frame widths per second of motion at motion_bucket_id 255: the toy world's MAX_SPEED (24 px/s) in its 64-px frame."""

VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".webp", ".mov", ".mkv", ".avi")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
OPTIMIZERS = ("adamw", "adamw8bit")
DEFAULT_FPS = 7.0
_SPATIAL_ATTENTION = r".*\.transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)"
_ALL_ATTENTION = r".*transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)"
_STAGE = "finetune"


@dataclasses.dataclass
class FineTune:
    """What `finetune` made: the folder, the method, the loss of every step [(step, loss)], the clips' conditioning."""

    out_dir: Path
    method: str
    losses: list
    clips: list

    def __repr__(self) -> str:
        last = f", last loss {self.losses[-1][1]:.4f}" if self.losses else ""
        return f"FineTune({self.method!r}, {len(self.losses)} steps, {len(self.clips)} clips{last}, in {self.out_dir})"


# ------------------------------------------------------------------------------------------------ conditioning
def motion_bucket(frames: np.ndarray, fps: float) -> float:
    """The motion_bucket_id of a clip by svdkit's one rule: ``255 * speed / FULL_SPEED``, clipped to 0..255, where
    speed is the measured motion (`svdkit.metrics.motion`, pixels per frame) times fps over the frame width.

    >>> from svdkit.toy import render_clip
    >>> 110 < motion_bucket(render_clip(1_000_000, 128, fps=7), fps=7) <= 128   # the world's bucket, about back
    True
    """
    from svdkit import metrics

    frames = np.asarray(frames)
    speed = metrics.motion(frames) * float(fps) / frames.shape[2]  # frame widths per second
    return float(np.clip(255.0 * speed / FULL_SPEED, 0.0, 255.0))


def _fit(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize uint8 frames (F, h, w, 3) to cover height x width, then centre-crop to it."""
    import cv2

    f, h, w = frames.shape[:3]
    if (h, w) == (height, width):
        return frames
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = np.stack([cv2.resize(np.ascontiguousarray(x), (nw, nh), interpolation=interp) for x in frames])
    y, x = (nh - height) // 2, (nw - width) // 2
    return resized[:, y: y + height, x: x + width]


def _read_clips(clips, num_frames: int) -> list[dict]:
    """[{name, frames uint8 (F, H, W, 3), fps or None}], checked: readable, (F, H, W, 3) uint8, F >= num_frames."""
    from svdkit.video import _read_frames

    if isinstance(clips, (str, Path)):
        folder = Path(clips)
        if not folder.is_dir():
            raise ValueError(f"clips must be a folder of videos, a list of paths or a list of uint8 arrays; "
                             f"{folder} is not a folder")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not paths:
            raise ValueError(f"clips: no videos ({', '.join(VIDEO_SUFFIXES)}) in the folder {folder}")
        clips = paths
    clips = list(clips)
    if not clips:
        raise ValueError("clips is empty: give a folder of videos, video paths or uint8 arrays (F, H, W, 3)")
    out = []
    for i, clip in enumerate(clips):
        if isinstance(clip, (str, Path)):
            path = Path(clip)
            try:
                frames, fps = _read_frames(path)
            except Exception as error:  # noqa: BLE001 - any reader failure is the same problem for the user
                raise ValueError(f"clips: cannot read {path} as a video ({type(error).__name__}: {error})") from None
            name = path.name
        else:
            frames, fps, name = np.asarray(clip), None, f"array {i}"
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"clips: {name} must be uint8 of shape (F, H, W, 3), got {frames.dtype} "
                                 f"{frames.shape}")
        if len(frames) < num_frames:
            raise ValueError(f"clips: {name} has {len(frames)} frames; the model makes {num_frames} frames, so every "
                             f"clip needs at least {num_frames}")
        out.append({"name": name, "frames": frames, "fps": fps})
    return out


def prepare_clips(pipe, clips, *, num_frames: int | None = None, height: int | None = None, width: int | None = None,
                  fps: float | None = None, motion_bucket_id: float | None = None) -> list[dict]:
    """Read, fit and measure `clips` as `finetune` does, without training: one dict a clip with its ``name``,
    ``frames`` uint8 (F, H, W, 3) at the model's resolution, ``fps``, ``motion`` (pixels per frame) and
    ``motion_bucket_id`` (measured by `motion_bucket`, unless given)."""
    num_frames, height, width = _shape(pipe, num_frames, height, width)
    out = []
    for clip in _read_clips(clips, num_frames):
        frames = _fit(clip["frames"], height, width)
        rate = float(fps or clip["fps"] or DEFAULT_FPS)
        from svdkit import metrics
        moved = metrics.motion(frames)
        bucket = motion_bucket(frames, rate) if motion_bucket_id is None else float(motion_bucket_id)
        out.append({"name": clip["name"], "frames": frames, "fps": rate, "motion": round(moved, 4),
                    "motion_bucket_id": round(bucket, 3), "num_frames": len(frames),
                    "sha1": hashlib.sha1(np.ascontiguousarray(clip["frames"]).tobytes()).hexdigest()})
    return out


def _shape(pipe, num_frames, height, width) -> tuple[int, int, int]:
    """The frame count and resolution to train at: given, else the model's (its svdkit spec, else its config)."""
    spec = getattr(getattr(pipe, "svdkit", None), "spec", None)
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    num_frames = int(num_frames or pipe.unet.config.num_frames)
    height = int(height or (spec.height if spec else side))
    width = int(width or (spec.width if spec else side))
    return num_frames, height, width


# ------------------------------------------------------------------------------------------------ the cache
@torch.no_grad()
def _cache(pipe, clips: list[dict], num_frames: int, device: str, chunk: int = 8) -> list[dict]:
    """For each clip: scaled VAE latents of every frame (T, 4, h, w) and the CLIP embedding (S, 1, D) and pixels
    (S, 3, H, W) of each of its S = T - num_frames + 1 possible window starts, on `device`."""
    from svdkit.sampling import clip_embedding, encode_latents
    from svdkit.video import to_model

    sf = pipe.vae.config.scaling_factor
    out = []
    for clip in clips:
        frames = clip["frames"]
        starts = len(frames) - num_frames + 1
        latents = torch.cat([encode_latents(pipe, to_model(frames[i: i + chunk]))
                             for i in range(0, len(frames), chunk)])  # (T, 4, h, w)
        embeddings = torch.cat([clip_embedding(pipe, frames[i]) for i in range(starts)])  # (S, 1, D)
        out.append({"latents": (latents * sf).to(device), "embeddings": embeddings.to(device),
                    "first": to_model(frames[:starts]).to(device),
                    "fps": clip["fps"], "bucket": clip["motion_bucket_id"]})
    return out


def _batch(cache: list[dict], windows: np.ndarray, num_frames: int):
    """Stack windows [(clip, start)] of the cache: latents (B, F, 4, h, w), embeddings (B, 1, D), first frames
    (B, 3, H, W), fps (B,), bucket (B,)."""
    rows = [cache[c] for c, _ in windows]
    latents = torch.stack([r["latents"][s: s + num_frames] for r, (_, s) in zip(rows, windows)])
    embeddings = torch.stack([r["embeddings"][s] for r, (_, s) in zip(rows, windows)])
    first = torch.stack([r["first"][s] for r, (_, s) in zip(rows, windows)])
    return latents, embeddings, first, np.array([r["fps"] for r in rows]), np.array([r["bucket"] for r in rows])


def _image_latents(pipe, first: torch.Tensor, aug: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Unscaled latents (B, 4, h, w) of the noise-augmented first frames, as the pipeline makes them."""
    from svdkit.sampling import encode_latents

    return encode_latents(pipe, first + aug.view(-1, 1, 1, 1) * noise).to(first.device)


# ------------------------------------------------------------------------------------------------ the methods
def trainable_parameters(unet, method: str) -> dict[str, torch.nn.Parameter]:
    """The parameters `method` trains, by name (for "lora", after the adapters are in place)."""
    named = dict(unet.named_parameters())
    if method == "full":
        return named
    if method == "temporal":
        return {n: p for n, p in named.items() if any(part in n for part in TEMPORAL_PARTS)}
    return {n: p for n, p in named.items() if "lora_" in n}


def _lora_config(rank: int, lora_alpha: float | None, target_modules, lora_temporal: bool):
    from peft import LoraConfig

    targets = target_modules if target_modules is not None else (_ALL_ATTENTION if lora_temporal
                                                                  else _SPATIAL_ATTENTION)
    return LoraConfig(r=rank, lora_alpha=lora_alpha or rank, target_modules=targets, lora_dropout=0.0,
                      init_lora_weights=True)


def load_finetuned(unet, out_dir) -> dict:
    """Apply the fine-tune in `out_dir` to `unet` (in place): the LoRA adapters, or the trained tensors.
    Returns the run's record (``finetune.json``). `svdkit.load_pipeline(model, finetuned=out_dir)` calls this."""
    from safetensors.torch import load_file

    out_dir = Path(out_dir)
    record_path = out_dir / "finetune.json"
    if not record_path.is_file():
        raise FileNotFoundError(f"finetuned: no finetune.json in {out_dir}; give the out_dir of svdkit.finetune")
    record = json.loads(record_path.read_text())
    if record.get("status") != "done":
        raise ValueError(f"finetuned: the run in {out_dir} has not finished (status {record.get('status')!r}); "
                         "continue it with finetune(..., resume=True)")
    if record["settings"]["method"] == "lora":
        from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

        inject_adapter_in_model(LoraConfig.from_pretrained(str(out_dir)), unet)
        weights = load_file(str(out_dir / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(unet, weights)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"finetuned: adapter weights that fit no layer: {result.unexpected_keys[:3]}")
        dtype = next(unet.parameters()).dtype
        for name, p in unet.named_parameters():
            if "lora_" in name:
                p.requires_grad_(False)
                p.data = p.data.to(dtype)
    else:
        weights = load_file(str(out_dir / "unet.safetensors"))
        missing = set(weights) - set(unet.state_dict())
        if missing:
            raise ValueError(f"finetuned: weights that are not in this UNet: {sorted(missing)[:3]}")
        unet.load_state_dict(weights, strict=False)
    return record


# ------------------------------------------------------------------------------------------------ the run
def _check_options(method, steps, batch_size, rank, checkpoint_every, lr, mixed_precision, optimizer, fps,
                   motion_bucket_id, cond_dropout) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("rank", rank),
                        ("checkpoint_every", checkpoint_every)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a number > 0; got {lr!r}")
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}; got {mixed_precision!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {optimizer!r}")
    if optimizer == "adamw8bit":
        import importlib.util
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError("optimizer='adamw8bit' needs bitsandbytes (pip install bitsandbytes, CUDA only); "
                             "or use optimizer='adamw'")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0 (or None: the file's); got {fps!r}")
    if motion_bucket_id is not None and not 0 <= motion_bucket_id <= 255:
        raise ValueError(f"motion_bucket_id must be in 0..255 (or None: measured); got {motion_bucket_id!r}")
    if not 0 <= cond_dropout < 1:
        raise ValueError(f"cond_dropout must be in [0, 1); got {cond_dropout!r}")


def _autocast_dtype(mixed_precision: str, device: str):
    if mixed_precision == "auto":
        return torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else None
    return {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}[mixed_precision]


def _write_json(path: Path, data) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def _base_name(pipe) -> str:
    info = getattr(pipe, "svdkit", None)
    return info.model if info is not None else str(getattr(pipe, "name_or_path", None) or "unknown")


def finetune(pipe, clips, *, method: str = "lora", out_dir, steps: int = 500, lr: float | None = None,
             batch_size: int = 1, rank: int = 16, lora_alpha: float | None = None, target_modules=None,
             lora_temporal: bool = False, num_frames: int | None = None, height: int | None = None,
             width: int | None = None, fps: float | None = None, motion_bucket_id: float | None = None,
             noise_aug: tuple[float, float] = (-3.0, 0.5), p_mean: float = 0.7, p_std: float = 1.6,
             cond_dropout: float = 0.1, temporal_weight: float = 0.0, warmup: int = 10,
             gradient_checkpointing: bool = False, mixed_precision: str = "auto", optimizer: str = "adamw",
             checkpoint_every: int = 100, resume: bool = False, seed: int = 0, progress: bool = True,
             callback=None, validate_every: int | None = None) -> FineTune:
    """Fine-tune `pipe`'s UNet on `clips` with SVD's objective; write weights, record, losses and checkpoints to
    `out_dir` (see the module docstring for every output).

    Args:
      pipe: a ``StableVideoDiffusionPipeline`` (``svdkit.load_pipeline(...)``, with memory='fast' on a GPU: no
        offload); its UNet is trained in place.
      clips: a folder of videos, a list of video paths, or a list of uint8 arrays (F, H, W, 3), each with at least
        the model's frame count.
      method: "lora", "temporal" or "full" (see `METHODS`).
      out_dir: the run's folder (created). One run a folder: an out_dir holding another run is refused.
      steps: optimizer steps. lr: learning rate (default 1e-4 for lora, 1e-5 for temporal and full), after a linear
        warm-up over `warmup` steps. batch_size: windows a step.
      rank, lora_alpha, target_modules, lora_temporal: LoRA's rank, scale (alpha / rank; default alpha = rank),
        the modules it adapts (names or one regular expression, as peft takes them) and whether the default
        choice includes the temporal attention.
      num_frames, height, width: the window; default the model's frame count and resolution.
      fps, motion_bucket_id: the same for every clip instead of the file's fps and the measured bucket.
      noise_aug: (mean, std) of ln(noise_aug_strength). p_mean, p_std: ln(sigma) ~ N(p_mean, p_std^2).
      cond_dropout: the share of samples trained without the image (keeps classifier-free guidance working).
      temporal_weight: extra weight on the frame-to-frame differences of the loss (the toy trains with 4).
      gradient_checkpointing, mixed_precision ("auto", "no", "fp16", "bf16"), optimizer ("adamw", "adamw8bit"):
        memory options (costs in the module docstring).
      checkpoint_every: steps between checkpoints. resume: continue the run in `out_dir` from its last checkpoint.
      seed: every random draw (LoRA's initial weights, windows, noise) follows from it.
      progress: a tqdm bar with the loss and time left. callback: ``callback(step, loss)`` after every step.
      validate_every: every this many steps, a clip from the first clip's first frame (its fps and bucket, 10 steps,
        seed 0) is written to ``out_dir/validation/step-NNNNNN.mp4``, to watch the fine-tune take hold.

    Returns:
      A `FineTune`. The pipeline's UNet holds the trained weights afterwards (LoRA adapters unmerged).
    """
    # 1. Check everything that is cheap to check, then the clips, then the folder: no work before all pass.
    _check_options(method, steps, batch_size, rank, checkpoint_every, lr, mixed_precision, optimizer, fps,
                   motion_bucket_id, cond_dropout)
    info = getattr(pipe, "svdkit", None)
    if info is not None and info.device.startswith("cuda") and info.memory != "fast":
        raise ValueError(f"pipe: fine-tuning keeps the whole pipeline on the GPU; load it with memory='fast' "
                         f"(its memory preset {info.memory!r} moves weights between CPU and GPU)")
    num_frames, height, width = _shape(pipe, num_frames, height, width)
    device = str(pipe.unet.device)
    lr = lr if lr is not None else (1e-4 if method == "lora" else 1e-5)
    settings = dict(method=method, steps=steps, lr=lr, batch_size=batch_size, num_frames=num_frames, height=height,
                    width=width, fps=fps, motion_bucket_id=motion_bucket_id, noise_aug=list(noise_aug),
                    p_mean=p_mean, p_std=p_std, cond_dropout=cond_dropout, temporal_weight=temporal_weight,
                    warmup=warmup, gradient_checkpointing=gradient_checkpointing, mixed_precision=mixed_precision,
                    optimizer=optimizer, checkpoint_every=checkpoint_every, seed=seed)
    if method == "lora":
        settings.update(rank=rank, lora_alpha=lora_alpha or rank, lora_temporal=lora_temporal,
                        target_modules=target_modules if target_modules is None or isinstance(target_modules, str)
                        else list(target_modules))
    prepared = prepare_clips(pipe, clips, num_frames=num_frames, height=height, width=width, fps=fps,
                             motion_bucket_id=motion_bucket_id)
    clip_rows = [{k: v for k, v in c.items() if k != "frames"} for c in prepared]
    out_dir = Path(out_dir)
    record_path = out_dir / "finetune.json"
    if record_path.is_file():
        old = json.loads(record_path.read_text())
        same = json.loads(json.dumps([settings, clip_rows])) == [old.get("settings"), old.get("clips")]
        if not same:
            changed = [k for k in settings if old.get("settings", {}).get(k) != json.loads(json.dumps(settings))[k]]
            what = f"settings {', '.join(changed)}" if changed else "clips"
            raise ValueError(f"out_dir {out_dir} holds another run (other {what}); use another out_dir")
        if not resume:
            raise ValueError(f"out_dir {out_dir} holds this run already: pass resume=True to continue it, or use "
                             "another out_dir")
    import diffusers
    import peft

    from svdkit.version import __version__
    record = {"base_model": _base_name(pipe), "settings": settings, "clips": clip_rows, "status": "training",
              "versions": {"svdkit": __version__, "diffusers": diffusers.__version__, "peft": peft.__version__,
                           "torch": torch.__version__}}
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(record_path, record)

    # 2. Cache the clips' latents and CLIP embeddings; windows are (clip, start) pairs.
    cache = _cache(pipe, prepared, num_frames, device)
    windows = np.array([(c, s) for c, clip in enumerate(prepared) for s in range(len(clip["frames"]) - num_frames + 1)])

    # 3. Choose what trains (in fp32), and build the optimizer.
    unet = pipe.unet
    unet.requires_grad_(False)
    autocast = _autocast_dtype(mixed_precision, device)
    torch.manual_seed(seed)
    if method == "lora":
        from peft import inject_adapter_in_model

        config = _lora_config(rank, lora_alpha, target_modules, lora_temporal)
        inject_adapter_in_model(config, unet)
    elif unet.dtype != torch.float32:
        unet.to(torch.float32)
    params = trainable_parameters(unet, method)
    for p in params.values():
        p.data = p.data.float()
        p.requires_grad_(True)
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    if optimizer == "adamw8bit":
        import bitsandbytes

        opt = bitsandbytes.optim.AdamW8bit(list(params.values()), lr=lr, weight_decay=0.01)
    else:
        opt = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=0.01)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast == torch.float16 and device.startswith("cuda"))

    # 4. Resume from the last checkpoint, if asked and there is one.
    from svdkit.toy.checkpoint import Run, load_optimizer, optimizer_tensors, rng_state, set_rng_state

    run = Run(out_dir / "checkpoints")
    rng = np.random.default_rng([seed, 19])
    gen = torch.Generator().manual_seed(seed + 19)
    start = 0
    found = run.latest(_STAGE) if resume else None
    if found is not None:
        tensors, state = found
        for name, p in params.items():
            p.data.copy_(tensors[f"model.{name}"])
        load_optimizer(opt, tensors, state["optimizer"])
        set_rng_state(rng, tensors, state["rng"], gen)
        start = int(state["step"])

    def save(step: int) -> None:
        opt_t, opt_s = optimizer_tensors(opt)
        rng_t, rng_s = rng_state(rng, gen)
        tensors = {**{f"model.{n}": p for n, p in params.items()}, **opt_t, **rng_t}
        run.save(_STAGE, step, tensors, {"optimizer": opt_s, "rng": rng_s})

    # 5. Train: every step the same draws, in the same order, from rng (windows, aug, dropout) and gen (noise).
    bar = range(start, steps)
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(bar, initial=start, total=steps, desc=f"finetune {method}", unit="step")
    for step in bar:
        picks = windows[rng.integers(len(windows), size=batch_size)]
        latents, embeddings, first, clip_fps, bucket = _batch(cache, picks, num_frames)
        aug = np.exp(rng.normal(noise_aug[0], noise_aug[1], batch_size))
        keep = torch.tensor(rng.random(batch_size) >= cond_dropout, dtype=torch.float32, device=device)
        added_time_ids = torch.tensor(np.stack([clip_fps - 1, bucket, aug], 1), dtype=torch.float32, device=device)
        aug_noise = torch.randn(first.shape, generator=gen).to(device)
        sigma = sample_sigma(batch_size, gen, p_mean=p_mean, p_std=p_std).to(device)
        noise = torch.randn(latents.shape, generator=gen).to(device)
        image_latents = _image_latents(pipe, first, torch.tensor(aug, dtype=torch.float32, device=device), aug_noise)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(1, warmup))
        with torch.autocast(device.split(":")[0], dtype=autocast or torch.float32, enabled=autocast is not None):
            loss = diffusion_loss(unet, latents, image_latents, embeddings, added_time_ids, sigma=sigma, noise=noise,
                                  keep=keep, temporal_weight=temporal_weight)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        scaler.step(opt)
        scaler.update()
        value = float(loss.detach())
        run.log(stage=_STAGE, step=step, loss=round(value, 6))
        if progress:
            bar.set_postfix(loss=f"{value:.4f}")
        if callback is not None:
            callback(step, value)
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            save(step + 1)
        if validate_every and (step + 1) % validate_every == 0:
            _validation_clip(pipe, prepared[0], out_dir / "validation" / f"step-{step + 1:06d}.mp4")
    unet.eval()
    for p in params.values():
        p.requires_grad_(False)
    if gradient_checkpointing:
        unet.disable_gradient_checkpointing()

    # 6. The weights, as safetensors, the loss log, and the record marked done.
    from safetensors.torch import save_file

    weights = {n: p.detach().to("cpu").contiguous() for n, p in params.items()}
    if method == "lora":
        from peft import get_peft_model_state_dict

        weights = {k: v.detach().to("cpu", torch.float32).contiguous()
                   for k, v in get_peft_model_state_dict(unet).items()}
        config.save_pretrained(str(out_dir))
        name = "adapter_model.safetensors"
    else:
        name = "unet.safetensors"
    with atomic_write(out_dir / name) as tmp:
        save_file(weights, str(tmp))
    losses = [list(row) for row in run.curve(_STAGE, "loss")]
    _write_json(out_dir / "loss.json", {"columns": ["step", "loss"], "rows": losses})
    _plot_losses(losses, out_dir / "loss.png")
    _write_json(record_path, {**record, "status": "done", "weights": name})
    return FineTune(out_dir=out_dir, method=method, losses=[tuple(r) for r in losses], clips=clip_rows)


def _validation_clip(pipe, clip: dict, path: Path) -> None:
    from svdkit.sampling import generate

    was_training = pipe.unet.training
    pipe.unet.eval()
    video = generate(pipe, clip["frames"][0], seed=0, num_inference_steps=10, fps=max(1, round(clip["fps"])),
                     motion_bucket_id=clip["motion_bucket_id"])
    pipe.unet.train(was_training)
    path.parent.mkdir(exist_ok=True)
    video.save(path)


def _plot_losses(rows: list, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3))
    ax = fig.add_subplot()
    ax.plot(*zip(*rows) if rows else ([], []))
    ax.set(xlabel="step", ylabel="loss", title="fine-tuning loss")
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


@torch.no_grad()
def validation_loss(pipe, clips, *, sigmas=(0.1, 0.5, 1.0, 2.0, 5.0, 20.0), noise_aug_strength: float = 0.02,
                    seed: int = 0, temporal_weight: float = 0.0, num_frames: int | None = None) -> float:
    """The objective on `clips` (already prepared: `prepare_clips`), without training: the mean loss over each
    clip's first window at each of `sigmas`, with fixed noise (`seed`) and the image kept. Lower is better; the
    same arguments give the same number, so it compares weights."""
    num_frames = int(num_frames or pipe.unet.config.num_frames)
    device = str(pipe.unet.device)
    cache = _cache(pipe, clips, num_frames, device)
    gen = torch.Generator().manual_seed(seed)
    was_training = pipe.unet.training
    pipe.unet.eval()
    total = []
    for c in range(len(clips)):
        latents, embeddings, first, clip_fps, bucket = _batch(cache, np.array([(c, 0)]), num_frames)
        aug = torch.full((1,), noise_aug_strength, device=device)
        image_latents = _image_latents(pipe, first, aug, torch.randn(first.shape, generator=gen).to(device))
        ids = torch.tensor([[clip_fps[0] - 1, bucket[0], noise_aug_strength]], dtype=torch.float32, device=device)
        for s in sigmas:
            noise = torch.randn(latents.shape, generator=gen).to(device)
            total.append(float(diffusion_loss(pipe.unet, latents, image_latents, embeddings, ids,
                                              sigma=torch.full((1,), float(s), device=device), noise=noise,
                                              keep=torch.ones(1, device=device), temporal_weight=temporal_weight)))
    pipe.unet.train(was_training)
    return float(np.mean(total))
