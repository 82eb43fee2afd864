"""Matching and SMLM-2016 metrics on hand-built cases whose answers are known exactly."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from deepsmlm.analysis.matching import match, match_frame
from deepsmlm.analysis.metrics import evaluate
from deepsmlm.errors import UserInputError
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.optics.masks import shared_data_root


def locs(points, frames=None, meta: Metadata | None = None) -> Localizations:
    """Localizations from [(x, y[, z]), ...] nm, all in frame 0 unless ``frames`` is given."""
    p = np.asarray(points, dtype=float)
    frame = np.zeros(len(p), int) if frames is None else np.asarray(frames)
    z = p[:, 2] if p.shape[1] == 3 else None
    return Localizations.from_arrays(frame, p[:, 0], p[:, 1], z, meta=meta)


GRID = [(x, y) for x in (500.0, 1500.0, 2500.0) for y in (500.0, 1500.0)]  # 1 µm apart: unambiguous


@pytest.mark.parametrize("method", ["hungarian", "greedy"])
def test_identical_sets_are_perfect(method):
    gt = locs(GRID, frames=[0, 0, 1, 1, 2, 2])
    r = evaluate(gt, gt, method=method)
    assert (r["jaccard"], r["recall"], r["precision"]) == (1.0, 1.0, 1.0)
    assert (r["n_tp"], r["n_fp"], r["n_fn"]) == (6, 0, 0)
    assert r["rmse_lateral_nm"] == 0.0 and r["bias_x_nm"] == 0.0 and r["efficiency_lateral"] == 100.0
    assert r["rmse_axial_nm"] is None and r["rmse_volume_nm"] is None and r["efficiency_axial"] is None


@pytest.mark.parametrize("method", ["hungarian", "greedy"])
def test_shift_of_30_nm_in_x(method):
    gt = locs(GRID)
    r = evaluate(gt, gt.shifted(dx_nm=30.0), method=method)
    assert r["jaccard"] == 1.0
    assert r["rmse_lateral_nm"] == pytest.approx(30.0, abs=1e-9)
    assert r["bias_x_nm"] == pytest.approx(30.0, abs=1e-9) and r["bias_y_nm"] == 0.0
    assert r["efficiency_lateral"] == pytest.approx(70.0, abs=1e-9)


def test_greedy_and_hungarian_differ():
    # a–p 100 nm (closest), b–p 140, a–q 150, b–q 390 (> 250): greedy takes a–p and strands b and q
    gt = locs([(0.0, 0.0), (240.0, 0.0)])
    pred = locs([(100.0, 0.0), (-150.0, 0.0)])
    g = evaluate(gt, pred, method="greedy")
    h = evaluate(gt, pred, method="hungarian")
    assert (g["n_tp"], g["n_fp"], g["n_fn"]) == (1, 1, 1) and g["jaccard"] == pytest.approx(1 / 3)
    assert g["rmse_lateral_nm"] == pytest.approx(100.0)
    assert (h["n_tp"], h["n_fp"], h["n_fn"]) == (2, 0, 0) and h["jaccard"] == 1.0
    assert h["rmse_lateral_nm"] == pytest.approx(math.sqrt((150.0**2 + 140.0**2) / 2))
    assert h["bias_x_nm"] == pytest.approx((-150.0 - 140.0) / 2)
    gi, pi = match_frame([[0, 0, 0], [240, 0, 0]], [[100, 0, 0], [-150, 0, 0]], 250.0, None, "hungarian")
    assert gi.tolist() == [0, 1] and pi.tolist() == [1, 0]


def test_tolerance_is_inclusive_and_applied_before_assignment():
    for method in ("hungarian", "greedy"):
        assert match(locs([(0.0, 0.0)]), locs([(251.0, 0.0)]), 250.0, method=method).n_tp == 0
        assert match(locs([(0.0, 0.0)]), locs([(150.0, 200.0)]), 250.0, method=method).n_tp == 1  # exactly 250
    # over the full distance matrix the cheapest assignment is a–p (240) + b–q (300, infeasible), which
    # thresholding afterwards would leave as a–p; among feasible pairs only, the best is b–p (60 nm)
    gt = locs([(0.0, 0.0), (300.0, 0.0)])
    pred = locs([(240.0, 0.0), (600.0, 0.0)])
    m = match(gt, pred, 250.0)
    assert m.gt_idx.tolist() == [1] and m.pred_idx.tolist() == [0]
    assert evaluate(gt, pred)["rmse_lateral_nm"] == pytest.approx(60.0)


def test_axial_tolerance_only_when_both_sides_are_3d():
    gt = locs([(0.0, 0.0, 600.0), (2000.0, 0.0, 0.0)])
    flat = locs([(0.0, 0.0, 0.0), (2000.0, 0.0, 0.0)])
    assert match(gt, flat, axial_tol_nm=500.0).n_tp == 2  # predictions are 2D: z ignored
    r = evaluate(gt, flat)
    assert r["rmse_axial_nm"] is None and r["axial_tol_nm"] is None and r["rmse_lateral_nm"] == 0.0
    deep = locs([(0.0, 0.0, 50.0), (2000.0, 0.0, 10.0)])  # dz 550 and 10
    m = match(gt, deep, axial_tol_nm=500.0)
    assert m.gt_idx.tolist() == [1] and m.three_d
    assert match(gt, deep, axial_tol_nm=None).n_tp == 2
    assert match(gt, deep, axial_tol_nm=550.0).n_tp == 2


def test_hungarian_minimises_3d_distance_when_both_have_z():
    # laterally p is nearer a, but in 3D the pairing a–q, b–p is shorter in sum
    gt = locs([(0.0, 0.0, 0.0), (100.0, 0.0, 200.0)])
    pred = locs([(10.0, 0.0, 200.0), (90.0, 0.0, 0.0)])
    m = match(gt, pred, 250.0, 500.0)
    assert m.gt_idx.tolist() == [0, 1] and m.pred_idx.tolist() == [1, 0]


def test_frames_never_match_across():
    gt = locs([(0.0, 0.0), (0.0, 0.0)], frames=[0, 1])
    pred = locs([(0.0, 0.0), (5.0, 0.0)], frames=[1, 2])
    for method in ("hungarian", "greedy"):
        m = match(gt, pred, method=method)
        assert m.gt_idx.tolist() == [1] and m.pred_idx.tolist() == [0]
        assert (m.n_tp, m.n_fp, m.n_fn) == (1, 1, 1)


def test_border_exclusion_drops_rows_near_the_edge():
    meta = Metadata(pixel_size_nm=100.0, image_shape=(10, 20))  # field 2000 nm wide (x), 1000 nm high (y)
    gt = locs([(50.0, 500.0), (100.0, 500.0), (1000.0, 950.0), (1950.0, 500.0), (1000.0, 500.0)], meta=meta)
    pred = locs([(60.0, 500.0), (110.0, 500.0), (1000.0, 890.0), (1000.0, 520.0), (1000.0, 960.0)], meta=meta)
    m = match(gt, pred, border_nm=100.0)
    # GT kept: rows 1 (x = 100 exactly), 4; predictions kept: rows 1, 2, 3
    assert (m.n_gt, m.n_pred) == (2, 3)
    assert m.gt_idx.tolist() == [1, 4] and m.pred_idx.tolist() == [1, 3]
    assert (m.n_tp, m.n_fp, m.n_fn) == (2, 1, 0)
    bare_gt, bare_pred = locs(gt.table[["x_nm", "y_nm"]].to_numpy()), locs(pred.table[["x_nm", "y_nm"]].to_numpy())
    assert match(bare_gt, bare_pred, border_nm=100.0, field_nm=(2000.0, 1000.0)).gt_idx.tolist() == [1, 4]
    with pytest.raises(UserInputError, match="field size"):
        match(bare_gt, bare_pred, border_nm=100.0)
    assert match(gt, pred).n_gt == 5  # no border: everything counts


def test_hand_computed_rates_rmse_and_efficiency():
    gt = locs([(0.0, 0.0, 0.0), (1000.0, 0.0, 0.0), (2000.0, 0.0, 0.0), (3000.0, 0.0, 100.0)])
    pred = locs([(30.0, 40.0, 60.0), (1030.0, 40.0, 60.0), (2030.0, 40.0, 60.0),
                 (5000.0, 0.0, 0.0), (0.0, 3000.0, 0.0)])
    r = evaluate(gt, pred, 250.0, 500.0)
    assert (r["n_tp"], r["n_fp"], r["n_fn"], r["n_gt"], r["n_pred"]) == (3, 2, 1, 4, 5)
    assert (r["jaccard"], r["recall"], r["precision"]) == (0.5, 0.75, 0.6)
    assert r["rmse_lateral_nm"] == pytest.approx(50.0)
    assert r["rmse_axial_nm"] == pytest.approx(60.0)
    assert r["rmse_volume_nm"] == pytest.approx(math.sqrt(6100.0))
    assert (r["bias_x_nm"], r["bias_y_nm"], r["bias_z_nm"]) == pytest.approx((30.0, 40.0, 60.0))
    assert r["efficiency_lateral"] == pytest.approx(100.0 - math.sqrt(50.0**2 + 50.0**2))
    assert r["efficiency_axial"] == pytest.approx(100.0 - math.sqrt(50.0**2 + (0.5 * 60.0) ** 2))
    assert (r["lateral_tol_nm"], r["axial_tol_nm"], r["match"]) == (250.0, 500.0, "hungarian")


def test_empty_predictions():
    gt = locs(GRID)
    r = evaluate(gt, locs(np.empty((0, 2))))
    assert r["jaccard"] == 0.0 and r["recall"] == 0.0 and r["precision"] is None
    assert (r["n_tp"], r["n_fp"], r["n_fn"]) == (0, 0, 6)
    assert r["rmse_lateral_nm"] is None and r["bias_x_nm"] is None and r["efficiency_lateral"] is None


def test_unknown_method_is_a_user_error():
    with pytest.raises(UserInputError, match="hungarian or greedy"):
        match(locs(GRID), locs(GRID), method="nearest")


def brute_force(gt: np.ndarray, pred: np.ndarray, tol: float, method: str) -> tuple[int, float]:
    """(pairs, summed distance) for one frame: dense Hungarian over feasible pairs, or sequential greedy."""
    d = np.hypot(*(gt[:, None, :2] - pred[None, :, :2]).transpose(2, 0, 1))
    ok = d <= tol
    if method == "greedy":
        used_g, used_p, total = set(), set(), []
        for k in np.argsort(np.where(ok, d, np.inf), axis=None, kind="stable"):
            a, b = divmod(int(k), d.shape[1])
            if ok[a, b] and a not in used_g and b not in used_p:
                used_g.add(a), used_p.add(b), total.append(d[a, b])
        return len(total), float(sum(total))
    big = d[ok].sum() + 1.0
    rows, cols = linear_sum_assignment(np.where(ok, d, big))
    keep = ok[rows, cols]
    return int(keep.sum()), float(d[rows, cols][keep].sum())


@pytest.mark.parametrize("method", ["hungarian", "greedy"])
def test_agrees_with_a_dense_per_frame_solver(method):
    """Crowded random frames (large connected components) against a per-frame dense reference."""
    rng = np.random.default_rng(7)
    n_frames, per_frame, field = 40, 25, 1500.0
    frame = np.repeat(np.arange(n_frames), per_frame)
    gt_xy = rng.uniform(0, field, (len(frame), 2))
    pred_frame = rng.permutation(frame)
    pred_xy = rng.uniform(0, field, (len(frame), 2))
    m = match(locs(gt_xy, frame), locs(pred_xy, pred_frame), 250.0, method=method)
    assert len(set(m.gt_idx.tolist())) == m.n_tp == len(set(m.pred_idx.tolist()))
    assert np.array_equal(frame[m.gt_idx], pred_frame[m.pred_idx])
    dist = np.hypot(*(gt_xy[m.gt_idx] - pred_xy[m.pred_idx]).T)
    assert dist.max() <= 250.0
    for f in range(n_frames):
        n_ref, total_ref = brute_force(gt_xy[frame == f], pred_xy[pred_frame == f], 250.0, method)
        mine = frame[m.gt_idx] == f
        assert mine.sum() == n_ref
        assert dist[mine].sum() == pytest.approx(total_ref, rel=1e-12)


SHARED_GT = "epfl2013_bundled_tubes_hd/ground_truth.csv"


@pytest.fixture(scope="module")
def shared_gt() -> Localizations:
    root = shared_data_root()
    if root is None or not (root / SHARED_GT).is_file():
        pytest.skip("shared data absent")
    df = pd.read_csv(root / SHARED_GT)
    return Localizations.from_arrays(df["frame"].to_numpy() - 1, df["x [nm]"], df["y [nm]"])


def test_shared_ground_truth_against_itself_and_shifted(shared_gt):
    same = evaluate(shared_gt, shared_gt)
    assert same["jaccard"] == 1.0 and same["rmse_lateral_nm"] == 0.0 and same["n_tp"] == len(shared_gt)
    shifted = evaluate(shared_gt, shared_gt.shifted(dx_nm=30.0))
    assert shifted["jaccard"] == 1.0
    assert shifted["rmse_lateral_nm"] == pytest.approx(30.0, abs=1e-6)
    assert shifted["bias_x_nm"] == pytest.approx(30.0, abs=1e-6)
    assert shifted["bias_y_nm"] == pytest.approx(0.0, abs=1e-9)
def test_neutral_ground_truth_counts_neither_way():
    """A prediction on a GT emitter that does not count is no TP and no FP; missing one is no FN."""
    meta = Metadata(pixel_size_nm=100.0)
    gt = Localizations.from_arrays([0, 0, 0, 1], [100.0, 1000.0, 2000.0, 500.0], [100.0, 100.0, 100.0, 500.0], meta=meta)
    pred = Localizations.from_arrays([0, 0, 1, 1], [110.0, 1010.0, 505.0, 3000.0], [100.0, 100.0, 500.0, 3000.0], meta=meta)
    counted = np.array([True, False, False, True])
    m = evaluate(gt, pred, 250.0, None, counted=counted)
    # GT 0 and 3 count: GT 0 matched (TP), GT 3 matched (TP); pred on GT 1 neutral; GT 2 neutral miss; pred 3 FP
    assert (m["n_tp"], m["n_fp"], m["n_fn"], m["n_gt"], m["n_pred"]) == (2, 1, 0, 2, 3)
    assert m["jaccard"] == pytest.approx(2 / 3)


def test_recall_by_depth_counts_each_band_of_the_axial_range():
    """Six emitters over −1…+1 µm in 2 bands: the bottom band's three all found, the top band's one of
    three (one missed, one found 300 nm too deep); a dim emitter excluded by ``counted`` leaves its band."""
    from deepsmlm.analysis.metrics import recall_by_depth

    z = [-900.0, -500.0, -100.0, 100.0, 500.0, 900.0]
    gt = locs([(x, y, zz) for (x, y), zz in zip(GRID, z)])
    found = [(x + 20, y, zz + 30) for (x, y), zz in list(zip(GRID, z))[:4]] + [(GRID[5][0], GRID[5][1], 600.0)]
    pred = locs(found)
    r = recall_by_depth(gt, pred, (-1000.0, 1000.0), 100.0, 100.0, bands=2)
    assert r == {"-1000..0": 1.0, "0..1000": pytest.approx(1 / 3)}
    counted = np.array([True, True, True, True, False, True])
    r = recall_by_depth(gt, pred, (-1000.0, 1000.0), 100.0, 100.0, counted, bands=2)
    assert r["0..1000"] == pytest.approx(1 / 2)
    assert recall_by_depth(gt, pred, (-1000.0, 1000.0), 100.0, 100.0, counted)["500..1000"] == 0.0
