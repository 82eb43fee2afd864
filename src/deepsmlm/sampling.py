"""Reproducible random variates that torch only offers without a generator, and smooth random fields."""

from __future__ import annotations

import math

import torch


def standard_gamma(shape: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Exact Gamma(shape, 1) samples, one per entry of ``shape`` (> 0), float64, same shape as the input.

    Marsaglia & Tsang (2000): for k >= 1, d = k − 1/3, c = 1/√(9d); draw x ~ N(0, 1), u ~ U(0, 1),
    v = (1 + c·x)³ and accept d·v when v > 0 and log u < x²/2 + d − d·v + d·log v. Rejected entries
    are redrawn, so a given generator state always yields the same samples. For k < 1,
    G(k) = G(k + 1)·U^(1/k).
    """
    k = shape.to(torch.float64).reshape(-1)
    small = k < 1
    d = torch.where(small, k + 1, k) - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(d)
    pending = torch.arange(d.numel(), device=d.device)
    while pending.numel() > 0:
        dp, cp = d[pending], c[pending]
        x = torch.randn(pending.numel(), generator=generator, device=d.device, dtype=torch.float64)
        u = torch.rand(pending.numel(), generator=generator, device=d.device, dtype=torch.float64)
        v = (1.0 + cp * x) ** 3
        accept = (v > 0) & (torch.log(u) < 0.5 * x * x + dp - dp * v + dp * torch.log(v.clamp_min(1e-300)))
        out[pending[accept]] = (dp * v)[accept]
        pending = pending[~accept]
    if bool(small.any()):
        u = torch.rand(int(small.sum()), generator=generator, device=d.device, dtype=torch.float64)
        out[small] = out[small] * u ** (1.0 / k[small])
    return out.reshape(shape.shape)


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
