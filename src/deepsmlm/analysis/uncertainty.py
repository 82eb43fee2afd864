"""How far predicted uncertainties can be trusted, over the matched pairs of a scoring: the z-scores
(error / predicted σ) per axis, whose standard deviation is 1 for a calibrated σ, and the reliability of
σ (the observed RMSE in bins of predicted σ, on the identity line for a calibrated σ). Errors are
prediction − ground truth in nm; pairs whose σ is unknown (NaN) or not positive are left out."""

from __future__ import annotations

import numpy as np

from deepsmlm.analysis.matching import Matches
from deepsmlm.localizations import Localizations

RELIABILITY_BINS = 8


def axes(matches: Matches) -> tuple[str, ...]:
    """The axes a matching scores: x, y, and z when both tables are 3D."""
    return ("x", "y", "z") if matches.three_d else ("x", "y")


def matched_errors(gt: Localizations, pred: Localizations, matches: Matches, axis: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(predicted σ, error) in nm along ``axis`` (x, y or z) of the matched pairs with a positive σ."""
    sigma = pred.table[f"sigma_{axis}_nm"].to_numpy(np.float64)[matches.pred_idx]
    error = (pred.table[f"{axis}_nm"].to_numpy(np.float64)[matches.pred_idx]
             - gt.table[f"{axis}_nm"].to_numpy(np.float64)[matches.gt_idx])
    known = np.isfinite(sigma) & (sigma > 0)
    return sigma[known], error[known]


def zscore_sd(sigma_nm: np.ndarray, error_nm: np.ndarray) -> float | None:
    """The standard deviation of error / σ (None with fewer than 2 pairs)."""
    return float(np.std(error_nm / sigma_nm)) if len(sigma_nm) >= 2 else None


def zscore_sds(gt: Localizations, pred: Localizations, matches: Matches) -> dict[str, float | None]:
    """``zscore_sd_x``, ``zscore_sd_y`` (and ``zscore_sd_z`` in 3D): the z-score standard deviation of each
    axis over the matched pairs with a σ; below 1 the σ are too large, above 1 too small."""
    return {f"zscore_sd_{a}": zscore_sd(*matched_errors(gt, pred, matches, a)) for a in axes(matches)}


def reliability(sigma_nm: np.ndarray, error_nm: np.ndarray, bins: int = RELIABILITY_BINS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predicted σ, observed RMSE, pairs) per bin, nm: the pairs sorted by predicted σ into ``bins`` groups
    of (nearly) equal size, fewer when there are fewer pairs. A bin's predicted σ is the RMS of its σ, the
    error SD a calibrated σ predicts; its RMSE is √mean(error²)."""
    order = np.argsort(sigma_nm, kind="stable")
    groups = [g for g in np.array_split(order, min(bins, len(order))) if len(g)]
    predicted = np.array([np.sqrt(np.mean(sigma_nm[g] ** 2)) for g in groups])
    observed = np.array([np.sqrt(np.mean(error_nm[g] ** 2)) for g in groups])
    return predicted, observed, np.array([len(g) for g in groups], dtype=np.int64)
