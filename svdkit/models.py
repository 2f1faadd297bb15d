"""Which SVD models svdkit knows, and how to load one in a single call.

>>> import svdkit
>>> pipe = svdkit.load_pipeline("toy")          # the bundled toy SVD, offline, CPU
>>> svdkit.MODELS["svd-xt"].num_frames
25

Real checkpoints are one argument away (`load_pipeline("svd-xt")`) on a machine with a GPU
and access to the Hugging Face hub, or with the weights already in the local cache.

To measure speed and memory without the download, build the real architecture with random weights
(`weights="random"`), or a CPU-sized stand-in with the same block layout (`weights="random-tiny"`):

>>> pipe = svdkit.load_pipeline("svd-xt", weights="random-tiny", device="cpu")
>>> pipe.svdkit.weights, pipe.random_weights
('random-tiny', True)
>>> str(pipe.svdkit).endswith("RANDOM WEIGHTS")
True

Every svdkit model, the text-to-image ones of `svdkit.text` too, loads through `load_weights`: safetensors only,
from a folder, the local cache, or the hub when it answers, with an error that says how to fetch what is missing.
Loading says nothing a learner need not read: no progress bars for weights already on disk, no library
warnings about arguments svdkit does not pass (`load_weights`), and not the note transformers prints when it
falls back to the PIL version of an image processor because torchvision is not installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import logging
import os
import re
import socket
import urllib.parse
import warnings
from pathlib import Path

import torch

__all__ = ["ModelSpec", "MODELS", "MEMORY_PRESETS", "load_pipeline", "load_weights", "resolve_device",
           "resolve_dtype"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One row of the model registry: where the weights live and what the model was trained for."""

    repo_id: str  # a hub id, or "toy" for the bundled folder
    num_frames: int  # frames the UNet was trained to produce
    height: int  # native resolution
    width: int
    fps: int = 7  # recommended conditioning fps (the UNet sees fps - 1)
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02
    num_inference_steps: int = 25
    min_guidance_scale: float = 1.0
    max_guidance_scale: float = 3.0
    note: str = ""


MODELS: dict[str, ModelSpec] = {
    "toy": ModelSpec(
        "toy", 14, 64, 64,
        note="bundled toy SVD trained on a synthetic world of moving shapes; runs on a CPU",
    ),
    "svd": ModelSpec(
        "stabilityai/stable-video-diffusion-img2vid", 14, 576, 1024,
        note="SVD, 14 frames",
    ),
    "svd-xt": ModelSpec(
        "stabilityai/stable-video-diffusion-img2vid-xt", 25, 576, 1024,
        note="SVD-XT, 25 frames",
    ),
    "svd-xt-1-1": ModelSpec(
        "stabilityai/stable-video-diffusion-img2vid-xt-1-1", 25, 576, 1024, fps=6,
        note="SVD-XT 1.1, 25 frames; trained at fixed fps 6 and motion bucket 127",
    ),
}

# What each memory preset does, and what it costs. `decode_chunk_size` is the default that
# `generate()` uses when the pipeline came from `load_pipeline(memory=...)`. The time and peak memory of each,
# for SVD-XT at 576x1024 on a GPU, are measured by benchmarks/gpu_presets.py.
MEMORY_PRESETS: dict[str, dict] = {
    "fast": dict(offload=False, forward_chunking=False, decode_chunk_size=None,
                 doc="everything stays on the accelerator; the fastest, and the most memory"),
    "balanced": dict(offload=True, forward_chunking=False, decode_chunk_size=8,
                     doc="model CPU offload (one model on the GPU at a time) and decoding 8 frames at a"
                         " time; a little slower (weights move each call)"),
    "low": dict(offload=True, forward_chunking=True, decode_chunk_size=2,
                doc="offload, UNet forward chunking and decoding 2 frames at a time; the least memory,"
                    " the slowest, and slight flicker between decode chunks"),
}


WEIGHTS = ("pretrained", "random", "random-tiny")


@dataclasses.dataclass
class LoadInfo:
    """What `load_pipeline` decided; kept on the pipeline as `pipe.svdkit`."""

    model: str
    spec: ModelSpec | None
    device: str
    dtype: str
    memory: str
    decode_chunk_size: int | None
    weights: str = "pretrained"
    compiled: bool = False
    finetuned: str | None = None

    def __repr__(self) -> str:
        shown = ("model", "weights", "device", "dtype", "memory", "decode_chunk_size", "compiled")
        text = f"LoadInfo({', '.join(f'{k}={getattr(self, k)!r}' for k in shown)})"
        return text + (" RANDOM WEIGHTS" if self.weights != "pretrained" else "")


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when available, else "mps", else "cpu"; any other device string is returned as it is."""
    if device != "auto":
        return str(device)
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}


def resolve_dtype(dtype, device: str) -> torch.dtype:
    """A torch.dtype from "auto" (fp16 on CUDA, fp32 elsewhere), "fp16", "bf16", "fp32" (or long names) or a dtype.

    >>> resolve_dtype("auto", "cpu"), resolve_dtype("bf16", "cuda")
    (torch.float32, torch.bfloat16)
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'auto', one of {sorted(_DTYPES)} or a torch.dtype, got {dtype!r}")
    return _DTYPES[dtype]


def _resolve_memory(memory: str, device: str) -> str:
    if memory == "auto":
        if not device.startswith("cuda"):
            return "fast"
        free, _ = torch.cuda.mem_get_info()
        gib = free / 2**30
        return "fast" if gib >= 40 else "balanced" if gib >= 16 else "low"
    if memory not in MEMORY_PRESETS:
        raise ValueError(f"memory must be one of 'auto', {', '.join(map(repr, MEMORY_PRESETS))}; got {memory!r}")
    return memory


def _hub_reachable(timeout: float = 3.0) -> bool:
    """True when the hub's host answers a TCP connection within `timeout` seconds."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urllib.parse.urlparse(endpoint).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _weights_missing(model: str, repo_id: str, reason: str, kind: str, offline: str) -> OSError:
    return OSError(
        f"The weights of {kind} {model!r} ({repo_id}) are not in the local Hugging Face cache, and {reason}.\n"
        f"Fetch them on a machine with network access:  hf download {repo_id}\n"
        f"(some Stability AI repos need you to accept their licence on the hub and log in first), then copy "
        f"the cache here and point HF_HOME at it, or pass a local diffusers folder as the model.\n"
        f"Offline, the bundled model always works: {offline}."
    )


class _NoTorchvisionNote(logging.Filter):
    """Drops transformers' note that an image processor falls back to its PIL version without torchvision.

    diffusers' SVD pipeline module imports `CLIPImageProcessor` when it is imported, before any model loads, and
    without torchvision transformers then hands out `CLIPImageProcessorPil` with that note (once per class).
    The PIL processor is the one these pipelines use (the toy's model_index.json names it), so the note only
    tells a learner about a library they need not install. Every other message passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed); falling back to" not in str(record.msg)


def _drop_torchvision_note() -> None:
    logger = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _NoTorchvisionNote) for f in logger.filters):
        logger.addFilter(_NoTorchvisionNote())


_drop_torchvision_note()


@contextlib.contextmanager
def _quiet_loading(bars: bool = False):
    """Loading without library chatter: diffusers' "Loading pipeline components" and transformers' "Loading
    weights" bars off (unless `bars`: a download keeps them), then as they were; and without the hub's warning
    that diffusers passes it a deprecated argument (`local_dir_use_symlinks`, on every hub id it loads).

    (transformers' switch also turns the hub's download bars on and off, so their state is put back too.)
    """
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as transformers_logging

    before = (diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled(),
              hub_utils.are_progress_bars_disabled())
    if not bars:
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The `local_dir_use_symlinks` argument is deprecated")
            yield
    finally:
        if before[0]:
            diffusers_logging.enable_progress_bar()
        if before[1]:
            transformers_logging.enable_progress_bar()
        (hub_utils.disable_progress_bars if before[2] else hub_utils.enable_progress_bars)()


def load_weights(cls, source: str, dtype: torch.dtype, *, model: str | None = None, kind: str = "model",
                 offline: str = "load_pipeline('toy')"):
    """`cls.from_pretrained(source)` from safetensors: a local folder, else the local cache, then the hub if it
    answers within seconds (asked for fp16, the cache and the hub give their fp16 variant).

    Args:
      cls: a diffusers pipeline class (`StableVideoDiffusionPipeline`, `AutoPipelineForText2Image`, ...).
      source: a local diffusers folder or a hub id.
      dtype: the weights' dtype.
      model, kind, offline: for the error when the weights are missing: the name the user asked for, what it
        is ("model", "text-to-image model"), and the call that works offline.

    Weights already on disk load without progress bars; a download shows the hub's. `HF_HUB_OFFLINE=1` is
    honoured: missing weights then fail at once, with an error that says how to fetch them.
    """
    kwargs = dict(dtype=dtype, use_safetensors=True)
    if Path(source).is_dir():
        with _quiet_loading():
            return cls.from_pretrained(source, **kwargs)
    if dtype == torch.float16:
        kwargs["variant"] = "fp16"
    try:
        with _quiet_loading():
            return cls.from_pretrained(source, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        name = source if model is None else model
        if _offline():
            raise _weights_missing(name, source, "HF_HUB_OFFLINE is set", kind, offline) from None
        if not _hub_reachable():
            raise _weights_missing(name, source, "the hub cannot be reached", kind, offline) from None
    with _quiet_loading(bars=True):
        return cls.from_pretrained(source, **kwargs)


def load_pipeline(model: str = "toy", *, device: str = "auto", dtype="auto", memory: str = "auto",
                  weights: str = "pretrained", compile: bool = False, finetuned=None):
    """Load an SVD model as a diffusers `StableVideoDiffusionPipeline`, ready to `generate()` with.

    Args:
      model: "toy" (bundled), "svd", "svd-xt", "svd-xt-1-1" (see `MODELS`), any other hub id, or a local
        diffusers folder.
      device: "auto" (cuda, then mps, then cpu), or a torch device string.
      dtype: "auto" (fp16 on CUDA, fp32 elsewhere), "fp16", "bf16", "fp32" or a torch.dtype.
      memory: "fast", "balanced", "low" (see `MEMORY_PRESETS`) or "auto" (by free GPU memory: >= 40 GiB fast,
        >= 16 GiB balanced, else low; always "fast" off CUDA, where there is nothing to offload).
      weights: "pretrained" (the checkpoint), or, for "svd", "svd-xt" and "svd-xt-1-1" only, "random": the real
        architecture with seeded random weights, built on `device` with no download (to measure speed and
        memory; the frames are noise), or "random-tiny": the same block layout with a few channels, for a CPU
        (its default size becomes 64x128).
      compile: compile the UNet's blocks and the VAE decoder with `torch.compile` (`svdkit.speed.compile_pipeline`);
        the first clip of each size pays the compilation.
      finetuned: the `out_dir` of a finished `svdkit.finetune` run of this model: its LoRA adapters or trained
        UNet weights are applied on top of the base weights (`svdkit.fine_tuning.load_finetuned`).

    Returns:
      The pipeline, with `pipe.svdkit` recording the model name, weights, device, dtype and memory preset;
      `pipe.random_weights` is True for random weights, and every `Video` made with it says so.

    Weights load from safetensors only (never pickle, never remote code). When they are neither cached nor
    reachable, this fails within seconds with an error that says how to fetch them. `HF_HUB_OFFLINE=1` is honoured.

    >>> pipe = load_pipeline("toy")
    >>> type(pipe).__name__
    'StableVideoDiffusionPipeline'
    """
    from diffusers import StableVideoDiffusionPipeline

    # 1. Resolve the name, device, dtype and memory preset (cheap checks first).
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(map(repr, WEIGHTS))}; got {weights!r}")
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    preset = _resolve_memory(memory, device)
    spec = MODELS.get(model)

    # 2. Get the weights: safetensors from a folder, the cache or the hub; or random ones, built on the device.
    if weights == "pretrained":
        pipe = load_weights(StableVideoDiffusionPipeline, _source(model, spec), torch_dtype, model=str(model))
    else:
        if spec is None or spec.repo_id == "toy":
            raise ValueError(f"weights={weights!r} builds an SVD architecture: model must be one of "
                             f"{[k for k, v in MODELS.items() if v.repo_id != 'toy']}, got {model!r}")
        from svdkit.speed import build_random_pipeline
        tiny = weights == "random-tiny"
        pipe = build_random_pipeline(spec.num_frames, size="tiny" if tiny else "real", device=device,
                                     dtype=torch_dtype)
        if tiny:
            spec = dataclasses.replace(spec, height=64, width=128, note=spec.note + "; tiny random stand-in")

    if finetuned is not None:  # 2b. A fine-tune on top of the base weights.
        from svdkit.fine_tuning import load_finetuned
        base = load_finetuned(pipe.unet, finetuned)["base_model"]
        if base != str(model):
            warnings.warn(f"finetuned: {finetuned} was trained on {base!r}, not on {model!r}", stacklevel=2)

    # 3. Place it according to the memory preset.
    cfg = MEMORY_PRESETS[preset]
    if cfg["offload"] and device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)
        torch.cuda.empty_cache()  # give back what the weights held before they moved to the CPU
    else:
        pipe.to(device)
    if cfg["forward_chunking"]:
        pipe.unet.enable_forward_chunking()
    if compile:
        from svdkit.speed import compile_pipeline
        compile_pipeline(pipe)
    pipe.set_progress_bar_config(disable=True)
    pipe.random_weights = weights != "pretrained"
    pipe.svdkit = LoadInfo(model=str(model), spec=spec, device=device, dtype=str(torch_dtype).replace("torch.", ""),
                           memory=preset, decode_chunk_size=cfg["decode_chunk_size"], weights=weights,
                           compiled=bool(compile), finetuned=None if finetuned is None else str(finetuned))
    return pipe


def _source(model: str, spec: ModelSpec | None) -> str:
    """Where the weights of `model` come from: the bundled toy folder, a hub id or a local folder."""
    if spec is not None and spec.repo_id == "toy":
        from svdkit.toy import MODEL_PATH
        if not (MODEL_PATH / "model_index.json").is_file():
            raise FileNotFoundError(f"The bundled toy model is missing from {MODEL_PATH}; "
                                    "rebuild it with `python -m svdkit.toy.train`.")
        return str(MODEL_PATH)
    source = spec.repo_id if spec is not None else str(model)
    if not Path(source).is_dir() and Path(source).suffix and Path(source).exists():
        raise ValueError(f"model must be a diffusers folder, a hub id or one of {list(MODELS)}; got file {source!r}")
    if spec is None and not Path(source).is_dir() and not re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        close = difflib.get_close_matches(source.lower(), MODELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"model {source!r} is not a known name{hint}, a local diffusers folder or a hub id "
                         f"('owner/name'); known names: {', '.join(MODELS)}")
    return source
