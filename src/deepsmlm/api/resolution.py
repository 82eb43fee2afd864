"""`deepsmlm.frc`: the Fourier ring correlation (FRC) resolution of a localization table."""

from __future__ import annotations

import math

import numpy as np

from deepsmlm.analysis.frc import MARGIN_PX, MAX_SIDE_PX, FRCCurve, frc_curve, halves
from deepsmlm.api.analysis import LocalizationsLike, as_localizations
from deepsmlm.errors import UserInputError, check_positive


def check_frc_options(pixel_nm: float, block_frames: int) -> None:
    """One-line errors for a pixel that is not positive or blocks shorter than a frame."""
    check_positive(pixel_nm, "--pixel-nm")
    if not block_frames >= 1:
        raise UserInputError(f"--block-frames {block_frames}: must be at least 1")


def frc(locs: LocalizationsLike, *, pixel_nm: float = 5.0, block_frames: int = 100,
        pixel_size_nm: float | None = None) -> FRCCurve:
    """The FRC curve and 1/7-threshold resolution (nm) of ``locs`` (a table or any supported file): two
    halves from alternating blocks of ``block_frames`` frames, histogram images of ``pixel_nm`` pixels
    (x, y). ``resolution_nm`` is NaN when the curve stays above 1/7 up to the Nyquist frequency (then a
    smaller ``pixel_nm`` resolves it). Bad input (one half empty, a field too large) raises a one-line
    UserInputError.

    Example::

        curve = deepsmlm.frc("corrected.csv", pixel_nm=5)
        curve.resolution_nm
    """
    check_frc_options(pixel_nm, block_frames)
    check_positive(pixel_size_nm, "--pixel-size-nm")
    table, name = as_localizations(locs, pixel_size_nm)
    t = table.table
    if not len(t):
        raise UserInputError(f"{name}: no localizations")
    first = halves(t["frame"].to_numpy() - int(t["frame"].min()), block_frames)
    if first.sum() < 2 or (~first).sum() < 2:
        raise UserInputError(f"{name}: its localizations fill only one block of {block_frames} frames; FRC "
                             f"compares two halves from alternating blocks (give a smaller --block-frames)")
    xy = t[["x_nm", "y_nm"]].to_numpy(np.float64)
    side = math.ceil(float(np.ptp(xy, axis=0).max()) / pixel_nm) + 2 * MARGIN_PX
    if side > MAX_SIDE_PX:
        raise UserInputError(f"{name}: a field of {side} px of {pixel_nm:g} nm exceeds {MAX_SIDE_PX} px a side; "
                             f"use a larger --pixel-nm (at least {math.ceil(pixel_nm * side / MAX_SIDE_PX)})")
    return frc_curve(xy[first], xy[~first], pixel_nm)
