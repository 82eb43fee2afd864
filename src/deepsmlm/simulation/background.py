"""Background photons per pixel: a random level per frame, optionally modulated by a smooth random field."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

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
    level = _levels(cfg, n_frames, generator)
    field = _fields(cfg, frame, n_frames, generator) if cfg.nonuniform_amplitude else None
    return _frames(cfg, frame, level, field)


def background_chunks(cfg: BackgroundConfig, frame: FrameConfig, n_frames: int, chunk: int,
                      generator: torch.Generator) -> Iterator[torch.Tensor]:
    """The frames ``sample_background`` draws, as (≤ chunk, height, width) pieces made one at a time, so a
    long movie never holds its whole background.

    ``generator`` (CPU) is advanced now, past every draw, exactly as ``sample_background`` leaves it; the
    smooth fields are replayed chunk by chunk from a copy of its state (equal to the one-call draws when
    ``chunk`` × the padded field size is a multiple of 16 values, as for 32 frames: torch draws normal
    variates in blocks of 16).
    """
    if n_frames <= chunk:
        return iter([sample_background(cfg, frame, n_frames, generator)])
    level = _levels(cfg, n_frames, generator)
    starts = range(0, n_frames, chunk)
    if not cfg.nonuniform_amplitude:
        return (_frames(cfg, frame, level[s:s + chunk], None) for s in starts)
    replay = torch.Generator().set_state(generator.get_state())
    for s in starts:  # the caller's later draws start where the whole background's would have ended
        _fields(cfg, frame, len(level[s:s + chunk]), generator)
    return (_frames(cfg, frame, level[s:s + chunk], _fields(cfg, frame, len(level[s:s + chunk]), replay))
            for s in starts)


@dataclass(frozen=True)
class BackgroundSampler:
    """Draws a movie's background photons: ``statistics`` (levels, modulation) on frames of ``frame``'s
    geometry (see :func:`sample_background`)."""

    statistics: BackgroundConfig
    frame: FrameConfig

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) px of a frame."""
        return self.frame.height, self.frame.width

    def chunks(self, n_frames: int, chunk: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """The background of ``n_frames`` frames in pieces of ``chunk`` frames (see :func:`background_chunks`)."""
        return background_chunks(self.statistics, self.frame, n_frames, chunk, generator)


def _levels(cfg: BackgroundConfig, n_frames: int, generator: torch.Generator) -> torch.Tensor:
    """(n_frames, 1, 1) float64 mean background per frame, uniform in ``photons_per_px``."""
    low, high = cfg.photons_per_px
    return low + (high - low) * torch.rand(n_frames, 1, 1, generator=generator, dtype=torch.float64)


def _fields(cfg: BackgroundConfig, frame: FrameConfig, n_frames: int, generator: torch.Generator) -> torch.Tensor:
    """(n_frames, height, width) smooth modulation fields (mean 0, max |s| = 1)."""
    return smooth_field(n_frames, frame.height, frame.width, cfg.nonuniform_length_nm / frame.pixel_size_nm, generator)


def _frames(cfg: BackgroundConfig, frame: FrameConfig, level: torch.Tensor, field: torch.Tensor | None) -> torch.Tensor:
    """float32 background frames from per-frame levels and (optional) modulation fields."""
    if field is None:
        return level.expand(len(level), frame.height, frame.width).float().contiguous()
    return (level * (1 + cfg.nonuniform_amplitude * field)).clamp_min(0).float()
