"""Maximum-likelihood pupil from bead z-stacks: one pupil shared by all beads, through the same
differentiable pupil PSF (scalar or vectorial, pixel-integrated) that simulates and trains.

The stack is a scan of the focal plane past beads on the coverslip: slice k images a bead at depth
d_b (nm, small, mean zero over the beads: the coverslip's tilt and the beads' size) with the nominal focal
plane at NFP_k = −z_k + Δ, where z_k (nm) is the slice's nominal emitter z (z = depth − NFP, the
z of a bead at depth 0; e.g. the −750 + 10·k of a stack centred on focus) and Δ (nm) the scan's focus
offset. With matched indices this is a z-scan of the bead at z = z_k + d_b − Δ; with a mismatch the
focal plane moves through the immersion (phase −k0·n_imm·NFP·cosθ_imm) and the bead stays at its depth.

The pupil phase is the base config's (its mask, its Zernike terms) + Σ_j c_j Z_j, j = 5 … ``max_noll``
(piston, tilt and defocus would only move the beads): the same Zernike polynomials, with the same
aperture and orthonormalisation, as ``psf.zernike_rad``, so the fitted c_j (RMS radians) add to it.
The pupil amplitude is the base config's times exp(Σ_k a_k·ρ^(2k)), k = 1 … :data:`AMPLITUDE_ORDERS`
(``psf.pupil_amplitude``, ρ the Zernike radius; a constant would only scale the photons), so the a_k add too.
Per bead: x, y (camera px from its crop centre), photons (over the whole image plane), background
(photons/px), depth. Optionally the stage's lateral wobble: a shift (px) per slice shared by all beads,
mean zero over the slices (fitted with the beads here, and slice by slice in :mod:`.stage_wobble`); a Gaussian
blur and a halo (a share of the light spread exponentially over several px), both shared by all beads.
Noise: the camera's scaled-Poisson likelihood (``inference.poisson_fit``): variance s·μ + v₀, s = F²/QE
(F² = 2 for an EMCCD). Minimised by L-BFGS on torch autograd, slices in chunks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from deepsmlm.inference.poisson_fit import scaled_counts
from deepsmlm.optics.pupil import PupilPSF
from deepsmlm.optics.zernike import zernike_phase
from deepsmlm.progress import ProgressCallback, ProgressEvent

FIRST_NOLL = 5  # below: piston, tip, tilt, defocus (the beads' own position)
AXIAL_UNIT_NM = 100.0  # depth and focus offset are fitted in these units (curvature comparable to px)
CHUNK_SLICES = 8  # slices rendered per autograd pass (bounds memory)
MIN_BLUR_PX = 0.1  # the blur's floor (px; 10 nm at 100 nm pixels: no visible change) keeps σ² differentiable
AMPLITUDE_ORDERS = 3  # apodisation terms ρ², ρ⁴, ρ⁶
PER_BEAD = ("xy", "depth", "log_photons", "log_background")  # ScanModel's parameters of each bead
HALO_START = (0.2, 3.0)  # fitted halo's starting fraction and decay length (camera px)
MIN_HALO = (1e-3, 0.01)  # a fitted halo with a smaller share or length (px) is written as none


def zernike_basis(psf: PupilPSF, max_noll: int) -> torch.Tensor:
    """(J, N, N) float32 Zernike modes Noll 5 … ``max_noll`` on the PSF's pupil, each exactly the phase that
    ``psf.zernike_rad: {j: 1.0}`` gives (orthonormal on the open aperture or unit RMS on the NA disk, as the
    PSF's ``zernike_aperture``), zero outside the aperture."""
    g = psf.grid
    inside = g.aperture > 0 if g.zernike_aperture == "open" else None
    modes = [zernike_phase({j: 1.0}, g.rho, g.theta, inside) * g.aperture for j in range(FIRST_NOLL, max_noll + 1)]
    return torch.stack(modes).to(torch.float32)


class ScanModel(torch.nn.Module):
    """Expected photons (B, S, P, P) of B beads in chosen slices of a focal-plane scan (module docstring).

    ``z_nm`` (K,): each slice's nominal z; ``start_xy_px`` (B, 2), ``photons`` (B,), ``background`` (B,):
    starting values. Parameters: ``coefficients`` (J,) rad, ``amplitude`` (:data:`AMPLITUDE_ORDERS`,) the
    apodisation's a_k, ``xy`` (B, 2) px, ``depth`` (B,) and
    ``focus_offset`` in :data:`AXIAL_UNIT_NM`, ``log_photons``, ``log_background`` (B,); with ``wobble`` also
    the stage's lateral wobble ``wobble`` (K, 2) px: slice k shows every bead moved by it (mean zero over the
    slices, so it does not trade with the beads' xy; held at zero without ``wobble``); with ``blur`` a Gaussian
    blur of every image, σ² ``blur_var`` (camera px², from ``blur_px``), fitted with the pupil (bead size, camera
    charge spread, vibration: whatever widens the spots beyond the optics); with ``halo`` the PSF's halo
    (``psf.halo_fraction`` f and ``psf.halo_length_px`` L: :func:`~deepsmlm.optics.pupil.halo_transfer`), fitted
    with the pupil as ``halo_logit`` = logit f and ``halo_log_length`` = log L."""

    def __init__(self, psf: PupilPSF, z_nm: torch.Tensor, max_noll: int, start_xy_px: torch.Tensor,
                 photons: torch.Tensor, background: torch.Tensor, wobble: bool = False, blur: bool = False,
                 blur_px: float = 0.0, halo: bool = False):
        super().__init__()
        self.psf = psf
        g = psf.grid
        self.register_buffer("z_nm", z_nm.to(torch.float32))
        self.register_buffer("modes", zernike_basis(psf, max_noll))
        self.register_buffer("base", psf.mask().detach().clone())
        self.register_buffer("base_amplitude", psf.amplitude.detach().clone())
        rho2 = g.rho.clamp(max=1.0) ** 2
        self.register_buffer("radial", torch.stack([rho2**k for k in range(1, AMPLITUDE_ORDERS + 1)]).float())
        k0 = 2 * math.pi / g.wavelength_nm
        self.register_buffer("focus", (k0 * g.n_immersion * g.cos_imm * g.aperture).to(torch.float32))
        f32 = dict(dtype=torch.float32)
        self.coefficients = torch.nn.Parameter(torch.zeros(len(self.modes), **f32))
        self.amplitude = torch.nn.Parameter(torch.zeros(AMPLITUDE_ORDERS, **f32))
        self.xy = torch.nn.Parameter(start_xy_px.to(**f32).clone())
        self.depth = torch.nn.Parameter(torch.zeros(len(photons), **f32))
        self.focus_offset = torch.nn.Parameter(torch.zeros((), **f32))
        self.log_photons = torch.nn.Parameter(photons.to(**f32).log())
        self.log_background = torch.nn.Parameter(background.to(**f32).clamp_min(1e-3).log())
        self.wobble = torch.nn.Parameter(torch.zeros(len(z_nm), 2, **f32), requires_grad=wobble)
        self.fit_blur, self.blurred = blur, blur or blur_px > 0
        start = max(blur_px, MIN_BLUR_PX) if blur else blur_px
        self.blur_var = torch.nn.Parameter(torch.tensor(start**2, **f32), requires_grad=blur)
        self.fit_halo = halo
        self.halo_active = True  # False: image with the base PSF's own halo (the base config's fit)
        fraction, length = (float(v) for v in psf.halo_params) if psf.halo_params[0] > 0 else HALO_START
        fraction = min(max(fraction, MIN_HALO[0]), 1 - MIN_HALO[0])  # a finite logit for a base halo of 1
        self.halo_logit = torch.nn.Parameter(torch.tensor(math.log(fraction / (1 - fraction)), **f32),
                                             requires_grad=halo)
        self.halo_log_length = torch.nn.Parameter(torch.tensor(math.log(length), **f32), requires_grad=halo)

    @property
    def noll(self) -> list[int]:
        """The Noll indices of ``coefficients``."""
        return list(range(FIRST_NOLL, FIRST_NOLL + len(self.modes)))

    def pupil_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters shared by all beads: Zernike coefficients, apodisation and, when fitted, the blur and
        the halo."""
        return ([self.coefficients, self.amplitude] + ([self.blur_var] if self.fit_blur else [])
                + ([self.halo_logit, self.halo_log_length] if self.fit_halo else []))

    def halo_terms(self) -> dict[str, float]:
        """The fitted halo: ``halo_fraction`` and ``halo_length_px`` (the psf config's keys); both zero when
        the fit left none (a share under :data:`MIN_HALO` or a length under 0.01 px)."""
        fraction, length = torch.sigmoid(self.halo_logit).item(), self.halo_log_length.exp().item()
        if fraction < MIN_HALO[0] or length < MIN_HALO[1]:
            return {"halo_fraction": 0.0, "halo_length_px": 0.0}
        return {"halo_fraction": round(fraction, 4), "halo_length_px": round(length, 3)}

    def blur_px(self) -> torch.Tensor:
        """σ (camera px) of the images' Gaussian blur (fitted: at least :data:`MIN_BLUR_PX`)."""
        return self.blur_var.clamp_min(MIN_BLUR_PX**2).sqrt() if self.fit_blur else self.blur_var.sqrt()

    def pupil_phase(self) -> torch.Tensor:
        """(N, N) pupil phase (rad) on top of the PSF's own: the base config's mask + the Zernike sum."""
        return self.base + torch.einsum("j,jab->ab", self.coefficients, self.modes)

    def penalty(self) -> torch.Tensor:
        """Regulariser added to the deviance per pixel: none (a Zernike sum is smooth by construction)."""
        return torch.zeros(())

    def amplitude_terms(self) -> dict[int, float]:
        """The fitted apodisation {k: a_k} (``psf.pupil_amplitude`` terms)."""
        return {k: float(a) for k, a in enumerate(self.amplitude.detach(), start=1)}

    def depth_nm(self) -> torch.Tensor:
        """(B,) bead depths (nm), mean zero."""
        return (self.depth - self.depth.mean()) * AXIAL_UNIT_NM

    def focus_offset_nm(self) -> torch.Tensor:
        """The scan's focus offset Δ (nm): NFP_k = −z_k + Δ."""
        return self.focus_offset * AXIAL_UNIT_NM

    def z_offset_nm(self) -> torch.Tensor:
        """(B,) each bead's z minus the slices' nominal z (nm): depth − focus offset."""
        return self.depth_nm() - self.focus_offset_nm()

    def wobble_px(self) -> torch.Tensor:
        """(K, 2) the stage's lateral wobble (x, y camera px) per slice, mean zero."""
        return self.wobble - self.wobble.mean(0)

    @torch.no_grad()
    def set_wobble(self, slices: Sequence[int], shift_px: torch.Tensor) -> None:
        """Move the beads of ``slices`` to ``shift_px`` (S, 2) px from their xy, the other slices kept where
        they are: the wobble is re-centred (mean zero) and the beads' xy take its mean."""
        full = self.wobble_px().clone()
        full[list(slices)] = shift_px
        self.wobble.copy_(full - full.mean(0))
        self.xy += full.mean(0)

    def keep_beads(self, beads: Sequence[int]) -> ScanModel:
        """A copy for the ``beads`` only (same PSF object, per-bead parameters cut, the focus offset moved so
        that each kept bead keeps its z offset)."""
        kept = copy.deepcopy(self, {id(self.psf): self.psf})
        index = torch.as_tensor(list(beads))
        with torch.no_grad():
            for name in PER_BEAD:
                setattr(kept, name, torch.nn.Parameter(getattr(self, name)[index].clone()))
            kept.focus_offset -= self.depth[index].mean() - self.depth.mean()
        return kept

    def forward(self, slices: Sequence[int], shift_px: torch.Tensor | None = None) -> torch.Tensor:
        """Expected photons (B, S, P, P) in ``slices``, the beads moved by the slices' wobble, or by
        ``shift_px`` (S, 2) px when given."""
        psf = self.psf
        slices = list(slices)
        shift = self.wobble_px()[slices] if shift_px is None else shift_px
        pupil = self.pupil_phase()
        psf.set_amplitude(self.base_amplitude * torch.exp(torch.einsum("k,kab->ab", self.amplitude, self.radial)))
        if self.fit_halo and self.halo_active:
            psf.set_halo(torch.sigmoid(self.halo_logit), self.halo_log_length.exp())
        px = psf.pixel_nm
        offset = torch.stack([self.xy[:, 0] * px, self.xy[:, 1] * px, self.depth_nm() - psf.nfp_nm], dim=1)
        photons = self.log_photons.exp()
        blur = self.blur_px().expand(len(photons)) if self.blurred else None
        nfp = -self.z_nm[slices] + self.focus_offset_nm()
        images = []
        for plane, s in zip(nfp, shift):  # the focal plane moves: one focus phase per slice on top of the PSF's NFP
            psf.set_mask(pupil - (plane - psf.nfp_nm) * self.focus)
            images.append(psf.patches(offset + torch.nn.functional.pad(s * px, (0, 1)), photons, blur))
        return torch.stack(images, dim=1) + self.log_background.exp()[:, None, None, None]


@dataclass(frozen=True)
class ScanData:
    """Bead crops in photons (B, K, P, P), their zero-signal variance v₀ (broadcastable: a scalar, or
    (B, 1, P, P) for per-pixel maps)
    and the camera's variance per photon s: the noise model var = s·μ + v₀ (module docstring)."""

    photons: torch.Tensor
    v0: torch.Tensor
    scale: float

    def counts(self) -> torch.Tensor:
        """The scaled-Poisson data z = d/s + v₀/s² of every crop."""
        return scaled_counts(self.photons, self.v0, self.scale)

    def keep_beads(self, beads: Sequence[int]) -> ScanData:
        """The crops (and per-pixel v₀) of the ``beads`` only."""
        index = list(beads)
        return ScanData(self.photons[index], self.v0[index] if self.v0.dim() == 4 else self.v0, self.scale)

    def nll(self, model: ScanModel, slices: Sequence[int], counts: torch.Tensor) -> torch.Tensor:
        """Deviance of the chosen slices (B, S) under ``model``: Σ m − z + z·log(z/m) over each crop, written
        so that its gradient 1 − z/m stays finite where z = 0."""
        mean = model(slices) / self.scale + self.v0 / self.scale**2
        z = counts[:, list(slices)]
        return (mean - z + torch.xlogy(z, z) - torch.xlogy(z, mean)).sum((-2, -1))


def fit_scan(model: ScanModel, data: ScanData, slices: Sequence[int], iterations: int, fit_pupil: bool,
             progress: ProgressCallback | None = None, task: str = "fitting") -> list[float]:
    """Minimise the deviance per pixel over ``slices`` plus the model's :meth:`~ScanModel.penalty` by L-BFGS (strong Wolfe line search), at most
    ``iterations`` iterations; the pupil (Zernike coefficients, apodisation) is held unless ``fit_pupil``.
    Returns the loss of every evaluation (deviance per pixel ≈ half the reduced χ²)."""
    for p in model.pupil_parameters():
        p.requires_grad_(fit_pupil)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iterations, max_eval=int(iterations * 1.5), history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-7)
    counts = data.counts()
    pixels = counts.shape[0] * len(slices) * counts.shape[-1] ** 2
    history: list[float] = []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        total = 0.0
        for start in range(0, len(slices), CHUNK_SLICES):
            loss = data.nll(model, slices[start:start + CHUNK_SLICES], counts).sum() / pixels
            loss.backward()
            total += loss.item()
        extra = model.penalty()
        if extra.requires_grad:
            extra.backward()
        total += float(extra.detach())
        history.append(total)
        if progress is not None:
            progress(ProgressEvent(task, min(len(history), iterations), iterations,
                                   status=f"evaluation {len(history)}", detail=f"deviance/px {total:.3f}"))
        return torch.tensor(total)

    opt.step(closure)
    for p in model.pupil_parameters():
        p.requires_grad_(True)
    return history


@torch.no_grad()
def slice_errors(model: ScanModel, data: ScanData) -> tuple[np.ndarray, np.ndarray]:
    """Per bead and slice (B, K): the relative L2 error ‖d − μ‖/‖d − b‖ of the model μ against the measured
    crop d after the fitted background b, and the reduced χ² mean((d − μ)²/(s·μ + v₀)) over the crop."""
    rel, chi2 = [], []
    background = model.log_background.exp()[:, None, None, None]
    for start in range(0, data.photons.shape[1], CHUNK_SLICES):
        slices = range(start, min(start + CHUNK_SLICES, data.photons.shape[1]))
        mu = model(slices)
        d = data.photons[:, start:slices.stop]
        residual = d - mu
        rel.append(residual.square().sum((-2, -1)).sqrt() / (d - background).square().sum((-2, -1)).sqrt())
        chi2.append((residual.square() / (data.scale * mu + data.v0)).mean((-2, -1)))
    return torch.cat(rel, 1).numpy().astype(np.float64), torch.cat(chi2, 1).numpy().astype(np.float64)
