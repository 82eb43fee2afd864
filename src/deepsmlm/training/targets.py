"""Training targets on the super-resolved grid."""

from __future__ import annotations

import torch


def spike_image(xyz_nm: torch.Tensor, frame: torch.Tensor, n_frames: int, height: int, width: int,
                pixel_nm: float, upsampling: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """(F, 1, u·H, u·W) image with a unit mass (or ``weight``) per emitter, split bilinearly among the four
    fine pixels whose centres surround it, so the mass-weighted centroid is the exact position.

    (The papers put the whole spike in the pixel holding the emitter, which quantises positions to the
    fine grid: 25 nm pixels alone cost 25/√12 ≈ 7 nm per axis.)
    """
    fine = pixel_nm / upsampling
    fh, fw = height * upsampling, width * upsampling
    u = xyz_nm[:, 0] / fine - 0.5  # continuous index along columns, pixel centres at integers
    v = xyz_nm[:, 1] / fine - 0.5
    c0, r0 = torch.floor(u), torch.floor(v)
    fu, fv = (u - c0).float(), (v - r0).float()
    c0, r0 = c0.long(), r0.long()
    mass = torch.ones_like(fu) if weight is None else weight.float()
    out = torch.zeros(n_frames * fh * fw, device=xyz_nm.device)
    for dr, dc, w in ((0, 0, (1 - fv) * (1 - fu)), (0, 1, (1 - fv) * fu), (1, 0, fv * (1 - fu)), (1, 1, fv * fu)):
        r, c = r0 + dr, c0 + dc
        inside = (c >= 0) & (c < fw) & (r >= 0) & (r < fh)
        idx = (frame * fh + r) * fw + c
        out.index_put_((idx[inside],), (mass * w)[inside], accumulate=True)
    return out.view(n_frames, 1, fh, fw)
