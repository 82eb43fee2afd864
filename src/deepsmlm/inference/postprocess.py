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


def detected_density(density: torch.Tensor, peaks: torch.Tensor, window_px: int) -> torch.Tensor:
    """The density inside the windows of the accepted ``peaks`` (from :func:`peak_map`), zero elsewhere."""
    k = 2 * window_px + 1
    near = F.max_pool2d(peaks.to(density.dtype), k, stride=1, padding=window_px) > 0
    return torch.where(near, density, torch.zeros_like(density))


def density_peaks(density: torch.Tensor, threshold: float, window_px: int,
                  peaks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Localizations from (B, 1, h, w) density images (≈ 1 per emitter summed over its spot).

    A detection is a pixel that is the maximum of its (2r+1)² neighbourhood and whose neighbourhood
    sum (the confidence) reaches ``threshold`` (``peaks`` may pass that map in when already computed);
    its position is the density-weighted centroid of that window, gathered only at the detections.
    Returns frame (index in the batch), row/col (fine pixels, continuous: pixel (i, j) covers
    [i, i+1) × [j, j+1)) and prob.
    """
    if peaks is None:
        peaks = peak_map(density, window_sums(density, window_px), threshold, window_px)
    b, _, r, c = torch.nonzero(peaks, as_tuple=True)
    k = 2 * window_px + 1
    offs = torch.arange(-window_px, window_px + 1, device=density.device)
    padded = F.pad(density[:, 0], (window_px, window_px, window_px, window_px))
    win = padded[b[:, None, None], (r[:, None] + window_px + offs)[:, :, None],
                 (c[:, None] + window_px + offs)[:, None, :]]  # (n, k, k) windows around the peaks
    mass = win.sum(dim=(1, 2))
    w = offs.to(density.dtype)
    my = (win.sum(dim=2) * w).sum(dim=1)
    mx = (win.sum(dim=1) * w).sum(dim=1)
    return {"frame": b, "row": r.to(density.dtype) + 0.5 + my / mass, "col": c.to(density.dtype) + 0.5 + mx / mass,
            "prob": mass.clamp(max=1.0)}
