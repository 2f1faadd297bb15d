"""Command line: `python -m svdkit generate IMAGE -o clip.mp4`; `python -m svdkit --help` lists the commands."""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from pathlib import Path

TOY_CELL_TIMEOUT = 600  # seconds one notebook cell may run in the main job on the bundled toy
VIDEO_SUFFIXES = (".mp4", ".gif", ".webp")  # what `Video.save` writes

# generate's pipeline options: (type, what it does); their defaults come from the model registry.
GENERATE_OPTIONS = {
    "motion_bucket_id": (int, "how much motion to ask for, 0-255"),
    "fps": (int, "frames per second the model is conditioned on (it sees fps - 1); also the clip's playback rate"),
    "noise_aug_strength": (float, "noise added to the image before it is encoded; more lets the clip stray from it"),
    "num_inference_steps": (int, "denoising steps"),
    "num_frames": (int, "frames in the clip"),
    "height": (int, "clip height in pixels, a multiple of the model's size_multiple (64 for SVD)"),
    "width": (int, "clip width in pixels, a multiple of the model's size_multiple (64 for SVD)"),
    "min_guidance_scale": (float, "classifier-free guidance scale of the first frame"),
    "max_guidance_scale": (float, "classifier-free guidance scale of the last frame"),
    "decode_chunk_size": (int, "frames the VAE decodes at once (fewer: less memory, a little flicker)"),
}


def _model_default(name: str) -> str:
    """The default of a generate option, from the registry: "7" or "14 for toy, svd; 25 for svd-xt, svd-xt-1-1"."""
    from svdkit.models import MEMORY_PRESETS, MODELS

    if name == "decode_chunk_size":
        return "the memory preset's: " + ", ".join(f"{cfg['decode_chunk_size'] or 'all frames'} with {preset}"
                                                   for preset, cfg in MEMORY_PRESETS.items())
    by_value: dict = {}
    for model, spec in MODELS.items():
        by_value.setdefault(getattr(spec, name), []).append(model)
    if len(by_value) == 1:
        return f"the model's, {next(iter(by_value))}"
    return "the model's: " + "; ".join(f"{value} for {', '.join(models)}" for value, models in by_value.items())


def _check_output(output) -> Path:
    """Refuse an output path `Video.save` cannot write, before any model work."""
    path = Path(output)
    if path.is_dir():
        raise ValueError(f"-o/--output: {str(path)!r} is a folder; name a file in it, e.g. {str(path / 'clip.mp4')!r}")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"-o/--output must end in {', '.join(VIDEO_SUFFIXES)}; got {str(path)!r}")
    folder = next(p for p in path.absolute().parents if p.exists())  # the nearest part that exists
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"-o/--output: cannot write {str(path)!r}: {str(folder)!r} is not a writable folder")
    return path


def _check_clip_options(args, num_frames: int) -> None:
    """Refuse --loop, --end-image, --segments and --overlap together in ways the library refuses, before loading."""
    if args.loop and args.end_image is not None:
        raise ValueError("--loop and --end-image cannot be used together: --loop already means --end-image IMAGE "
                         "(give one of them)")
    if args.segments > 1 and (args.loop or args.end_image is not None):
        given = "--loop" if args.loop else "--end-image"
        raise ValueError(f"{given} works on one clip only: svdkit.extend (--segments {args.segments}) takes neither "
                         "--loop nor --end-image; use --segments 1, or close the loop with --save-loop")
    if not 0 <= args.overlap < num_frames:
        raise ValueError(f"--overlap must be an integer in 0-{num_frames - 1} (less than num_frames={num_frames}), "
                         f"got {args.overlap}")


def _load_end_image(path, image):
    """--end-image as a picture of the input image's size, or a clear error naming the option."""
    import svdkit

    try:
        end = svdkit.load_image(path)
    except (FileNotFoundError, ValueError) as e:
        raise type(e)(f"--end-image: {str(e).removeprefix('image: ')}") from None
    if end.size != image.size:
        raise ValueError(f"--end-image must have the size of the image, {image.width}x{image.height}, got "
                         f"{end.width}x{end.height}: resize it first")
    return end


def _generate(args) -> int:
    import svdkit

    # Check the output path, the image and every parameter before loading a model.
    _check_output(args.output)
    params = {k: getattr(args, k) for k in svdkit.sampling.GENERATE_PARAMS if getattr(args, k, None) is not None}
    p = svdkit.sampling.check_params(None, params, args.guidance, spec=svdkit.MODELS.get(args.model))
    _check_clip_options(args, p["num_frames"])
    image = svdkit.load_image(args.image)
    end_image = _load_end_image(args.end_image, image) if args.end_image is not None else None
    pipe = svdkit.load_pipeline(args.model, device=args.device, memory=args.memory)
    with warnings.catch_warnings():  # the checks above gave svdkit's warnings (bucket, frames, image mode) once
        warnings.filterwarnings("ignore", module=re.escape(__name__))
        if args.segments > 1:
            video = svdkit.extend(pipe, args.image, args.segments, overlap=args.overlap, method=args.extend_method,
                                  seed=args.seed, guidance=args.guidance, progress=True, **params)
        else:
            video = svdkit.generate(pipe, args.image, seed=args.seed, guidance=args.guidance, progress=True,
                                    loop=args.loop, end_image=end_image, **params)
    clip = video.looped(args.save_loop) if args.save_loop else video  # as video.save(path, loop=...) writes it
    path = clip.save(args.output)
    print(f"wrote {path} and {path.with_suffix('.json')} ({len(clip.frames)} frames, {clip.params['seconds']:.2f} s)")
    return 0


def _notebooks(args) -> int:
    """Execute every notebook headless on the chosen model: executed .ipynb, HTML and the notebook's own
    outputs (videos, summary.json) land in OUT/<notebook name>/."""
    import ast
    import json
    import time
    from pathlib import Path

    import nbformat
    from nbconvert import HTMLExporter

    from svdkit.headless import run_notebook

    # A cell time limit: by default TOY_CELL_TIMEOUT on the bundled toy (its slowest cell takes about 2 minutes),
    # none on real models, whose sweeps may run for hours; --cell-timeout 0: no limit.
    limit = args.cell_timeout if args.cell_timeout is not None else (TOY_CELL_TIMEOUT if args.model == "toy" else 0)
    if not (limit == 0 or 0 < limit < float("inf")):
        raise ValueError(f"--cell-timeout must be >= 0 seconds (0: no limit); got {args.cell_timeout}")
    cell_timeout = limit or None
    extra = {}
    for name, value in args.parameter or ():
        if name in ("model", "device", "out_dir"):
            raise ValueError(f"-p {name}: set it with --{name.replace('_', '-')} (out_dir: with -o), not -p")
        try:
            extra[name] = ast.literal_eval(value)  # 25 -> int, 0.5 -> float, [0, 1] -> list, None, True
        except (ValueError, SyntaxError):
            extra[name] = value                    # anything else stays a string
    folder = Path(args.folder)
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        paths = [p for p in paths if any(key in p.name for key in args.only)]
    if not paths:
        raise FileNotFoundError(f"no notebooks matching NN_*.ipynb in {folder}")
    out = Path(args.output)
    failed = []
    for path in paths:
        dest = out / path.stem
        dest.mkdir(parents=True, exist_ok=True)
        params = {**extra, "model": args.model, "device": args.device, "out_dir": str(dest.resolve())}
        started = time.perf_counter()
        print(f"running {path.name} ...", flush=True)
        try:
            run_notebook(path, dest / path.name, parameters=params, cell_timeout=cell_timeout, progress_bar=False)
        except Exception as e:  # keep going: report every failing notebook at the end
            failed.append(path.name)
            print(f"  FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
        executed = dest / path.name
        if executed.is_file():
            html, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
            (dest / path.with_suffix(".html").name).write_text(html)
        summary = dest / "summary.json"
        keys = ", ".join(json.loads(summary.read_text())) if summary.is_file() else "no summary.json"
        print(f"  {time.perf_counter() - started:.1f} s -> {dest} ({keys})", flush=True)
    print(f"{len(paths) - len(failed)} of {len(paths)} notebooks ran; outputs in {out}/")
    return 1 if failed else 0


def main(argv=None) -> int:
    from svdkit.chain import EXTEND_METHODS
    from svdkit.cli_args import count

    parser = argparse.ArgumentParser(prog="python -m svdkit", description="svdkit: explore Stable Video Diffusion.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = "toy, svd, svd-xt, svd-xt-1-1, a hub id (owner/name) or a local diffusers folder (default toy)"
    device = "auto (cuda, then mps, then cpu) or a torch device such as cpu or cuda:1 (default auto)"
    g = sub.add_parser("generate", help="generate a clip from one image")
    g.add_argument("image", help="input image (png, jpg, ...)")
    g.add_argument("--model", default="toy", help=models)
    g.add_argument("-o", "--output", default="clip.mp4",
                   help="output .mp4, .gif or .webp; its parameter record goes beside it as .json (default clip.mp4)")
    g.add_argument("--seed", type=int, default=0, help="seed of the noise: the same seed, the same clip (default 0)")
    g.add_argument("--device", default="auto", help=device)
    g.add_argument("--memory", default="auto", choices=["auto", "fast", "balanced", "low"],
                   help="memory preset: fast, balanced (model offload) or low (offload, chunking); auto picks one "
                        "by free GPU memory (default auto)")
    g.add_argument("--guidance", default="linear", choices=["linear", "constant", "triangle"],
                   help="per-frame guidance: linear (the default: min on the first frame rising to max on the "
                        "last), constant (max on every frame) or triangle (max in the middle)")
    for name, (typ, what) in GENERATE_OPTIONS.items():
        g.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None,
                       help=f"{what} (default: {_model_default(name)})")
    g.add_argument("--loop", action="store_true",
                   help="steer the last frames back to the image while denoising, so the clip plays in a loop "
                        "without reversing; not with --end-image or --segments > 1 (default off)")
    g.add_argument("--end-image", metavar="PATH", default=None,
                   help="a picture of the image's size for the clip to end on; not with --loop or --segments > 1 "
                        "(default none)")
    g.add_argument("--segments", type=count(1), default=1, metavar="N",
                   help="chain N clips, each from the end of the one before (svdkit.extend), for a longer clip; "
                        "not with --loop or --end-image (default 1: one clip)")
    g.add_argument("--overlap", type=count(0), default=1, metavar="K",
                   help="frames consecutive segments share, 0 to num_frames - 1 (default 1)")
    g.add_argument("--extend-method", default="reencode", choices=EXTEND_METHODS,
                   help="how a segment starts from the one before: reencode (its decoded frame as the next image) "
                        "or latents (its latents, the original embedding, the overlap steered) (default reencode)")
    g.add_argument("--save-loop", default=None, choices=["pingpong", "crossfade"],
                   help="save the clip looped from its frames: pingpong (forward, then back) or crossfade (the end "
                        "faded into the start) (default: as generated)")
    g.set_defaults(func=_generate)

    n = sub.add_parser("notebooks", help="execute the notebooks headless into an outputs folder (the main job)")
    n.add_argument("--folder", default="notebooks", help="where the NN_*.ipynb notebooks are (default notebooks)")
    n.add_argument("-o", "--output", default="outputs", help="outputs folder (default outputs)")
    n.add_argument("--model", default="toy", help=models)
    n.add_argument("--device", default="auto", help=device)
    n.add_argument("--only", nargs="*",
                   help="run only notebooks whose file name contains one of these, e.g. --only 00 02 (default: all)")
    n.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a parameters-cell value in every notebook, e.g. -p num_inference_steps 25 "
                        "(as papermill's -p; a notebook without that name ignores it)")
    n.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                   help=f"stop a notebook whose cell runs longer (default {TOY_CELL_TIMEOUT} s for the toy, "
                        "no limit for other models; 0: no limit)")
    n.set_defaults(func=_notebooks)

    from svdkit.sweeps.cli import add_sweep_parser
    add_sweep_parser(sub)

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
