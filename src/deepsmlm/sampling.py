"""Reproducible random variates that torch only offers without a generator."""

from __future__ import annotations

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
