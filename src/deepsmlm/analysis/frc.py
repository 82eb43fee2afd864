"""Fourier ring correlation (FRC) resolution of a localization table (Nieuwenhuizen et al., Nat. Methods 10,
557 (2013)).

The localizations are split into two halves by alternating blocks of frames (blocks 0, 2, 4, … and 1, 3,
5, …), each half is binned into a histogram image of ``pixel_nm`` pixels on one square field (the data's
bounds plus a margin of MARGIN_PX pixels, so the periodic FFT sees no edge), and

    FRC(q) = Re Σ_ring F₁ F₂* / √(Σ_ring |F₁|² · Σ_ring |F₂|²)

over rings of width one frequency pixel, 1/(N·p), at spatial frequency q (1/nm). The curve is smoothed by
a Gaussian of SMOOTH_FRACTION of the ring count (at least one ring); the resolution is 1/q where the
smoothed curve first falls below 1/7 (linear interpolation between rings). x and y only (3D tables are
projected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.ndimage import gaussian_filter1d

THRESHOLD = 1 / 7
MARGIN_PX = 8
SMOOTH_FRACTION = 0.01
MAX_SIDE_PX = 8192


@dataclass(frozen=True)
class FRCCurve:
    """An FRC curve: ring frequencies ``q_per_nm`` (1/nm), raw and smoothed correlation, the 1/7-threshold
    ``resolution_nm`` (NaN when the smoothed curve stays above it up to the Nyquist frequency), the image
    pixel (nm) and the localizations in each half."""

    q_per_nm: np.ndarray
    frc: np.ndarray
    smoothed: np.ndarray
    resolution_nm: float
    pixel_nm: float
    n_halves: tuple[int, int]


def halves(frame: np.ndarray, block_frames: int) -> np.ndarray:
    """True for the localizations of the first half: frames in even blocks of ``block_frames`` frames."""
    return (np.asarray(frame, dtype=np.int64) // block_frames) % 2 == 0


def square_field(xy: np.ndarray, pixel_nm: float) -> tuple[np.ndarray, int]:
    """(lower corner (2,) nm, side N px): one square field holding every (x, y) with MARGIN_PX spare pixels."""
    lo = xy.min(axis=0) - MARGIN_PX * pixel_nm
    side = math.ceil(float(np.ptp(xy, axis=0).max()) / pixel_nm) + 2 * MARGIN_PX + 1
    return lo, scipy.fft.next_fast_len(side, real=True)


def ring_sums(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Σ Re F_a F_b*, Σ |F_a|², Σ |F_b|²) over rings r = 0 … N/2 (frequency pixels, rounded) of two N×N
    images; the half-plane of the real FFT, each column standing for itself and its mirror."""
    n = a.shape[0]
    fa, fb = scipy.fft.rfft2(a), scipy.fft.rfft2(b)
    ky, kx = scipy.fft.fftfreq(n) * n, scipy.fft.rfftfreq(n) * n
    ring = np.rint(np.hypot(ky[:, None], kx[None, :])).astype(np.int64).ravel()
    weight = np.full(len(kx), 2.0)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    weight = np.broadcast_to(weight, fa.shape).ravel()
    keep = ring <= n // 2
    sums = [np.bincount(ring[keep], weights=(weight * v.ravel())[keep], minlength=n // 2 + 1)
            for v in ((fa * fb.conj()).real, np.abs(fa) ** 2, np.abs(fb) ** 2)]
    return sums[0], sums[1], sums[2]


def crossing(q: np.ndarray, curve: np.ndarray, threshold: float = THRESHOLD) -> float:
    """The first q (after q[0]) where ``curve`` falls below ``threshold``, linearly interpolated; NaN if never."""
    below = np.flatnonzero(curve[1:] < threshold)
    if not len(below):
        return math.nan
    i = int(below[0]) + 1
    f = (curve[i - 1] - threshold) / (curve[i - 1] - curve[i])
    return float(q[i - 1] + f * (q[i] - q[i - 1]))


def smooth(curve: np.ndarray) -> np.ndarray:
    """The curve smoothed by a Gaussian of SMOOTH_FRACTION of its length (≥ 1 sample), edges held."""
    return gaussian_filter1d(curve, max(1.0, SMOOTH_FRACTION * len(curve)), mode="nearest")


def frc_curve(xy_a: np.ndarray, xy_b: np.ndarray, pixel_nm: float) -> FRCCurve:
    """The FRC of two sets of localizations ``xy_a``, ``xy_b`` (N, 2) nm on ``pixel_nm`` histogram images."""
    lo, n = square_field(np.vstack([xy_a, xy_b]), pixel_nm)
    images = []
    for xy in (xy_a, xy_b):
        c, r = ((xy - lo) / pixel_nm).astype(np.int64).T
        images.append(np.bincount(r * n + c, minlength=n * n).reshape(n, n).astype(np.float64))
    cross, power_a, power_b = ring_sums(*images)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = np.nan_to_num(cross / np.sqrt(power_a * power_b))
    q = np.arange(len(frc)) / (n * pixel_nm)
    smoothed = smooth(frc)
    q_cross = crossing(q, smoothed)
    return FRCCurve(q, frc, smoothed, 1.0 / q_cross if q_cross > 0 else math.nan, pixel_nm,
                    (len(xy_a), len(xy_b)))
