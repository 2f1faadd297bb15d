"""Command line: `python -m svdkit generate IMAGE -o clip.mp4`; `python -m svdkit --help` lists the commands."""

from __future__ import annotations

import argparse
import sys

TOY_CELL_TIMEOUT = 600  # seconds one notebook cell may run in the main job on the bundled toy


def _generate(args) -> int:
    import svdkit

    # Check the image and every parameter before loading a model.
    params = {k: getattr(args, k) for k in svdkit.sampling.GENERATE_PARAMS if getattr(args, k, None) is not None}
    svdkit.sampling.check_params(None, params, args.guidance, spec=svdkit.MODELS.get(args.model))
    svdkit.load_image(args.image)
    pipe = svdkit.load_pipeline(args.model, device=args.device, memory=args.memory)
    video = svdkit.generate(pipe, args.image, seed=args.seed, guidance=args.guidance, progress=True, **params)
    path = video.save(args.output)
    print(f"wrote {path} and {path.with_suffix('.json')} ({video.frames.shape[0]} frames, "
          f"{video.params['seconds']:.2f} s)")
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
    parser = argparse.ArgumentParser(prog="python -m svdkit", description="svdkit: explore Stable Video Diffusion.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser("generate", help="generate a clip from one image")
    g.add_argument("image", help="input image (png, jpg, ...)")
    g.add_argument("--model", default="toy", help="toy, svd, svd-xt, svd-xt-1-1, a hub id or a local folder")
    g.add_argument("-o", "--output", default="clip.mp4", help="output .mp4, .gif or .webp (default clip.mp4)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto")
    g.add_argument("--memory", default="auto", choices=["auto", "fast", "balanced", "low"])
    g.add_argument("--guidance", default="linear", choices=["linear", "constant", "triangle"])
    for name, typ in (("motion_bucket_id", int), ("fps", int), ("noise_aug_strength", float),
                      ("num_inference_steps", int), ("num_frames", int), ("height", int), ("width", int),
                      ("min_guidance_scale", float), ("max_guidance_scale", float), ("decode_chunk_size", int)):
        g.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None)
    g.set_defaults(func=_generate)

    n = sub.add_parser("notebooks", help="execute the notebooks headless into an outputs folder (the main job)")
    n.add_argument("--folder", default="notebooks", help="where the NN_*.ipynb notebooks are (default notebooks)")
    n.add_argument("-o", "--output", default="outputs", help="outputs folder (default outputs)")
    n.add_argument("--model", default="toy")
    n.add_argument("--device", default="auto")
    n.add_argument("--only", nargs="*", help="run only notebooks whose file name contains one of these")
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
