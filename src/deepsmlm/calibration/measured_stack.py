"""The measured-stack PSF from bead z-stacks: the non-parametric fallback for PSFs no smooth pupil explains.

From crops (B, K, P, P) of B beads in K slices (ADU, e.g. ``calibration.beads.crop_beads``):

1. photons by the camera model, minus the background: given per slice (e.g. each slice's median over the
   whole frame, away from the beads), else each crop's border median — which also removes the PSF's own
   light at the crop's border (for NA 1.49 at 100 nm pixels ≈ 2 % of the light with a 21-px crop, 1.5 %
   with 31 px), so give the background when the frame has room around the beads;
2. each bead's position relative to a common PSF — x, y (camera px) and, optionally, its axial offset
   (nm) — by least squares against the current average (the average rendered through the z-stack PSF:
   Fourier-shifted laterally, cubic in z, scaled), starting from the beads' centroids, a few rounds;
   the mean of the beads' offsets is anchored to the mean of their centroids (x, y) and to 0 (z);
3. every bead resampled to the common position through its own z-stack PSF (the Fourier shift is exact
   for a band-limited, Nyquist-sampled image; z by Catmull–Rom splines between slices, clamped at the
   ends), summed and divided by the beads' summed brightness (the least-squares average);
4. optionally smoothed in z by a Gaussian of σ ``z_smoothing_nm`` (a few beads' shot noise makes a bumpy
   stack whose likelihood in z has false minima: with 6 beads of ~50,000 photons the planes' noise is
   ~3 % of their shape, while 10 nm of defocus changes it by ~4 %);
5. cut to the planes every bead covers after its axial shift, and scaled so that the brightest plane
   holds one photon over the crop: planes hold the light in the crop of a one-photon emitter whose
   sharpest image is all in the crop (the light outside the crop, a few per cent in focus and more out of
   focus, is not modelled: photons are counted as in that crop).

z is each slice's emitter z (nm, + into the sample); for a focal-plane scan past beads on the coverslip,
the z of a bead at depth 0 (``calibration.pupil_fit``). The stack describes emitters at the beads' depth:
with a refractive-index mismatch, deeper emitters have another PSF (use the fitted pupil there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import least_squares

from deepsmlm.calibration.beads import centroid_offsets
from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import write_atomic
from deepsmlm.optics.cubic_stack import CubicZStackPSF
from deepsmlm.optics.measured import PIXEL_KEY, STACK_KEY, Z_KEY
from deepsmlm.optics.stack import ZStackPSF
from deepsmlm.physics.camera import Camera

ALIGN_ROUNDS = 3  # fit the beads to the average, re-average: the offsets settle in two


@dataclass(frozen=True)
class MeasuredPSF:
    """The averaged stack (K, P, P) float32 (unit photons: the brightest plane sums to 1), its depths (K,) nm,
    the pixel (nm), each bead's offset from the stack's centre (B, 3): x, y camera px and z nm, and its
    photons (B,) in the crop of its brightest plane."""

    stack: np.ndarray
    z_nm: np.ndarray
    pixel_nm: float
    offsets: np.ndarray
    photons: np.ndarray


def background_subtracted(crops: np.ndarray, camera: Camera, background_adu: np.ndarray | None) -> np.ndarray:
    """(B, K, P, P) ADU -> photons (float64) less the background: ``background_adu`` (K,) per slice, or each
    crop's border median."""
    if isinstance(camera.offset, torch.Tensor):
        raise UserInputError("a measured PSF from bead crops needs a uniform camera, not per-pixel sCMOS maps")
    photons = camera.adu_to_photons(torch.as_tensor(np.asarray(crops, dtype=np.float64))).numpy()
    if background_adu is not None:
        background = camera.adu_to_photons(torch.as_tensor(np.asarray(background_adu, dtype=np.float64))).numpy()
        return photons - background[:, None, None]
    border = np.concatenate([photons[..., 0, :], photons[..., -1, :], photons[..., 1:-1, 0], photons[..., 1:-1, -1]],
                            axis=-1)
    return photons - np.median(border, axis=-1)[..., None, None]


def stack_psf(planes: np.ndarray, z_nm: np.ndarray, pixel_nm: float) -> CubicZStackPSF:
    """The z-stack PSF (cubic in z) of (K, P, P) planes at depths ``z_nm``."""
    try:
        return CubicZStackPSF.of(ZStackPSF.from_stack(torch.as_tensor(planes, dtype=torch.float32),
                                                      torch.as_tensor(z_nm, dtype=torch.float32), pixel_nm))
    except ValueError as err:
        raise UserInputError(f"bead stack: {err}") from None


def offsets_nm(xy_px: np.ndarray, dz_nm: float, z_nm: np.ndarray, pixel_nm: float) -> torch.Tensor:
    """(K, 3) offsets (x, y, z) nm of an emitter ``xy_px`` from the centre, at each depth ``z_nm`` + ``dz_nm``."""
    out = np.empty((len(z_nm), 3))
    out[:, :2] = np.asarray(xy_px) * pixel_nm
    out[:, 2] = z_nm + dz_nm
    return torch.as_tensor(out, dtype=torch.float32)


def fit_bead(reference: CubicZStackPSF, bead: np.ndarray, z_nm: np.ndarray, start: np.ndarray,
             axial: bool) -> np.ndarray:
    """(x px, y px, z nm, scale) of ``bead`` (K, P, P) against ``reference`` rendered there, by least squares
    from ``start`` (the same four; z held at its start unless ``axial``)."""
    px = reference.pixel_nm
    data = bead.ravel()
    free = [0, 1, 2, 3] if axial else [0, 1, 3]

    def full(p: np.ndarray) -> np.ndarray:
        theta = start.copy()
        theta[free] = p
        return theta

    def model(p: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        theta = full(p)
        with torch.no_grad():
            mu, d = reference.patches_and_derivatives(offsets_nm(theta[:2], theta[2], z_nm, px),
                                                      torch.full((len(z_nm),), float(theta[3])))
        return mu.double(), d.double()

    def residuals(p: np.ndarray) -> np.ndarray:
        return model(p)[0].numpy().ravel() - data

    def jacobian(p: np.ndarray) -> np.ndarray:
        mu, d = model(p)
        columns = [d[0] * px, d[1] * px, d[2], mu / full(p)[3]]
        return torch.stack([columns[i].reshape(-1) for i in free], 1).numpy()

    return full(least_squares(residuals, start[free], jac=jacobian, method="lm").x)


def aligned(bead: np.ndarray, z_nm: np.ndarray, pixel_nm: float, offset: np.ndarray) -> np.ndarray:
    """``bead`` (K, P, P) moved from ``offset`` (x px, y px, z nm) to the centre at the same depths ``z_nm``."""
    with torch.no_grad():
        planes = stack_psf(bead, z_nm, pixel_nm).patches(offsets_nm(-offset[:2], -offset[2], z_nm, pixel_nm),
                                                         torch.ones(len(z_nm)))
    return planes.double().numpy()


def averaged(beads: np.ndarray, z_nm: np.ndarray, pixel_nm: float, theta: np.ndarray) -> np.ndarray:
    """The least-squares average (K, P, P) of ``beads`` (B, K, P, P) at offsets and scales ``theta`` (B, 4)."""
    total = sum(aligned(bead, z_nm, pixel_nm, t[:3]) for bead, t in zip(beads, theta))
    return total / theta[:, 3].sum()


def aligned_offsets(beads: np.ndarray, z_nm: np.ndarray, pixel_nm: float, axial: bool) -> np.ndarray:
    """(B, 4) x, y (px), z (nm) and scale of each of ``beads`` (B, K, P, P), each normalised to about unit
    brightness, against their common average: ALIGN_ROUNDS rounds of least squares from the centroids, the
    mean offset anchored to the mean centroid in x, y and to 0 in z."""
    theta = np.zeros((len(beads), 4))
    theta[:, :2], theta[:, 3] = centroid_offsets(beads), 1.0
    anchor = theta[:, :2].mean(axis=0)
    for _ in range(ALIGN_ROUNDS):
        reference = stack_psf(averaged(beads, z_nm, pixel_nm, theta), z_nm, pixel_nm)
        theta = np.stack([fit_bead(reference, bead, z_nm, t, axial) for bead, t in zip(beads, theta)])
        theta[:, :2] += anchor - theta[:, :2].mean(axis=0)
        theta[:, 2] -= theta[:, 2].mean()
    return theta


def measured_psf_from_beads(crops: np.ndarray, z_nm: np.ndarray, camera: Camera, pixel_nm: float,
                            background_adu: float | np.ndarray | None = None, axial: bool = True,
                            z_smoothing_nm: float = 0.0) -> MeasuredPSF:
    """The measured-stack PSF of bead crops (B, K, P, P) ADU recorded at evenly spaced depths ``z_nm`` (K,)
    (module docstring); ``background_adu``: scalar or per slice (K,), default each crop's border median;
    ``axial``: also align the beads' axial offsets; ``z_smoothing_nm``: σ of the Gaussian smoothing in z."""
    crops, z_nm = np.asarray(crops), np.asarray(z_nm, dtype=np.float64)
    if crops.ndim != 4 or crops.shape[-1] != crops.shape[-2] or crops.shape[-1] % 2 == 0 or not len(crops):
        raise UserInputError(f"bead crops must be (beads, slices, P, P) with P odd, got shape {crops.shape}")
    if z_nm.shape != (crops.shape[1],):
        raise UserInputError(f"bead stack: {crops.shape[1]} slices but {z_nm.size} depths")
    background = None if background_adu is None else np.broadcast_to(background_adu, z_nm.shape)
    order = np.argsort(z_nm)  # a scan recorded from the far side: planes in increasing z
    beads = background_subtracted(crops[:, order], camera, None if background is None else background[order])
    z_nm = z_nm[order]
    photons = beads.sum(axis=(2, 3)).max(axis=1)
    if (photons <= 0).any():
        raise UserInputError("bead stack: a crop holds no light above its background (no bead in it?)")
    beads = beads / photons[:, None, None, None]
    theta = aligned_offsets(beads, z_nm, pixel_nm, axial)
    dz = theta[:, 2]
    covered = (z_nm >= z_nm[0] + dz.max() - 1e-6) & (z_nm <= z_nm[-1] + dz.min() + 1e-6)
    stack = averaged(beads, z_nm, pixel_nm, theta)
    if z_smoothing_nm > 0:
        stack = gaussian_filter1d(stack, z_smoothing_nm / (z_nm[1] - z_nm[0]), axis=0, mode="nearest")
    stack = stack[covered]
    unit = stack.sum(axis=(1, 2)).max()
    return MeasuredPSF((stack / unit).astype(np.float32), z_nm[covered], float(pixel_nm), theta[:, :3],
                       photons * theta[:, 3] * unit)


def write_measured_psf(out_npz: str | os.PathLike, crops: np.ndarray, z_nm: np.ndarray, camera: Camera,
                       pixel_nm: float, background_adu: float | np.ndarray | None = None, axial: bool = True,
                       z_smoothing_nm: float = 0.0) -> MeasuredPSF:
    """:func:`measured_psf_from_beads`, written atomically to ``out_npz`` as ``psf.model: measured`` reads it
    (``stack``, ``z_nm``, ``pixel_nm``; also the beads' ``offsets`` and ``photons``)."""
    psf = measured_psf_from_beads(crops, z_nm, camera, pixel_nm, background_adu, axial, z_smoothing_nm)
    arrays = {STACK_KEY: psf.stack, Z_KEY: psf.z_nm, PIXEL_KEY: np.float64(psf.pixel_nm), "offsets": psf.offsets,
              "photons": psf.photons}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    write_atomic(out_npz, write)
    return psf
