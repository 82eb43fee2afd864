"""The learnable pupil mask of a design: its two parameterisations, its phase wrap and its smoothness.

A mask is an (N, N) phase (radians) on a pupil PSF's grid. Basis "pixel": every pupil pixel's phase is a
parameter. Basis "zernike": the parameters are coefficients c_k of unit-RMS Zernike modes Z_k, Noll 4 … K
(piston and tip/tilt do nothing to the bound), and the phase is a fixed base + Σ_k c_k Z_k: fewer,
smoother degrees of freedom whose gradients average over the whole pupil.
"""

from __future__ import annotations

import math

import torch

from deepsmlm.optics.pupil import PupilPSF
from deepsmlm.optics.zernike import zernike

MASK_BASES = ("pixel", "zernike")
START_NOISE_RAD = 0.1  # RMS of the random Zernike coefficients a design starts from


def check_basis(basis: str) -> None:
    """Raise ValueError unless ``basis`` is one of :data:`MASK_BASES`."""
    if basis not in MASK_BASES:
        raise ValueError(f"basis must be {' or '.join(MASK_BASES)}, got {basis!r}")


def zernike_modes(psf: PupilPSF, max_noll: int) -> torch.Tensor:
    """(K, N, N) unit-RMS Zernike modes Noll 4 … ``max_noll`` on the PSF's pupil, zero outside the aperture."""
    if max_noll < 4:
        raise ValueError(f"max_noll must be at least 4 (defocus), got {max_noll}")
    g = psf.grid
    return torch.stack([zernike(j, g.rho, g.theta) * g.aperture for j in range(4, max_noll + 1)]).to(torch.float32)


def zernike_sum(coefficients: torch.Tensor, modes: torch.Tensor) -> torch.Tensor:
    """Σ_k c_k Z_k: (N, N) radians from (K,) coefficients (radians RMS) and (K, N, N) modes."""
    return torch.einsum("k,kij->ij", coefficients, modes)


def random_coefficients(count: int, seed: int) -> torch.Tensor:
    """``count`` seeded Zernike coefficients of RMS :data:`START_NOISE_RAD` (radians): a design's start."""
    return START_NOISE_RAD * torch.randn(count, generator=torch.Generator().manual_seed(seed))


def wrap_phase(phase: torch.Tensor) -> torch.Tensor:
    """Wrap radians into [−π, π)."""
    return torch.remainder(phase + math.pi, 2 * math.pi) - math.pi


def smoothness(phase: torch.Tensor, aperture: torch.Tensor) -> torch.Tensor:
    """mean(1 − cos Δφ) over horizontally and vertically neighbouring pixels both inside the aperture
    (wrap-invariant)."""
    terms = []
    for dim in (0, 1):
        a = aperture.narrow(dim, 0, aperture.shape[dim] - 1) * aperture.narrow(dim, 1, aperture.shape[dim] - 1)
        d = phase.narrow(dim, 1, phase.shape[dim] - 1) - phase.narrow(dim, 0, phase.shape[dim] - 1)
        terms.append(((1 - torch.cos(d)) * a).sum() / a.sum())
    return sum(terms) / 2


class MaskPhase(torch.nn.Module):
    """A pupil mask phase (radians, (N, N)) as a function of its learnable ``parameter``.

    Without ``modes`` the basis is "pixel" and the phase is the parameter itself (an (N, N) tensor, or a
    PSF's own learnable mask, shared); with (K, N, N) ``modes`` it is "zernike" and the phase is
    ``base`` (if given) + Σ_k c_k Z_k for (K,) coefficients c. ``aperture`` (N, N) bounds :meth:`wrap_`.
    """

    def __init__(self, parameter: torch.Tensor, aperture: torch.Tensor, modes: torch.Tensor | None = None,
                 base: torch.Tensor | None = None):
        super().__init__()
        self.basis = "pixel" if modes is None else "zernike"
        self.parameter = parameter if isinstance(parameter, torch.nn.Parameter) else torch.nn.Parameter(parameter)
        self.register_buffer("aperture", aperture)
        self.register_buffer("modes", modes)
        self.register_buffer("base", base)

    def forward(self) -> torch.Tensor:
        """The current (N, N) phase, in the autograd graph of the parameter (unless gradients are off)."""
        if self.modes is None:
            return self.parameter
        mix = zernike_sum(self.parameter, self.modes)
        return mix if self.base is None else self.base + mix

    @torch.no_grad()
    def wrap_(self) -> None:
        """Pixel basis: wrap the phases into [−π, π) inside the aperture, zero outside (the image is
        unchanged; the numbers stay bounded). Zernike coefficients are left as they are."""
        if self.modes is None:
            self.parameter.copy_(wrap_phase(self.parameter) * self.aperture)
