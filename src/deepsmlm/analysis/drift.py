"""Stage drift of a localization table over its frames, by redundant cross-correlation (RCC; Wang et al.,
Opt. Express 22, 15982 (2014)).

The frames are cut into segments of equal length. Each segment's localizations are binned into an image
(``pixel_nm``, zero mean, blurred by a Gaussian of BLUR_PX pixels in Fourier space) and every pair (i, j) of
segment images is cross-correlated by FFT; the peak within ±``max_drift_nm``, refined to sub-pixel by a
Gaussian through the three samples about it along each axis, is the pair's shift d_i − d_j. All pairs are
solved together by least squares for one drift per segment (d of the first segment fixed at 0); pairs whose
residual exceeds max(half a pixel, 3 robust SDs) are rejected and the rest solved again. The segment drifts,
placed at each segment's mean frame, are interpolated to every frame by a natural cubic spline (linear with
the end slope beyond the first and last). z drift (3D tables) comes the same way from side views (x–z and
y–z images of the laterally corrected localizations, their pairwise z shifts averaged).

Units: nm, 0-based frames. The drift is 0 at the first frame; corrected position = position − drift(frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.interpolate import CubicSpline

from deepsmlm.progress import ProgressCallback, ProgressEvent, ignore

MAX_SEGMENTS = 40
"""More segments than this are merged into longer ones (RCC costs segments² FFTs and segments images)."""
MAX_SIDE_PX = 1024
"""Segment images have at most this many pixels a side (larger fields get coarser pixels)."""
BLUR_PX = 1.0
"""σ (pixels) of the Gaussian blur of each segment image: the correlation peak is ≥ 2 pixels wide."""
MIN_LOCS = 10
"""Segments with fewer localizations are left out of the fit (their drift is interpolated)."""


@dataclass(frozen=True)
class Drift:
    """A drift trajectory: ``drift_nm[i]`` = (x, y[, z]) drift (nm) at frame ``first_frame + i``; the fitted
    segment drifts ``segment_drift_nm`` at their mean frames ``segment_centres``; ``segment_frames`` frames
    per segment; ``rejected`` pairs left out of the fit as outliers, of ``n_pairs`` (AIM: its segment–reference
    comparisons, none rejected)."""

    first_frame: int
    drift_nm: np.ndarray
    segment_centres: np.ndarray
    segment_drift_nm: np.ndarray
    segment_frames: float
    n_pairs: int
    rejected: int

    @property
    def frames(self) -> np.ndarray:
        """The frame index of each row of ``drift_nm``."""
        return self.first_frame + np.arange(len(self.drift_nm))

    def at(self, frame: np.ndarray) -> np.ndarray:
        """The drift (N, 2|3) nm at each of ``frame`` (0-based indices within the trajectory's frames)."""
        return self.drift_nm[np.asarray(frame, dtype=np.int64) - self.first_frame]


@dataclass(frozen=True)
class _Grid:
    """Segment images: (u, v) → pixel (⌊(v − lo_v)/p⌋, ⌊(u − lo_u)/p⌋) of ``shape`` (rows, cols); peaks are
    searched within ±``reach`` (rows, cols) pixels."""

    lo: tuple[float, float]
    pixel_nm: float
    shape: tuple[int, int]
    reach: tuple[int, int]


def _grid(u: np.ndarray, v: np.ndarray, pixel_nm: float, max_drift_nm: float) -> _Grid:
    """A grid holding (u, v) with a margin of ``max_drift_nm`` on every side (shifts do not wrap around)."""
    spans = [float(np.ptp(a)) + 2 * max_drift_nm for a in (v, u)]
    pixel = max(pixel_nm, max(spans) / (MAX_SIDE_PX - 2))
    shape = tuple(scipy.fft.next_fast_len(math.ceil(s / pixel) + 2, real=True) for s in spans)
    reach = tuple(min(math.ceil(max_drift_nm / pixel), n // 2 - 2) for n in shape)
    return _Grid((float(u.min()) - max_drift_nm, float(v.min()) - max_drift_nm), pixel, shape, reach)


def _spectra(u: np.ndarray, v: np.ndarray, groups: list[np.ndarray], grid: _Grid) -> np.ndarray:
    """(segments, rows, cols//2 + 1) complex64: the blurred, zero-mean image spectrum of each group."""
    rows, cols = grid.shape
    r = np.clip(((v - grid.lo[1]) / grid.pixel_nm).astype(np.int64), 0, rows - 1)
    c = np.clip(((u - grid.lo[0]) / grid.pixel_nm).astype(np.int64), 0, cols - 1)
    flat = r * cols + c
    fr, fc = scipy.fft.fftfreq(rows), scipy.fft.rfftfreq(cols)
    blur = np.exp(-2 * (math.pi * BLUR_PX) ** 2 * (fr[:, None] ** 2 + fc[None, :] ** 2)).astype(np.float32)
    out = np.empty((len(groups), rows, cols // 2 + 1), dtype=np.complex64)
    for k, idx in enumerate(groups):
        image = np.bincount(flat[idx], minlength=rows * cols).reshape(rows, cols).astype(np.float32)
        out[k] = scipy.fft.rfft2(image - image.mean()) * blur
    return out


def _vertex(three: np.ndarray) -> float:
    """Sub-sample offset (−½…½) of the peak of three samples about a maximum: the vertex of the parabola
    through their logarithms (exact for a Gaussian), or through the values where one is not positive."""
    a, b, c = (np.log(three) if three.min() > 0 else three).astype(np.float64)
    curvature = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0


def _peak(corr: np.ndarray, reach: tuple[int, int]) -> np.ndarray:
    """(u, v) shift (pixels) of the highest correlation within ±``reach`` (rows, cols), sub-pixel."""
    iv, iu = (np.arange(-m, m + 1) for m in reach)
    window = corr[np.ix_(iv % corr.shape[0], iu % corr.shape[1])]
    a, b = np.unravel_index(int(np.argmax(window)), window.shape)
    dv = _vertex(window[a - 1:a + 2, b]) if 0 < a < len(iv) - 1 else 0.0
    du = _vertex(window[a, b - 1:b + 2]) if 0 < b < len(iu) - 1 else 0.0
    return np.array([iu[b] + du, iv[a] + dv])


def pair_shifts(u: np.ndarray, v: np.ndarray, groups: list[np.ndarray], pixel_nm: float, max_drift_nm: float,
                progress: ProgressCallback = ignore, task: str = "drift") -> tuple[np.ndarray, np.ndarray, float]:
    """(pairs (P, 2) of group indices i < j, shifts (P, 2) nm of (u, v) with shift = d_i − d_j, the image
    pixel used (nm)) from the cross-correlation of every pair of group images."""
    grid = _grid(u, v, pixel_nm, max_drift_nm)
    spectra = _spectra(u, v, groups, grid)
    n = len(groups)
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)], dtype=np.int64).reshape(-1, 2)
    shifts = np.empty((len(pairs), 2))
    for k, (i, j) in enumerate(pairs):
        corr = scipy.fft.irfft2(spectra[i] * spectra[j].conj(), s=grid.shape)
        shifts[k] = _peak(corr, grid.reach) * grid.pixel_nm
        if k % 50 == 49 or k == len(pairs) - 1:
            progress(ProgressEvent(task, k + 1, len(pairs), status=f"pair {k + 1}/{len(pairs)}"))
    return pairs, shifts, grid.pixel_nm


def _least_squares(pairs: np.ndarray, shifts: np.ndarray, n: int) -> np.ndarray:
    """Drifts d (n, k) minimising Σ |d_i − d_j − shift_ij|², d_0 = 0."""
    design = np.zeros((len(pairs), n))
    design[np.arange(len(pairs)), pairs[:, 0]] = 1.0
    design[np.arange(len(pairs)), pairs[:, 1]] = -1.0
    d = np.zeros((n, shifts.shape[1]))
    d[1:] = np.linalg.lstsq(design[:, 1:], shifts, rcond=None)[0]
    return d


def _connected(pairs: np.ndarray, n: int) -> bool:
    """Whether the pairs link all n segments (the least-squares problem has one solution)."""
    seen, frontier = {0}, [0]
    while frontier:
        k = frontier.pop()
        linked = np.concatenate([pairs[pairs[:, 0] == k, 1], pairs[pairs[:, 1] == k, 0]])
        for m in set(linked.tolist()) - seen:
            seen.add(m)
            frontier.append(m)
    return len(seen) == n


def solve_shifts(pairs: np.ndarray, shifts: np.ndarray, n: int, tolerance_nm: float) -> tuple[np.ndarray, int]:
    """(drift per segment (n, k) nm with d_0 = 0, pairs rejected): least squares over the pairwise shifts,
    rejecting pairs off the solution by more than max(``tolerance_nm``, 3 robust SDs) while the rest still
    link every segment."""
    keep = np.ones(len(pairs), dtype=bool)
    while True:
        d = _least_squares(pairs[keep], shifts[keep], n)
        err = np.linalg.norm(d[pairs[:, 0]] - d[pairs[:, 1]] - shifts, axis=1)
        limit = max(tolerance_nm, 3 * 1.4826 * float(np.median(err[keep])))
        bad = keep & (err > limit)
        if not bad.any() or not _connected(pairs[keep & ~bad], n):
            return d, int((~keep).sum())
        keep &= ~bad


def trajectory(centres: np.ndarray, values: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, k): ``values`` (S, k) at frames ``centres`` (S ≥ 2, increasing) interpolated to frames
    0 … n_frames − 1 (natural cubic spline; linear with the end slopes outside)."""
    spline = CubicSpline(centres, values, bc_type="natural")
    slope = spline.derivative()
    t = np.arange(n_frames, dtype=np.float64)
    inside = spline(np.clip(t, centres[0], centres[-1]))
    before = np.minimum(t - centres[0], 0)[:, None] * slope(centres[0])
    after = np.maximum(t - centres[-1], 0)[:, None] * slope(centres[-1])
    return inside + before + after


def segment_groups(frame: np.ndarray, n_segments: int, n_frames: int) -> list[np.ndarray]:
    """Row indices of each of ``n_segments`` equal runs of frames 0 … n_frames − 1 (``frame`` from 0)."""
    labels = frame * n_segments // n_frames
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.searchsorted(labels[order], np.arange(1, n_segments)))


def fill_segments(rel: np.ndarray, segment_frames: int, max_segments: int) -> tuple[list[np.ndarray], np.ndarray, int]:
    """(row indices of each segment holding MIN_LOCS localizations or more, their mean frames, the number of
    segments cut) for frames ``rel`` (from 0) cut into runs of ``segment_frames`` (2 … ``max_segments`` runs)."""
    n_frames = int(rel.max()) + 1
    n_seg = min(max(round(n_frames / segment_frames), 2), max_segments)
    groups = [g for g in segment_groups(rel, n_seg, n_frames) if len(g) >= MIN_LOCS]
    return groups, np.array([rel[g].mean() for g in groups]), n_seg


def assemble_drift(first: int, rel: np.ndarray, centres: np.ndarray, segment_drift: np.ndarray, n_seg: int,
                   n_pairs: int, rejected: int) -> Drift:
    """The :class:`Drift` through ``segment_drift`` (S, k) nm at frames ``centres`` (from 0), shifted to 0 at
    the first frame."""
    n_frames = int(rel.max()) + 1
    drift = trajectory(centres, segment_drift, n_frames)
    return Drift(first, drift - drift[0], centres + first, segment_drift - drift[0], n_frames / n_seg, n_pairs,
                 rejected)


def estimate_drift(frame: np.ndarray, xyz: np.ndarray, segment_frames: int = 1000, pixel_nm: float = 20.0,
                   max_drift_nm: float = 1000.0, progress: ProgressCallback = ignore) -> Drift:
    """The drift of localizations at ``xyz`` (N, 2) or (N, 3) nm in frames ``frame`` (N,), by RCC over
    segments of ``segment_frames`` frames (longer when that makes more than MAX_SEGMENTS), segment images of
    ``pixel_nm`` pixels (coarser for large fields), shifts searched within ±``max_drift_nm``. Needs two
    segments holding MIN_LOCS localizations each; the caller checks that."""
    frame = np.asarray(frame, dtype=np.int64)
    first = int(frame.min())
    rel = frame - first
    groups, centres, n_seg = fill_segments(rel, segment_frames, MAX_SEGMENTS)
    x, y = xyz[:, 0], xyz[:, 1]
    pairs, shifts, pixel = pair_shifts(x, y, groups, pixel_nm, max_drift_nm, progress, "drift x–y")
    lateral, rejected = solve_shifts(pairs, shifts, len(groups), pixel / 2)
    segment_drift = lateral
    if xyz.shape[1] == 3:
        drift_xy = trajectory(centres, lateral, int(rel.max()) + 1)[rel]
        xc, yc, z = x - drift_xy[:, 0], y - drift_xy[:, 1], xyz[:, 2]
        shifts_z = [pair_shifts(a, z, groups, pixel_nm, max_drift_nm, progress, f"drift {name}")[1][:, 1:]
                    for a, name in ((xc, "x–z"), (yc, "y–z"))]
        axial, rejected_z = solve_shifts(pairs, (shifts_z[0] + shifts_z[1]) / 2, len(groups), pixel / 2)
        segment_drift, rejected = np.hstack([lateral, axial]), rejected + rejected_z
    return assemble_drift(first, rel, centres, segment_drift, n_seg, len(pairs), rejected)
