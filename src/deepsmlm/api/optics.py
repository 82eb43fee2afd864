"""`deepsmlm.psf_stack` and `deepsmlm.crlb`: a configuration's PSF over its axial range and its precision
limits (Cramér–Rao lower bounds under the camera's noise model), in nm and photons."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from deepsmlm.api.inputs import ConfigLike, as_config
from deepsmlm.assembly.axial import axial_range
from deepsmlm.config import PUPIL_MODELS, MaskConfig, SimulationConfig, updated
from deepsmlm.errors import UserInputError
from deepsmlm.optics.factory import build_psf, grid_mask_pitch_um, pupil_grid_for
from deepsmlm.physics.camera import Camera
from deepsmlm.physics.crlb import crlb_vs_z


@dataclass
class PSFStack:
    """Unit-photon PSFs (Z, P, P) float32 of a centred emitter at ``z_nm``, convolved with a Gaussian of σ
    ``blur_px`` camera pixels (the middle of the config's psf.blur_sigma_px; none when 0)."""

    config: SimulationConfig
    z_nm: list[float]
    stack: np.ndarray
    blur_px: float


def psf_stack(config: ConfigLike, planes: int = 9) -> PSFStack:
    """The config's PSF at ``planes`` depths evenly over its axial range, with its mean model-mismatch blur."""
    cfg = as_config(config)
    z = torch.linspace(*axial_range(cfg), planes)
    blur = 0.5 * sum(cfg.psf.blur_sigma_px)
    psf = build_psf(cfg, fast=False)
    offsets = torch.zeros(len(z), 3)
    offsets[:, 2] = z
    blur_px = torch.full((len(z),), blur) if blur > 0 else None
    with torch.inference_mode():
        stack = psf.patches(offsets, torch.ones(len(z)), blur_px).cpu().numpy().astype(np.float32)
    return PSFStack(cfg, z.tolist(), stack, blur)


def with_mask(cfg: SimulationConfig, mask: str | os.PathLike) -> SimulationConfig:
    """The config with its phase-mask file replaced: same mask geometry as the config's mask, or, for a
    config without one, a mask on the config's own pupil grid (as ``deepsmlm design`` writes them)."""
    if cfg.psf.model not in PUPIL_MODELS:
        cfg = updated(cfg, {"psf.model": "pupil", "psf.measured": None}, "--mask")
    if cfg.psf.mask is None:
        pitch = grid_mask_pitch_um(cfg, pupil_grid_for(cfg))
        return updated(cfg, {"psf.mask": MaskConfig(file=str(mask), pixel_pitch_um=pitch)}, "--mask")
    return updated(cfg, {"psf.mask.file": str(mask), "psf.mask.key": None}, "--mask")


def crlb(config: ConfigLike, mask: str | os.PathLike | None = None, photons: float | None = None,
         background: float | None = None, planes: int = 9) -> dict:
    """√CRLB of x, y (and z when the PSF encodes it), nm, at ``planes`` depths over the config's axial range,
    for an emitter of ``photons`` on ``background`` photons/px (default: the config's mean values), with
    the camera's noise model; ``mask`` replaces the config's phase mask. Keys: config, photons,
    background_per_px, noise, z_nm, crlb_{x,y,z}_nm, mean_crlb_{x,y,z}_nm."""
    cfg = as_config(config)
    if mask is not None:
        cfg = with_mask(cfg, mask)
    if cfg.camera.scmos_maps is not None:
        raise UserInputError(f"{cfg.camera.scmos_maps}: CRLB vs z assumes a uniform camera; drop scmos_maps for it")
    n = photons if photons is not None else cfg.emitters.photons.expected()
    b = background if background is not None else float(np.mean(cfg.background.photons_per_px))
    psf = build_psf(cfg, fast=False)
    camera = Camera(cfg.camera, (cfg.frame.height, cfg.frame.width))
    z = torch.linspace(*axial_range(cfg), planes)
    params = ("x", "y", "z", "photons", "background") if cfg.psf.encodes_z() else ("x", "y", "photons", "background")
    bounds = crlb_vs_z(psf, z, n, b, variance=camera.fisher_variance_photons, params=params)
    fig = {"config": cfg.name, "photons": n, "background_per_px": b, "noise": cfg.camera.type, "z_nm": z.tolist()}
    for axis in ("x", "y", "z"):
        if axis in bounds:
            vals = bounds[axis].detach().numpy()
            fig[f"crlb_{axis}_nm"] = vals.tolist()
            fig[f"mean_crlb_{axis}_nm"] = float(vals.mean())
    return fig
