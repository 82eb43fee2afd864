"""Build the configured PSF model: Gaussian, differentiable pupil, or its cached fast path."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from deepsmlm.config import PUPIL_MODELS, DipoleConfig, PSFConfig, SimulationConfig, updated
from deepsmlm.errors import UserInputError
from deepsmlm.optics.masks import load_mask_array, mask_frequency_step, resample_mask, resolve_data_path
from deepsmlm.optics.measured import measured_psf
from deepsmlm.optics.psf import PSF, GaussianPSF
from deepsmlm.optics.pupil import PupilGrid, PupilPSF
from deepsmlm.optics.sampling import (SIN_MAX, SIN_MAX_VECTORIAL, fft_friendly_odd, lateral_spread_nm,
                                     mask_oversample_for, min_grid_size)
from deepsmlm.optics.stack import StackPSF
from deepsmlm.optics.vectorial import VectorialPSF


def oversampling_for(pixel_nm: float, wavelength_nm: float, na: float, pixel_integration: bool = False) -> int:
    """Smallest odd s such that samples Δ/s apart hold the field's band NA/λ (Δ/s < λ/(2NA)), or, for
    pixel integration, the intensity's band 2NA/λ without aliasing (Δ/s < λ/(4NA))."""
    band = 4 if pixel_integration else 2
    s = max(1, math.ceil(pixel_nm * band * na / wavelength_nm * 1.02))
    return s if s % 2 else s + 1


def sampled_grid_size(cfg: SimulationConfig, oversample: int) -> int:
    """Smallest odd N meeting the sampling condition (optics/sampling.py) for the patch and the emitter z range."""
    o, p = cfg.optics, cfg.psf
    depths = tuple(z + o.nominal_focal_plane_nm for z in cfg.emitters.z_range_nm)
    n_sample = o.n_immersion if o.z_scan == "focus" else o.n_sample  # a focus scan defocuses in the immersion
    spread = lateral_spread_nm(o.wavelength_nm, o.na, o.n_immersion, n_sample, o.nominal_focal_plane_nm,
                               depths, p.supercritical == "evanescent",
                               sin_max=SIN_MAX_VECTORIAL if p.model == "vectorial" else SIN_MAX)
    return min_grid_size(p.patch_px, cfg.frame.pixel_size_nm, oversample, spread, o.wavelength_nm, o.na)


def default_grid_size(cfg: SimulationConfig, oversample: int) -> int:
    """N for the pupil grid: ``psf.pupil_grid`` if set; with a mask, q × the grid whose pixel is one mask pixel
    (q = ``psf.mask_oversample``, else the smallest odd q meeting the sampling condition); else the smallest
    FFT-friendly odd N meeting it, or, with ``mask_oversample`` set (the reference), 2·P·s + 1 as before."""
    psf = cfg.psf
    if psf.pupil_grid is not None:
        return psf.pupil_grid
    if psf.mask is None and psf.mask_oversample is not None:
        return 2 * psf.patch_px * oversample + 1
    needed = sampled_grid_size(cfg, oversample)
    if psf.mask is not None:
        step = mask_frequency_step(psf.mask.pixel_pitch_um, cfg.optics.magnification,
                                   cfg.optics.fourier_focal_length_mm, cfg.optics.wavelength_nm)
        n_mask = int(round(oversample / (step * cfg.frame.pixel_size_nm)))
        return n_mask * (psf.mask_oversample or mask_oversample_for(n_mask, needed))
    return fft_friendly_odd(needed)


def pupil_grid_for(cfg: SimulationConfig) -> PupilGrid:
    """The pupil grid implied by the optics, camera pixel and PSF settings."""
    o, p = cfg.optics, cfg.psf
    s = oversampling_for(cfg.frame.pixel_size_nm, o.wavelength_nm, o.na, p.pixel_integration)
    return PupilGrid(default_grid_size(cfg, s), cfg.frame.pixel_size_nm, o.wavelength_nm, o.na, o.n_immersion,
                     o.n_sample, oversample=s, angle_scale=p.pupil_angle_scale, supercritical=p.supercritical,
                     zernike_aperture=p.zernike_aperture)


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
    changes: dict[str, object] = {"optics.wavelength_nm": wavelength_nm}
    if cfg.psf.mask is not None and cfg.psf.mask.design_wavelength_nm is None:
        changes["psf.mask.design_wavelength_nm"] = cfg.optics.wavelength_nm
    return updated(cfg, changes)


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
    if cfg.psf.model == "measured" and cfg.emitters.dyes:
        raise UserInputError("psf.model measured: a bead stack is recorded at one colour; emitters.dyes need a "
                             "pupil PSF (psf.model: pupil or vectorial)")
    out = []
    for dye in cfg.emitters.dyes or []:
        samples = dye.spectrum or [(dye.wavelength_nm, 1.0)]
        psfs = [build_psf(at_wavelength(cfg, wl), fast, base_dir) for wl, _ in samples]
        out.append(psfs[0] if len(psfs) == 1 else SpectralPSF(psfs, [w for _, w in samples]))
    return out


def build_pupil_psf(cfg: SimulationConfig, learnable_mask: bool = False, base_dir: Path | None = None) -> PupilPSF:
    """The differentiable pupil PSF of a config: scalar (``psf.model: pupil``) or vectorial."""
    grid = pupil_grid_for(cfg)
    p = cfg.psf
    args = dict(mask_phase=mask_phase_for(cfg, grid, base_dir), zernike_rad=p.zernike_rad,
                learnable_mask=learnable_mask, pixel_integration=p.pixel_integration,
                pupil_amplitude=p.pupil_amplitude, focus_scan=cfg.optics.z_scan == "focus",
                halo=(p.halo_fraction, p.halo_length_px))
    if p.model == "vectorial":
        return VectorialPSF(grid, p.patch_px, cfg.optics.nominal_focal_plane_nm,
                            orientation_rad=p.dipole.orientation_rad(), **args)
    return PupilPSF(grid, p.patch_px, cfg.optics.nominal_focal_plane_nm, **args)


def build_psf(cfg: SimulationConfig, fast: bool = True, base_dir: Path | None = None) -> PSF:
    """The configured PSF; ``fast`` wraps a pupil PSF in its cached z-stack over the emitter z range (a
    measured PSF is a z-stack, cubic in z, either way; its file relative to ``base_dir``)."""
    p = cfg.psf
    if p.model == "gaussian":
        g = p.gaussian
        return GaussianPSF(cfg.frame.pixel_size_nm, p.patch_px, g.sigma_nm, g.astig_focus_offset_nm, g.astig_depth_nm,
                           widths=g.poly_widths_nm if g.polynomial else None)
    if p.model == "measured":
        return measured_psf(resolve_data_path(p.measured.file, base_dir), cfg.frame.pixel_size_nm, p.patch_px,
                            cfg.emitters.z_range_nm)
    pupil = build_pupil_psf(cfg, base_dir=base_dir)
    if not fast:
        return pupil
    z0, z1 = cfg.emitters.z_range_nm
    return StackPSF(pupil, z0, max(z1, z0 + p.cache_z_step_nm), p.cache_z_step_nm)


PHYSICS_OPTIONS = ("supercritical", "pixel_integration", "zernike_aperture", "mask_oversample")


def with_physical_psf(cfg: SimulationConfig, vectorial: bool = True) -> SimulationConfig:
    """``cfg`` with the schema's physical defaults for the PSF physics options, a computed pupil grid
    (``pupil_grid`` unset) and, when ``vectorial``, a scalar pupil made the vectorial PSF of a freely
    rotating dipole: the image formation of the presets (issue 18)."""
    changes = {f"psf.{key}": PSFConfig.model_fields[key].default for key in (*PHYSICS_OPTIONS, "pupil_grid")}
    if vectorial and cfg.psf.model == "pupil":
        changes["psf.model"] = "vectorial"  # a scalar pupil's dipole is the default, freely rotating one
    return updated(cfg, changes)


REFERENCE_PHYSICS = dict(model="pupil", supercritical="cut", pixel_integration=False, zernike_aperture="na",
                         mask_oversample=1)  # DeepSTORM3D's image formation: scalar, hard cut, point-sampled


def with_reference_psf(cfg: SimulationConfig) -> SimulationConfig:
    """``cfg`` with DeepSTORM3D's reference image formation (:data:`REFERENCE_PHYSICS`): what the golden
    PSFs and the models trained before issue 18 assume; a Gaussian or measured PSF stays what it is."""
    pupil = cfg.psf.model in PUPIL_MODELS
    changes = {f"psf.{key}": value for key, value in REFERENCE_PHYSICS.items() if key != "model" or pupil}
    if pupil:
        changes["psf.dipole"] = DipoleConfig()  # a scalar pupil has no dipole
    return updated(cfg, changes)


PHYSICS_CHOICES = ("model", "physical", "reference")


def with_physics(cfg: SimulationConfig, physics: str) -> SimulationConfig:
    """``cfg`` as stated (``model``), with the presets' physical image formation, or with the reference one."""
    if physics not in PHYSICS_CHOICES:
        raise ValueError(f"physics must be one of {PHYSICS_CHOICES}, got {physics!r}")
    return {"model": lambda c: c, "physical": with_physical_psf, "reference": with_reference_psf}[physics](cfg)


def refined_grid(cfg: SimulationConfig, factor: int = 3) -> SimulationConfig:
    """``cfg`` on a pupil grid ``factor``× finer in frequency (odd factor): N × factor, or with a mask
    that sets the grid, its oversampling × factor (the convergence check of the sampling condition)."""
    grid = pupil_grid_for(cfg)
    if cfg.psf.mask is None or cfg.psf.pupil_grid is not None:
        return updated(cfg, {"psf.pupil_grid": factor * grid.n})
    o = cfg.optics
    step = mask_frequency_step(cfg.psf.mask.pixel_pitch_um, o.magnification, o.fourier_focal_length_mm,
                               o.wavelength_nm)
    return updated(cfg, {"psf.mask_oversample": factor * round(step / grid.freq_step)})
