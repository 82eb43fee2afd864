"""`deepsmlm evaluate`: JSON contract and exact values on a tiny ThunderSTORM case; one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from deepsmlm.cli import app

HEADER = '"id","frame","x [nm]","y [nm]","z [nm]"'
KEYS = {"jaccard", "recall", "precision", "n_tp", "n_fp", "n_fn", "rmse_lateral_nm", "rmse_axial_nm",
        "rmse_volume_nm", "bias_x_nm", "bias_y_nm", "bias_z_nm", "efficiency_lateral", "efficiency_axial",
        "lateral_tol_nm", "axial_tol_nm", "match", "n_gt", "n_pred"}


def write_csv(path: Path, rows: list[tuple[int, float, float, float]]) -> Path:
    """ThunderSTORM CSV from (frame 1-based, x, y, z) rows in nm."""
    lines = [HEADER] + [f"{k + 1},{f},{x},{y},{z}" for k, (f, x, y, z) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """3 matches offset by (30, 40, 60) nm, one missed emitter, two spurious predictions (one in frame 3)."""
    gt = write_csv(tmp_path / "gt.csv", [(1, 1000, 1000, 0), (1, 3000, 1000, 0), (2, 1000, 1000, 0),
                                         (2, 2000, 2000, 100)])
    pred = write_csv(tmp_path / "pred.csv", [(1, 1030, 1040, 60), (1, 3030, 1040, 60), (2, 1030, 1040, 60),
                                             (2, 5000, 5000, 0), (3, 2000, 2000, 100)])
    return gt, pred


@pytest.mark.parametrize("method", ["hungarian", "greedy"])
def test_evaluate_writes_exact_json(runner, tiny, tmp_path, method):
    gt, pred = tiny
    out = tmp_path / "metrics.json"
    res = runner.invoke(app, ["evaluate", "--gt", str(gt), "--pred", str(pred), "--match", method, "--json", str(out)])
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    assert "Jaccard" in res.stdout
    r = json.loads(out.read_text())
    assert KEYS <= r.keys()
    assert (r["n_tp"], r["n_fp"], r["n_fn"], r["n_gt"], r["n_pred"]) == (3, 2, 1, 4, 5)
    assert (r["jaccard"], r["recall"], r["precision"]) == (0.5, 0.75, 0.6)
    assert r["rmse_lateral_nm"] == pytest.approx(50.0)
    assert r["rmse_axial_nm"] == pytest.approx(60.0)
    assert r["rmse_volume_nm"] == pytest.approx(math.sqrt(6100.0))
    assert (r["bias_x_nm"], r["bias_y_nm"], r["bias_z_nm"]) == pytest.approx((30.0, 40.0, 60.0))
    assert r["efficiency_lateral"] == pytest.approx(100.0 - 50.0 * math.sqrt(2.0))
    assert r["efficiency_axial"] == pytest.approx(100.0 - math.sqrt(3400.0))
    assert (r["lateral_tol_nm"], r["axial_tol_nm"], r["match"]) == (250.0, 500.0, method)


def test_evaluate_tolerances_from_the_command_line(runner, tiny, tmp_path):
    gt, pred = tiny
    out = tmp_path / "metrics.json"
    res = runner.invoke(app, ["evaluate", "--gt", str(gt), "--pred", str(pred), "--lateral-tol", "49",
                              "--axial-tol", "60", "--json", str(out)])
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    r = json.loads(out.read_text())
    assert (r["n_tp"], r["jaccard"], r["rmse_lateral_nm"]) == (0, 0.0, None)  # 50 nm > 49 nm


def test_bad_match_exits_2_with_one_line(runner, tiny, one_line):
    gt, pred = tiny
    res = runner.invoke(app, ["evaluate", "--gt", str(gt), "--pred", str(pred), "--match", "nearest"])
    assert res.exit_code == 2
    assert "nearest" in one_line(res.stderr)
