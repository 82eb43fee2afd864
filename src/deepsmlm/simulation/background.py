"""Background photons per pixel: a random level per frame, optionally modulated by a smooth random field."""

from __future__ import annotations

import math

import torch

from deepsmlm.config import BackgroundConfig, FrameConfig


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


def smooth_field(n: int, height: int, width: int, length_px: float, generator: torch.Generator | None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, height, width) float64 random fields on ``device`` with spatial mean 0 and max |s| = 1 (0 if flat).

    White Gaussian noise filtered (by FFT) with a Gaussian kernel of standard deviation
    length_px / sqrt(2), so before normalisation the field's autocorrelation is
    exp(-r^2 / (2 length_px^2)). The noise is drawn on a grid padded by 2 length_px on each side
    and cropped, so opposite edges do not correlate through the FFT's periodic wrap.
    """
    pad = math.ceil(2 * length_px)
    rows, cols = height + 2 * pad, width + 2 * pad
    noise = torch.randn(n, rows, cols, generator=generator, dtype=torch.float64, device=device)
    fy = torch.fft.fftfreq(rows, dtype=torch.float64, device=device)[:, None]
    fx = torch.fft.rfftfreq(cols, dtype=torch.float64, device=device)[None, :]
    transfer = torch.exp(-(math.pi * length_px) ** 2 * (fx**2 + fy**2))  # FT of the kernel, sigma^2 = L^2 / 2
    field = torch.fft.irfft2(torch.fft.rfft2(noise) * transfer, s=(rows, cols))
    field = field[:, pad : pad + height, pad : pad + width]
    field = field - field.mean(dim=(1, 2), keepdim=True)
    return field / field.abs().amax(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(field.dtype).tiny)
