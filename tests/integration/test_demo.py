"""`deepsmlm demo` writes every promised output, and its metrics describe both methods."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from deepsmlm.cli import app


def test_demo_writes_pictures_locs_and_metrics(runner, tmp_path):
    result = runner.invoke(app, ["demo", "-o", str(tmp_path), "--frames", "6"])
    assert result.exit_code == 0, result.output
    for name in ("widefield.png", "superres.png", "comparison.png", "localizations.csv", "metrics.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"default-2d", "gaussian-mle"}
    for m in metrics["methods"].values():
        assert 0 <= m["jaccard"] <= 1 and m["frames_per_s"] > 0
    # the shipped network beats the single-emitter fitter on dense frames
    assert metrics["methods"]["default-2d"]["jaccard"] > metrics["methods"]["gaussian-mle"]["jaccard"]
    sr = tifffile.imread(tmp_path / "superres.tif")
    assert sr.dtype == np.float32 and sr.shape == (256, 256) and sr.sum() > 0
