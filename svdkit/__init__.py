"""svdkit: see how Stable Video Diffusion works, and measure what its knobs do.

>>> import svdkit
>>> pipe = svdkit.load_pipeline("toy")                       # bundled toy SVD: offline, CPU, ~1 s a clip
>>> video = svdkit.generate(pipe, "data/example_0.png", motion_bucket_id=200, capture=True)
>>> video.frames.shape, video.trace.x0.shape                 # (F, H, W, 3) and (steps, F, 4, h, w)
((14, 64, 64, 3), torch.Size([25, 14, 4, 8, 8]))
>>> path = video.save("clip.mp4")                            # and clip.json, the full parameter record

The four stages of SVD live in `svdkit.sampling`; models in `svdkit.models`; results in `Video` and `Trace`;
pictures in `svdkit.viz`, latents as colours in `svdkit.latent_rgb`, temporal attention in `svdkit.attention`,
widgets in `svdkit.widgets`; the approximate speed-ups in `svdkit.speed`; grids of settings with `svdkit.sweep`
(ranges, results and their views in `svdkit.sweeps`), measured by `svdkit.metrics`; a text-to-image first frame
with `svdkit.text_to_image`. Longer clips chain segments with `svdkit.extend`; `generate(..., loop=True)` and
`generate(..., end_image=...)` steer the last frames toward a picture (`svdkit.keyframes`). Fine-tuning on your
own clips with `svdkit.finetune` (in `svdkit.fine_tuning`; its objective in `svdkit.objective`).
"""

from svdkit import attention, keyframes, latent_rgb, metrics, sampling, sweeps, viz, widgets
from svdkit.chain import extend
from svdkit.fine_tuning import finetune
from svdkit.models import MEMORY_PRESETS, MODELS, load_pipeline
from svdkit.sampling import decode_latents, generate, guidance_schedule, load_image
from svdkit.sweeps import sweep
from svdkit.text import text_to_image
from svdkit.trace import Trace
from svdkit.version import __version__
from svdkit.video import Video, read_video, write_video

__all__ = [
    "__version__",
    # load a model
    "load_pipeline", "MODELS", "MEMORY_PRESETS",
    # generate, and look inside
    "generate", "guidance_schedule", "load_image", "decode_latents",
    # results
    "Video", "Trace", "read_video", "write_video",
    # longer clips: segments chained from the last frame (loops and end images: generate(loop=, end_image=))
    "extend",
    # a grid of settings, every clip measured and kept
    "sweep",
    # text -> first frame
    "text_to_image",
    # fine-tune on your own clips (LoRA, temporal layers, full)
    "finetune",
    # modules: sweeps (ranges, results, views) and measurements, pictures, widgets
    "sweeps", "metrics", "viz", "widgets",
    # modules: the stages by hand, latents as colours, temporal attention
    "sampling", "latent_rgb", "attention", "keyframes",
]
