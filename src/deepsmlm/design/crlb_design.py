"""CRLB-optimal phase-mask design, the way the Tetrapod was found (Shechtman et al. 2014).

The pupil phase is optimised (Adam) to minimise the mean over the axial range of the 3D √CRLB
(:mod:`deepsmlm.design.crlb_objective`), in either mask basis (:mod:`deepsmlm.design.mask_phase`), with
an optional smoothness penalty λ·mean(1 − cos Δφ) over neighbouring aperture pixels in the pixel basis.
A PSF without axial information at some plane has an infinite bound there, so the design starts from a
small astigmatism plus seeded random Zernike noise rather than from no mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from deepsmlm.design.crlb_objective import mean_3d_crlb
from deepsmlm.design.mask_phase import (MaskPhase, check_basis, random_coefficients, smoothness, wrap_phase,
                                        zernike_modes, zernike_sum)
from deepsmlm.optics.pupil import PupilPSF
from deepsmlm.physics.crlb import Variance
from deepsmlm.progress import ProgressCallback, ProgressEvent, ignore

START_ASTIGMATISM_RAD = 1.0  # Z6 (vertical astigmatism) in the starting mask
LEARNING_RATE = {"zernike": 0.05, "pixel": 0.02}  # Adam's default step per basis (radians)


@dataclass
class DesignResult:
    phase: torch.Tensor  # (N, N) radians, wrapped to [−π, π), zero outside the aperture
    history: list[dict] = field(default_factory=list)  # step, objective (nm), smoothness


def start_mask(psf: PupilPSF, basis: str, max_noll: int, seed: int) -> MaskPhase:
    """The design's start: Z6 astigmatism plus seeded random coefficients of Noll 4 … ``max_noll``, as
    coefficients (zernike basis) or as their pupil phase (pixel basis)."""
    check_basis(basis)
    modes = zernike_modes(psf, max_noll)
    start = random_coefficients(len(modes), seed)
    start[6 - 4] += START_ASTIGMATISM_RAD
    if basis == "zernike":
        return MaskPhase(start, psf.aperture, modes)
    return MaskPhase(zernike_sum(start, modes), psf.aperture)


def design_mask(psf: PupilPSF, z_nm: torch.Tensor, photons: float, background: float, variance: Variance,
                basis: str = "zernike", max_noll: int = 28, steps: int = 200, learning_rate: float | None = None,
                smoothness_weight: float = 0.0, seed: int = 0,
                progress: ProgressCallback | None = None) -> DesignResult:
    """Optimise ``psf``'s mask phase (Adam) to minimise the mean 3D √CRLB over ``z_nm``.

    ``basis``: "zernike" (coefficients of Noll 4 … ``max_noll``) or "pixel" (every pupil pixel, started
    from the same Zernike start); ``smoothness_weight`` λ adds λ·smoothness (nm units of the objective);
    ``progress`` hears of every step (task "designing (<basis>)", steps done of ``steps``, the objective).
    """
    report = progress or ignore
    mask = start_mask(psf, basis, max_noll, seed)
    optim = torch.optim.Adam([mask.parameter], lr=LEARNING_RATE[basis] if learning_rate is None else learning_rate)

    def phase_in_aperture() -> torch.Tensor:
        return mask() * psf.aperture

    history = []
    for step in range(steps + 1):
        phase = phase_in_aperture()
        psf.set_mask(phase)
        objective, _ = mean_3d_crlb(psf, z_nm, photons, background, variance)
        smooth = smoothness(phase, psf.aperture) if basis == "pixel" else torch.zeros(())
        history.append({"step": step, "objective_nm": float(objective.detach()), "smoothness": float(smooth.detach())})
        report(ProgressEvent(f"designing ({basis})", step, steps,
                             detail=f"mean 3D √CRLB {history[-1]['objective_nm']:.2f} nm"))
        if step == steps:
            break
        loss = objective + smoothness_weight * smooth
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        return DesignResult(wrap_phase(phase_in_aperture()) * psf.aperture, history)
