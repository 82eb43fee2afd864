"""The classic fitters built from a config: ``gaussian-mle`` (camera, pixel size, PSF width, threshold) and
``psf-mle`` (the same with the config's PSF model and z range)."""

from __future__ import annotations

import math
from typing import Any

import torch

from deepsmlm.config import SimulationConfig, updated
from deepsmlm.inference.gaussian_mle import GaussianMLE
from deepsmlm.inference.psf_mle import PSFMLE
from deepsmlm.optics.factory import build_psf
from deepsmlm.optics.masks import resolve_data_path
from deepsmlm.optics.measured import in_focus_sigma_nm, read_measured_stack
from deepsmlm.physics.camera import Camera


def psf_sigma_nm(cfg: SimulationConfig) -> float:
    """The Gaussian σ (nm) the classic fitter takes for the config's PSF: a Gaussian PSF's in-focus σ
    (``sigma_nm``, or the narrowest polynomial widths over the z range), a measured stack's in-focus width,
    else 0.21·λ/NA, with the mean model-mismatch blur added in quadrature."""
    pixel_nm = cfg.frame.pixel_size_nm
    if cfg.psf.model == "gaussian":
        sigma_nm = cfg.psf.gaussian.focus_sigma_nm(cfg.emitters.z_range_nm)
    elif cfg.psf.measured is not None:
        sigma_nm = in_focus_sigma_nm(read_measured_stack(resolve_data_path(cfg.psf.measured.file)))
    else:
        sigma_nm = 0.21 * cfg.optics.wavelength_nm / cfg.optics.na
    blur_nm = 0.5 * sum(cfg.psf.blur_sigma_px) * pixel_nm  # mean model-mismatch blur
    return math.hypot(sigma_nm, blur_nm)


def build_gaussian_mle(cfg: SimulationConfig, device: str | torch.device = "cpu", **options: Any) -> GaussianMLE:
    """``gaussian-mle`` for data described by ``cfg``: its camera, pixel size, PSF σ (:func:`psf_sigma_nm`)
    and detection threshold (``model.gaussian_mle_threshold``), on ``device``; ``options`` are the
    fitter's other keywords (``box_px``, ``fit_sigma``, ``iterations``, ``split_threshold``, ``max_spots``)."""
    return GaussianMLE(Camera(cfg.camera), cfg.frame.pixel_size_nm, psf_sigma_nm(cfg),
                       cfg.model.gaussian_mle_threshold, device=device, **options)


def build_psf_mle(cfg: SimulationConfig, device: str | torch.device = "cpu", **options: Any) -> PSFMLE:
    """``psf-mle`` for data described by ``cfg``: its PSF (a pupil's cached z-stack over the emitter z range,
    or the Gaussian, rendered on the fit box plus a pixel each side), camera, pixel size, z range, mean
    model-mismatch blur, detection σ (:func:`psf_sigma_nm`) and threshold, on ``device``; ``options`` are
    ``box_px`` (odd, default 13) and ``iterations``."""
    box_px = int(options.pop("box_px", 13))
    if box_px % 2 == 0 or box_px < 5:
        raise ValueError(f"box_px must be odd and >= 5, got {box_px}")
    psf = build_psf(updated(cfg, {"psf.patch_px": box_px + 2}), fast=True)
    blur_px = 0.5 * sum(cfg.psf.blur_sigma_px)
    return PSFMLE(psf, Camera(cfg.camera), cfg.frame.pixel_size_nm, psf_sigma_nm(cfg), cfg.model.gaussian_mle_threshold,
                  cfg.emitters.z_range_nm, box_px=box_px, blur_px=blur_px, device=device, **options)
