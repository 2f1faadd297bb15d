"""`Trace`: everything `generate(..., capture=True)` saw on the way from noise to video.

Per-step tensors are laid out (num_steps, num_frames, 4, h, w), with h, w the latent grid (H/8, W/8 for SVD),
and kept on the CPU.

>>> import svdkit
>>> pipe = svdkit.load_pipeline("toy")
>>> video = svdkit.generate(pipe, "data/example_0.png", num_inference_steps=4, capture=True)
>>> video.trace.x0.shape
torch.Size([4, 14, 4, 8, 8])
>>> path = video.trace.save("trace.safetensors")      # every tensor and setting, as safetensors
>>> svdkit.Trace.load(path).sigmas.shape
torch.Size([5])
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

__all__ = ["Trace"]


@dataclasses.dataclass
class Trace:
    """The denoising trajectory of one video.

    Attributes:
      sigmas: (num_steps + 1,) noise levels; the last is the level after the final step (0).
      timesteps: (num_steps,) the UNet's time input at each step (0.25 * ln sigma for SVD).
      x_t: (num_steps, F, 4, h, w) the noisy latents entering each step (before input scaling).
      x0: (num_steps, F, 4, h, w) the clean latents predicted at each step.
      model_output_cond: (num_steps, F, 4, h, w) the UNet's output with the image condition.
      model_output_uncond: same shape without it (zeroed embedding and latents), or None without guidance.
      guidance: (F,) the guidance scale of each frame.
      latents: (F, 4, h, w) the final latents, the ones decoded into the video.
      image_embeddings: (1, 1, D) the CLIP image embedding of the conditioning image.
      image_latents: (1, 4, h, w) VAE latents of the noise-augmented image (not multiplied by the scaling factor).
      noisy_image: (1, 3, H, W) the conditioning image in [-1, 1] after noise augmentation.
      added_time_ids: (1, 3) [fps - 1, motion_bucket_id, noise_aug_strength].
      scaling_factor: the VAE's latent scaling factor (frames' latents are scaled by it, image_latents are not).
    """

    sigmas: torch.Tensor
    timesteps: torch.Tensor
    x_t: torch.Tensor
    x0: torch.Tensor
    model_output_cond: torch.Tensor
    model_output_uncond: torch.Tensor | None
    guidance: torch.Tensor
    latents: torch.Tensor
    image_embeddings: torch.Tensor
    image_latents: torch.Tensor
    noisy_image: torch.Tensor
    added_time_ids: torch.Tensor
    scaling_factor: float = 1.0

    @property
    def num_steps(self) -> int:
        return self.x_t.shape[0]

    @property
    def guidance_delta(self) -> torch.Tensor | None:
        """(num_steps, F, 4, h, w) what guidance adds to the unconditional output: g * (cond - uncond)."""
        if self.model_output_uncond is None:
            return None
        g = self.guidance.view(1, -1, 1, 1, 1)
        return g * (self.model_output_cond - self.model_output_uncond)

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name).contiguous()
                for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}

    def save(self, path) -> Path:
        """Save as one safetensors file; non-tensor fields go in its JSON metadata."""
        from safetensors.torch import save_file
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"scaling_factor": self.scaling_factor}
        save_file(self._tensors(), str(path), metadata={"svdkit_trace": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path) -> Trace:
        """Load a trace written by `save`."""
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta = json.loads((f.metadata() or {}).get("svdkit_trace", "{}"))
        tensors.setdefault("model_output_uncond", None)
        return cls(**tensors, **meta)
