"""ONNX export and the onnxruntime backend (issue 22): every network's exported graph gives the torch
network's raw output (within 1e-4 of its largest value) on random and on real frames of any size,
`localize --backend onnx` gives the torch localizations, and exports that cannot or must not happen are
refused in one line. They need the onnx extra, which `make test` installs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from deepsmlm.api.onnx import check_onnx_output
from deepsmlm.assembly.onnx_networks import exported_network
from deepsmlm.assembly.predictors import input_normalisation
from deepsmlm.cli import app
from deepsmlm.config import load_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.inference.predict import normalised
from deepsmlm.models import registry
from deepsmlm.optics.masks import shared_data_root
from deepsmlm.physics.camera import Camera

RELATIVE_TOLERANCE = 1e-4
LOCNETS = {"locnet_2d": {}, "locnet_tetrapod": {}, "locnet_2d-3-frames": {"model.frames": 3}}


def network(name: str):
    """(config, network with batch norm folded): a shipped model, or a LocNet preset with random weights
    (and, for the temporal one, three frames in)."""
    if name in registry.shipped_models():
        cfg, net = registry.load_model(name)
        return cfg, registry.fold_batchnorm(net)
    cfg = load_config(name.removesuffix("-3-frames"))
    cfg = updated(cfg, {**LOCNETS[name], "model.input_offset_photons": 10.0, "model.input_scale_photons": 50.0})
    torch.manual_seed(0)
    return cfg, registry.fold_batchnorm(registry.build_network(cfg.model, cfg.localizes_z()).eval())


def real_photons(cfg, frames: int) -> torch.Tensor | None:
    """``frames`` real frames (1, T, H, W) in photons by the model's camera: the EPFL 2013 tubes (64×64) for a
    2D model, a 96×96 crop of the Tetrapod mitochondria (baseline removed) for a 3D one; None without the
    shared data."""
    root = shared_data_root()
    three_d = cfg.localizes_z()
    path = None if root is None else root / ("deepstorm3d_tetrapod/real_frames.tif" if three_d else
                                             "epfl2013_bundled_tubes_hd/frames.tif")
    if path is None or not path.is_file():
        return None
    adu = np.stack([tifffile.imread(path, key=k) for k in range(frames)]).astype(np.float32)
    if three_d:
        adu = adu[:, 150:246, 200:296]
    photons = Camera(cfg.camera).adu_to_photons(torch.from_numpy(adu), baseline_subtracted=three_d)
    return normalised(photons, *input_normalisation(cfg)).unsqueeze(0).flatten(1, 2)


def relative_difference(onnx_out: torch.Tensor, torch_out: torch.Tensor) -> float:
    return float((onnx_out - torch_out).abs().max() / torch_out.abs().max())


@pytest.mark.parametrize("name", [*registry.shipped_models(), *LOCNETS])
def test_onnxruntime_output_equals_torch_on_random_and_real_frames(name, one_thread):
    cfg, net = network(name)
    onnx_net = exported_network(cfg, net, name)
    frames = cfg.model.frames
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(2, frames, 45, 62, generator=generator),  # any size, off every pooling grid
              torch.rand(1, frames, 33, 40, generator=generator) * 5]
    real = real_photons(cfg, frames)
    if real is not None:
        inputs.append(real)
    for x in inputs:
        with torch.no_grad():
            expected = net(x)
        got = onnx_net(x)
        assert got.shape == expected.shape
        assert relative_difference(got, expected) <= RELATIVE_TOLERANCE, (name, tuple(x.shape))
    metadata = onnx_net.metadata
    assert '"offset_photons": ' in metadata["deepsmlm.input"] and '"upsampling": ' in metadata["deepsmlm.output"]


def localize(runner, stack: Path, out: Path, *args: str) -> pd.DataFrame:
    res = runner.invoke(app, ["localize", str(stack), "-o", str(out), *args])
    assert res.exit_code == 0, res.output
    return pd.read_csv(out)


def assert_same_localizations(onnx_table: pd.DataFrame, torch_table: pd.DataFrame) -> None:
    """Same count, frames and positions within 0.1 nm."""
    assert len(onnx_table) == len(torch_table) > 3
    assert (onnx_table["frame"] == torch_table["frame"]).all()
    for column in ("x [nm]", "y [nm]", "z [nm]"):
        if column in torch_table:
            assert np.abs(onnx_table[column] - torch_table[column]).max() <= 0.1, column


def simulated(runner, tmp_path: Path, model: str, frames: int) -> Path:
    config = registry.resolve_model_dir(model) / "config.yaml"
    res = runner.invoke(app, ["simulate", str(config), "-o", str(tmp_path / "sim"), "--frames", str(frames),
                              "--seed", "22"])
    assert res.exit_code == 0, res.output
    return tmp_path / "sim" / "frames.tif"


def test_exported_file_localizes_as_torch_default_2d(runner, tmp_path, one_thread):
    stack = simulated(runner, tmp_path, "default-2d", 4)
    exported = tmp_path / "default-2d.onnx"
    res = runner.invoke(app, ["export", "default-2d", "-o", str(exported)])
    assert res.exit_code == 0, res.output
    by_torch = localize(runner, stack, tmp_path / "torch.csv", "--model", "default-2d")
    by_onnx = localize(runner, stack, tmp_path / "onnx.csv", "--model", str(exported), "--backend", "onnx")
    assert_same_localizations(by_onnx, by_torch)
    check_onnx_output(exported, "default-2d")  # an earlier export may be replaced


def test_backend_onnx_localizes_as_torch_3d(runner, tmp_path, one_thread):
    stack = simulated(runner, tmp_path, "epfl2016-as-3d", 2)
    by_torch = localize(runner, stack, tmp_path / "torch.csv", "--model", "epfl2016-as-3d")
    by_onnx = localize(runner, stack, tmp_path / "onnx.csv", "--model", "epfl2016-as-3d", "--backend", "onnx")
    assert "z [nm]" in by_torch
    assert_same_localizations(by_onnx, by_torch)


def test_exporting_the_classic_fitter_is_one_line_error(runner, tmp_path, one_line):
    res = runner.invoke(app, ["export", "gaussian-mle", "-o", str(tmp_path / "g.onnx")])
    assert res.exit_code == 2
    assert "gaussian-mle" in one_line(res.stderr) and "no network" in res.stderr
    assert not (tmp_path / "g.onnx").exists()


def test_export_never_writes_over_another_file(runner, tmp_path, one_line):
    precious = tmp_path / "model.onnx"
    precious.write_text("frames I need\n")
    res = runner.invoke(app, ["export", "default-2d", "-o", str(precious)])
    assert res.exit_code == 2 and "exists" in one_line(res.stderr)
    assert precious.read_text() == "frames I need\n"
    with pytest.raises(UserInputError, match="unknown extension"):
        check_onnx_output(tmp_path / "model.txt", "default-2d")


def test_onnx_backend_refuses_classic_fitters_and_onnx_files_under_torch(tmp_path):
    import deepsmlm

    with pytest.raises(UserInputError, match="classic fitter"):
        deepsmlm.load_model("gaussian-mle", config="epfl2016_2d", backend="onnx")
    with pytest.raises(UserInputError, match="--backend onnx"):
        deepsmlm.load_model(tmp_path / "model.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(UserInputError, match="not a usable ONNX model"):
        deepsmlm.load_model(tmp_path / "junk.onnx", backend="onnx")
