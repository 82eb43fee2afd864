"""One learnable phase mask seen by several dyes: the multicolour PSFs of end-to-end design.

A mask pixel sits at a fixed place ρ in the Fourier plane, which at wavelength λ is the spatial
frequency ρ/(λ·f): the mask learned on the design grid (at ``optics.wavelength_nm`` = λ_d, one mask
pixel per grid pixel) is, for a dye at λ, a mask whose pixels are λ_d/λ times the design grid's
frequency step, placed on that dye's pupil grid by the same resampling a saved mask file gets, and its
phase scales as a fixed relief's (λ_d/λ, with the mask's dispersion). Every step stays differentiable,
so all dyes' images train the one mask, and the saved mask reproduces exactly the PSFs trained with.
"""

from __future__ import annotations

import torch

from deepsmlm.config import SimulationConfig, updated
from deepsmlm.optics.factory import SpectralPSF, at_wavelength, pupil_grid_for, relief_phase_factor
from deepsmlm.optics.masks import resample_mask
from deepsmlm.optics.psf import PSF
from deepsmlm.optics.pupil import PupilGrid, PupilPSF
from deepsmlm.optics.vectorial import VectorialPSF


class SharedMask:
    """Mixin for a pupil PSF whose mask is the (learnable) mask of ``source``, which lives on the design grid."""

    source: PupilPSF
    mask_step: float  # the source mask's pixel at this wavelength, 1/nm
    phase_factor: float
    grid: PupilGrid
    aperture: torch.Tensor

    def share_mask(self, source: PupilPSF, mask_step: float, phase_factor: float) -> None:
        self.source, self.mask_step, self.phase_factor = source, float(mask_step), float(phase_factor)

    def mask(self) -> torch.Tensor:
        phase = resample_mask(self.source.mask_phase, self.mask_step, self.grid.n, self.grid.freq_step)
        return phase.to(self.aperture.dtype) * self.phase_factor


class SharedMaskPupilPSF(SharedMask, PupilPSF):
    """A dye's scalar pupil PSF through the mask of ``source``."""


class SharedMaskVectorialPSF(SharedMask, VectorialPSF):
    """A dye's vectorial pupil PSF through the mask of ``source`` (the same dipole model as ``source``)."""


def shared_mask_psf(grid: PupilGrid, patch_px: int, nominal_focal_plane_nm: float, source: PupilPSF,
                    mask_step: float, phase_factor: float, zernike_rad: dict[int, float] | None = None,
                    pupil_amplitude: dict[int, float] | None = None) -> PupilPSF:
    """A dye's PSF through the mask of ``source``, of the same model (scalar or vectorial), pixel physics, halo and
    aberrations (``zernike_rad``, apodisation ``pupil_amplitude``)."""
    args = dict(zernike_rad=zernike_rad, pixel_integration=source.pixel_integration, pupil_amplitude=pupil_amplitude,
                focus_scan=source.focus_scan, halo=source.halo_params)
    if isinstance(source, VectorialPSF):
        psf: PupilPSF = SharedMaskVectorialPSF(grid, patch_px, nominal_focal_plane_nm,
                                               orientation_rad=source.orientation_rad, **args)
    else:
        psf = SharedMaskPupilPSF(grid, patch_px, nominal_focal_plane_nm, **args)
    psf.share_mask(source, mask_step, phase_factor)
    return psf


def pinned_grid(cfg: SimulationConfig, source: PupilPSF) -> SimulationConfig:
    """``cfg`` with the pupil grid size fixed to the design grid's (what a model saved with a learned
    mask records, so simulation and inference build the very grids training used)."""
    return updated(cfg, {"psf.pupil_grid": source.grid.n})


def shared_mask_dye_psfs(cfg: SimulationConfig, source: PupilPSF) -> list[PSF]:
    """One differentiable PSF per dye of ``emitters.dyes`` (peak or sampled spectrum), all through the
    mask of ``source`` (a PupilPSF on the design grid, usually with a learnable mask)."""
    design_nm = cfg.optics.wavelength_nm
    dispersion = cfg.psf.mask.dispersion_per_nm if cfg.psf.mask is not None else 0.0
    pinned = pinned_grid(cfg, source)
    out: list[PSF] = []
    for dye in cfg.emitters.dyes or []:
        samples = dye.spectrum or [(dye.wavelength_nm, 1.0)]
        parts = [shared_mask_psf(pupil_grid_for(at_wavelength(pinned, wl)), cfg.psf.patch_px,
                                 cfg.optics.nominal_focal_plane_nm, source, source.grid.freq_step * design_nm / wl,
                                 relief_phase_factor(design_nm, wl, dispersion), cfg.psf.zernike_rad,
                                 cfg.psf.pupil_amplitude)
                 for wl, _ in samples]
        out.append(parts[0] if len(parts) == 1 else SpectralPSF(parts, [w for _, w in samples]))
    return out
