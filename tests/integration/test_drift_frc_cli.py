"""`deepsmlm drift` and `deepsmlm frc`: outputs in the input's format with its columns, the printed resolution,
and one-line errors (exit 2) for tables they cannot use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepsmlm.cli import app
from deepsmlm.io.localization_files import read_localizations, write_localizations
from deepsmlm.localizations import Localizations

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def ring_table(tmp_path: Path, name: str, n_frames: int = 4000, shift_nm: float = 200.0) -> Path:
    """Localizations (σ 10 nm) of 20 rings of 300 nm radius, 5 per frame, drifting linearly by ``shift_nm``
    in x over ``n_frames``, with an extra column."""
    rng = np.random.default_rng(0)
    n = 5 * n_frames
    centres = rng.uniform(500, 4500, (20, 2))
    a = rng.uniform(0, 2 * np.pi, n)
    frame = np.sort(rng.integers(0, n_frames, n))
    xy = centres[rng.integers(0, 20, n)] + 300 * np.column_stack([np.cos(a), np.sin(a)])
    xy += rng.normal(0, 10, (n, 2))
    xy[:, 0] += shift_nm * frame / n_frames
    locs = Localizations.from_arrays(frame, xy[:, 0], xy[:, 1], photons=np.full(n, 1000.0), track=np.arange(n))
    return write_localizations(tmp_path / name, locs)


def invoke(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("suffix, method", [(".csv", "rcc"), (".parquet", "rcc"), (".csv", "aim")])
def test_drift_writes_corrected_table_and_plot(runner, tmp_path, suffix, method):
    src = ring_table(tmp_path, f"rings{suffix}")
    out = tmp_path / f"corrected{suffix}"
    res = invoke(runner, "drift", src, "-o", out, "--segment-frames", 400, "--method", method)
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    assert f"drift ({method}, 10 segments" in res.stdout
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_SIGNATURE
    before, after = read_localizations(src).table, read_localizations(out).table
    assert list(after.columns) == list(before.columns) and len(after) == len(before)
    np.testing.assert_array_equal(after["track"], before["track"])
    moved = (after["x_nm"] - before["x_nm"]).to_numpy()
    expected = -200.0 * before["frame"].to_numpy() / 4000
    assert np.sqrt(np.mean((moved - expected) ** 2)) < 5.0  # the linear drift taken out
    np.testing.assert_allclose(after["y_nm"], before["y_nm"], atol=10.0)


def test_frc_prints_resolution_and_writes_plot_and_json(runner, tmp_path):
    import json

    src = ring_table(tmp_path, "rings.csv", shift_nm=0.0)
    plot, doc = tmp_path / "frc.png", tmp_path / "frc.json"
    res = invoke(runner, "frc", src, "--plot", plot, "--json", doc)
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    resolution = json.loads(doc.read_text())["resolution_nm"]
    assert f"FRC resolution {resolution:.1f} nm" in res.stdout
    assert 15.0 < resolution < 60.0  # σ 10 nm rings
    assert plot.read_bytes()[:8] == PNG_SIGNATURE


def test_one_line_errors(runner, tmp_path, one_line):
    one_frame = tmp_path / "one_frame.csv"
    pd.DataFrame({"frame": [1] * 30, "x [nm]": np.arange(30.0), "y [nm]": np.arange(30.0)}).to_csv(one_frame,
                                                                                                    index=False)
    no_frame = tmp_path / "no_frame.csv"
    pd.DataFrame({"x [nm]": np.arange(30.0), "y [nm]": np.arange(30.0)}).to_csv(no_frame, index=False)
    cases = [
        (("drift", one_frame, "-o", tmp_path / "a.csv"), "localizations are in one frame"),
        (("drift", no_frame, "-o", tmp_path / "a.csv"), "missing column(s) frame"),
        (("frc", no_frame), "missing column(s) frame"),
        (("frc", one_frame), "only one block"),
        (("drift", one_frame, "-o", tmp_path / "a.txt"), "unknown localization file extension"),
        (("drift", one_frame, "-o", one_frame), "would be written over"),
        (("drift", one_frame, "-o", tmp_path / "a.csv", "--method", "xcorr"),
         "--method 'xcorr': choose one of rcc, aim"),
        (("drift", one_frame, "-o", tmp_path / "a.csv", "--method", "aim"), "localizations are in one frame"),
    ]
    for args, message in cases:
        res = invoke(runner, *args)
        assert res.exit_code == 2, (args, res.stdout, res.stderr)
        assert message in one_line(res.stderr), (args, res.stderr)
    assert not (tmp_path / "a.csv").exists()
