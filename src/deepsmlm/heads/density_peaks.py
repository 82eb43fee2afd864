"""From density outputs to localizations: local maxima, sub-voxel centroids, confidences (the density head).

Outputs are volumes (B, D, h, w): D axial planes on the fine lateral grid (D = 1 for 2D models). A
window is (2·window_planes + 1) planes × (2·window_px + 1)² fine pixels around a voxel. A detection is
a voxel that is the maximum of its window and whose window mass (the confidence) reaches the threshold.

Such a voxel holds at least threshold / (window size) itself, so only voxels above that floor are
candidates; their windows are gathered and tested directly, which on sparse outputs (3D grids of
millions of voxels, almost all zero) is far cheaper than pooling the whole volume. Dense outputs (an
untrained network) fall back to separable box pooling.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

MAX_CANDIDATES = 1 << 20  # beyond this many candidate voxels, pool the whole volume instead


def _window_size(window_px: int, window_planes: int) -> int:
    return (2 * window_planes + 1) * (2 * window_px + 1) ** 2


def _windows(density: torch.Tensor, idx: tuple[torch.Tensor, ...], window_px: int, window_planes: int) -> torch.Tensor:
    """(n, 2wz+1, 2wp+1, 2wp+1) windows around voxels ``idx`` = (b, plane, row, col), zero outside."""
    b, p, r, c = idx
    wp, wz = window_px, window_planes
    lateral = torch.arange(-wp, wp + 1, device=density.device)
    axial = torch.arange(-wz, wz + 1, device=density.device)
    padded = F.pad(density, (wp, wp, wp, wp, wz, wz))
    return padded[b[:, None, None, None], (p[:, None] + wz + axial)[:, :, None, None],
                  (r[:, None] + wp + lateral)[:, None, :, None], (c[:, None] + wp + lateral)[:, None, None, :]]


def _pooled_peaks(density: torch.Tensor, threshold: float, window_px: int, window_planes: int) -> torch.Tensor:
    """Peak map by separable box pooling of the whole volume."""
    x = density[:, None]
    local_max, total = x, x
    for k, pad in (((2 * window_planes + 1, 1, 1), (window_planes, 0, 0)),
                   ((1, 2 * window_px + 1, 1), (0, window_px, 0)), ((1, 1, 2 * window_px + 1), (0, 0, window_px))):
        if k != (1, 1, 1):
            local_max = F.max_pool3d(local_max, k, stride=1, padding=pad)
            total = F.avg_pool3d(total, k, stride=1, padding=pad, count_include_pad=True) * (k[0] * k[1] * k[2])
    return ((density == local_max[:, 0]) & (total[:, 0] >= threshold) & (density > 0))


def peak_map(density: torch.Tensor, threshold: float, window_px: int, window_planes: int = 0) -> torch.Tensor:
    """Boolean map of the detections in (B, D, h, w) density volumes."""
    floor = threshold / _window_size(window_px, window_planes)
    candidates = density > floor if floor > 0 else density > 0
    n = int(candidates.sum())
    if n > MAX_CANDIDATES:
        return _pooled_peaks(density, threshold, window_px, window_planes)
    idx = torch.nonzero(candidates, as_tuple=True)
    win = _windows(density, idx, window_px, window_planes).flatten(1)
    centre = density[idx]
    accepted = (win.amax(dim=1) == centre) & (win.sum(dim=1) >= threshold)
    out = torch.zeros_like(candidates)
    out[tuple(i[accepted] for i in idx)] = True
    return out


def detected_density(density: torch.Tensor, peaks: torch.Tensor, window_px: int,
                     window_planes: int = 0) -> torch.Tensor:
    """The density inside the windows of the accepted ``peaks`` (from :func:`peak_map`), zero elsewhere."""
    b, p, r, c = torch.nonzero(peaks, as_tuple=True)
    near = torch.zeros(density.shape[0], density.shape[1] + 2 * window_planes, density.shape[2] + 2 * window_px,
                       density.shape[3] + 2 * window_px, dtype=torch.bool, device=density.device)
    lateral = torch.arange(2 * window_px + 1, device=density.device)
    axial = torch.arange(2 * window_planes + 1, device=density.device)
    near[b[:, None, None, None], (p[:, None] + axial)[:, :, None, None], (r[:, None] + lateral)[:, None, :, None],
         (c[:, None] + lateral)[:, None, None, :]] = True
    near = near[:, window_planes:near.shape[1] - window_planes, window_px:near.shape[2] - window_px,
                window_px:near.shape[3] - window_px]
    return torch.where(near, density, torch.zeros_like(density))


def density_peaks(density: torch.Tensor, threshold: float, window_px: int, peaks: torch.Tensor | None = None,
                  window_planes: int = 0, origin: tuple[int, int] = (0, 0)) -> dict[str, torch.Tensor]:
    """Localizations from (B, D, h, w) density volumes (≈ 1 per emitter summed over its voxels).

    ``peaks`` may pass the detection map in when already computed (:func:`peak_map`). The position is
    the density-weighted centroid of the detection's window, the confidence its mass (capped at 1).
    Returns frame (index in the batch), plane/row/col (continuous: voxel (k, i, j) covers
    [k, k+1) × [i, i+1) × [j, j+1)) and prob; rows and columns count from ``origin``, the (row, col) of
    the volumes' first voxel in a larger grid (a tile's place in its frame).
    """
    if peaks is None:
        peaks = peak_map(density, threshold, window_px, window_planes)
    idx = torch.nonzero(peaks, as_tuple=True)
    b, p, r, c = idx
    win = _windows(density, idx, window_px, window_planes)
    mass = win.sum(dim=(1, 2, 3))
    lat = torch.arange(-window_px, window_px + 1, device=density.device).to(density.dtype)
    ax = torch.arange(-window_planes, window_planes + 1, device=density.device).to(density.dtype)
    mz = (win.sum(dim=(2, 3)) * ax).sum(dim=1)
    my = (win.sum(dim=(1, 3)) * lat).sum(dim=1)
    mx = (win.sum(dim=(1, 2)) * lat).sum(dim=1)
    dtype = density.dtype
    return {"frame": b, "plane": p.to(dtype) + 0.5 + mz / mass, "row": (r + origin[0]).to(dtype) + 0.5 + my / mass,
            "col": (c + origin[1]).to(dtype) + 0.5 + mx / mass, "prob": mass.clamp(max=1.0)}


def dye_masses(volumes: torch.Tensor, peaks: torch.Tensor, window_px: int, window_planes: int = 0) -> torch.Tensor:
    """(n, C) window mass of each dye at the detections of ``peaks`` (B, D, h, w), in the order of
    :func:`density_peaks`; ``volumes`` (B, C, D, h, w) holds one density volume per dye."""
    idx = torch.nonzero(peaks, as_tuple=True)
    return torch.stack([_windows(volumes[:, c], idx, window_px, window_planes).sum(dim=(1, 2, 3))
                        for c in range(volumes.shape[1])], dim=1)
