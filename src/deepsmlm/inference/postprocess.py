"""From network outputs to localizations: local maxima, sub-pixel centroids, confidences."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def window_sums(density: torch.Tensor, window_px: int) -> torch.Tensor:
    """Mass in the (2r+1)² window around every pixel."""
    k = 2 * window_px + 1
    return F.avg_pool2d(density, k, stride=1, padding=window_px, count_include_pad=True) * (k * k)


def peak_map(density: torch.Tensor, sums: torch.Tensor, threshold: float, window_px: int) -> torch.Tensor:
    """Pixels that are the maximum of their window and whose window mass reaches ``threshold``."""
    k = 2 * window_px + 1
    return (density == F.max_pool2d(density, k, stride=1, padding=window_px)) & (sums >= threshold) & (density > 0)


def detected_density(density: torch.Tensor, threshold: float, window_px: int) -> torch.Tensor:
    """The density inside the windows of accepted detections, zero elsewhere (for the summed image)."""
    k = 2 * window_px + 1
    peaks = peak_map(density, window_sums(density, window_px), threshold, window_px)
    near = F.max_pool2d(peaks.to(density.dtype), k, stride=1, padding=window_px) > 0
    return torch.where(near, density, torch.zeros_like(density))


def density_peaks(density: torch.Tensor, threshold: float, window_px: int) -> dict[str, torch.Tensor]:
    """Localizations from (B, 1, h, w) density images (≈ 1 per emitter summed over its spot).

    A detection is a pixel that is the maximum of its (2r+1)² neighbourhood and whose neighbourhood
    sum (the confidence) reaches ``threshold``; its position is the density-weighted centroid of that
    window. Returns frame (index in the batch), row/col (fine pixels, continuous: pixel (i, j)
    covers [i, i+1) × [j, j+1)) and prob.
    """
    k = 2 * window_px + 1
    sums = window_sums(density, window_px)
    b, _, r, c = torch.nonzero(peak_map(density, sums, threshold, window_px), as_tuple=True)
    offs = torch.arange(-window_px, window_px + 1, device=density.device, dtype=density.dtype)
    # the window's mass-weighted offsets, from two box-weighted convolutions
    wy = offs.view(1, 1, k, 1).expand(1, 1, k, k)
    wx = offs.view(1, 1, 1, k).expand(1, 1, k, k)
    my = F.conv2d(density, wy, padding=window_px)[b, 0, r, c]
    mx = F.conv2d(density, wx, padding=window_px)[b, 0, r, c]
    mass = sums[b, 0, r, c]
    return {"frame": b, "row": r.to(density.dtype) + 0.5 + my / mass, "col": c.to(density.dtype) + 0.5 + mx / mass,
            "prob": mass.clamp(max=1.0)}
