"""The density head's training loss: the Deep-STORM and DeepSTORM3D papers' losses."""

from __future__ import annotations

import math

import torch


def gaussian_kernel_1d(sigma_px: float, device: torch.device | None = None) -> torch.Tensor:
    """Normalised 1D Gaussian taps out to 3σ."""
    r = max(1, math.ceil(3 * sigma_px))
    x = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


def blur_matrix(n: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n, n) matrix of a Gaussian filter along one axis of length n, zero padding (banded Toeplitz)."""
    k = gaussian_kernel_1d(sigma, device).to(dtype)
    r = (len(k) - 1) // 2
    offset = torch.arange(n, device=device)[None, :] - torch.arange(n, device=device)[:, None]
    return torch.where(offset.abs() <= r, k[(offset + r).clamp(0, 2 * r)], torch.zeros((), dtype=dtype, device=device))


def gaussian_blur(img: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian filter of (B, C, H, W) images, zero padding (as matrix products: fast on CPU)."""
    rows = blur_matrix(img.shape[-2], sigma_px, img.dtype, img.device)
    cols = blur_matrix(img.shape[-1], sigma_px, img.dtype, img.device)
    return rows @ img @ cols


def axial_blur(volume: torch.Tensor, sigma_planes: float) -> torch.Tensor:
    """Gaussian filter of (B, D, H, W) volumes along the plane axis D, zero padding."""
    matrix = blur_matrix(volume.shape[1], sigma_planes, volume.dtype, volume.device)
    return torch.einsum("ij,bjhw->bihw", matrix, volume)


def dice_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 − 2·Σ(p·t) / (Σp² + Σt²) per sample, averaged over the batch."""
    dims = tuple(range(1, pred.dim()))
    overlap = (pred * target).sum(dims)
    return (1 - 2 * overlap / ((pred**2).sum(dims) + (target**2).sum(dims) + eps)).mean()


def deepstorm_loss(pred: torch.Tensor, target: torch.Tensor, sigma_px: float = 1.0, l1_weight: float = 0.0,
                   sigma_planes: float = 0.0, dice_weight: float = 0.0, dyes: int = 1) -> torch.Tensor:
    """MSE(G ⊛ prediction, G ⊛ target) + λ₁·mean|prediction| + λ_D·Dice(prediction, target).

    (B, C·D, h, w) outputs: C dye volumes (1 unless multicolour) of D planes; G is a Gaussian of σ fine
    pixels laterally and, for D > 1 and ``sigma_planes`` > 0, of that many planes axially, within each
    dye's volume. The Dice term takes each sample's dyes together, so mass put in the wrong dye's
    volume is penalised by the overlap found in the right one. Deep-STORM: D = 1 with the L1 term;
    DeepSTORM3D: D planes, σ = 1 voxel, with the Dice term.
    """
    def smooth(x: torch.Tensor) -> torch.Tensor:
        x = gaussian_blur(x.unflatten(1, (dyes, -1)).flatten(0, 1), sigma_px)
        return axial_blur(x, sigma_planes) if sigma_planes > 0 and x.shape[1] > 1 else x

    loss = smooth(pred - target).square().mean()  # G is linear: one filter of the difference
    if l1_weight > 0:
        loss = loss + l1_weight * pred.abs().mean()
    if dice_weight > 0:
        loss = loss + dice_weight * dice_loss(pred, target)
    return loss
