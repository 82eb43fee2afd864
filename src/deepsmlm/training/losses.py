"""The papers' losses."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def gaussian_kernel_1d(sigma_px: float, device: torch.device | None = None) -> torch.Tensor:
    """Normalised 1D Gaussian taps out to 3σ."""
    r = max(1, math.ceil(3 * sigma_px))
    x = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


def gaussian_blur(img: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian filter of (B, C, H, W) images, zero padding."""
    k = gaussian_kernel_1d(sigma_px, img.device).to(img.dtype)
    c = img.shape[1]
    r = (len(k) - 1) // 2
    out = F.conv2d(img, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)


def deepstorm_loss(pred: torch.Tensor, target: torch.Tensor, sigma_px: float = 1.0,
                   l1_weight: float = 0.0) -> torch.Tensor:
    """Deep-STORM: MSE(G ⊛ prediction, G ⊛ target) + λ·mean|prediction| (G: Gaussian of σ fine pixels)."""
    mse = F.mse_loss(gaussian_blur(pred, sigma_px), gaussian_blur(target, sigma_px))
    return mse + l1_weight * pred.abs().mean() if l1_weight > 0 else mse
