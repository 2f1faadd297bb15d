"""Screen toy designs at one equal budget, on several training seeds each, with learning curves.

    python -m svdkit.toy.screen --recipes v2-attn8 v2-attn84 --seeds 0 1 --budget 1500 --turn 250
    python -m svdkit.toy.screen --recipes v2-attn8 v2-attn84 --seeds 0 1 --table curves.png   # the table so far

The first recipe's first seed trains the VAE and encodes the latent pool; every other run reuses both (the
designs differ in the UNet, so they are compared on the same latents and the same scenes). The runs then take
turns of ``--turn`` UNet steps, so that at any moment all of them have had about the same budget, and each turn
ends in a checkpoint: stop the screening whenever you like and start the same command again to continue. Each run
is the start of a full training of its recipe (same learning-rate schedule), so the winner can go on with
``python -m svdkit.toy.train --recipe R --seed S --vae-from ... --resume``.

Every ``--turn`` steps each run scores its averaged weights on held-out scenes (``svdkit.toy.train.evaluate``:
check 4's share of frames that keep their shapes, and first-frame PSNR), which makes the learning curves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from svdkit.cli_args import count
from svdkit.toy import train
from svdkit.toy.checkpoint import Run

__all__ = ["screen", "table", "main"]


def _run_dir(root: Path, recipe: str, seed: int) -> Path:
    return root / f"{recipe}-seed{seed}"


def screen(recipes, seeds, *, budget: int, turn: int, root: Path = train.DEFAULT_RUNS, threads: int = 1,
           device: str = "cpu", vae_from: Path | None = None) -> None:
    """Train every (recipe, seed) to ``budget`` UNet steps in turns of ``turn`` steps (resumable). With
    ``vae_from`` (a folder holding a trained ``vae/``) every run starts from that VAE instead of training one."""
    first = _run_dir(root, recipes[0], seeds[0])
    for target in [*range(turn, budget, turn), budget]:
        for recipe in recipes:
            for seed in seeds:
                folder = _run_dir(root, recipe, seed)
                if Run(folder).step("unet") >= target:
                    continue
                argv = ["--recipe", recipe, "--seed", str(seed), "--run-dir", str(folder), "--resume",
                        "--until-step", str(target), "--eval-every", str(turn), "--threads", str(threads),
                        "--device", device, "--pool-seed", str(seeds[0])]
                if vae_from is not None or folder != first:
                    argv += ["--vae-from", str(vae_from or first)]
                train.main(argv)


def table(recipes, seeds, *, root: Path = train.DEFAULT_RUNS, plot: Path | None = None) -> str:
    """The screening table (last evaluation of each run, and the mean over seeds) as Markdown; ``plot`` also
    draws the learning curves (check 4 and first-frame PSNR against UNet steps)."""
    lines = ["| recipe | seed | UNet steps | check 4 (kept) | kept at 255 | first-frame PSNR |",
             "|---|---|---|---|---|---|"]
    curves = {}
    for recipe in recipes:
        last = []
        for seed in seeds:
            rows = Run(_run_dir(root, recipe, seed)).rows(stage="eval")
            rows = list({r["step"]: r for r in rows}.values())  # one row per step
            curves[(recipe, seed)] = rows
            if rows:
                r = rows[-1]
                last.append(r)
                lines.append(f"| {recipe} | {seed} | {r['step']} | {r['kept']:.3f} | {r['kept_255']:.3f} | "
                             f"{r['first_psnr']:.1f} dB |")
        if last:
            mean = {k: float(np.mean([r[k] for r in last])) for k in ("kept", "kept_255", "first_psnr")}
            lines.append(f"| **{recipe}** | mean of {len(last)} | | **{mean['kept']:.3f}** | {mean['kept_255']:.3f} | "
                         f"{mean['first_psnr']:.1f} dB |")
    if plot is not None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for (recipe, seed), rows in curves.items():
            if rows:
                steps = [r["step"] for r in rows]
                style = dict(label=f"{recipe} seed {seed}", marker="o", ls="-" if seed == seeds[0] else "--")
                axes[0].plot(steps, [r["kept"] for r in rows], **style)
                axes[1].plot(steps, [r["first_psnr"] for r in rows], **style)
        axes[0].set(xlabel="UNet step", ylabel="share of frames keeping their shapes", title="check 4", ylim=(0, 1))
        axes[1].set(xlabel="UNet step", ylabel="dB", title="first-frame PSNR")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plot, dpi=100)
        plt.close(fig)
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m svdkit.toy.screen", description=__doc__.split("\n")[0])
    p.add_argument("--recipes", nargs="+", choices=list(train.RECIPES), required=True)
    p.add_argument("--seeds", nargs="+", type=count(0), default=[0, 1])
    p.add_argument("--budget", type=count(1), default=1500, help="UNet steps per run (default 1500)")
    p.add_argument("--turn", type=count(1), default=250, help="UNet steps per turn and between evaluations")
    p.add_argument("--root", type=Path, default=train.DEFAULT_RUNS, help="where the run folders live")
    p.add_argument("--threads", type=count(1), default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--vae-from", type=Path, default=None,
                   help="a folder holding a trained vae/ (e.g. a committed checkpoint) that every run starts from")
    p.add_argument("--table", type=Path, default=None, metavar="PNG",
                   help="print the table so far and draw the curves to PNG, instead of training")
    args = p.parse_args(argv)
    if args.vae_from is not None and not (args.vae_from / "vae" / "config.json").is_file():
        p.error(f"--vae-from: no trained VAE (vae/config.json) in {args.vae_from}")
    if args.table is None:
        screen(args.recipes, args.seeds, budget=args.budget, turn=args.turn, root=args.root, threads=args.threads,
               device=args.device, vae_from=args.vae_from)
    print(table(args.recipes, args.seeds, root=args.root, plot=args.table))


if __name__ == "__main__":
    main()
