"""Training targets on the super-resolved grid."""

from __future__ import annotations

import torch


def spike_image(xyz_nm: torch.Tensor, frame: torch.Tensor, n_frames: int, height: int, width: int,
                pixel_nm: float, upsampling: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """(F, 1, u·H, u·W) image with a unit spike (or ``weight``) in the fine pixel holding each emitter."""
    fine = pixel_nm / upsampling
    fh, fw = height * upsampling, width * upsampling
    col = torch.floor(xyz_nm[:, 0] / fine).long()
    row = torch.floor(xyz_nm[:, 1] / fine).long()
    inside = (col >= 0) & (col < fw) & (row >= 0) & (row < fh)
    out = torch.zeros(n_frames * fh * fw, device=xyz_nm.device)
    values = torch.ones_like(xyz_nm[:, 0]) if weight is None else weight.to(xyz_nm.dtype)
    idx = (frame * fh + row) * fw + col
    out.index_put_((idx[inside],), values[inside].float(), accumulate=True)
    return out.view(n_frames, 1, fh, fw)
