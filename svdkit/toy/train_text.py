"""Train the toy text-to-image model: ``python -m svdkit.toy.train_text`` rebuilds ``svdkit/toy/text_model/``.

The toy world draws a scene for every seed and describes it in one line ("a red circle and a blue square on
a grey background"). This script teaches a tiny Stable Diffusion to draw the first frame of a scene from that
line, so that a prompt can start a toy video just as a text-to-image model starts a real one. The result is a
stock diffusers ``StableDiffusionPipeline`` folder (safetensors) that loads with no svdkit code.

1. **Tokenizer.** The world speaks about twenty words. A byte-level BPE vocabulary in CLIP's format
   (``vocab.json`` + ``merges.txt``) is learned from the captions, so that every word of the world is one token
   and any other text still tokenizes, byte by byte. It is a stock ``CLIPTokenizer``.
2. **VAE.** ``AutoencoderKL`` with three blocks (64 -> 16: ``vae_scale_factor`` 4, latents 4 x 16 x 16) learns
   to reconstruct first frames (L1 + MSE + an edge term + a small KL). Downsampling 4x rather than SD's 8x keeps
   the corners of a 12-pixel square and the point of a triangle, which the shapes are told apart by. Shapes
   cover a few percent of a frame, so the pixels on and around them weigh ``1 + VAE_SHAPE_WEIGHT`` in the loss;
   with equal weights the VAE learns the background first and, in the same number of steps, greys out the
   colours. Its ``scaling_factor`` is then measured so that scaled latents have unit std, as SD's 0.18215 does.
3. **Text encoder + UNet.** A tiny ``CLIPTextModel`` and ``UNet2DConditionModel`` learn together, from scratch,
   v-prediction on the latents of first frames (``DDIMScheduler`` betas, rescaled to zero terminal SNR so
   that the last training step is pure noise, as sampling starts). ``COND_DROPOUT`` of captions are replaced
   by the empty prompt "", exactly what the pipeline feeds its unconditional branch, so that classifier-free
   guidance works. Exponential moving averages of the weights are what is saved. Every ``CHECK_EVERY`` steps
   they draw held-out captions, which are read back as the benchmark does (``training_log.json`` keeps it).

Scenes come from seeds below ``HELD_OUT_SEED``; the benchmark ``benchmarks/toy_text_quality.py`` draws its
prompts from the seeds above. Every stage is seeded, so the same command on the same number of threads
rebuilds the same weights. The VAE stage is saved with its record in ``vae/vae_log.json``, and
``--vae-from FOLDER`` reuses it to redo only the diffusion stage: the result is the one the whole run gives.

>>> # python -m svdkit.toy.train_text --smoke     # a few steps of everything, reload, generate (< 1 min)
>>> # python -m svdkit.toy.train_text             # the shipped weights (see training_log.json for the times)
>>> # python -m svdkit.toy.train_text --vae-from svdkit/toy/text_model --out retrained   # diffusion stage only
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from svdkit.cli_args import count
from svdkit.toy import TEXT_MODEL_PATH
from svdkit.toy.train import crop, edges, shape_weights, warmup_cosine  # the toy SVD's
from svdkit.toy.world import HELD_OUT_SEED, PALETTE, SHAPE_KINDS, caption, render_clip
from svdkit.video import to_model

__all__ = ["build_tokenizer", "build_pipeline", "render_images", "train_vae", "encode_images", "vae_round_trip",
           "train_diffusion", "main"]

# ------------------------------------------------------------------------------ configuration
SEED = 0
SIZE = 64  # pixels; latents are SIZE / 4
THREADS = 1  # the shipped weights were trained on one thread; the same count reproduces them bit for bit
IMAGES = 10_000  # training scenes of the diffusion stage (first frames of seeds drawn below HELD_OUT_SEED)
VAE_IMAGES = 3_000  # training scenes of the VAE (drawn the same way; a VAE needs fewer)
MAX_TOKENS = 24  # the longest caption is 19 tokens with its start and end tokens

VAE_STEPS = 800
VAE_BATCH = 12
VAE_CROP = 32  # most VAE steps see 32x32 crops (a quarter of the cost); the last VAE_FULL of them whole frames
VAE_FULL = 0.1
VAE_LR = 2e-3
VAE_KL = 1e-4  # weight of the per-element KL divergence
VAE_SHAPE_WEIGHT = 10.0  # extra loss weight on the pixels of shapes (saturated), a few percent of a frame
VAE_LOGVAR_INIT = -6.0  # the posterior starts narrow (std 0.05), so early latents are not drowned in noise

DIFFUSION_STEPS = 8000
DIFFUSION_BATCH = 32  # more, smaller steps learn faster on a CPU than fewer big ones
DIFFUSION_LR = 1.5e-3
EMA = 0.995
COND_DROPOUT = 0.1
CHECK_EVERY = 250  # draw CHECK_CAPTIONS held-out captions with the averaged weights and read them back
CHECK_CAPTIONS = 50
CHECK_SEED = HELD_OUT_SEED + 5000  # apart from the benchmark's captions

LOG_EVERY = 25

TEXT_CONFIG = dict(  # CLIPTextConfig; vocab_size and the special token ids come from the tokenizer
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=MAX_TOKENS, projection_dim=64,
)
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, sample_size=SIZE, norm_num_groups=8,
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64), force_upcast=False,  # 64 -> 16: two downsamples, vae_scale_factor 4
)
UNET_CONFIG = dict(
    sample_size=SIZE // 4, in_channels=4, out_channels=4, layers_per_block=1, norm_num_groups=8,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),  # 16x16, 8x8, 4x4
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(32, 64, 64), attention_head_dim=(1, 2, 2),  # (diffusers' name for) heads per block
    cross_attention_dim=TEXT_CONFIG["hidden_size"],
)
SCHEDULER_CONFIG = dict(  # Stable Diffusion's betas, v-prediction, zero terminal SNR, "trailing" timesteps
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing",
    clip_sample=False, set_alpha_to_one=False, steps_offset=1,
)


# ------------------------------------------------------------------------------ 1. tokenizer
def _byte_alphabet() -> list[str]:
    """The 256 printable characters that byte-level BPE (GPT-2, CLIP) writes bytes 0..255 as.

    Bytes that are printable and not whitespace stand for themselves; the others are moved up to 256, 257, ...
    """
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), 256))
    out, moved = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + moved))
            moved += 1
    return out


def _words(text: str) -> list[str]:
    """Split text as CLIP's pre-tokenizer does for plain lowercase captions: runs of letters, and punctuation."""
    return re.findall(r"[^\W\d_]+|\d|[^\s\w]+", text.lower())


def learn_merges(word_counts: dict[str, int]) -> list[tuple[str, str]]:
    """Learn BPE merges until every word is a single token: repeatedly join the most frequent adjacent pair.

    A word is spelled as its characters, the last one marked with "</w>" (end of word), as CLIP does. Ties are
    broken by the pair itself, so the result is the same on every run.
    """
    spelled = {w: [*w[:-1], w[-1] + "</w>"] for w in word_counts}
    merges: list[tuple[str, str]] = []
    while True:
        pairs: collections.Counter = collections.Counter()
        for w, symbols in spelled.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += word_counts[w]
        if not pairs:
            return merges
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        for w, symbols in spelled.items():
            i, out = 0, []
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            spelled[w] = out


def build_tokenizer(captions: list[str], folder: Path | None = None):
    """A stock `CLIPTokenizer` whose vocabulary is the bytes, the words of `captions` and CLIP's two specials.

    With `folder`, the tokenizer is saved there (tokenizer.json, and CLIP's vocab.json / merges.txt so that
    the slow tokenizer of older transformers versions reads it too).
    """
    from transformers import CLIPTokenizer

    counts = collections.Counter(w for c in captions for w in _words(c))
    for word in [*PALETTE, *SHAPE_KINDS]:  # every colour and shape, even one the sample missed
        counts[word] += 1
    merges = learn_merges(dict(sorted(counts.items())))
    alphabet = _byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet] + [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)
    if folder is not None:
        folder = Path(folder)
        tokenizer.save_pretrained(folder)
        (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return tokenizer


# ------------------------------------------------------------------------------ components
def build_pipeline(tokenizer, seed: int = SEED):
    """A fresh, untrained toy StableDiffusionPipeline with seeded weights around `tokenizer`."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    torch.manual_seed(seed + 1)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **TEXT_CONFIG))
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def render_images(n: int, seed: int = SEED) -> tuple[np.ndarray, list[str]]:
    """First frames (n, H, W, 3) uint8 and captions of `n` training scenes (distinct seeds below HELD_OUT_SEED)."""
    rng = np.random.default_rng([seed, 0])
    seeds = rng.choice(HELD_OUT_SEED, size=n, replace=False)
    images = np.stack([render_clip(int(s), num_frames=1, size=SIZE)[0] for s in seeds])
    return images, [caption(int(s)) for s in seeds]


# ------------------------------------------------------------------------------ 2. VAE

def _crops(images: np.ndarray, idx: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Square crops of `size` pixels at offsets on the latent grid (multiples of 8), one per index."""
    return np.concatenate([crop(images[i: i + 1], size, rng) for i in idx])


def train_vae(vae, images: np.ndarray, steps: int, *, seed: int = SEED, log: list | None = None) -> list:
    """Fit the VAE on batches of `images`; returns [(step, loss, psnr_db), ...].

    The VAE is convolutional, so most steps use crops (a quarter of the pixels, a quarter of the cost); the
    last `VAE_FULL` of the steps use whole frames, so that its group norms see whole-frame statistics.
    The shapes' pixels weigh more than the background's (`shape_weights`), and the posterior starts narrow.
    """
    rng = np.random.default_rng([seed, 1])
    torch.manual_seed(seed + 10)
    with torch.no_grad():  # quant_conv's outputs are (mean, logvar) for each latent channel
        vae.quant_conv.bias[vae.config.latent_channels:] = VAE_LOGVAR_INIT
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=VAE_LR, weight_decay=0.0)
    sched = warmup_cosine(opt, steps, warmup=min(50, steps // 10 + 1), floor=0.05)
    log = [] if log is None else log
    t0 = time.time()
    for step in range(steps):
        idx = rng.integers(len(images), size=VAE_BATCH)
        whole = step >= steps * (1 - VAE_FULL)
        x = to_model(images[idx] if whole else _crops(images, idx, VAE_CROP, rng))  # (B, 3, H, W)
        post = vae.encode(x).latent_dist
        z = post.sample()  # (B, 4, h, w)
        y = vae.decode(z).sample  # (B, 3, H, W)
        w = shape_weights(x, VAE_SHAPE_WEIGHT)  # (B, 1, H, W)
        mse = F.mse_loss(y, x)
        edge = sum(F.l1_loss(a, b) for a, b in zip(edges(y), edges(x)))
        loss = ((y - x).abs() * w).mean() + ((y - x) ** 2 * w).mean() + 0.5 * edge \
            + VAE_KL * post.kl().mean() / z[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % LOG_EVERY == 0 or step == steps - 1:
            psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-10))  # pixel range [-1, 1] spans 2
            log.append((step, round(loss.item(), 5), round(psnr, 2)))
            print(f"vae  {step:5d}/{steps}  loss {loss.item():.4f}  psnr {psnr:5.2f} dB  {time.time() - t0:6.0f}s",
                  flush=True)
    vae.eval()
    return log


@torch.no_grad()
def encode_images(vae, images: np.ndarray, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE posterior of every image: means and stds, each (N, 4, h, w), not scaled."""
    vae.eval()
    means, stds = [], []
    for i in range(0, len(images), batch):
        post = vae.encode(to_model(images[i: i + batch])).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def vae_round_trip(vae, scenes: int = 64) -> dict:
    """How often a VAE round trip of held-out first frames still shows every named colour, and every shape
    (`svdkit.text.check_prompt`): a reference for pictures drawn in this VAE's latent space (not a bound: drawn
    latents may decode cleaner)."""
    from svdkit.text import check_prompt

    seeds = range(HELD_OUT_SEED + 3000, HELD_OUT_SEED + 3000 + scenes)
    x = to_model(np.stack([render_clip(s, num_frames=1, size=SIZE)[0] for s in seeds]))
    y = vae.decode(vae.encode(x).latent_dist.mode()).sample  # (N, 3, H, W) in [-1, 1]
    frames = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().movedim(1, -1).numpy()  # (N, H, W, 3)
    checks = [check_prompt(f, caption(s)) for f, s in zip(frames, seeds)]
    return {"scenes": scenes, "colours": float(np.mean([c["colours_ok"] for c in checks])),
            "colours_shapes": float(np.mean([c["shapes_ok"] for c in checks]))}


@torch.no_grad()
def held_out_check(pipe, captions: int = CHECK_CAPTIONS, steps: int = 10, guidance_scale: float = 4.0) -> dict:
    """Draw `captions` held-out captions (one seed each) and read the pictures back with
    `svdkit.text.check_prompt`: the share with every named colour, and with every colour and its shape."""
    from svdkit.text import check_prompt

    pipe.set_progress_bar_config(disable=True)
    seeds = range(CHECK_SEED, CHECK_SEED + captions)
    prompts = [caption(s) for s in seeds]
    images = pipe(prompts, height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=guidance_scale,
                  generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="np").images
    checks = [check_prompt((im * 255).round().astype(np.uint8), pr) for im, pr in zip(images, prompts)]
    return {"captions": captions, "sampling_steps": steps, "guidance_scale": guidance_scale,
            "colours": float(np.mean([c["colours_ok"] for c in checks])),
            "colours_shapes": float(np.mean([c["shapes_ok"] for c in checks]))}


# ------------------------------------------------------------------------------ 3. text encoder + UNet
def train_diffusion(pipe, latents: tuple[torch.Tensor, torch.Tensor], captions: list[str], steps: int, *,
                    seed: int = SEED, log: list | None = None, check=None, check_every: int = 0) -> list:
    """Fit text encoder and UNet together with v-prediction on the scaled latents; returns [(step, loss), ...].

    The noisy latents are ``x_t = sqrt(a) x0 + sqrt(1 - a) eps`` and the UNet predicts
    ``v = sqrt(a) eps - sqrt(1 - a) x0``, with ``a`` the scheduler's ``alphas_cumprod[t]``.
    With `check`, ``check(step)`` is called every `check_every` steps with the averaged weights in place.
    """
    unet, text_encoder, tokenizer = pipe.unet, pipe.text_encoder, pipe.tokenizer
    sf = pipe.vae.config.scaling_factor
    mean, std = latents
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids  # (N, T)
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                      return_tensors="pt").input_ids  # (1, T): what the pipeline's unconditional branch sees
    alphas_cumprod = pipe.scheduler.alphas_cumprod.float()  # (1000,), the last one is 0
    rng = np.random.default_rng([seed, 4])
    gen = torch.Generator().manual_seed(seed + 20)
    params = [*unet.parameters(), *text_encoder.parameters()]
    unet.train()
    text_encoder.train()
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=DIFFUSION_LR, weight_decay=0.01)
    sched = warmup_cosine(opt, steps, warmup=min(100, steps // 10 + 1), floor=0.05)
    log = [] if log is None else log
    t0 = time.time()
    for step in range(steps):
        B = DIFFUSION_BATCH
        # a. a batch of scenes: latents sampled from the VAE posterior, scaled; captions, some dropped
        idx = torch.from_numpy(rng.integers(len(mean), size=B))
        x0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * sf  # (B, 4, h, w)
        tokens = ids[idx].clone()  # (B, T)
        tokens[torch.from_numpy(rng.random(B) < COND_DROPOUT)] = empty[0]

        # b. noise at a random timestep, and the v target
        t = torch.from_numpy(rng.integers(len(alphas_cumprod), size=B))
        a = alphas_cumprod[t].view(B, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=gen)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        v = a.sqrt() * eps - (1 - a).sqrt() * x0

        # c. predict v from the noisy latents and the caption
        text = text_encoder(tokens)[0]  # (B, T, D): the last hidden state, as the pipeline uses it
        loss = F.mse_loss(unet(x_t, t, encoder_hidden_states=text).sample, v)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(EMA, (1 + step) / (10 + step))
            for e, p in zip(ema, params):
                e.lerp_(p.detach(), 1 - decay)
        if step % LOG_EVERY == 0 or step == steps - 1:
            log.append((step, round(loss.item(), 5)))
            print(f"diff {step:5d}/{steps}  loss {loss.item():.4f}  {time.time() - t0:6.0f}s", flush=True)
        if check is not None and check_every and (step + 1) % check_every == 0 and step + 1 < steps:
            _with_weights(params, ema, lambda step=step: check(step + 1))
    with torch.no_grad():
        for e, p in zip(ema, params):
            p.copy_(e)
    unet.eval()
    text_encoder.eval()
    return log


@torch.no_grad()
def _with_weights(params: list, weights: list, run) -> None:
    """Run `run()` with `weights` copied into `params`, then put the training weights back."""
    kept = [p.detach().clone() for p in params]
    for p, w in zip(params, weights):
        p.copy_(w)
    try:
        run()
    finally:
        for p, k in zip(params, kept):
            p.copy_(k)


# ------------------------------------------------------------------------------ saving and checking
def _plot_losses(record: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, stage in zip(axes, ("vae", "diffusion")):
        rows = np.asarray(record[stage]["log"], dtype=float).reshape(-1, len(record[stage]["columns"]))
        if len(rows):
            ax.plot(rows[:, 0], rows[:, 1])
        ax.set(title=f"{stage} loss", xlabel="step", yscale="log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _save(pipe, out: Path, tokenizer_dir: Path, record: dict) -> None:
    """Replace the contents of `out` with the pipeline (CLIP's vocab.json / merges.txt beside tokenizer.json),
    the training record and its loss curves; the VAE's own record goes beside it, for ``--vae-from``."""
    if out.exists():
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    pipe.save_pretrained(out, safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tokenizer_dir / name, out / "tokenizer" / name)
    (out / "vae" / "vae_log.json").write_text(json.dumps(
        {"seconds": record["wall_seconds"]["vae"], **record["vae"]}, indent=1))
    (out / "training_log.json").write_text(json.dumps(record, indent=1))
    _plot_losses(record, out / "loss.png")


def _smoke_generate(folder: Path) -> tuple:
    """Reload the folder with nothing but stock diffusers and draw one held-out caption."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(caption(HELD_OUT_SEED), height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=3.0,
                 generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    return image.shape


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m svdkit.toy.train_text", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the package's text_model folder)")
    p.add_argument("--smoke", action="store_true", help="a few steps of each stage into a temporary folder")
    p.add_argument("--images", type=count(1), default=IMAGES)
    p.add_argument("--vae-images", type=count(1), default=VAE_IMAGES)
    p.add_argument("--vae-steps", type=count(1), default=VAE_STEPS)
    p.add_argument("--vae-from", type=Path, default=None, metavar="FOLDER",
                   help="skip stage 2 and reuse the VAE (and its record) of a folder this script wrote")
    p.add_argument("--diffusion-steps", type=count(1), default=DIFFUSION_STEPS)
    p.add_argument("--threads", type=count(1), default=THREADS)
    p.add_argument("--seed", type=count(0), default=SEED)
    p.add_argument("--save-every", type=count(0), default=0, metavar="N",
                   help="also save the averaged weights every N diffusion steps (for slow or shared machines)")
    args = p.parse_args(argv)
    check_every, check_captions = CHECK_EVERY, CHECK_CAPTIONS
    if args.smoke:
        args.images, args.vae_images, args.vae_steps, args.diffusion_steps = 64, 64, 3, 3
        check_every, check_captions = 0, 4
    out = args.out or (Path(tempfile.mkdtemp(prefix="toy_text_smoke_")) if args.smoke else TEXT_MODEL_PATH)
    torch.set_num_threads(args.threads)
    t_start = time.time()

    # 1. scenes and the tokenizer learned from their captions
    images, captions = render_images(args.images, args.seed)
    tokenizer_dir = Path(tempfile.mkdtemp(prefix="toy_tokenizer_"))
    tokenizer = build_tokenizer(captions, tokenizer_dir)
    pipe = build_pipeline(tokenizer, args.seed)
    data_time = time.time() - t_start
    print(f"{len(images)} scenes rendered, vocabulary of {len(tokenizer)} tokens, {data_time:.0f}s", flush=True)

    # 2. VAE (or the one an earlier run of this stage saved), then the latents of every scene
    t0 = time.time()
    if args.vae_from is None:
        vae_log = train_vae(pipe.vae, render_images(args.vae_images, args.seed)[0], args.vae_steps, seed=args.seed)
        vae_time = time.time() - t0
        vae_record = {"images": args.vae_images, "steps": args.vae_steps, "log": vae_log}
    else:
        from diffusers import AutoencoderKL

        pipe.register_modules(vae=AutoencoderKL.from_pretrained(args.vae_from / "vae").eval())
        saved = json.loads((args.vae_from / "vae" / "vae_log.json").read_text())
        vae_time = saved["seconds"]
        vae_record = {"images": saved["images"], "steps": saved["steps"], "log": saved["log"],
                      "from": "an earlier run of this stage with the same settings (--vae-from)"}
    mean, std = encode_images(pipe.vae, images)
    scaling_factor = float(1.0 / mean.std())
    pipe.vae.register_to_config(scaling_factor=scaling_factor)
    round_trip = vae_round_trip(pipe.vae, scenes=8 if args.smoke else 64)
    print(f"vae done in {vae_time:.0f}s; scaling_factor {scaling_factor:.4f}, latent mean {mean.mean():.3f}; "
          f"held-out round trips with every colour right {round_trip['colours']:.0%}, and every shape "
          f"{round_trip['colours_shapes']:.0%} (a reference for the drawings)", flush=True)

    # 3. text encoder and UNet; every CHECK_EVERY steps the averaged weights draw held-out captions
    t0 = time.time()
    diffusion_log: list = []
    checks: list = []

    def record(steps_done: int) -> dict:
        return {
            "seed": args.seed, "threads": args.threads, "images": args.images,
            "held_out_seeds": f">= {HELD_OUT_SEED}",
            "wall_seconds": {"data": round(data_time), "vae": round(vae_time), "diffusion": round(time.time() - t0),
                             "total": round(time.time() - t_start)},
            "vae": {**vae_record, "batch": VAE_BATCH, "crop": VAE_CROP, "whole_frames": VAE_FULL, "lr": VAE_LR,
                    "kl_weight": VAE_KL, "shape_weight": VAE_SHAPE_WEIGHT, "logvar_init": VAE_LOGVAR_INIT,
                    "scaling_factor": scaling_factor, "round_trip": round_trip, "columns": ["step", "loss", "psnr_db"]},
            "diffusion": {"steps": args.diffusion_steps, "steps_done": steps_done, "batch": DIFFUSION_BATCH,
                          "lr": DIFFUSION_LR, "ema": EMA, "cond_dropout": COND_DROPOUT, "objective": "v_prediction",
                          "held_out_checks": checks, "columns": ["step", "loss"], "log": diffusion_log},
        }

    def check(step: int) -> None:
        if check_every and step % check_every == 0:
            checks.append({"step": step, **held_out_check(pipe, check_captions)})
            print(f"step {step}: held-out captions with every colour {checks[-1]['colours']:.0%}, "
                  f"and every shape {checks[-1]['colours_shapes']:.0%}", flush=True)
        if args.save_every and step % args.save_every == 0:
            _save(pipe, out, tokenizer_dir, record(step))
            print(f"saved the averaged weights of step {step} to {out}", flush=True)

    train_diffusion(pipe, (mean, std), captions, args.diffusion_steps, seed=args.seed, log=diffusion_log,
                    check=check, check_every=math.gcd(check_every, args.save_every))
    checks.append({"step": args.diffusion_steps, **held_out_check(pipe, check_captions)})
    print(f"done: held-out captions with every colour {checks[-1]['colours']:.0%}, and every shape "
          f"{checks[-1]['colours_shapes']:.0%}", flush=True)

    # 4. save as a stock pipeline folder, with the loss curves beside the weights
    _save(pipe, out, tokenizer_dir, record(args.diffusion_steps))
    shutil.rmtree(tokenizer_dir, ignore_errors=True)
    print(f"saved to {out} in {time.time() - t_start:.0f}s total", flush=True)

    # 5. the folder must work with stock diffusers alone
    shape = _smoke_generate(out)
    print(f"reloaded with StableDiffusionPipeline.from_pretrained: image {shape}", flush=True)
    return out


if __name__ == "__main__":
    main()
