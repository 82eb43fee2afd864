"""A measured-stack PSF (``psf.model: measured``): the unit-photon planes of an aligned, averaged bead stack,
a .npz written by ``calibration.measured_stack``, served through the z-stack PSF (cubic in z, shifted in
x, y in Fourier space) like any other PSF.

The .npz holds ``stack`` (Z, P, P) float32 expected photons per pixel of a one-photon emitter centred on
the middle pixel (P odd), ``z_nm`` (Z,) increasing, evenly spaced depths (nm, + into the sample) and
``pixel_nm`` (the camera pixel in the sample plane). Light outside the P×P crop is not in the stack: its
brightest plane sums to 1 over the crop, so photons are counted as in the crop of the sharpest plane.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepsmlm.errors import UserInputError
from deepsmlm.optics.cubic_stack import CubicZStackPSF
from deepsmlm.optics.stack import ZStackPSF

STACK_KEY, Z_KEY, PIXEL_KEY = "stack", "z_nm", "pixel_nm"
MAX_PLANE_SUM = 1.01  # unit-photon planes hold at most one photon over the crop (rounding allowed)
MIN_PEAK_PLANE_SUM = 0.5  # … and the brightest at least this (else the file holds raw counts or a bad crop)
Z_TOLERANCE_NM = 1e-3


@dataclass(frozen=True)
class MeasuredStack:
    """The planes (Z, P, P) float32 of a measured PSF, their depths (Z,) nm and the camera pixel (nm)."""

    stack: np.ndarray
    z_nm: np.ndarray
    pixel_nm: float


def read_measured_stack(path: str | os.PathLike) -> MeasuredStack:
    """The measured PSF in the .npz at ``path``; one-line errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: measured PSF file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k], dtype=np.float64) for k in (STACK_KEY, Z_KEY, PIXEL_KEY)
                      if k in data.files}
    except (OSError, ValueError, TypeError, AttributeError, zipfile.BadZipFile) as err:
        raise UserInputError(f"{path}: not a readable .npz of arrays ({type(err).__name__})") from None
    if len(arrays) < 3:
        raise UserInputError(f"{path}: a measured PSF .npz needs arrays {STACK_KEY}, {Z_KEY} and {PIXEL_KEY}")
    stack, z_nm, pixel = arrays[STACK_KEY], arrays[Z_KEY], arrays[PIXEL_KEY]
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2] or stack.shape[1] % 2 == 0 or len(stack) < 2:
        raise UserInputError(f"{path}: {STACK_KEY} must be (Z ≥ 2, P, P) planes with P odd, got shape {stack.shape}")
    if z_nm.shape != (len(stack),) or pixel.size != 1:
        raise UserInputError(f"{path}: {len(stack)} planes need {Z_KEY} of shape ({len(stack)},) and one {PIXEL_KEY}, "
                             f"got {z_nm.shape} and {pixel.size}")
    if not (np.isfinite(stack).all() and np.isfinite(z_nm).all() and float(pixel) > 0):
        raise UserInputError(f"{path}: non-finite planes or depths, or a pixel size that is not positive")
    sums = stack.sum(axis=(1, 2))
    if not MIN_PEAK_PLANE_SUM <= sums.max() <= MAX_PLANE_SUM:
        raise UserInputError(f"{path}: planes must be unit-photon PSFs (the brightest summing to 1 over the crop); "
                             f"the brightest sums to {sums.max():.4g}")
    return MeasuredStack(stack.astype(np.float32), z_nm, float(pixel))


def measured_psf(path: str | os.PathLike, pixel_nm: float, patch_px: int,
                 z_range_nm: tuple[float, float]) -> CubicZStackPSF:
    """The z-stack PSF (cubic in z) of the measured stack at ``path``, cut to the central ``patch_px`` pixels,
    after checking that its pixel is ``pixel_nm``, its crop at least ``patch_px`` wide and its depths cover
    ``z_range_nm`` (outside them a z-stack PSF is clamped: a wrong PSF, not an error)."""
    m = read_measured_stack(path)
    p = m.stack.shape[-1]
    if abs(m.pixel_nm / pixel_nm - 1) > 1e-3:
        raise UserInputError(f"{path}: the stack's pixel is {m.pixel_nm:g} nm, the config's frame.pixel_size_nm "
                             f"{pixel_nm:g} nm; record the beads with the same camera and magnification")
    if patch_px > p:
        raise UserInputError(f"{path}: the stack's {p}-px crop is smaller than psf.patch_px {patch_px}; "
                             f"set psf.patch_px ≤ {p}")
    z0, z1 = z_range_nm
    if z0 < m.z_nm[0] - Z_TOLERANCE_NM or z1 > m.z_nm[-1] + Z_TOLERANCE_NM:
        raise UserInputError(f"{path}: the stack's depths {m.z_nm[0]:g}…{m.z_nm[-1]:g} nm do not cover "
                             f"emitters.z_range_nm {z0:g}…{z1:g} nm")
    a = (p - patch_px) // 2
    planes = m.stack[:, a:a + patch_px, a:a + patch_px]
    try:
        return CubicZStackPSF.of(ZStackPSF.from_stack(planes, m.z_nm, pixel_nm))
    except ValueError as err:  # depths not increasing in equal steps
        raise UserInputError(f"{path}: {err}") from None


def in_focus_sigma_nm(m: MeasuredStack) -> float:
    """The σ (nm) of the pixel-integrated Gaussian whose peak pixel holds the share of light the sharpest
    plane's peak pixel holds: σ² = Δ²/(2π·peak share) − Δ²/12 (the detection width of a measured PSF)."""
    share = float((m.stack.max(axis=(1, 2)) / m.stack.sum(axis=(1, 2)).clip(min=1e-12)).max())
    variance = 1 / (2 * math.pi * share) - 1 / 12
    return m.pixel_nm * math.sqrt(max(variance, 1 / 12))
