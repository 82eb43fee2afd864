"""Sample geometries emitters sit on: worm-like-chain filaments and ellipsoid surfaces (nm)."""

from __future__ import annotations

import math

import torch

from deepsmlm.config import StructureConfig

FILAMENT_STEP_NM = 15.0
"""Arc length between consecutive polyline vertices of a filament."""


def filament_paths(
    cfg: StructureConfig, width_nm: float, height_nm: float, z_center_nm: float, generator: torch.Generator
) -> list[torch.Tensor]:
    """``cfg.n_filaments`` microtubule-like curves crossing the field, each a (K, 3) float64 polyline in nm.

    Each curve is a 2D worm-like chain through a random point of the field: its tangent angle
    makes a Gaussian random walk with variance ``step / filament_persistence_nm`` per step of
    ``FILAMENT_STEP_NM``, so <cos(theta(s) - theta(0))> = exp(-s / (2 persistence)). The chain
    is grown both ways from the start point and cut where it first leaves the field, so every
    vertex lies in [0, width_nm) x [0, height_nm). Its axial position is
    z(s) = z_center_nm + filament_z_amplitude_nm * sin(2 pi s / period + phase), with a random
    phase and a period uniform in [1, 2] x the field's longer side.
    """
    return [_filament(cfg, width_nm, height_nm, z_center_nm, generator) for _ in range(cfg.n_filaments)]


def _filament(
    cfg: StructureConfig, width_nm: float, height_nm: float, z_center_nm: float, generator: torch.Generator
) -> torch.Tensor:
    n_steps = math.ceil(2 * (width_nm + height_nm) / FILAMENT_STEP_NM)
    start = torch.rand(2, generator=generator, dtype=torch.float64) * torch.tensor([width_nm, height_nm])
    theta0 = 2 * math.pi * torch.rand((), generator=generator, dtype=torch.float64)
    kicks = torch.randn(2, n_steps, generator=generator, dtype=torch.float64)
    kicks *= math.sqrt(FILAMENT_STEP_NM / cfg.filament_persistence_nm)
    kicks[0, 0] = 0.0  # the first forward segment keeps theta0; the backward one already differs by one kick
    theta = torch.stack([theta0, theta0 + math.pi]).unsqueeze(1) + kicks.cumsum(dim=1)
    steps = FILAMENT_STEP_NM * torch.stack([theta.cos(), theta.sin()], dim=-1)
    forward, backward = (_inside_prefix(start + steps[i].cumsum(dim=0), width_nm, height_nm) for i in (0, 1))
    xy = torch.cat([backward.flip(0), start.unsqueeze(0), forward])
    arc = FILAMENT_STEP_NM * torch.arange(-len(backward), len(forward) + 1, dtype=torch.float64)
    return torch.cat([xy, _z_profile(cfg, arc, max(width_nm, height_nm), z_center_nm, generator)[:, None]], dim=1)


def _inside_prefix(xy: torch.Tensor, width_nm: float, height_nm: float) -> torch.Tensor:
    """Leading rows of the (K, 2) walk before it first leaves [0, width) x [0, height)."""
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width_nm) & (xy[:, 1] >= 0) & (xy[:, 1] < height_nm)
    outside = (~inside).nonzero()
    return xy[: int(outside[0]) if len(outside) else len(xy)]


def _z_profile(
    cfg: StructureConfig, arc_nm: torch.Tensor, side_nm: float, z_center_nm: float, generator: torch.Generator
) -> torch.Tensor:
    """Smooth axial excursion (nm) along the arc length ``arc_nm``."""
    period, phase = torch.rand(2, generator=generator, dtype=torch.float64) * torch.tensor([side_nm, 2 * math.pi])
    return z_center_nm + cfg.filament_z_amplitude_nm * torch.sin(2 * math.pi * arc_nm / (side_nm + period) + phase)


def sample_on_filaments(paths: list[torch.Tensor], n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` points (n, 3) nm uniform by arc length over the union of the (K, 3) polylines."""
    starts = torch.cat([p[:-1] for p in paths])
    deltas = torch.cat([p[1:] - p[:-1] for p in paths])
    if n == 0:
        return starts.new_zeros(0, 3)
    segment = torch.multinomial(deltas.norm(dim=1), n, replacement=True, generator=generator)
    t = torch.rand(n, 1, generator=generator, dtype=starts.dtype)
    return starts[segment] + t * deltas[segment]


def sample_on_ellipsoid(
    semi_axes_nm: tuple[float, float, float],
    center_nm: tuple[float, float, float],
    n: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """``n`` points (n, 3) nm uniform by area on the surface (x/a)^2 + (y/b)^2 + (z/c)^2 = 1 about ``center_nm``.

    A uniform point u on the unit sphere maps to (a u_x, b u_y, c u_z); that map stretches area
    by abc |(u_x/a, u_y/b, u_z/c)|, so points are kept with probability
    min(a, b, c) |(u_x/a, u_y/b, u_z/c)| <= 1 (rejection sampling).
    """
    axes = torch.tensor(semi_axes_nm, dtype=torch.float64)
    if bool((axes <= 0).any()):
        raise ValueError(f"ellipsoid semi-axes must be positive, got {semi_axes_nm}")
    kept: list[torch.Tensor] = []
    remaining = n
    while remaining > 0:
        u = torch.randn(remaining, 3, generator=generator, dtype=torch.float64)
        u /= u.norm(dim=1, keepdim=True)
        accept = torch.rand(remaining, generator=generator, dtype=torch.float64) < axes.min() * (u / axes).norm(dim=1)
        kept.append(u[accept])
        remaining -= int(accept.sum())
    return torch.tensor(center_nm, dtype=torch.float64) + axes * torch.cat(kept or [axes.new_zeros(0, 3)])
