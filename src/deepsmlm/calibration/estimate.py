"""What a training simulator must cover, estimated from a raw movie: the emitters' photons, the background
level and its spread over frames, the emitter density and (with a 3D fitter) the axial range in use.

The estimates come from a classic fit (one localization table of sampled frames): photons per emitter are
summarised as a log-normal (the mean and the standard deviation of log photons of the fits), the
background as the spread of each frame's median fitted background (photons/px), the density as
localizations per frame over the field area, and z as the range of a uniform spread with the fitted
depths' 5 % and 95 % quantiles (robust to the few merged or misfitted spots whose z lands far out). Dim emitters
that the fitter misses bias the photons up and the density down; the estimates are meant for sparse
movies (or their sparsest frames), where a fit finds nearly every emitter, unless corrected by
:mod:`deepsmlm.calibration.estimate_correction`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from deepsmlm.config import SimulationConfig, updated
from deepsmlm.errors import UserInputError

MIN_LOCALIZATIONS = 20  # fewer fits say nothing about a distribution
DENSITY_SPREAD = (0.5, 1.5)  # training densities cover this range around the estimate
Z_QUANTILE = 0.05  # the axial range: that of a uniform spread with the fitted depths' 5 % and 95 % quantiles
BACKGROUND_QUANTILES = (0.05, 0.95)  # training backgrounds cover the frames' medians between these


@dataclass(frozen=True)
class MovieEstimate:
    """Estimates from ``n_localizations`` fits in ``n_frames`` sampled frames: photons per emitter as a
    log-normal (``photons_mean`` photons, ``photons_sigma`` of log photons), per-frame median background
    (``background_photons_per_px``: median, and the low/high quantiles), emitters per µm² per frame
    (``density_per_um2``), and the axial range in use (``z_range_nm``; None without 3D fits); a corrected
    estimate (:mod:`deepsmlm.calibration.estimate_correction`) keeps the ``raw`` one and any ``warning``."""

    n_frames: int
    n_localizations: int
    photons_mean: float
    photons_sigma: float
    background_photons_per_px: float
    background_range: tuple[float, float]
    density_per_um2: float
    z_range_nm: tuple[float, float] | None
    raw: MovieEstimate | None = None  # the fits' own statistics, when these are corrected for missed emitters
    warning: str | None = None  # why the correction is not to be trusted, in one line

    def as_dict(self) -> dict:
        return asdict(self)


def estimate_from_fits(table: pd.DataFrame, n_frames: int, field_um2: float, source: str,
                       with_z: bool) -> MovieEstimate:
    """The estimates of a localization table (columns frame, photons, bg and, ``with_z``, z_nm) fitted in
    ``n_frames`` frames of ``field_um2`` µm²; ``source`` names the movie in errors."""
    fits = table[np.isfinite(table["photons"]) & (table["photons"] > 0)]
    if len(fits) < MIN_LOCALIZATIONS:
        raise UserInputError(f"{source}: only {len(fits)} emitters fitted in {n_frames} frames; need at least "
                             f"{MIN_LOCALIZATIONS} to estimate photons, background and density (a sparser or "
                             f"longer movie, or a lower --threshold)")
    log_n = np.log(fits["photons"].to_numpy(np.float64))
    sigma = float(log_n.std())
    per_frame_bg = fits.groupby("frame")["bg"].median().to_numpy(np.float64)
    low, high = np.quantile(per_frame_bg, BACKGROUND_QUANTILES)
    z_range = None
    if with_z:
        z_range = axial_range(fits["z_nm"].to_numpy(np.float64))
    return MovieEstimate(
        n_frames=n_frames, n_localizations=len(fits),
        photons_mean=float(math.exp(log_n.mean() + sigma**2 / 2)), photons_sigma=sigma,
        background_photons_per_px=float(np.median(per_frame_bg)), background_range=(float(low), float(high)),
        density_per_um2=len(fits) / n_frames / field_um2, z_range_nm=z_range)


def axial_range(z_nm: np.ndarray) -> tuple[float, float]:
    """(low, high) nm of the uniform distribution whose Z_QUANTILE and 1 − Z_QUANTILE quantiles are those of
    the fitted depths ``z_nm``."""
    low, high = np.quantile(z_nm, (Z_QUANTILE, 1 - Z_QUANTILE))
    pad = Z_QUANTILE / (1 - 2 * Z_QUANTILE) * (high - low)
    return float(low - pad), float(high + pad)


def training_config(base: SimulationConfig, estimate: MovieEstimate, source: str) -> SimulationConfig:
    """``base`` with the estimated photons (log-normal), background range, density (and the training
    density range around it) and, when estimated, the axial range."""
    d = estimate.density_per_um2
    values = {
        "emitters.photons": {"distribution": "lognormal", "mean": estimate.photons_mean,
                             "sigma": max(estimate.photons_sigma, 1e-3)},
        "background.photons_per_px": estimate.background_range,
        "emitters.density_per_um2": d, "emitters.count": None,
        "training.density_range_per_um2": (DENSITY_SPREAD[0] * d, DENSITY_SPREAD[1] * d),
    }
    if estimate.z_range_nm is not None:
        values["emitters.z_range_nm"] = estimate.z_range_nm
    return updated(base, values, source)
