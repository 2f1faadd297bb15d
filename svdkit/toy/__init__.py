"""The toy world and the toy SVD trained on it: everything svdkit needs to run offline on a CPU.

The world (``svdkit.toy.world``) renders clips of coloured shapes whose speed means what SVD's knobs
mean: ``motion_bucket_id`` sets pixels per second, ``fps`` sets seconds per frame. The model folder
``MODEL_PATH`` is a stock diffusers ``StableVideoDiffusionPipeline`` trained on that world by
``python -m svdkit.toy.train``; it loads with no svdkit code at all.

>>> from diffusers import StableVideoDiffusionPipeline
>>> from svdkit.toy import MODEL_PATH, render_clip, caption
>>> first = render_clip(1_000_000)[0]                  # (H, W, 3) uint8, a held-out scene
>>> pipe = StableVideoDiffusionPipeline.from_pretrained(MODEL_PATH)
>>> from PIL import Image
>>> frames = pipe(Image.fromarray(first), height=64, width=64, num_frames=14, motion_bucket_id=200,
...               output_type="np").frames[0]
>>> frames.shape                                       # (F, H, W, 3), floats in 0..1
(14, 64, 64, 3)
"""

import pathlib

from svdkit.toy.world import (
    HELD_OUT_SEED,
    MAX_SPEED,
    PALETTE,
    WORLDS,
    Scene,
    caption,
    describe_scene,
    detect_shapes,
    pixels_per_frame,
    render_background,
    render_clip,
    scene_colours,
    shape_positions,
    shapes_kept,
)

MODEL_PATH = pathlib.Path(__file__).parent / "model"
"""The trained toy SVD, a diffusers pipeline folder (safetensors weights)."""

WORLD_DESCRIPTIONS = {
    "palette": "1-3 flat shapes (circle, square, triangle, diamond) in red, green, blue, yellow, magenta or cyan, "
               "on a dull grey or brown background, plain or a gentle gradient",
    "broad": "1-3 flat shapes (circle, square, triangle, diamond) in any saturated colour, white or black, on a "
             "background of any colour, plain or a gentle gradient",
}


def model_world(folder: pathlib.Path = MODEL_PATH) -> str:
    """The world (a key of ``WORLD_DESCRIPTIONS``) a toy model folder was trained on, from its training log."""
    import json

    log = pathlib.Path(folder) / "training_log.json"
    recipe = json.loads(log.read_text()).get("recipe") if log.is_file() else None
    return recipe.get("world", "palette") if isinstance(recipe, dict) else "palette"

TEXT_MODEL_PATH = pathlib.Path(__file__).parent / "text_model"
"""The toy text-to-image model (a tiny Stable Diffusion, ``python -m svdkit.toy.train_text``), a diffusers folder."""

__all__ = [
    "MODEL_PATH", "TEXT_MODEL_PATH", "model_world", "WORLD_DESCRIPTIONS",
    "render_clip", "caption", "describe_scene", "Scene", "WORLDS",
    "shape_positions", "pixels_per_frame", "detect_shapes", "shapes_kept", "scene_colours", "render_background",
    "MAX_SPEED", "PALETTE", "HELD_OUT_SEED",
]
