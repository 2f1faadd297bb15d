"""Command line: `python -m svdkit generate IMAGE -o clip.mp4`; `python -m svdkit --help` lists the commands."""

from __future__ import annotations

import argparse
import sys


def _generate(args) -> int:
    import svdkit

    # Check the cheap things before loading a model.
    svdkit.load_image(args.image)
    pipe = svdkit.load_pipeline(args.model, device=args.device, memory=args.memory)
    params = {k: getattr(args, k) for k in svdkit.sampling.GENERATE_PARAMS if getattr(args, k, None) is not None}
    video = svdkit.generate(pipe, args.image, seed=args.seed, guidance=args.guidance, progress=True, **params)
    path = video.save(args.output)
    print(f"wrote {path} and {path.with_suffix('.json')} ({video.frames.shape[0]} frames, "
          f"{video.params['seconds']:.2f} s)")
    return 0


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
