"""The information a mask gives: the 3D CRLB of a centred emitter over depth, as a design objective.

√(CRLB_x + CRLB_y + CRLB_z) per plane (CRLBs as variances, PHYSICS.md) at given signal and background
photons under the camera's noise model, with the Fisher information by autograd through the
differentiable pupil PSF, so every function here is differentiable in the PSF's mask phase.
"""

from __future__ import annotations

import torch

from deepsmlm.optics.pupil import PupilPSF
from deepsmlm.physics.crlb import Variance, crlb_vs_z


def crlb_3d(psf: PupilPSF, z_nm: torch.Tensor, photons: float, background: float,
            variance: Variance) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-plane 3D bound √(CRLB_x + CRLB_y + CRLB_z) (nm, (Z,)) and the per-plane √CRLB of x, y, z."""
    bounds = crlb_vs_z(psf, z_nm, photons, background, variance)
    per_axis = {k: bounds[k] for k in ("x", "y", "z")}
    return torch.sqrt(per_axis["x"] ** 2 + per_axis["y"] ** 2 + per_axis["z"] ** 2), per_axis


def mean_3d_crlb(psf: PupilPSF, z_nm: torch.Tensor, photons: float, background: float,
                 variance: Variance) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """mean over z of √(CRLB_x + CRLB_y + CRLB_z) (nm), and the per-plane √CRLB of x, y, z."""
    total, per_axis = crlb_3d(psf, z_nm, photons, background, variance)
    return total.mean(), per_axis


def crlb_cap_penalty(psf: PupilPSF, z_nm: torch.Tensor, photons: float, background: float, variance: Variance,
                     cap_nm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """mean over z of max(0, ln(b_z / cap))² for the 3D bound b_z (nm) of a centred emitter, and b_z.

    Zero while every plane's bound is within the cap; grows with the log of the excess, so a plane whose
    PSF carries almost no information (b_z ≫ cap) pulls hard without swamping the loss by its size.
    """
    total, _ = crlb_3d(psf, z_nm, photons, background, variance)
    total = torch.nan_to_num(total, nan=1e6, posinf=1e6)
    return torch.relu(torch.log(total / cap_nm)).pow(2).mean(), total
