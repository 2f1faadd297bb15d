"""Screen VAE designs for the second toy on one equal budget, two training seeds each, before any UNet step.

    python -m studies.toy_vae_screen                                   # the designs below, seeds 0 and 1
    python -m studies.toy_vae_screen --designs w64 enc128 --steps 400 --seeds 0 1
    python -m studies.toy_vae_screen --table                           # print the table and curves so far
    python -m studies.toy_vae_screen --probe RUN_DIR                   # probe a training run's newest VAE checkpoint

A diffusers VAE has two GroupNorms (32 groups) through which every picture must pass with no skip around them:
the encoder's last, at the deepest level (``vae_blocks[-1]`` channels), and the decoder's last, at full
resolution (``vae_blocks[0]`` channels). Each subtracts a group's mean over the frame and divides by its spread,
so in a flat area two channels per group leave a sign, three or more a continuous direction. The designs test
which end holds the colours back, and what starting the decoder's last layer as the identity does
(``svdkit.toy.train.pass_through``: at PyTorch's init it passes colour along one direction only).

Each (design, seed) trains the toy's VAE (``svdkit.toy.train.train_vae``, the recipe's loss and schedule) for
``--steps`` steps on one thread and is probed at a few points (a learning curve) on what the UNet will need:

* ``flat``: mean RGB distance of flat frames of six colours from their round trips (``evaluations/latent_mixes``);
* ``world dB`` / ``kept``: median PSNR and share of frames keeping their shapes (``shapes_kept``) of round trips of
  12 held-out broad-world clips at bucket 200 -- the ceiling of check 1 for any UNet on this VAE;
* ``drawn dB``: mean PSNR of round trips of the benchmark's drawn pictures (check 3's ceiling on them).

``--probe RUN_DIR`` measures the same on the newest VAE checkpoint of a training run (``python -m svdkit.toy.train
--only-vae --run-dir RUN_DIR``, resumable), so that a long VAE training gets its learning curve while it runs; its
rows are labelled with the run folder's name.

Results are appended, one JSON line per probe, to ``--out`` (``vae_screen.jsonl`` under the toy runs folder); a
(design, seed) already finished there is skipped, so the command can be rerun after an interruption. Decode time is
printed by ``benchmarks/`` scripts side by side, not here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from evaluations.latent_mixes import flat_colour_error
from evaluations.toy_quality import drawn_picture, vae_round_trip
from svdkit.cli_args import count
from svdkit.files import atomic_write
from svdkit.metrics import psnr
from svdkit.toy import train
from svdkit.toy.recipes import RECIPES, vae_config
from svdkit.toy.world import HELD_OUT_SEED, render_background, render_clip, scene_colours, shapes_kept

BASE = RECIPES["v2-attn8"]
DESIGNS = {  # name -> (what differs from the v2 recipe, a one-line reason)
    "w64-random": (dict(vae_blocks=(64, 64, 64), vae_pass_through=False),
                   "the first v2 VAE: the decoder's last layer at PyTorch's random init"),
    "w64": (dict(vae_blocks=(64, 64, 64)), "the same, its last layer started as the identity (pass_through)"),
    "enc128": (dict(vae_blocks=(64, 64, 128)), "4 channels per group at the encoder's last norm (16x16, cheap)"),
    "both": (dict(vae_blocks=(96, 64, 128)), "3 per group at the decoder's last norm, 4 at the encoder's"),
}
PROBE_SEED = HELD_OUT_SEED + 3000  # held-out scenes, apart from the benchmark's and the learning curves'
PROBE_SCENES = 12
PROBE_BUCKET = 200
DRAWN = 12


@torch.no_grad()
def probe(vae) -> dict:
    """The screen's measurements of one VAE (see the module docstring)."""
    vae.eval()
    world_db, kept = [], []
    for k in range(PROBE_SCENES):
        seed = PROBE_SEED + k
        clip = render_clip(seed, PROBE_BUCKET, 7, world="broad")
        back = vae_round_trip(vae, clip)
        world_db.append(np.mean([psnr(a, b) for a, b in zip(back, clip)]))
        kept.append(shapes_kept(back, scene_colours(seed, world="broad"), render_background(seed, world="broad")))
    drawn = [psnr(vae_round_trip(vae, img[None])[0], img) for img, _, _ in map(drawn_picture, range(DRAWN))]
    vae.train()
    return {"flat": round(flat_colour_error(vae), 1), "world_db": round(float(np.median(world_db)), 2),
            "kept": round(float(np.concatenate(kept).mean()), 3), "drawn_db": round(float(np.mean(drawn)), 2)}


def run_one(design: str, seed: int, steps: int, probes: list[int], out: Path) -> None:
    """Train one design from scratch with ``seed`` and append a JSON line per probe to ``out``."""
    from diffusers import AutoencoderKLTemporalDecoder

    changes, _ = DESIGNS[design]
    recipe = dataclasses.replace(BASE, name=f"vae-{design}", **changes)
    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder(**vae_config(recipe))
    if recipe.vae_pass_through:
        train.pass_through(vae)
    t0 = time.time()

    def callback(done, model):
        if done in probes:
            row = {"design": design, "seed": seed, "step": done, "steps": steps, **probe(model),
                   "train_s": round(time.time() - t0)}
            with open(out, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)

    train.train_vae(vae, steps, device="cpu", seed=seed, recipe=recipe, callback=callback)


def probe_run(run_dir: Path, out: Path) -> dict:
    """Probe the newest VAE checkpoint of the training run in ``run_dir`` and append the row to ``out``."""
    from diffusers import AutoencoderKLTemporalDecoder

    from svdkit.toy.checkpoint import Run

    if not (run_dir / "log.jsonl").is_file():  # checked first: Run() would create the folder
        raise SystemExit(f"--probe: {run_dir} holds no toy training (no log.jsonl)")
    run = Run(run_dir)
    starts = run.rows(stage="start")
    found = run.latest("vae")
    if not starts or found is None:
        raise SystemExit(f"--probe: {run_dir} holds no VAE checkpoint of a toy training")
    record = starts[0]
    tensors, state = found
    recipe = train.Recipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["recipe"].items()})
    vae = AutoencoderKLTemporalDecoder(**vae_config(recipe))
    vae.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    row = {"design": run_dir.name, "seed": record.get("seed"), "step": int(state["step"]),
           "steps": record.get("vae_steps"), **probe(vae)}
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def read(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []


def _cell(values: list, fmt: str) -> str:
    """The seeds' values, and their mean when there are several: "17 / 19 (mean 18)"."""
    mean = f" (mean {fmt.format(np.mean(values))})" if len(values) > 1 else ""
    return " / ".join(fmt.format(v) for v in values) + mean


def table(rows: list[dict]) -> str:
    """One line per (design, step): each measurement as the two seeds' values, and the mean."""
    lines = ["| design | step | flat RGB error | world round trip dB | shapes kept | drawn round trip dB |",
             "|---|---|---|---|---|---|"]
    order = list(DESIGNS)
    keys = sorted({(r["design"], r["step"]) for r in rows},
                  key=lambda k: (order.index(k[0]) if k[0] in order else len(order), k[0], k[1]))
    for design, step in keys:
        got = sorted((r for r in rows if r["design"] == design and r["step"] == step), key=lambda r: r["seed"])
        cells = [_cell([r[name] for r in got], fmt) for name, fmt in
                 (("flat", "{:.0f}"), ("world_db", "{:.1f}"), ("kept", "{:.0%}"), ("drawn_db", "{:.1f}"))]
        lines.append(f"| {design} | {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--designs", nargs="+", choices=list(DESIGNS), default=list(DESIGNS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--steps", type=count(), default=400, help="VAE steps per (design, seed) (default 400)")
    ap.add_argument("--probes", type=count(), default=4, help="probes per run, evenly spaced (default 4)")
    ap.add_argument("--threads", type=count(), default=1)
    ap.add_argument("--out", type=Path, default=train.DEFAULT_RUNS / "vae_screen.jsonl")
    ap.add_argument("--table", action="store_true", help="print the table of what --out holds, and train nothing")
    ap.add_argument("--probe", type=Path, metavar="RUN_DIR", help="probe this training run's newest VAE checkpoint")
    args = ap.parse_args(argv)
    if args.probe is not None:
        torch.set_num_threads(args.threads)
        print(json.dumps(probe_run(args.probe, args.out)))
        return
    if args.table:
        print(table(read(args.out)))
        return
    torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    probes = sorted({max(1, round(args.steps * (k + 1) / args.probes)) for k in range(args.probes)})
    for seed in args.seeds:
        for design in args.designs:
            rows = read(args.out)
            mine = [r for r in rows if r["design"] == design and r["seed"] == seed and r["steps"] == args.steps]
            if any(r["step"] == args.steps for r in mine):
                continue  # finished earlier
            if mine:  # an interrupted run: its probes go, as it starts again from scratch
                with atomic_write(args.out) as tmp:
                    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows if r not in mine))
            print(f"== {design} seed {seed}: {DESIGNS[design][1]}", flush=True)
            run_one(design, seed, args.steps, probes, args.out)
    print(table(read(args.out)))


if __name__ == "__main__":
    main()
