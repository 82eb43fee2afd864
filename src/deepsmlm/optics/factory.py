"""Build the configured PSF model: Gaussian, differentiable pupil, or its cached fast path."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from deepsmlm.config import MaskConfig, SimulationConfig
from deepsmlm.optics.masks import load_mask_array, mask_frequency_step, resample_mask, resolve_data_path
from deepsmlm.optics.psf import PSF, GaussianPSF
from deepsmlm.optics.pupil import PupilGrid, PupilPSF
from deepsmlm.optics.stack import StackPSF


def oversampling_for(pixel_nm: float, wavelength_nm: float, na: float) -> int:
    """Smallest odd s such that pixels of Δ/s sample the pupil's intensity band (Δ/s < λ/(2NA))."""
    s = max(1, math.ceil(pixel_nm * 2 * na / wavelength_nm * 1.02))
    return s if s % 2 else s + 1


def default_grid_size(cfg: SimulationConfig, oversample: int) -> int:
    """N for the pupil grid: the mask's own scale when a mask is given, else twice the patch (odd)."""
    psf = cfg.psf
    if psf.pupil_grid is not None:
        return psf.pupil_grid
    if psf.mask is not None:
        step = mask_frequency_step(psf.mask.pixel_pitch_um, cfg.optics.magnification,
                                   cfg.optics.fourier_focal_length_mm, cfg.optics.wavelength_nm)
        return int(round(oversample / (step * cfg.frame.pixel_size_nm)))
    return 2 * psf.patch_px * oversample + 1


def pupil_grid_for(cfg: SimulationConfig) -> PupilGrid:
    """The pupil grid implied by the optics, camera pixel and PSF settings."""
    o = cfg.optics
    s = oversampling_for(cfg.frame.pixel_size_nm, o.wavelength_nm, o.na)
    return PupilGrid(default_grid_size(cfg, s), cfg.frame.pixel_size_nm, o.wavelength_nm, o.na, o.n_immersion,
                     o.n_sample, oversample=s, angle_scale=cfg.psf.pupil_angle_scale)


def grid_mask_pitch_um(cfg: SimulationConfig, grid: PupilGrid) -> float:
    """The mask pixel pitch (µm) whose physical scale M·p/(λ·f) equals one pupil-grid pixel of ``grid``."""
    o = cfg.optics
    return grid.freq_step * o.wavelength_nm * o.fourier_focal_length_mm * 1e3 / o.magnification


def mask_phase_for(cfg: SimulationConfig, grid: PupilGrid, base_dir: Path | None = None) -> torch.Tensor | None:
    """The configured mask (radians) on the pupil grid, scaled by λ_design/λ, or None."""
    m = cfg.psf.mask
    if m is None:
        return None
    arr = load_mask_array(resolve_data_path(m.file, base_dir), m.key)
    if m.transpose:
        arr = arr.T
    step = mask_frequency_step(m.pixel_pitch_um, cfg.optics.magnification, cfg.optics.fourier_focal_length_mm,
                               cfg.optics.wavelength_nm)
    phase = resample_mask(arr, step, grid.n, grid.freq_step)
    wavelength = cfg.optics.wavelength_nm
    return phase * relief_phase_factor(m.design_wavelength_nm or wavelength, wavelength, m.dispersion_per_nm)


def relief_phase_factor(design_nm: float, wavelength_nm: float, dispersion_per_nm: float = 0.0) -> float:
    """A fixed relief's phase at λ over its phase at the design wavelength λ_d:
    (λ_d/λ)·(n(λ) − 1)/(n(λ_d) − 1), with (n − 1) changing by ``dispersion_per_nm`` per nm."""
    return design_nm / wavelength_nm * (1 + dispersion_per_nm * (wavelength_nm - design_nm))


def at_wavelength(cfg: SimulationConfig, wavelength_nm: float) -> SimulationConfig:
    """The config imaging at another wavelength: the pupil grows with NA/λ and a mask keeps its relief,
    so its phase follows :func:`relief_phase_factor` from the original design wavelength."""
    out = cfg.model_copy(deep=True)
    if out.psf.mask is not None and out.psf.mask.design_wavelength_nm is None:
        out.psf.mask.design_wavelength_nm = cfg.optics.wavelength_nm
    out.optics.wavelength_nm = wavelength_nm
    return out


class SpectralPSF(PSF):
    """An emission spectrum: the photon-weighted sum of PSFs at a few wavelengths (weights sum to 1)."""

    def __init__(self, psfs: list[PSF], weights: list[float]):
        super().__init__(psfs[0].pixel_nm, psfs[0].patch_px)
        self.parts = torch.nn.ModuleList(psfs)
        total = sum(weights)
        self.weights = [w / total for w in weights]

    def patches(self, offset_nm, photons, blur_px=None):
        return sum(w * p.patches(offset_nm, photons, blur_px) for w, p in zip(self.weights, self.parts))


def build_dye_psfs(cfg: SimulationConfig, fast: bool = True, base_dir: Path | None = None) -> list[PSF]:
    """One PSF per dye of ``emitters.dyes`` (its peak, or its sampled spectrum) under the config's optics."""
    out = []
    for dye in cfg.emitters.dyes or []:
        samples = dye.spectrum or [(dye.wavelength_nm, 1.0)]
        psfs = [build_psf(at_wavelength(cfg, wl), fast, base_dir) for wl, _ in samples]
        out.append(psfs[0] if len(psfs) == 1 else SpectralPSF(psfs, [w for _, w in samples]))
    return out


def build_pupil_psf(cfg: SimulationConfig, learnable_mask: bool = False, base_dir: Path | None = None) -> PupilPSF:
    """The differentiable pupil PSF of a config."""
    grid = pupil_grid_for(cfg)
    return PupilPSF(grid, cfg.psf.patch_px, cfg.optics.nominal_focal_plane_nm,
                    mask_phase=mask_phase_for(cfg, grid, base_dir), zernike_rad=cfg.psf.zernike_rad,
                    learnable_mask=learnable_mask)


def build_psf(cfg: SimulationConfig, fast: bool = True, base_dir: Path | None = None) -> PSF:
    """The configured PSF; ``fast`` wraps a pupil PSF in its cached z-stack over the emitter z range."""
    p = cfg.psf
    if p.model == "gaussian":
        g = p.gaussian
        return GaussianPSF(cfg.frame.pixel_size_nm, p.patch_px, g.sigma_nm, g.astig_focus_offset_nm, g.astig_depth_nm)
    pupil = build_pupil_psf(cfg, base_dir=base_dir)
    if not fast:
        return pupil
    z0, z1 = cfg.emitters.z_range_nm
    return StackPSF(pupil, z0, max(z1, z0 + p.cache_z_step_nm), p.cache_z_step_nm)
