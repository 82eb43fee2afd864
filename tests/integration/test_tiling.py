"""Frames of any size: tiled and untiled runs give the same localizations; the memory budget and the
detection threshold on the command line; localizations streamed into the file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import tifffile
import torch

from deepsmlm.assembly.fitters import build_gaussian_mle
from deepsmlm.assembly.predictors import build_predictor
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.cli import app
from deepsmlm.commands.simulate import apply_overrides
from deepsmlm.config import SimulationConfig, load_config, updated
from deepsmlm.inference.stream import StackResult, run_stack
from deepsmlm.inference.tiling import Plan
from deepsmlm.io.images import open_stack
from deepsmlm.io.tiff import write_stack
from deepsmlm.models.registry import build_network, fold_batchnorm, load_model, save_model
from deepsmlm.simulation.movies import simulate_to_folder


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    """Two 512×512 frames of filaments at the shipped default-2d's conditions, and their config."""
    cfg = updated(load_config("epfl2013_bundled_tubes"), {"frame.height": 512, "frame.width": 512})
    cfg = apply_overrides(cfg, frames=2, seed=4, density=1.5, emitters=None)
    folder = tmp_path_factory.mktemp("movie")
    simulate_to_folder(cfg, folder, build_simulator(cfg))
    return folder / "frames.tif", cfg


def untiled_and_tiled(path, localizer, core_px: int) -> tuple[StackResult, StackResult]:
    with open_stack(path) as stack:
        footprint = localizer.footprint(*stack.shape)
        halo = -(-footprint.reach_px // footprint.align_px) * footprint.align_px
        whole = run_stack(stack, localizer, Plan(4, 4), superres=True)
        tiled = run_stack(stack, localizer, Plan(1, 1, core_px, halo), superres=True)
    return whole, tiled


def assert_same_localizations(whole: pd.DataFrame, tiled: pd.DataFrame) -> None:
    assert len(whole) == len(tiled) > 0
    np.testing.assert_array_equal(whole["frame"], tiled["frame"])
    for c in {"x_nm", "y_nm", "z_nm"} & set(whole.columns):
        assert np.abs(whole[c] - tiled[c]).max() <= 0.1, c  # nm; they are in fact bit for bit the same
    pd.testing.assert_frame_equal(whole, tiled, check_exact=False, rtol=1e-6)


def test_default_2d_in_128_px_tiles_finds_what_the_whole_frame_does(movie):
    path, _ = movie
    cfg, net = load_model("default-2d")
    whole, tiled = untiled_and_tiled(path, build_predictor(cfg, fold_batchnorm(net)), 128)
    assert len(Plan(1, 1, 128, 28).tiles(512, 512)) == 16
    assert_same_localizations(whole.table, tiled.table)
    np.testing.assert_allclose(tiled.superres, whole.superres, atol=1e-5)


def test_gaussian_mle_in_128_px_tiles_finds_what_the_whole_frame_does(movie):
    path, cfg = movie
    whole, tiled = untiled_and_tiled(path, build_gaussian_mle(cfg), 128)
    assert_same_localizations(whole.table, tiled.table)


def random_network_config(model: dict) -> SimulationConfig:
    return SimulationConfig.model_validate({
        "frame": {"height": 96, "width": 96, "pixel_size_nm": 100.0},
        "camera": {"type": "ideal"},
        "emitters": {"z_range_nm": [-400.0, 400.0],
                     "dyes": [{"wavelength_nm": 600.0}, {"wavelength_nm": 680.0}] if "colors" in model else None},
        "model": {"channels": 4, "head_channels": 2, "input_offset_photons": 10.0, "input_scale_photons": 50.0,
                  "threshold": 0.05, **model},
    })


@pytest.mark.parametrize("model", [
    {"architecture": "paper", "upsampling": 4},
    {"kind": "deepstorm3d", "z_planes": 4, "upsampling": 2, "dilations": [1, 2, 4]},
    {"kind": "deepstorm3d", "z_planes": 4, "upsampling": 2, "dilations": [1, 2], "architecture": "paper"},
    {"kind": "deepstorm3d", "z_planes": 1, "colors": 2, "upsampling": 2, "dilations": [1, 2]},
], ids=["2d paper", "3d", "3d paper", "3d two dyes"])
def test_every_architecture_tiles_exactly(tmp_path, model):
    """Random networks on noise with spots: plenty of detections everywhere, tile edges included."""
    cfg = random_network_config(model)
    torch.manual_seed(0)
    predictor = build_predictor(cfg, build_network(cfg.model).eval())
    rng = np.random.default_rng(0)
    frames = rng.poisson(20.0, (2, 96, 96)).astype(np.uint16)
    frames[:, rng.integers(0, 96, 40), rng.integers(0, 96, 40)] += 400
    write_stack(tmp_path / "s.tif", frames, pixel_size_nm=100.0)
    whole, tiled = untiled_and_tiled(tmp_path / "s.tif", predictor, 32)
    assert_same_localizations(whole.table, tiled.table)
    np.testing.assert_allclose(tiled.superres, whole.superres, atol=1e-5)


@pytest.fixture
def model_dir(tmp_path):
    from tests.unit.test_deepstorm2d import tiny_config

    cfg = updated(tiny_config(), {"model.input_offset_photons": 10.0, "model.input_scale_photons": 100.0,
                                  "model.threshold": 0.05})
    torch.manual_seed(0)
    save_model(tmp_path / "model", cfg, build_network(cfg.model))
    return tmp_path / "model"


def invoke(runner, *args):
    result = runner.invoke(app, ["localize", *map(str, args)])
    return result.exit_code, result.output


def test_a_small_memory_budget_tiles_the_frames_into_the_same_file(runner, tmp_path, model_dir):
    rng = np.random.default_rng(1)
    frames = (rng.poisson(10.0, (2, 256, 256)) * 4 + 100).astype(np.uint16)
    write_stack(tmp_path / "s.tif", frames, pixel_size_nm=100.0)
    outputs = {}
    for name, budget in (("whole", []), ("tiled", ["--max-memory-gb", "0.03"])):
        code, out = invoke(runner, tmp_path / "s.tif", "--model", model_dir, "-o", tmp_path / f"{name}.csv",
                           "--render", tmp_path / f"{name}.png", "--force", *budget)
        assert code == 0, out
        outputs[name] = (tmp_path / f"{name}.csv").read_bytes(), tifffile.imread(tmp_path / f"{name}.tif")
    assert outputs["whole"][0] == outputs["tiled"][0] and outputs["whole"][0].count(b"\n") > 100
    np.testing.assert_allclose(outputs["tiled"][1], outputs["whole"][1], atol=1e-5)
    code, out = invoke(runner, tmp_path / "s.tif", "--model", model_dir, "-o", tmp_path / "none.csv",
                       "--force", "--max-memory-gb", "0.001")
    assert code == 2 and "needs about" in out and "GiB" in out and len(out.strip().splitlines()) == 1, out
    assert not (tmp_path / "none.csv").exists()


def test_threshold_option_sets_the_detection_threshold(runner, tmp_path, model_dir, uniform_gaussian_config):
    rng = np.random.default_rng(2)
    frames = rng.poisson(10.0, (3, 32, 32))
    for f in frames:
        for (r, c), photons in zip(((8, 8), (8, 23), (23, 8), (23, 23)), (4, 8, 16, 64)):
            f[r - 1:r + 2, c - 1:c + 2] += photons  # spots from faint to bright
    write_stack(tmp_path / "s.tif", frames.astype(np.uint16), pixel_size_nm=100.0)
    counts = {}
    for threshold in (None, 12.0):
        out = tmp_path / f"mle_{threshold}.parquet"
        extra = [] if threshold is None else ["--threshold", threshold]
        code, text = invoke(runner, tmp_path / "s.tif", "--model", "gaussian-mle", "--config",
                            uniform_gaussian_config, "-o", out, "--force", *extra)
        assert code == 0, text
        counts[threshold] = pq.read_table(out).num_rows
        meta = pq.read_schema(out).metadata[b"deepsmlm"].decode()
        assert f'"gaussian_mle_threshold": {threshold or 6.0}' in meta
    assert 0 < counts[12.0] < counts[None]
    code, text = invoke(runner, tmp_path / "s.tif", "--model", model_dir, "-o", tmp_path / "d.parquet",
                        "--force", "--threshold", "0.5")
    assert code == 0 and '"threshold": 0.5' in pq.read_schema(tmp_path / "d.parquet").metadata[b"deepsmlm"].decode()
    for model, bad in (("gaussian-mle", "0"), (model_dir, "1.5")):
        code, text = invoke(runner, tmp_path / "s.tif", "--model", model, "--config", uniform_gaussian_config,
                            "-o", tmp_path / "bad.csv", "--threshold", bad)
        assert code == 2 and f"--threshold {bad}" in text and len(text.strip().splitlines()) == 1, text
