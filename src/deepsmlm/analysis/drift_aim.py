"""Stage drift by adaptive intersection maximization (AIM; Ma et al., Sci. Adv. 2024), from the paper's
description.

The frames are cut into segments as for RCC (:mod:`deepsmlm.analysis.drift`). The first segment is the
reference; each following segment in turn gets the drift d that makes the most of its localizations, less d,
fall within the intersection radius of a reference localization, and its corrected localizations then join
the reference, which grows denser (kept to REFERENCE_MAX random points). d is searched coarse to fine about a
prediction (the last drift, extrapolated linearly from the two before): at each stage every (reference,
segment) pair within a search radius R of each other after the current estimate (kd-trees,
``scipy.spatial.cKDTree``; the segment thinned at random beyond COARSE_PAIRS pairs, FINE_PAIRS in the last
stage) gives a pair difference, and the fullest bin of their histogram (R/BINS bins, smoothed by one bin)
moves the estimate; R shrinks SHRINK-fold per stage down to FINAL_PX pixels. The first segment after the
reference is searched within ±``max_drift_nm``, later ones within 3 × the predicted step (at least
MIN_SEARCH_PX pixels). Sub-nm: the mean of the pair differences within the intersection radius
(INTERSECTION_PX pixels: it must hold the whole peak, widened by the drift within each segment) of the
estimate, iterated to its fixed point (mean shift). z (3D): the z differences of the final pairs within one
pixel laterally, by the same coarse-to-fine histogram and mean shift within ±Z_WINDOW_PX pixels. Segment
drifts are interpolated to every frame as for RCC.

Units: nm, 0-based frames. The drift is 0 at the first frame; corrected position = position − drift(frame).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from deepsmlm.analysis.drift import Drift, assemble_drift, fill_segments
from deepsmlm.progress import ProgressCallback, ProgressEvent, ignore

MAX_SEGMENTS = 1000
"""More segments than this are merged into longer ones (AIM costs one kd-tree search per segment)."""
REFERENCE_MAX = 100_000
"""The reference holds at most this many corrected localizations, drawn at random from all so far."""
COARSE_PAIRS, FINE_PAIRS = 100_000, 400_000
"""Pairs per search stage (the last: FINE_PAIRS); the segment is thinned at random to about this many."""
BINS = 20
"""Histogram bins per search radius (each side of the estimate)."""
SHRINK = 4.0
"""The search radius shrinks this much per stage."""
MIN_SEARCH_PX, FINAL_PX, INTERSECTION_PX, Z_WINDOW_PX = 8.0, 3.0, 2.0, 3.0
"""In pixels: the smallest search radius after the first segment, the last stage's search radius, the
lateral intersection radius (mean-shift window), the z mean-shift window (axial precision is worse)."""
OVER_RELAX = 1.8
"""Mean-shift steps go this far past the window's mean (stable below 2: the map is a contraction)."""
SAMPLE = 256
"""Segment localizations whose neighbour counts estimate a stage's number of pairs."""


def _radii(search: float, floor: float) -> list[float]:
    """Search radii from ``search`` shrinking SHRINK-fold down to ``floor`` (at least one stage)."""
    radii = [max(search, floor)]
    while radii[-1] > floor:
        radii.append(max(radii[-1] / SHRINK, floor))
    return radii


def _peak(delta: np.ndarray, radius: float) -> np.ndarray:
    """Centre (k,) of the fullest bin of the histogram of ``delta`` (M, k) on ±``radius`` (BINS bins a side),
    smoothed by a Gaussian of one bin; 0 where no difference is in range."""
    k, shape = delta.shape[1], (2 * BINS,) * delta.shape[1]
    bins = np.floor((delta + radius) * (BINS / radius)).astype(np.int64)
    bins = bins[((bins >= 0) & (bins < 2 * BINS)).all(axis=1)]
    counts = np.bincount(np.ravel_multi_index(bins.T, shape), minlength=(2 * BINS) ** k).reshape(shape)
    hist = gaussian_filter(counts.astype(np.float64), 1.0, mode="constant")
    if not hist.max() > 0:
        return np.zeros(k)
    return (np.array(np.unravel_index(int(np.argmax(hist)), shape)) + 0.5) * (radius / BINS) - radius


def _mean_shift(values: np.ndarray, start: np.ndarray, window: float, steps: int = 60) -> np.ndarray:
    """The fixed point near ``start`` (within ``window`` / 4) of x ↦ mean of ``values`` (M, k) within
    ``window`` of x, to 0.01 nm; steps over-relaxed by OVER_RELAX (the map contracts slowly along filaments)."""
    axes = list((values - start).T)
    close = sum(a * a for a in axes) <= (1.25 * window) ** 2
    axes = [a[close] for a in axes]
    est = np.zeros(len(axes))
    for _ in range(steps):
        near = sum((a - e) ** 2 for a, e in zip(axes, est)) <= window ** 2
        mean = np.array([a[near].mean() for a in axes]) if near.any() else est
        if np.abs(mean - est).max() < 0.01:
            break
        est = est + OVER_RELAX * (mean - est)
    return start + est


def _pairs(tree: cKDTree, points: np.ndarray, radius: float, budget: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(reference indices, ``points`` indices) of the pairs within ``radius``, ``points`` thinned at random to
    about ``budget`` pairs."""
    sample = points[rng.choice(len(points), min(len(points), SAMPLE), replace=False)]
    expected = tree.query_ball_point(sample, radius, return_length=True).mean() * len(points)
    keep = np.flatnonzero(rng.random(len(points)) < budget / max(expected, 1.0))
    found = tree.sparse_distance_matrix(cKDTree(points[keep]), radius, output_type="ndarray")
    return found["i"], keep[found["j"]]


def _lateral(tree: cKDTree, target: np.ndarray, prior: np.ndarray, search: float, pixel: float,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lateral drift (2,) nm of ``target`` (n, 2) against the reference in ``tree``, the last stage's pairs
    (reference indices, target indices)): coarse-to-fine histogram peaks, then the intersection's mean."""
    est, radii = prior, _radii(search, FINAL_PX * pixel)
    for radius in radii:
        i, j = _pairs(tree, target - est, radius, FINE_PAIRS if radius == radii[-1] else COARSE_PAIRS, rng)
        diff = target[j] - tree.data[i]
        est = est + _peak(diff - est, radius)
    return _mean_shift(diff, est, INTERSECTION_PX * pixel), i, j


def _axial(dz: np.ndarray, prior: float, search: float, pixel: float) -> float:
    """z drift (nm) from the z differences ``dz`` of laterally matched pairs: coarse-to-fine histogram peaks
    about ``prior`` within ±``search``, then mean shift within ±Z_WINDOW_PX pixels."""
    est = np.array([prior])
    for radius in _radii(search, Z_WINDOW_PX * pixel):
        est = est + _peak(dz[:, None] - est, radius)
    return float(_mean_shift(dz[:, None], est, Z_WINDOW_PX * pixel)[0])


def _segment_drift(reference: np.ndarray, target: np.ndarray, prior: np.ndarray, search: tuple[float, float],
                   pixel: float, rng: np.random.Generator) -> np.ndarray:
    """Drift (k,) nm of ``target`` (n, k) against the corrected ``reference`` (m, k); ``search``: (lateral,
    axial) search radii about ``prior`` (k,)."""
    tree = cKDTree(reference[:, :2], balanced_tree=False)
    lateral, i, j = _lateral(tree, target[:, :2], prior[:2], search[0], pixel, rng)
    if target.shape[1] == 2:
        return lateral
    matched = np.linalg.norm(target[j, :2] - reference[i, :2] - lateral, axis=1) <= pixel
    dz = target[j[matched], 2] - reference[i[matched], 2]
    return np.append(lateral, _axial(dz, float(prior[2]), search[1], pixel))


def _prediction(centres: np.ndarray, drifts: np.ndarray, centre: float, max_drift_nm: float,
                pixel: float) -> tuple[np.ndarray, tuple[float, float]]:
    """(predicted drift (k,), (lateral, axial) search radii) for the segment at frame ``centre`` from the
    drifts (S, k) found at frames ``centres``: ±``max_drift_nm`` about 0 for the first, later the last drift
    extrapolated linearly, searched within 3 × the predicted step (at least MIN_SEARCH_PX pixels)."""
    if len(centres) < 2:
        return drifts[-1], (max_drift_nm, max_drift_nm)
    step = (drifts[-1] - drifts[-2]) / (centres[-1] - centres[-2]) * (centre - centres[-1])
    lateral, axial = float(np.linalg.norm(step[:2])), float(np.abs(step[2:]).sum())
    radii = tuple(min(max_drift_nm, max(3 * s, MIN_SEARCH_PX * pixel)) for s in (lateral, axial))
    return drifts[-1] + step, radii


def _reference(parts: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """All corrected localizations so far, or REFERENCE_MAX of them drawn at random."""
    points = np.concatenate(parts)
    return points if len(points) <= REFERENCE_MAX else points[rng.choice(len(points), REFERENCE_MAX, replace=False)]


def estimate_drift_aim(frame: np.ndarray, xyz: np.ndarray, segment_frames: int = 1000, pixel_nm: float = 20.0,
                       max_drift_nm: float = 1000.0, progress: ProgressCallback = ignore) -> Drift:
    """The drift of localizations at ``xyz`` (N, 2) or (N, 3) nm in frames ``frame`` (N,), by AIM over
    segments of ``segment_frames`` frames (longer when that makes more than MAX_SEGMENTS), on the scale of
    ``pixel_nm`` (intersection radius INTERSECTION_PX pixels), the second segment's shift from the first
    searched within ±``max_drift_nm``. Needs two segments holding MIN_LOCS localizations each; the caller
    checks that."""
    frame = np.asarray(frame, dtype=np.int64)
    first = int(frame.min())
    rel = frame - first
    groups, centres, n_seg = fill_segments(rel, segment_frames, MAX_SEGMENTS)
    drifts = np.zeros((len(groups), xyz.shape[1]))
    parts = [xyz[groups[0]]]
    for k in range(1, len(groups)):
        rng = np.random.default_rng(k)
        prior, search = _prediction(centres[:k], drifts[:k], centres[k], max_drift_nm, pixel_nm)
        drifts[k] = _segment_drift(_reference(parts, rng), xyz[groups[k]], prior, search, pixel_nm, rng)
        parts.append(xyz[groups[k]] - drifts[k])
        progress(ProgressEvent("drift aim", k, len(groups) - 1, status=f"segment {k + 1}/{len(groups)}"))
    return assemble_drift(first, rel, centres, drifts, n_seg, len(groups) - 1, 0)
