"""`deepsmlm.correct_drift`: the stage drift of a localization table (RCC or AIM), the table corrected for it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepsmlm.analysis.drift import MIN_LOCS, Drift, estimate_drift, segment_groups
from deepsmlm.analysis.drift_aim import estimate_drift_aim
from deepsmlm.api.analysis import LocalizationsLike, as_localizations
from deepsmlm.errors import UserInputError, check_positive
from deepsmlm.localizations import Localizations
from deepsmlm.progress import ProgressCallback, ignore

ESTIMATORS = {"rcc": estimate_drift, "aim": estimate_drift_aim}
METHODS = tuple(ESTIMATORS)


@dataclass(frozen=True)
class DriftCorrection:
    """The corrected table (every column kept; x, y and, in 3D, z less the drift at each frame) and the
    estimated :class:`~deepsmlm.analysis.drift.Drift` (``drift.drift_nm``: (frames, 2|3) nm)."""

    corrected: Localizations
    drift: Drift


def check_drift_options(method: str, segment_frames: int, pixel_nm: float, max_drift_nm: float) -> None:
    """One-line errors for a method not offered and sizes that are not positive."""
    if method not in METHODS:
        raise UserInputError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if not segment_frames >= 1:
        raise UserInputError(f"--segment-frames {segment_frames}: must be at least 1")
    check_positive(pixel_nm, "--pixel-nm")
    check_positive(max_drift_nm, "--max-drift-nm")


def check_segments(frame: np.ndarray, name: str, segment_frames: int) -> None:
    """Drift needs localizations over many frames: at least two segments holding MIN_LOCS each."""
    if not len(frame):
        raise UserInputError(f"{name}: no localizations")
    first, last = int(frame.min()), int(frame.max())
    if first == last:
        raise UserInputError(f"{name}: all {len(frame)} localizations are in one frame; drift correction needs "
                             f"localizations spread over many frames")
    n_frames = last - first + 1
    n_seg = max(round(n_frames / segment_frames), 2)
    filled = sum(len(g) >= MIN_LOCS for g in segment_groups(frame - first, n_seg, n_frames))
    if filled < 2:
        raise UserInputError(f"{name}: its {n_frames} frames give fewer than 2 segments of ~{n_frames / n_seg:.0f} "
                             f"frames with {MIN_LOCS} localizations each; drift correction needs more "
                             f"localizations (or a smaller --segment-frames)")


def correct_drift(locs: LocalizationsLike, *, method: str = "rcc", segment_frames: int = 1000,
                  pixel_nm: float = 20.0, max_drift_nm: float = 1000.0, pixel_size_nm: float | None = None,
                  progress: ProgressCallback = ignore) -> DriftCorrection:
    """Estimate the stage drift of ``locs`` (a table or any supported file) and correct it.

    ``method``: rcc (redundant cross-correlation of segment images, Wang et al. 2014) or aim (adaptive
    intersection maximization, Ma et al. 2024: each segment matched to the growing corrected reference);
    ``segment_frames``: frames per segment (RCC: at most 40 segments, AIM: 1000, longer ones for longer
    movies); ``pixel_nm``: pixel of the segment images (RCC; AIM: the intersection radius is 2 pixels);
    ``max_drift_nm``: the largest drift between two segments looked for (AIM: of the second segment from
    the first, later ones are searched about a prediction); ``pixel_size_nm``:
    the camera pixel, for files in pixels. 3D tables (any z ≠ 0) get x, y and z drift. The drift is 0 at the
    first frame. Bad input (one frame, too few localizations) raises a one-line UserInputError.

    Example::

        result = deepsmlm.correct_drift("locs.csv")
        deepsmlm.write_localizations("corrected.csv", result.corrected)
        result.drift.drift_nm[-1]          # drift (nm) at the last frame
    """
    check_drift_options(method, segment_frames, pixel_nm, max_drift_nm)
    check_positive(pixel_size_nm, "--pixel-size-nm")
    table, name = as_localizations(locs, pixel_size_nm)
    frame = table.table["frame"].to_numpy()
    check_segments(frame, name, segment_frames)
    axes = ["x_nm", "y_nm", "z_nm"] if table.has_z else ["x_nm", "y_nm"]
    xyz = table.table[axes].to_numpy(np.float64)
    drift = ESTIMATORS[method](frame, xyz, segment_frames, pixel_nm, max_drift_nm, progress)
    corrected = table.table.copy()
    corrected[axes] = xyz - drift.at(frame)
    return DriftCorrection(table.with_table(corrected), drift)
