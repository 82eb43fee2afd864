"""Detection and localization metrics of the EPFL SMLM challenge 2016 over matched pairs.

Jaccard J = TP / (TP + FP + FN), recall = TP / (TP + FN), precision = TP / (TP + FP) (fractions 0–1).
RMSE (nm) over matched pairs: lateral √mean(dx² + dy²), axial √mean(dz²), volume √mean(dx² + dy² + dz²);
bias (nm) = mean(pred − gt) per axis; z-score SD per axis = SD of (pred − gt) / predicted σ over the
pairs with a σ (1 for calibrated uncertainties; ``analysis/uncertainty.py``). Efficiency (percent, 100 is
perfect, unbounded below) E = 100 − √((100·(1 − J))² + α²·RMSE²) with α = 1 nm⁻¹ lateral and 0.5 nm⁻¹ axial.
A figure that is undefined (no pairs, 0/0, or an axial figure for 2D data) is None.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deepsmlm.analysis.matching import Matches, field_extent, inside, match
from deepsmlm.analysis.uncertainty import zscore_sds
from deepsmlm.localizations import Localizations

ALPHA_LATERAL = 1.0  # nm⁻¹
ALPHA_AXIAL = 0.5  # nm⁻¹


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _rms(values: np.ndarray) -> float | None:
    mean = _mean(values)
    return math.sqrt(mean) if mean is not None else None


def efficiency(jaccard: float | None, rmse_nm: float | None, alpha: float) -> float | None:
    """SMLM-2016 efficiency (percent) from Jaccard (0–1) and RMSE (nm) with weight ``alpha`` (nm⁻¹)."""
    if jaccard is None or rmse_nm is None:
        return None
    return 100.0 - math.hypot(100.0 * (1.0 - jaccard), alpha * rmse_nm)


def metrics_from_matches(gt: Localizations, pred: Localizations, matches: Matches) -> dict[str, Any]:
    """Counts, rates, RMSE, bias, efficiency and z-score SDs of a matching (JSON-friendly: floats, ints,
    None)."""
    cols = ["x_nm", "y_nm", "z_nm"]
    diff = pred.table[cols].to_numpy(np.float64)[matches.pred_idx] - gt.table[cols].to_numpy(np.float64)[matches.gt_idx]
    lateral2 = diff[:, 0] ** 2 + diff[:, 1] ** 2
    axial2 = diff[:, 2] ** 2
    three_d = matches.three_d
    tp, fp, fn = matches.n_tp, matches.n_fp, matches.n_fn
    jaccard = _ratio(tp, tp + fp + fn)
    rmse_lateral = _rms(lateral2)
    rmse_axial = _rms(axial2) if three_d else None
    return {
        "jaccard": jaccard,
        "recall": _ratio(tp, tp + fn),
        "precision": _ratio(tp, tp + fp),
        "n_tp": tp, "n_fp": fp, "n_fn": fn,
        "n_gt": matches.n_gt, "n_pred": matches.n_pred,
        "rmse_lateral_nm": rmse_lateral,
        "rmse_axial_nm": rmse_axial,
        "rmse_volume_nm": _rms(lateral2 + axial2) if three_d else None,
        "bias_x_nm": _mean(diff[:, 0]),
        "bias_y_nm": _mean(diff[:, 1]),
        "bias_z_nm": _mean(diff[:, 2]) if three_d else None,
        "efficiency_lateral": efficiency(jaccard, rmse_lateral, ALPHA_LATERAL),
        "efficiency_axial": efficiency(jaccard, rmse_axial, ALPHA_AXIAL),
        **zscore_sds(gt, pred, matches),
        **color_scores(gt, pred, matches),
    }


def color_scores(gt: Localizations, pred: Localizations, matches: Matches) -> dict[str, Any]:
    """Dye classification of the matched pairs when both tables carry ``color``: the fraction right and
    the confusion matrix (rows: true dye, columns: assigned dye; counts); else nothing."""
    if "color" not in gt.table.columns or "color" not in pred.table.columns:
        return {}
    true = gt.table["color"].to_numpy(np.int64)[matches.gt_idx]
    assigned = pred.table["color"].to_numpy(np.int64)[matches.pred_idx]
    n = int(max(gt.table["color"].max(), pred.table["color"].max(), 0)) + 1 if len(gt) and len(pred) else 1
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (true, assigned), 1)
    return {"color_accuracy": _ratio(int(np.trace(confusion)), int(confusion.sum())),
            "color_confusion": confusion.tolist()}


def without_neutral(matches: Matches, counted: np.ndarray, took_part: np.ndarray) -> Matches:
    """Drop GT rows that do not count (``counted`` False) from the score: a prediction matched to one is
    neither a true nor a false positive, and missing one is no false negative (DeepSTORM3D's rule for
    emitters below the label photon threshold). ``took_part``: GT rows inside the scored field."""
    keep = counted[matches.gt_idx]
    neutral_gt = int((~counted & took_part).sum())
    return Matches(matches.gt_idx[keep], matches.pred_idx[keep], matches.n_gt - neutral_gt,
                   matches.n_pred - int((~keep).sum()), matches.three_d)


def exact_duplicates(locs: Localizations) -> int:
    """Rows repeating an earlier row's frame and position exactly (a file written twice into one, say);
    each is matched and counted like any other row, so a score over such a file is suspect."""
    cols = [c for c in ("frame", "x_nm", "y_nm", "z_nm") if c in locs.table.columns]
    return int(locs.table.duplicated(subset=cols).sum()) if len(locs) else 0


def evaluate(gt: Localizations, pred: Localizations, lateral_tol_nm: float = 250.0,
             axial_tol_nm: float | None = 500.0, method: str = "hungarian", border_nm: float = 0.0,
             field_nm: tuple[float, float] | None = None, counted: np.ndarray | None = None) -> dict[str, Any]:
    """Match (see :func:`deepsmlm.analysis.matching.match`) and score; also records the settings and the
    number of exact duplicate rows in each table (:func:`exact_duplicates`).

    ``axial_tol_nm`` is reported as None when it did not apply (not both tables 3D). ``counted``
    (bool per GT row, optional): GT rows that count; the others are neutral (see :func:`without_neutral`).
    """
    matches = match(gt, pred, lateral_tol_nm, axial_tol_nm, method, border_nm, field_nm)
    if counted is not None:
        took_part = np.ones(len(gt), dtype=bool)
        if border_nm > 0:
            took_part = inside(gt, border_nm, field_nm or field_extent(gt, pred))
        matches = without_neutral(matches, np.asarray(counted, dtype=bool), took_part)
    out = metrics_from_matches(gt, pred, matches)
    out.update(n_gt_duplicates=exact_duplicates(gt), n_pred_duplicates=exact_duplicates(pred),
               lateral_tol_nm=float(lateral_tol_nm),
               axial_tol_nm=float(axial_tol_nm) if matches.three_d and axial_tol_nm is not None else None,
               match=method, border_nm=float(border_nm))
    return out


DEPTH_BANDS = 4  # recall by depth: quarters of the z range unless told otherwise


def recall_by_depth(gt: Localizations, pred: Localizations, z_range_nm: tuple[float, float], lateral_tol_nm: float,
                    axial_tol_nm: float, counted: np.ndarray | None = None, bands: int = DEPTH_BANDS
                    ) -> dict[str, float | None]:
    """Recall of the (counted) ground truth in ``bands`` equal parts of ``z_range_nm``, keyed "lo..hi" (nm),
    bottom first; None for a part without ground truth. One matching as in :func:`evaluate`."""
    matches = match(gt, pred, lateral_tol_nm, axial_tol_nm)
    found = np.zeros(len(gt), dtype=bool)
    found[matches.gt_idx] = True
    counted = np.ones(len(gt), dtype=bool) if counted is None else np.asarray(counted, dtype=bool)
    edges = np.linspace(*z_range_nm, bands + 1)
    band = np.clip(np.searchsorted(edges, gt.table["z_nm"].to_numpy(), side="right") - 1, 0, bands - 1)
    return {f"{edges[k]:.0f}..{edges[k + 1]:.0f}": _ratio(int((found & counted & (band == k)).sum()),
                                                        int((counted & (band == k)).sum()))
            for k in range(bands)}
