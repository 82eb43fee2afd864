"""Training targets on the super-resolved grid: one unit of mass per emitter."""

from __future__ import annotations

import torch


def spike_volume(xyz_nm: torch.Tensor, frame: torch.Tensor, n_frames: int, height: int, width: int,
                 pixel_nm: float, upsampling: int, z_range_nm: tuple[float, float] = (0.0, 0.0), planes: int = 1,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """(F, D, u·H, u·W) occupancy with a unit mass (or ``weight``) per emitter, split linearly among the
    fine pixels (and, for D > 1, the planes) whose centres surround it, so the mass-weighted centroid is
    the exact position. Plane k covers z ∈ z₀ + [k, k+1)·(z₁ − z₀)/D; emitters in the outer half-planes
    stay in the outermost plane.

    (The papers put the whole spike in the voxel holding the emitter, which quantises positions to the
    grid: 25 nm pixels alone cost 25/√12 ≈ 7 nm per axis.)
    """
    fine = pixel_nm / upsampling
    fh, fw = height * upsampling, width * upsampling
    u = xyz_nm[:, 0] / fine - 0.5  # continuous index along columns, pixel centres at integers
    v = xyz_nm[:, 1] / fine - 0.5
    c0, r0 = torch.floor(u), torch.floor(v)
    fu, fv = (u - c0).float(), (v - r0).float()
    c0, r0 = c0.long(), r0.long()
    if planes > 1:
        dz = (z_range_nm[1] - z_range_nm[0]) / planes
        w = ((xyz_nm[:, 2] - z_range_nm[0]) / dz - 0.5).clamp(0, planes - 1)
        p0 = torch.floor(w).clamp(max=planes - 2)
        fz, p0 = (w - p0).float(), p0.long()
        axial = ((0, 1 - fz), (1, fz))
    else:
        p0 = torch.zeros_like(c0)
        axial = ((0, torch.ones_like(fu)),)
    mass = torch.ones_like(fu) if weight is None else weight.float()
    out = torch.zeros(n_frames * planes * fh * fw, device=xyz_nm.device)
    for dp, wz in axial:
        for dr, dc, w in ((0, 0, (1 - fv) * (1 - fu)), (0, 1, (1 - fv) * fu), (1, 0, fv * (1 - fu)), (1, 1, fv * fu)):
            r, c = r0 + dr, c0 + dc
            inside = (c >= 0) & (c < fw) & (r >= 0) & (r < fh)
            idx = ((frame * planes + p0 + dp) * fh + r) * fw + c
            out.index_put_((idx[inside],), (mass * w * wz)[inside], accumulate=True)
    return out.view(n_frames, planes, fh, fw)
