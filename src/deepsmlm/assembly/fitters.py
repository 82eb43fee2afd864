"""The classic fitter ``gaussian-mle`` built from a config: its camera, pixel size, PSF width and threshold."""

from __future__ import annotations

import math
from typing import Any

import torch

from deepsmlm.config import SimulationConfig
from deepsmlm.inference.gaussian_mle import GaussianMLE
from deepsmlm.physics.camera import Camera


def psf_sigma_nm(cfg: SimulationConfig) -> float:
    """The Gaussian σ (nm) the classic fitter takes for the config's PSF: ``psf.gaussian.sigma_nm`` for a
    Gaussian PSF, else 0.21·λ/NA, with the mean model-mismatch blur added in quadrature."""
    pixel_nm = cfg.frame.pixel_size_nm
    if cfg.psf.model == "gaussian":
        sigma_nm = cfg.psf.gaussian.sigma_nm
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
