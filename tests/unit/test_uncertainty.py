"""Uncertainty you can trust (issue 21): z-scores and reliability of predicted σ, the post-hoc calibration a
kept LocNet is saved with and applied at decoding, the uncertainty columns of every writer, the
``--max-uncertainty-nm`` filter and σ-weighted rendering."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import deepsmlm
from deepsmlm.analysis.metrics import evaluate
from deepsmlm.analysis.uncertainty import reliability, zscore_sd
from deepsmlm.api.analysis import rendering
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.cli import app
from deepsmlm.config import ModelConfig, TrainingConfig, load_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.heads.grid import OutputGrid
from deepsmlm.heads.locnet import LocNetHead
from deepsmlm.io.localization_files import read_localizations, write_localizations
from deepsmlm.io.tiff import write_stack
from deepsmlm.localizations import Localizations, Metadata, lateral_sigma_nm
from deepsmlm.training.validation import ValidationScorer, kept_config

META = Metadata(pixel_size_nm=100.0, image_shape=(32, 32), n_frames=3)


def noisy_pairs(n: int, sigma_factor: float, seed: int = 0) -> tuple[Localizations, Localizations]:
    """Ground truth and predictions off by N(0, σ_i²) per axis, each prediction claiming σ_i × ``sigma_factor``."""
    rng = np.random.default_rng(seed)
    frame = np.arange(n) // 10
    x, y = rng.uniform(200, 3000, n) + 1e4 * (np.arange(n) % 10), rng.uniform(200, 3000, n)
    sigma = rng.uniform(5, 40, (2, n))
    truth = Localizations.from_arrays(frame, x, y)
    pred = Localizations.from_arrays(frame, x + sigma[0] * rng.standard_normal(n), y + sigma[1] * rng.standard_normal(n),
                                     sigma_x_nm=sigma[0] * sigma_factor, sigma_y_nm=sigma[1] * sigma_factor)
    return truth, pred


@pytest.mark.parametrize("factor", [1.0, 0.5])
def test_zscore_sds_measure_how_far_sigma_is_off(factor):
    truth, pred = noisy_pairs(4000, factor)
    m = evaluate(truth, pred, 250.0)
    assert m["n_tp"] == 4000
    for axis in "xy":  # σ claimed half the true error: z-scores twice as wide
        assert m[f"zscore_sd_{axis}"] == pytest.approx(1 / factor, rel=0.05)
    assert "zscore_sd_z" not in m


def test_zscore_sds_are_none_without_sigma():
    truth, pred = noisy_pairs(50, 1.0)
    m = evaluate(truth, pred.with_table(pred.table.assign(sigma_x_nm=np.nan, sigma_y_nm=np.nan)), 250.0)
    assert m["zscore_sd_x"] is None and m["zscore_sd_y"] is None
    assert zscore_sd(np.array([3.0]), np.array([1.0])) is None


def test_reliability_follows_the_identity_for_calibrated_sigma_and_sorts_by_sigma():
    rng = np.random.default_rng(1)
    sigma = rng.uniform(5, 50, 20_000)
    predicted, observed, pairs = reliability(sigma, sigma * rng.standard_normal(len(sigma)), bins=5)
    assert pairs.tolist() == [4000] * 5 and np.all(np.diff(predicted) > 0)
    np.testing.assert_allclose(observed, predicted, rtol=0.05)
    predicted, _, pairs = reliability(np.array([2.0, 1.0]), np.array([0.5, 0.5]))
    assert pairs.tolist() == [1, 1] and predicted.tolist() == [1.0, 2.0]


def test_kept_model_is_calibrated_by_its_validation_zscore_sds():
    cfg = load_config("locnet_2d")
    kept = kept_config(cfg, {"threshold": 0.3, "zscore_sd_x": 1.6, "zscore_sd_y": 1.75})
    assert (kept.model.threshold, kept.model.sigma_scale) == (0.3, (1.6, 1.75, 1.0))
    assert kept_config(cfg, {"threshold": 0.7}).model.sigma_scale == (1.0, 1.0, 1.0)  # a density model: no σ
    # a resumed run's validation measures the raw σ again, so it refits the calibration instead of compounding it
    scorer = ValidationScorer(None, kept, torch.device("cpu"))
    assert scorer.cfg.model.sigma_scale == (1.0, 1.0, 1.0)
    with pytest.raises(UserInputError, match="sigma_scale"):
        updated(cfg, {"model.sigma_scale": (1.0, 0.0, 1.0)})


def test_decoding_applies_the_models_sigma_scale():
    grid = OutputGrid(100.0)
    model = ModelConfig(kind="locnet", upsampling=1, sigma_scale=(1.5, 2.0, 1.0))
    calibrated = LocNetHead.from_config(grid, model, TrainingConfig())
    output = torch.zeros(1, calibrated.channels, 6, 6)
    output[0, 0, 2, 3] = 1.0  # a detection at row 2, column 3
    output[0, 5, 2, 3], output[0, 6, 2, 3] = 10.0, 20.0  # σx, σy (nm)
    rows = [h.decode(output, h.detect(output)) for h in (LocNetHead(grid), calibrated)]
    assert rows[0][["sigma_x_nm", "sigma_y_nm"]].values.tolist() == [[10.0, 20.0]]
    assert rows[1][["sigma_x_nm", "sigma_y_nm"]].values.tolist() == [[15.0, 40.0]]


def locnet_like(three_d: bool) -> Localizations:
    z = {"z_nm": [-120.5, 40.0, 310.25], "sigma_z_nm": [30.5, 41.0, 55.25]} if three_d else {}
    return Localizations.from_arrays([0, 0, 2], [150.5, 1210.25, 2890.0], [330.0, 95.5, 1500.75], meta=META,
                                     photons=[750.5, 1200.0, 430.25], bg=[11.5, 9.0, 14.25], prob=[0.9, 0.6, 0.75],
                                     sigma_x_nm=[8.5, 12.25, 20.0], sigma_y_nm=[9.75, 11.0, 25.5], **z)


@pytest.mark.parametrize("three_d", [False, True], ids=["2D", "3D"])
def test_writers_carry_the_uncertainties(tmp_path, three_d):
    locs = locnet_like(three_d)
    t = locs.table
    for name in ("locs.csv", "locs.hdf5", "locs.parquet"):
        back = read_localizations(write_localizations(tmp_path / name, locs)).table
        for c in ("sigma_x_nm", "sigma_y_nm", "sigma_z_nm"):
            np.testing.assert_allclose(back[c], t[c], rtol=1e-6, err_msg=f"{name} {c}")
    csv = pd.read_csv(tmp_path / "locs.csv")
    np.testing.assert_allclose(csv["uncertainty_xy [nm]"], np.sqrt((t.sigma_x_nm**2 + t.sigma_y_nm**2) / 2), atol=1e-3)
    np.testing.assert_allclose(csv["uncertainty_z [nm]"], t.sigma_z_nm if three_d else np.nan)
    with h5py.File(tmp_path / "locs.hdf5", "r") as fh:
        written = fh["locs"][()]
    np.testing.assert_allclose(written["lpx"], t.sigma_x_nm / 100.0, rtol=1e-6)  # Picasso: px
    np.testing.assert_allclose(written["lpy"], t.sigma_y_nm / 100.0, rtol=1e-6)
    if three_d:
        np.testing.assert_allclose(written["lpz"], t.sigma_z_nm / 100.0, rtol=1e-6)
    else:
        assert "lpz" not in written.dtype.names and "z" not in written.dtype.names


def test_picasso_files_of_earlier_versions_keep_their_sigma_z_in_nm(tmp_path):
    records = np.zeros(2, dtype=[("frame", "u4"), ("x", "f4"), ("y", "f4"), ("z", "f4"), ("sigma_z_nm", "f4")])
    records["z"], records["sigma_z_nm"] = [100.0, -50.0], [30.5, 45.25]
    with h5py.File(tmp_path / "old.hdf5", "w") as fh:
        fh.create_dataset("locs", data=records)
    (tmp_path / "old.yaml").write_text(yaml.safe_dump({"Pixelsize": 100.0}))
    assert read_localizations(tmp_path / "old.hdf5").table.sigma_z_nm.tolist() == [30.5, 45.25]


def test_max_uncertainty_drops_exactly_the_rows_above_it(uniform_gaussian_config, tmp_path, runner):
    cfg = load_config(uniform_gaussian_config)
    adu = build_simulator(cfg).sample(6, torch.Generator().manual_seed(3)).adu.numpy().round().astype(np.uint16)
    fitter = deepsmlm.load_model("gaussian-mle", config=cfg)
    everything = fitter.localize(adu).table
    lateral = lateral_sigma_nm(everything)
    limit = float(np.median(lateral))
    kept = fitter.localize(adu, max_uncertainty_nm=limit).table
    assert 0 < len(kept) < len(everything)
    pd.testing.assert_frame_equal(kept, everything[lateral <= limit].reset_index(drop=True))

    write_stack(tmp_path / "movie.tif", adu, cfg.frame.pixel_size_nm)
    result = runner.invoke(app, ["localize", str(tmp_path / "movie.tif"), "--model", "gaussian-mle", "--config",
                                 str(uniform_gaussian_config), "-o", str(tmp_path / "out.csv"),
                                 "--max-uncertainty-nm", f"{limit}"])
    assert result.exit_code == 0, result.output
    written = pd.read_csv(tmp_path / "out.csv")
    assert len(written) == len(kept) and (written["uncertainty_xy [nm]"] <= limit + 5e-4).all()


def test_sigma_weighted_render_draws_own_sigma_and_refuses_unknown_sigma(tmp_path, runner, one_line):
    locs = locnet_like(False)
    path = write_localizations(tmp_path / "locs.csv", locs)
    weighted = rendering(path, 20.0, sigma_weighted=True).image
    np.testing.assert_array_equal(weighted, rendering(path, 20.0).image)  # the default's σ when every one is known
    assert not np.array_equal(weighted, rendering(path, 20.0, sigma_nm=10.0).image)
    with pytest.raises(UserInputError, match="neither --sigma-nm"):
        rendering(path, 20.0, sigma_nm=10.0, sigma_weighted=True)

    table = pd.read_csv(path).drop(columns=["uncertainty_x [nm]", "uncertainty_y [nm]"])
    table.loc[1, "uncertainty_xy [nm]"] = np.nan  # a σ column with a NaN
    table.to_csv(tmp_path / "nan.csv", index=False)
    out = tmp_path / "image.png"
    result = runner.invoke(app, ["render", str(tmp_path / "nan.csv"), "-o", str(out), "--sigma-weighted"])
    assert result.exit_code == 2
    line = one_line(result.output)
    assert str(tmp_path / "nan.csv") in line and "unknown (NaN)" in line and "data row 2" in line, line
    assert not out.exists() and not out.with_suffix(".tif").exists()
    assert runner.invoke(app, ["render", str(tmp_path / "nan.csv"), "-o", str(out)]).exit_code == 0  # NaN: 1 px
