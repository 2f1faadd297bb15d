"""The toy designs: each ``Recipe`` names what tells one toy SVD from another, and builds its diffusers configs.

``RECIPES["v1"]`` is the shipped first toy; the others are the second toy's candidates, screened by
``python -m svdkit.toy.screen`` and trained by ``python -m svdkit.toy.train --recipe NAME``.

>>> from svdkit.toy.recipes import RECIPES, unet_config
>>> RECIPES["v2-attn8"].factor, unet_config(RECIPES["v2-attn8"])["sample_size"]   # a 4x VAE: 16x16 latents
(4, 16)
"""

from __future__ import annotations

import dataclasses

__all__ = ["Recipe", "RECIPES", "vae_config", "unet_config", "CLIP_CONFIG", "SCHEDULER_CONFIG"]

SIZE = 64  # pixels, height and width
NUM_FRAMES = 14

_DOWN, _CROSS = "DownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal"
_UP = {_DOWN: "UpBlockSpatioTemporal", _CROSS: "CrossAttnUpBlockSpatioTemporal"}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything that tells one toy design from another; ``RECIPES`` holds the ones worth rerunning.

    The VAE downsamples ``2 ** (len(vae_blocks) - 1)`` times (the pipeline reads its scale factor from the same
    config), so ``vae_blocks`` of three entries give 16x16 latents for 64-pixel frames, four give 8x8.
    """

    name: str
    world: str = "palette"  # the scene distribution (svdkit.toy.world.WORLDS)
    vae_blocks: tuple[int, ...] = (32, 32, 64, 64)
    unet_blocks: tuple[int, ...] = (64, 64)
    unet_down: tuple[str, ...] = (_CROSS, _DOWN)  # attention where CrossAttn...; outermost (finest) block first
    vae_steps: int = 4000
    pool_scenes: int = 250
    unet_steps: int = 2200
    shape_mask: str = "saturation"  # how the VAE finds the shapes it weighs: saturated pixels, or off-background
    vae_full: float = 0.1  # the share of VAE steps (the last ones) on whole frames, so the norms see whole frames
    vae_pass_through: bool = False  # start the decoder's last layer (a 3 -> 3 temporal conv) as the identity
    note: str = ""

    @property
    def factor(self) -> int:
        return 2 ** (len(self.vae_blocks) - 1)


RECIPES = {
    "v1": Recipe("v1", note="the shipped weights: the palette world, 8x8 latents"),
    # the second generation: a broad world, 16x16 latents (a 4x VAE), a three-level UNet; screened on two seeds each
    "v2-attn8": Recipe("v2-attn8", world="broad", vae_blocks=(64, 64, 64), unet_blocks=(64, 64, 64),
                       unet_down=(_DOWN, _CROSS, _DOWN), pool_scenes=500, unet_steps=8000, shape_mask="background",
                       vae_pass_through=True,
                       note="16x16 latents; attention at 8x8 only"),
    "v2-attn84": Recipe("v2-attn84", world="broad", vae_blocks=(64, 64, 64), unet_blocks=(64, 64, 64),
                        vae_pass_through=True, unet_down=(_DOWN, _CROSS, _CROSS), pool_scenes=500, unet_steps=8000,
                        shape_mask="background", note="16x16 latents; attention at 8x8 and 4x4"),
}

CLIP_CONFIG = dict(
    image_size=224, patch_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
    num_attention_heads=2, projection_dim=32,
)
SCHEDULER_CONFIG = dict(  # Stable Video Diffusion's own scheduler_config.json
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
    num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
    steps_offset=1, timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True,
)


def vae_config(recipe: Recipe) -> dict:
    return dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, sample_size=SIZE,
                down_block_types=("DownEncoderBlock2D",) * len(recipe.vae_blocks), block_out_channels=recipe.vae_blocks)


def unet_config(recipe: Recipe) -> dict:
    return dict(
        sample_size=SIZE // recipe.factor, in_channels=8, out_channels=4, num_frames=NUM_FRAMES,
        down_block_types=recipe.unet_down, up_block_types=tuple(_UP[t] for t in reversed(recipe.unet_down)),
        # 64 channels, not 32: every ResNet adds the time embedding (noise level, fps, bucket, noise aug) as a
        # per-channel bias right before a GroupNorm with 32 groups. With 32 channels each group is a single
        # channel, whose spatial mean the norm subtracts: the embedding would be erased.
        block_out_channels=recipe.unet_blocks, layers_per_block=1, num_attention_heads=(4,) * len(recipe.unet_blocks),
        cross_attention_dim=32,
        # 8 sinusoidal features per id (frequencies 1, 0.1, 0.01, 0.001): fps - 1 and bucket mostly land on
        # smooth, monotone features instead of ones that wrap around many times over their range
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=3 * 8,
    )
