"""The benchmarks' shared harness: its JSON report, command-line conventions, seeded test sets and machine
description."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import harness

ROOT = Path(__file__).resolve().parents[2]


def test_report_prints_and_atomically_replaces_the_file(tmp_path, capsys):
    out = tmp_path / "result.json"
    out.write_text("old, to be replaced")
    document = {"benchmark": "x", "runs": [{"jaccard": 0.5, "n_tp": 3}], "note": "µm"}
    harness.report(document, out)
    printed = capsys.readouterr().out
    assert json.loads(out.read_text()) == document
    assert out.read_text() == printed  # the file holds exactly what was printed
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no partial file left behind
    harness.report(document, indent=None)
    assert capsys.readouterr().out.count("\n") == 1  # one line for a parent process


def test_labelled_models_map_labels_to_models_and_reject_a_bare_name():
    ap = harness.parser(__doc__)
    harness.add_labelled_models(ap)
    args = ap.parse_args(["--model", "shipped=tetrapod-3d", "--model", "mine=runs/a=b", "--out", "r.json"])
    assert dict(args.model) == {"shipped": "tetrapod-3d", "mine": "runs/a=b"}
    assert args.out == "r.json"
    with pytest.raises(SystemExit):
        ap.parse_args(["--model", "tetrapod-3d"])


def test_seeded_test_set_repeats_and_its_truth_is_the_emitters():
    from deepsmlm.assembly.simulators import build_simulator
    from deepsmlm.config import load_config

    cfg = load_config("epfl2013_bundled_tubes")
    px = cfg.frame.pixel_size_nm
    batch, truth = harness.test_set(build_simulator(cfg), 3, 7, px)
    again, truth_again = harness.test_set(build_simulator(cfg), 3, 7, px)
    assert torch.equal(batch.adu, again.adu)
    assert truth.table.equals(truth_again.table)
    np.testing.assert_array_equal(truth.table[["x_nm", "y_nm", "z_nm"]].to_numpy(),
                                  batch.emitters.xyz_nm.double().numpy())
    np.testing.assert_array_equal(truth.table["frame"], batch.emitters.frame.numpy())
    assert (truth.meta.pixel_size_nm, truth.meta.image_shape, truth.meta.n_frames) == (px, tuple(batch.adu.shape[1:]), 3)


def test_machine_reports_torch_threads_and_the_loaded_libraries():
    described = harness.machine()
    assert described["threads"] == torch.get_num_threads()
    assert described["torch"] == torch.__version__ and described["numpy"] == np.__version__
    assert described["cpu_count"] >= 1 and described["python"].count(".") == 2


# what only the API may do: build a predictor or fitter, fold batch norm (deepsmlm.commands: test_api.py);
# benchmarks may build simulators (assembly.simulators) to make their seeded test sets
BUILDERS = ("deepsmlm.assembly.predictors", "deepsmlm.assembly.fitters", "deepsmlm.inference.predict",
            "deepsmlm.inference.gaussian_mle", "deepsmlm.models.registry.load_model",
            "deepsmlm.models.registry.fold_batchnorm")


def imported_names(path: Path) -> list[str]:
    """Every module and ``module.name`` that ``path`` imports."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


def test_benchmarks_localize_through_the_public_api():
    scripts = sorted(ROOT.glob("benchmarks/*.py"))
    assert len(scripts) > 10
    assert imported_names(ROOT / "benchmarks" / "sparse_precision.py").count("deepsmlm") == 1  # the check sees them
    assert [f"{p.name}: {n}" for p in scripts for n in imported_names(p) if n.startswith(BUILDERS)] == []
