"""From network outputs to localizations: local maxima, sub-voxel centroids, confidences.

Outputs are volumes (B, D, h, w): D axial planes on the fine lateral grid (D = 1 for 2D models). A
window is (2·window_planes + 1) planes × (2·window_px + 1)² fine pixels around a voxel.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _separable(pool, volume: torch.Tensor, window_px: int, window_planes: int) -> torch.Tensor:
    """A box pool of (B, D, h, w) volumes over the window, as three 1D pools (the box is separable)."""
    x = volume[:, None]
    for k, pad in (((2 * window_planes + 1, 1, 1), (window_planes, 0, 0)),
                   ((1, 2 * window_px + 1, 1), (0, window_px, 0)), ((1, 1, 2 * window_px + 1), (0, 0, window_px))):
        if k != (1, 1, 1):
            x = pool(x, k, pad)
    return x[:, 0]


def _box_sum(x: torch.Tensor, k: tuple[int, int, int], pad: tuple[int, int, int]) -> torch.Tensor:
    return F.avg_pool3d(x, k, stride=1, padding=pad, count_include_pad=True) * (k[0] * k[1] * k[2])


def _box_max(x: torch.Tensor, k: tuple[int, int, int], pad: tuple[int, int, int]) -> torch.Tensor:
    return F.max_pool3d(x, k, stride=1, padding=pad)


def window_sums(density: torch.Tensor, window_px: int, window_planes: int = 0) -> torch.Tensor:
    """Mass in the window around every voxel."""
    return _separable(_box_sum, density, window_px, window_planes)


def peak_map(density: torch.Tensor, sums: torch.Tensor, threshold: float, window_px: int,
             window_planes: int = 0) -> torch.Tensor:
    """Voxels that are the maximum of their window and whose window mass reaches ``threshold``."""
    local_max = _separable(_box_max, density, window_px, window_planes)
    return (density == local_max) & (sums >= threshold) & (density > 0)


def detected_density(density: torch.Tensor, peaks: torch.Tensor, window_px: int,
                     window_planes: int = 0) -> torch.Tensor:
    """The density inside the windows of the accepted ``peaks`` (from :func:`peak_map`), zero elsewhere."""
    near = _separable(_box_max, peaks.to(density.dtype), window_px, window_planes) > 0
    return torch.where(near, density, torch.zeros_like(density))


def density_peaks(density: torch.Tensor, threshold: float, window_px: int, peaks: torch.Tensor | None = None,
                  window_planes: int = 0) -> dict[str, torch.Tensor]:
    """Localizations from (B, D, h, w) density volumes (≈ 1 per emitter summed over its voxels).

    A detection is a voxel that is the maximum of its window and whose window sum (the confidence)
    reaches ``threshold`` (``peaks`` may pass that map in when already computed); its position is the
    density-weighted centroid of that window, gathered only at the detections. Returns frame (index in
    the batch), plane/row/col (continuous: voxel (k, i, j) covers [k, k+1) × [i, i+1) × [j, j+1)) and prob.
    """
    if peaks is None:
        peaks = peak_map(density, window_sums(density, window_px, window_planes), threshold, window_px, window_planes)
    b, p, r, c = torch.nonzero(peaks, as_tuple=True)
    wp, wz = window_px, window_planes
    lateral = torch.arange(-wp, wp + 1, device=density.device)
    axial = torch.arange(-wz, wz + 1, device=density.device)
    padded = F.pad(density, (wp, wp, wp, wp, wz, wz))
    win = padded[b[:, None, None, None], (p[:, None] + wz + axial)[:, :, None, None],
                 (r[:, None] + wp + lateral)[:, None, :, None], (c[:, None] + wp + lateral)[:, None, None, :]]
    mass = win.sum(dim=(1, 2, 3))
    lat, ax = lateral.to(density.dtype), axial.to(density.dtype)
    mz = (win.sum(dim=(2, 3)) * ax).sum(dim=1)
    my = (win.sum(dim=(1, 3)) * lat).sum(dim=1)
    mx = (win.sum(dim=(1, 2)) * lat).sum(dim=1)
    dtype = density.dtype
    return {"frame": b, "plane": p.to(dtype) + 0.5 + mz / mass, "row": r.to(dtype) + 0.5 + my / mass,
            "col": c.to(dtype) + 0.5 + mx / mass, "prob": mass.clamp(max=1.0)}
