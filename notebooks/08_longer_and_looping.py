# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Longer clips, seamless loops and a chosen last frame
#
# SVD makes one short clip: 14 or 25 frames, two to four seconds. People want more: longer clips (chain segments,
# each from the last frame of the one before; they report that it "leads to degradation"), clips that loop, and
# clips that go from one keyframe to another. This notebook builds all three and measures them:
#
# 1. **chaining**: `svdkit.extend` with two ways to start the next segment, and how fast each drifts away from
#    the picture;
# 2. **loops**: two cheap ones made from the frames alone, and a generated one (`generate(..., loop=True)`), with
#    how seamless each is and how much motion each keeps;
# 3. **a chosen last frame**: `generate(..., end_image=...)`, against the same clip without it.
#
# The loop and the last frame work inside step 3 (**denoise**); chaining repeats steps 1 to 4 per segment.

# %%
# Setup: install svdkit when it is missing; in Colab, also turn on its widget manager. Elsewhere this does nothing.
SVDKIT_SOURCE = "git+https://github.com/svdkit/svdkit"  # where svdkit installs from (see the README)
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("svdkit") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", SVDKIT_SOURCE], check=True)
if "google.colab" in sys.modules:
    from google.colab import output
    output.enable_custom_widget_manager()

# %% tags=["parameters"]
model = "toy"            # "toy" (bundled, CPU), "svd", "svd-xt", "svd-xt-1-1", a hub id or a local diffusers folder
device = "auto"          # "auto": cuda, then mps, then cpu
seeds = [0, 1, 2]        # the loops and the end image are measured with each seed (the spread is the noise)
seed = None              # the seed of the clips shown and of the chained clips; None: the first of seeds
num_inference_steps = 10
image = None             # a path to your own image; None: the example image
end_image = None         # a picture to end on, the size of image; None: see section 3
out_dir = "outputs/08_longer_and_looping"
motion_bucket_id = 127
fps = 7
segments = 4             # segments chained by each method
overlap = 1              # frames consecutive segments share (dropped from the joined clip)

# %% tags=["derived"]
# Values that follow from the parameters, so that any one of them can be set on its own (papermill's -p).
from svdkit.inputs import seed_list

seeds, seed = seed_list(seeds, seed)  # a seed set on its own joins seeds

# %%
# %matplotlib inline
import json
from pathlib import Path

import numpy as np

import svdkit
from svdkit import metrics, viz
from svdkit.chain import EXTEND_METHODS
from svdkit.sweeps.views import labelled_grid

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
pipe = svdkit.load_pipeline(model, device=device)
picture = svdkit.load_image(image) if image else viz.example_image()
settings = dict(num_inference_steps=num_inference_steps, motion_bucket_id=motion_bucket_id, fps=fps)
picture

# %% [markdown]
# ## 1 · Chaining segments, and the drift
#
# `svdkit.extend(pipe, picture, segments=N)` generates N clips in a row. Each starts from the previous one's
# last frame; the first frame of the new segment repeats it, so the joined clip drops it (`overlap` frames are
# dropped at each seam) and `video.segments` says where each segment lies. Two ways to start the next segment:
#
# - **reencode**: what people do by hand. Decode the last frame, and run `generate` on it as a new picture. It
#   gets a new CLIP embedding, goes through the VAE encoder again, and gets noise augmentation again.
# - **latents**: keep more of what came before. The next segment is conditioned on the previous segment's
#   final *latents* of that frame (no decode and re-encode), keeps the *original* picture's CLIP embedding, and
#   its first `overlap` frames are steered onto the previous segment's last ones while it is denoised.
#
# Drift is measured on each segment's first frame against the original picture: the shift of its mean colour,
# its sharpness (the variance of its Laplacian, over the picture's: 1 is as sharp) and its PSNR. Moving content
# lowers PSNR too, so read PSNR between segments, not against an ideal. Each method chains from every seed; the
# numbers are the means over seeds.

# %%
chained, drift_runs = {}, {method: [] for method in EXTEND_METHODS}
for method in EXTEND_METHODS:
    for s in seeds:
        video = svdkit.extend(pipe, picture, segments=segments, overlap=overlap, method=method, seed=s, **settings)
        drift_runs[method].append(metrics.drift(video.frames, picture, video.segments))
        if s == seed:
            chained[method] = video  # the one shown
DRIFT_KEYS = ("colour_shift", "sharpness", "psnr_first", "ssim_first")
drift = {method: [{"segment": k, **{key: float(np.mean([run[k][key] for run in runs])) for key in DRIFT_KEYS}}
                  for k in range(segments)] for method, runs in drift_runs.items()}
for method, video in chained.items():
    print(f"{method:>9}: {len(video.frames)} frames, segments {video.segments}; mean over seeds {seeds}:")
    for d in drift[method]:
        print(f"           segment {d['segment']}: colour shift {d['colour_shift']:5.1f} levels, sharpness "
              f"{d['sharpness']:.2f}, PSNR {d['psnr_first']:.1f} dB")

# %%
fig = viz.figure(11, 3)
axes = fig.subplots(1, 3)
for ax, key, label in zip(axes, ("colour_shift", "sharpness", "psnr_first"),
                          ("mean colour shift (levels)", "sharpness / the picture's", "PSNR to the picture (dB)")):
    for colour, (method, rows) in zip(("C0", "C1"), drift.items()):
        ax.plot([d["segment"] for d in rows], [d[key] for d in rows], "o-", color=colour, label=method)
        for run in drift_runs[method]:  # each seed, faint
            ax.plot([d["segment"] for d in run], [d[key] for d in run], ".", color=colour, alpha=0.35)
    ax.set_xlabel("segment")
    ax.set_title(label, fontsize=10)
    ax.set_xticks(range(segments))
axes[0].legend()
fig.suptitle("drift per segment: each segment's first frame against the original picture (mean over seeds)",
             fontsize=11)
fig

# %% [markdown]
# The first frame of every segment, left to right, for each method (the seed shown): the drift as you would see
# it.

# %%
viz.plot_filmstrips({method: video.frames[[a for a, _ in video.segments]] for method, video in chained.items()},
                    title="each segment's first frame")

# %%
chain_grid = labelled_grid([v.frames for v in chained.values()], list(chained))
chain_video = svdkit.Video(frames=chain_grid, fps=fps)
chain_video.save(out / "chained.mp4")
chain_video.show()

# %% [markdown]
# ## 2 · Seamless loops
#
# A clip played in a loop jumps from its last frame back to its first. The **seam** measures that jump: the
# change from the last frame to the first, over the clip's median frame-to-frame change. 1.0 means the jump
# looks like any other step; SVD clips, which move one way, sit well above it. Three ways to close it:
#
# - **pingpong** (`video.looped("pingpong")`): play the frames forward, then backward. Every step is one the clip
#   already has, so it is seamless, but the motion reverses halfway.
# - **crossfade** (`video.looped("crossfade")`): fade the last quarter of the frames into the first ones. The
#   motion keeps its direction, but the faded frames show two pictures at once, half transparent.
# - **generated** (`generate(..., loop=True)`): steer the last frames back to the picture *while* they are
#   denoised. At every step the sampler predicts each frame's clean latents x0, then moves toward them. For the
#   last half of the frames that prediction is pulled toward the picture's latents (all the way on the last
#   frame, less and less on the ones before it), during the first 80% of the steps; the last 20% are left free,
#   so the details stay the model's own. The UNet's temporal layers see the steered frames, so the motion bends
#   toward the start instead of being cut: no reversal, no double exposure. (`svdkit.keyframes` holds the
#   mechanism.)
#
# Motion is measured two ways: the mean frame-to-frame change (`metrics.frame_difference`) and the optical-flow
# speed of the changing pixels (`metrics.motion`); "kept" is each over the plain clip's, with the same seed. A
# loop could also hide its jump inside the clip: `metrics.largest_step` is the largest frame-to-frame change over
# the median one (a steady clip is near 1).

# %%
loop_rows, loop_clips = [], {}
for s in seeds:
    plain = svdkit.generate(pipe, picture, seed=s, **settings)
    versions = {"plain": plain, "generated": svdkit.generate(pipe, picture, seed=s, loop=True, **settings),
                "pingpong": plain.looped("pingpong"), "crossfade": plain.looped("crossfade")}
    base_diff, base_flow = metrics.frame_difference(plain.frames), metrics.motion(plain.frames)
    for name, video in versions.items():
        diff, flow = metrics.frame_difference(video.frames), metrics.motion(video.frames)
        loop_rows.append({"loop": name, "seed": s, "seam": metrics.seam(video.frames), "frames": len(video.frames),
                          "largest_step": metrics.largest_step(video.frames),
                          "frame_diff": diff, "motion": flow, "kept_diff": diff / base_diff if base_diff else 1.0,
                          "kept_motion": flow / base_flow if base_flow else 1.0})
    if s == seed:
        loop_clips = versions


def mean_over_seeds(rows, name, key):
    return float(np.mean([r[key] for r in rows if r["loop"] == name]))


loops = {name: {key: mean_over_seeds(loop_rows, name, key)
                for key in ("seam", "largest_step", "frame_diff", "motion", "kept_diff", "kept_motion")}
         for name in loop_clips}
print(f"mean over seeds {seeds}:")
for name, m in loops.items():
    print(f"{name:>10}: seam {m['seam']:5.2f}   largest step {m['largest_step']:4.2f}   motion kept "
          f"{m['kept_diff']:.2f} (frame change), {m['kept_motion']:.2f} (optical flow)")

# %% [markdown]
# Each loop plays over and over (every clip is repeated to the same length, so they stay side by side), with
# its seam in the label; then the frames of each, with the wrap at the right edge.

# %%
length = 3 * max(len(v.frames) for v in loop_clips.values())
loop_grid = labelled_grid([v.frames[np.arange(length) % len(v.frames)] for v in loop_clips.values()],
                          [f"{name} {metrics.seam(v.frames):.1f}" for name, v in loop_clips.items()])
loop_video = svdkit.Video(frames=loop_grid, fps=fps)
loop_video.save(out / "loops.mp4")
loop_video.show()

# %%
viz.plot_filmstrips({name: np.concatenate([v.frames, v.frames[:1]]) for name, v in loop_clips.items()},
                    title="each loop, and its first frame again (the wrap) at the right")

# %% [markdown]
# ## 3 · A chosen last frame
#
# `generate(..., end_image=picture_b)` is the same mechanism with another target: the last frames are steered
# toward `picture_b`, so the clip goes from one keyframe to the other (`loop=True` is the case
# `end_image=picture`). On the toy with the example picture, the end picture is where the toy world's own clip
# of that scene ends at this motion bucket: a keyframe the motion can reach. For another picture, it is the
# picture mirrored left to right. **End fidelity** is the PSNR of the last frame to the end picture.

# %%
from PIL import Image, ImageOps

if end_image is not None:
    end_picture = svdkit.load_image(end_image)
elif image is None and model == "toy":
    from svdkit.toy import HELD_OUT_SEED, render_clip
    end_picture = Image.fromarray(render_clip(HELD_OUT_SEED, motion_bucket_id, fps,
                                              num_frames=pipe.unet.config.num_frames)[-1])
else:
    end_picture = ImageOps.mirror(picture)
end_rows, end_clips = [], {}
for s in seeds:
    plain = svdkit.generate(pipe, picture, seed=s, **settings)
    ended = svdkit.generate(pipe, picture, seed=s, end_image=end_picture, **settings)
    end_rows.append({"seed": s, "plain": metrics.end_fidelity(plain.frames, end_picture),
                     "end_image": metrics.end_fidelity(ended.frames, end_picture),
                     "kept_diff": metrics.frame_difference(ended.frames) / max(metrics.frame_difference(plain.frames),
                                                                               1e-9)})
    if s == seed:
        end_clips = {"without end_image": plain.frames, "with end_image": ended.frames}
end_plain = float(np.mean([r["plain"] for r in end_rows]))
end_guided = float(np.mean([r["end_image"] for r in end_rows]))
print(f"last frame against the end picture, mean over seeds {seeds}: {end_plain:.1f} dB without end_image, "
      f"{end_guided:.1f} dB with it ({end_guided - end_plain:+.1f} dB)")

# %%
end_frame = np.asarray(end_picture.resize(end_clips["with end_image"].shape[2:0:-1]))
viz.plot_filmstrips({name: np.concatenate([frames, end_frame[None]]) for name, frames in end_clips.items()},
                    title="start -> end keyframe: each clip, then the end picture at the right")

# %% [markdown]
# ## 4 · So: how long, and which loop?
#
# The answers below are computed from this run's numbers; on another model or picture they change with them.
# Drift "shows" at the first segment whose first frame is more than 5 levels further off in mean colour than the
# first segment's, or has lost more than half of the first segment's sharpness.

# %%
def drift_shows(rows):
    """The first segment whose first frame has visibly drifted from the first segment's, or None."""
    for d in rows[1:]:
        if (d["colour_shift"] > rows[0]["colour_shift"] + 5
                or d["sharpness"] < 0.5 * rows[0]["sharpness"]):
            return d["segment"]
    return None


shows = {method: drift_shows(rows) for method, rows in drift.items()}
chain_answer = " ".join(
    f"With {method}, " + (f"the drift shows at segment {k} (counting from 0): {k} segment{'s' if k != 1 else ''} "
                          f"of {pipe.unet.config.num_frames} frames {'stay' if k != 1 else 'stays'} close to the picture."
                          if k is not None else f"no drift shows within {segments} segments.")
    + f" Its last segment starts {drift[method][-1]['colour_shift']:.1f} levels off in colour, at "
      f"{drift[method][-1]['sharpness']:.2f} of the picture's sharpness."
    for method, k in shows.items())
a, b = (drift[m][-1]["colour_shift"] for m in EXTEND_METHODS)
chain_answer += (f" After {segments} segments, {EXTEND_METHODS[1]} is {a - b:.1f} levels less off in colour than "
                 f"{EXTEND_METHODS[0]}: skipping the decode and re-encode at each seam keeps the colour closer."
                 if a > b else f" After {segments} segments, {EXTEND_METHODS[1]} is no closer in colour than "
                 f"{EXTEND_METHODS[0]} ({b - a:.1f} levels more off).")
best = min(("generated", "pingpong", "crossfade"), key=lambda n: abs(loops[n]["seam"] - 1))
loop_answer = (
    f"Played as is, the plain clip jumps {loops['plain']['seam']:.1f}x a median step at the wrap. "
    f"Generated loop=True: seam {loops['generated']['seam']:.2f}, keeping {loops['generated']['kept_diff']:.0%} of "
    f"the frame change and {loops['generated']['kept_motion']:.0%} of the flow, in one direction, its largest "
    f"step {loops['generated']['largest_step']:.1f}x the median (the plain clip's: "
    f"{loops['plain']['largest_step']:.1f}x): use it when the motion must not turn back and you can afford a new "
    f"generation. Pingpong: seam "
    f"{loops['pingpong']['seam']:.2f} for free, but the motion reverses: use it for motion that may swing back "
    f"and forth. Crossfade: seam {loops['crossfade']['seam']:.2f} for free, but the faded frames show two "
    f"pictures at once: use it for texture-like motion (water, smoke) where a blend does not show. Closest to "
    f"a normal step: {best}.")
end_answer = (f"end_image raises the last frame's PSNR to the end picture from {end_plain:.1f} to "
              f"{end_guided:.1f} dB ({end_guided - end_plain:+.1f} dB).")
answer = " ".join([chain_answer, loop_answer, end_answer])
print(chain_answer, loop_answer, end_answer, sep="\n\n")

# %%
summary = {
    "model": model, "seeds": seeds, "seed": seed, "num_inference_steps": num_inference_steps,
    "motion_bucket_id": motion_bucket_id, "fps": fps, "segments": segments, "overlap": overlap,
    "chain": {method: {"frames": len(video.frames), "segments": video.segments, "drift": drift[method],
                       "drift_per_seed": drift_runs[method], "drift_shows_at": shows[method]}
              for method, video in chained.items()},
    "loops": loops, "loop_rows": loop_rows,
    "seam_plain": loops["plain"]["seam"], "seam_loop": loops["generated"]["seam"],
    "motion_kept_loop": loops["generated"]["kept_diff"], "flow_kept_loop": loops["generated"]["kept_motion"],
    "end_fidelity_plain": end_plain, "end_fidelity_end_image": end_guided, "end_fidelity_gain": end_guided - end_plain,
    "end_rows": end_rows, "videos": [str(out / "chained.mp4"), str(out / "loops.mp4")], "answer": answer,
}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
summary
