"""Background photons per pixel: a random level per frame, optionally modulated by a smooth random field."""

from __future__ import annotations

import torch

from deepsmlm.config import BackgroundConfig, FrameConfig
from deepsmlm.sampling import smooth_field


def sample_background(
    cfg: BackgroundConfig, frame: FrameConfig, n_frames: int, generator: torch.Generator
) -> torch.Tensor:
    """(n_frames, height, width) float32 expected background photons per pixel.

    Each frame has a level b uniform in ``photons_per_px``. With a = ``nonuniform_amplitude`` > 0
    the frame is b (1 + a s), clamped at 0, where s is a fresh smooth field per frame
    (see ``smooth_field``) with spatial mean 0 and max |s| = 1, so the frame mean stays b.
    """
    low, high = cfg.photons_per_px
    level = low + (high - low) * torch.rand(n_frames, 1, 1, generator=generator, dtype=torch.float64)
    if cfg.nonuniform_amplitude == 0:
        return level.expand(n_frames, frame.height, frame.width).float().contiguous()
    length_px = cfg.nonuniform_length_nm / frame.pixel_size_nm
    s = smooth_field(n_frames, frame.height, frame.width, length_px, generator)
    return (level * (1 + cfg.nonuniform_amplitude * s)).clamp_min(0).float()
