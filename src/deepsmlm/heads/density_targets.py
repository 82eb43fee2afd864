"""Training targets of the density head: one unit of mass per emitter on the output grid."""

from __future__ import annotations

import torch

from deepsmlm.heads.grid import OutputGrid


def spike_volume(xyz_nm: torch.Tensor, frame: torch.Tensor, n_frames: int, height: int, width: int,
                 grid: OutputGrid) -> torch.Tensor:
    """(F, D, u·H, u·W) occupancy of F frames of H × W camera px with a unit mass per emitter, split linearly
    among the fine pixels (and, for D > 1, the planes) whose centres surround it, so the mass-weighted
    centroid is the exact position. Emitters in the outer half-planes stay in the outermost plane.

    (The papers put the whole spike in the voxel holding the emitter, which quantises positions to the
    grid: 25 nm pixels alone cost 25/√12 ≈ 7 nm per axis.)
    """
    planes = grid.planes
    fh, fw = grid.fine_shape(height, width)
    u = grid.fine_px(xyz_nm[:, 0]) - 0.5  # continuous index along columns, pixel centres at integers
    v = grid.fine_px(xyz_nm[:, 1]) - 0.5
    c0, r0 = torch.floor(u), torch.floor(v)
    fu, fv = (u - c0).float(), (v - r0).float()
    c0, r0 = c0.long(), r0.long()
    if planes > 1:
        w = (grid.plane(xyz_nm[:, 2]) - 0.5).clamp(0, planes - 1)
        p0 = torch.floor(w).clamp(max=planes - 2)
        fz, p0 = (w - p0).float(), p0.long()
        axial = ((0, 1 - fz), (1, fz))
    else:
        p0 = torch.zeros_like(c0)
        axial = ((0, torch.ones_like(fu)),)
    out = torch.zeros(n_frames * planes * fh * fw, device=xyz_nm.device)
    for dp, wz in axial:
        for dr, dc, w in ((0, 0, (1 - fv) * (1 - fu)), (0, 1, (1 - fv) * fu), (1, 0, fv * (1 - fu)), (1, 1, fv * fu)):
            r, c = r0 + dr, c0 + dc
            inside = (c >= 0) & (c < fw) & (r >= 0) & (r < fh)
            idx = ((frame * planes + p0 + dp) * fh + r) * fw + c
            out.index_put_((idx[inside],), (w * wz)[inside], accumulate=True)
    return out.view(n_frames, planes, fh, fw)
