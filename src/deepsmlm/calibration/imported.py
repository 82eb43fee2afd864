"""Calibrations made elsewhere, as our models: Picasso's astigmatic width curves as the Gaussian PSF's
polynomial widths (``psf.gaussian.sigma_x_poly_nm`` / ``sigma_y_poly_nm``).

Picasso's curves give the spot widths in camera pixels against the stage position s (nm); its z is
``magnification`` · s (:mod:`deepsmlm.io.picasso_calibration`). Our widths are in nm against our z, so
σ(z) = pixel_nm · P(z / magnification): a spot gets the z Picasso would give it, with the same sign (positive
into the sample for a scan recorded upward, as Picasso assumes). Our Gaussian is pixel-integrated, as
Picasso's MLE fit; its default LQ fit samples the Gaussian at pixel centres, whose width is that of the
integrated one with the pixel's variance (1/12 px²) added, so LQ widths become √(P² − 1/12) px, refitted
as a polynomial (checked to REFIT_TOLERANCE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.polynomial import Polynomial

from deepsmlm.errors import UserInputError
from deepsmlm.io.picasso_calibration import PicassoZCalibration

PIXEL_VARIANCE_PX2 = 1.0 / 12.0  # variance of a uniform pixel (px²): sampled width² − integrated width²
REFIT_TOLERANCE = 0.002  # largest relative error of the refitted LQ → integrated widths over the z range
REFIT_EXTRA_DEGREE = 2  # the refit's degree above the file's
GRID = 401  # depths checked over the z range

PicassoFit = Literal["lq", "mle"]


@dataclass(frozen=True)
class ImportedWidths:
    """Polynomial widths for ``psf.gaussian`` (nm vs z nm, highest power first), the z range they hold over
    (nm, our z) and the largest relative error of a refit (0 when the coefficients were converted exactly)."""

    sigma_x_poly_nm: tuple[float, ...]
    sigma_y_poly_nm: tuple[float, ...]
    z_range_nm: tuple[float, float]
    refit_error: float


def picasso_widths(cal: PicassoZCalibration, pixel_nm: float, magnification: float, fit: PicassoFit,
                   source: str) -> ImportedWidths:
    """Picasso's curves as our polynomial widths (``fit``: the Picasso fit that measured them, lq or mle);
    a curve not positive over the calibrated range, or not an LQ width there, is a one-line error naming
    ``source``."""
    s0, s1 = cal.stage_range_nm()
    z_range = (magnification * s0, magnification * s1)
    z = np.linspace(*z_range, GRID)
    (px, ex), (py, ey) = (_curve(key, coefficients, z, pixel_nm, magnification, fit, source) for key, coefficients
                          in (("X Coefficients", cal.x_coefficients_px), ("Y Coefficients", cal.y_coefficients_px)))
    return ImportedWidths(px, py, z_range, max(ex, ey))


def _curve(key: str, coefficients: tuple[float, ...], z: np.ndarray, pixel_nm: float, magnification: float,
           fit: PicassoFit, source: str) -> tuple[tuple[float, ...], float]:
    """One width curve as our polynomial (nm vs z nm) and its largest relative error over ``z``."""
    floor = PIXEL_VARIANCE_PX2 if fit == "lq" else 0.0
    width_px = np.polyval(coefficients, z / magnification)
    bad = (width_px <= 0) | (width_px**2 <= floor)
    if bad.any():
        raise UserInputError(f"{source}: '{key}' gives a width of {width_px[bad][0]:.3g} px at z = "
                             f"{z[bad][0]:.0f} nm, inside the calibrated range: not a {fit.upper()} spot width")
    target_nm = pixel_nm * np.sqrt(width_px**2 - floor)
    if fit == "mle":
        n = len(coefficients) - 1
        poly = tuple(float(pixel_nm * a / magnification ** (n - i)) for i, a in enumerate(coefficients))
    else:
        fitted = Polynomial.fit(z, target_nm, len(coefficients) - 1 + REFIT_EXTRA_DEGREE).convert()
        poly = tuple(float(a) for a in fitted.coef[::-1])
    error = float(np.max(np.abs(np.polyval(poly, z) / target_nm - 1)))
    if error > REFIT_TOLERANCE:
        raise UserInputError(f"{source}: '{key}': the LQ widths' pixel correction is not smooth enough to refit "
                             f"({error:.2%} off); import with --picasso-fit mle if the curves came from the MLE fit")
    return poly, error
