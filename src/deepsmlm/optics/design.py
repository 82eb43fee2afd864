"""CRLB-optimal phase-mask design, the way the Tetrapod was found (Shechtman et al. 2014).

The pupil phase is optimised to minimise the mean over the axial range of √(CRLB_x + CRLB_y + CRLB_z)
(CRLBs as variances, PHYSICS.md) at given signal and background photons, under the camera's noise
model, with the Fisher information by autograd through the differentiable pupil PSF. Two
parameterisations: Zernike coefficients (Noll 4 … J; piston and tip/tilt do nothing to the bound) or
every pupil pixel, with an optional smoothness penalty λ·mean(1 − cos Δφ) over neighbouring aperture
pixels (wrap-invariant). A PSF without axial information at some plane has an infinite bound there, so
the design starts from a small astigmatism plus seeded random Zernike noise rather than from no mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from deepsmlm.optics.pupil import PupilPSF
from deepsmlm.optics.zernike import zernike
from deepsmlm.physics.crlb import Variance, crlb_vs_z

START_ASTIGMATISM_RAD = 1.0  # Z6 (vertical astigmatism) in the starting mask
START_NOISE_RAD = 0.1  # RMS of the random Zernike coefficients added to it


def zernike_modes(psf: PupilPSF, max_noll: int) -> torch.Tensor:
    """(K, N, N) unit-RMS Zernike modes Noll 4 … ``max_noll`` on the PSF's pupil, zero outside the aperture."""
    if max_noll < 4:
        raise ValueError(f"max_noll must be at least 4 (defocus), got {max_noll}")
    g = psf.grid
    return torch.stack([zernike(j, g.rho, g.theta) * g.aperture for j in range(4, max_noll + 1)]).to(torch.float32)


def smoothness(phase: torch.Tensor, aperture: torch.Tensor) -> torch.Tensor:
    """mean(1 − cos Δφ) over horizontally and vertically neighbouring pixels both inside the aperture."""
    terms = []
    for dim in (0, 1):
        a = aperture.narrow(dim, 0, aperture.shape[dim] - 1) * aperture.narrow(dim, 1, aperture.shape[dim] - 1)
        d = phase.narrow(dim, 1, phase.shape[dim] - 1) - phase.narrow(dim, 0, phase.shape[dim] - 1)
        terms.append(((1 - torch.cos(d)) * a).sum() / a.sum())
    return sum(terms) / 2


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


@dataclass
class DesignResult:
    phase: torch.Tensor  # (N, N) radians, wrapped to (−π, π], zero outside the aperture
    history: list[dict] = field(default_factory=list)  # step, objective (nm), smoothness


def design_mask(psf: PupilPSF, z_nm: torch.Tensor, photons: float, background: float, variance: Variance,
                basis: str = "zernike", max_noll: int = 28, steps: int = 200, learning_rate: float | None = None,
                smoothness_weight: float = 0.0, seed: int = 0,
                progress: Callable[[int, float], None] | None = None) -> DesignResult:
    """Optimise ``psf``'s mask phase (Adam) to minimise the mean 3D √CRLB over ``z_nm``.

    ``basis``: "zernike" (coefficients of Noll 4 … ``max_noll``) or "pixel" (every pupil pixel, started
    from the same Zernike start); ``smoothness_weight`` λ adds λ·smoothness (nm units of the objective).
    """
    if basis not in ("zernike", "pixel"):
        raise ValueError(f"basis must be zernike or pixel, got {basis!r}")
    modes = zernike_modes(psf, max_noll)
    gen = torch.Generator().manual_seed(seed)
    start = START_NOISE_RAD * torch.randn(len(modes), generator=gen)
    start[6 - 4] += START_ASTIGMATISM_RAD
    if basis == "zernike":
        param = torch.nn.Parameter(start)
        lr = 0.05 if learning_rate is None else learning_rate

        def phase_of() -> torch.Tensor:
            return torch.einsum("k,kij->ij", param, modes)
    else:
        param = torch.nn.Parameter(torch.einsum("k,kij->ij", start, modes))
        lr = 0.02 if learning_rate is None else learning_rate

        def phase_of() -> torch.Tensor:
            return param * psf.aperture

    optim = torch.optim.Adam([param], lr=lr)
    history = []
    for step in range(steps + 1):
        phase = phase_of()
        psf.mask_phase = phase
        objective, _ = mean_3d_crlb(psf, z_nm, photons, background, variance)
        smooth = smoothness(phase, psf.aperture) if basis == "pixel" else torch.zeros(())
        history.append({"step": step, "objective_nm": float(objective.detach()), "smoothness": float(smooth.detach())})
        if progress is not None:
            progress(step, history[-1]["objective_nm"])
        if step == steps:
            break
        loss = objective + smoothness_weight * smooth
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        final = torch.remainder(phase_of() + torch.pi, 2 * torch.pi) - torch.pi
        return DesignResult(final * psf.aperture, history)
