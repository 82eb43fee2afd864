"""Multicolour localization: per-dye outputs, dye assignment, colour scores and `design multicolor`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from deepsmlm.analysis.metrics import evaluate
from deepsmlm.assembly.predictors import build_predictor
from deepsmlm.cli import app
from deepsmlm.config import config_from_dict, updated
from deepsmlm.errors import UserInputError
from deepsmlm.inference.predict import Predictor
from deepsmlm.io.localization_files import read_localizations
from deepsmlm.localizations import Localizations, Metadata

TINY_2DYE = {
    "name": "tiny_2dye",
    "frame": {"height": 24, "width": 24, "pixel_size_nm": 110.0},
    "optics": {"wavelength_nm": 625.0, "na": 1.45, "n_immersion": 1.518, "n_sample": 1.33,
               "magnification": 100.0, "fourier_focal_length_mm": 100.0},
    "psf": {"model": "pupil", "patch_px": 11, "pupil_grid": 41},
    "camera": {"type": "ccd", "qe": 1.0, "e_per_adu": 1.0, "baseline_adu": 100.0, "read_noise_e": 1.5},
    "emitters": {"count": [1, 3], "photons": {"distribution": "constant", "low": 3000.0},
                 "dyes": [{"wavelength_nm": 600.0}, {"wavelength_nm": 650.0}]},
    "background": {"photons_per_px": [20.0, 20.0]},
    "frames": 4,
    "model": {"kind": "deepstorm3d", "channels": 4, "upsampling": 2, "z_planes": 1, "colors": 2,
              "dilations": [1, 2], "window_planes": 0},
    "training": {"batch_size": 2, "validation_frames": 2, "validate_every": 2, "steps": 4, "dice_weight": 1.0},
}


def two_dye_predictor(threshold: float = 0.3) -> Predictor:
    cfg = updated(config_from_dict(TINY_2DYE), {"model.input_offset_photons": 0.0, "model.input_scale_photons": 1.0,
                                                "model.threshold": threshold})
    return build_predictor(cfg, torch.nn.Identity())


def test_each_detection_takes_the_dye_holding_most_of_its_mass():
    """Two emitters in one frame: one mostly in dye 1's map, one wholly in dye 0's; a third in frame 1."""
    pred = two_dye_predictor()
    density = torch.zeros(2, 2, 48, 48)  # (frames, dyes × 1 plane, fine rows, fine cols)
    density[0, 1, 10, 10], density[0, 0, 10, 11] = 0.6, 0.2  # dye 1 at 75 %
    density[0, 0, 30, 30] = 0.9
    density[1, 1, 20, 5] = 0.5
    table = pred.localize(density).sort_values(["frame", "y_nm"]).reset_index(drop=True)
    assert table["color"].tolist() == [1, 0, 1]
    assert table["color_prob"].to_numpy() == pytest.approx([0.75, 1.0, 1.0])
    assert table["prob"].to_numpy() == pytest.approx([0.8, 0.9, 0.5])
    fine = 110.0 / 2
    assert table.loc[0, "x_nm"] == pytest.approx((10.5 + 0.2 / 0.8) * fine)  # centroid over both dyes' mass


def test_colour_scores_count_matched_pairs_by_true_and_assigned_dye():
    meta = Metadata(pixel_size_nm=100.0, image_shape=(32, 32), n_frames=1)
    gt = Localizations(pd.DataFrame({"frame": [0, 0, 0, 0], "x_nm": [100.0, 900, 1700, 2500],
                                     "y_nm": [100.0, 100, 100, 100], "color": [0, 0, 1, 1]}), meta)
    pred = Localizations(pd.DataFrame({"frame": [0, 0, 0], "x_nm": [110.0, 905, 1690],
                                       "y_nm": [100.0, 100, 100], "color": [0, 1, 1]}), meta)
    m = evaluate(gt, pred, 100.0, None)
    assert m["n_tp"] == 3 and m["color_accuracy"] == pytest.approx(2 / 3)
    assert m["color_confusion"] == [[1, 1], [0, 1]]


def test_the_number_of_dye_outputs_must_match_the_dyes():
    bad = dict(TINY_2DYE, model=dict(TINY_2DYE["model"], colors=3))
    with pytest.raises(UserInputError, match="model.colors is 3 but emitters.dyes lists 2"):
        config_from_dict(bad, "bad.yaml")
    with pytest.raises(UserInputError, match="colors > 1"):
        config_from_dict(dict(TINY_2DYE, model={"kind": "deepstorm2d", "colors": 2}), "bad.yaml")


def test_training_targets_hold_each_dye_in_its_own_map():
    from deepsmlm.simulation.emitters import Emitters
    from deepsmlm.training.trainer import Trainer

    trainer = Trainer(config_from_dict(TINY_2DYE), Path("unused"))
    xyz = torch.tensor([[500.0, 600.0, 0.0], [1500.0, 700.0, 0.0], [800.0, 2000.0, 0.0]])
    em = Emitters(xyz, torch.full((3,), 3000.0), torch.tensor([0, 0, 1]), torch.arange(3),
                  color=torch.tensor([1, 0, 1]))
    target = trainer.batches.targets(em, 2)
    assert target.shape == (2, 2, 48, 48)
    assert target.sum(dim=(2, 3)).flatten().tolist() == pytest.approx([1.0, 1.0, 0.0, 1.0])
    # dye 1's emitter of frame 0 sits at x = 500 nm: its map's centroid says so, the other map is empty there
    frame0_dye1 = target[0, 1]
    cols = (torch.arange(48) + 0.5) * 55.0
    assert float((frame0_dye1.sum(0) * cols).sum()) == pytest.approx(500.0, abs=1e-3)


def test_design_multicolor_end_to_end(tmp_path):
    """design multicolor on a tiny 2-dye config writes the mask, the per-dye montage and a model whose
    localizations carry color and color_prob; the simulated ground truth carries color."""
    path = tmp_path / "tiny_2dye.yaml"
    path.write_text(yaml.safe_dump(TINY_2DYE))
    runner = CliRunner()
    out = tmp_path / "learned"
    result = runner.invoke(app, ["design", "multicolor", str(path), "-o", str(out), "--steps", "4",
                                 "--basis", "zernike", "--max-noll", "15"])
    assert result.exit_code == 0, result.output
    mask = np.load(out / "mask.npy")
    assert 0 < np.abs(mask).max() <= np.pi + 1e-6  # Zernike modes from small random coefficients, wrapped
    coefficients = np.load(out / "last_zernike.npy")
    assert coefficients.shape == (12,)
    result = runner.invoke(app, ["design", "multicolor", str(path), "-o", str(out), "--steps", "6",
                                 "--basis", "zernike", "--max-noll", "15", "--resume"])
    assert result.exit_code == 0, result.output
    assert not np.array_equal(np.load(out / "last_zernike.npy"), coefficients)  # resumed and moved on
    for name in ("mask.npy", "mask.mat", "mask.png", "psf_dyes.png", "training_curves.png", "model.safetensors"):
        assert (out / name).is_file(), name
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["psf"]["mask"]["file"] == "mask.npy" and saved["psf"]["pupil_grid"] == 41
    assert saved["model"]["colors"] == 2
    movie = tmp_path / "movie"
    result = runner.invoke(app, ["simulate", str(out / "config.yaml"), "-o", str(movie), "--frames", "3"])
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(movie / "ground_truth.csv")["color"].unique()) <= {0, 1}
    result = runner.invoke(app, ["localize", str(movie / "frames.tif"), "--model", str(out),
                                 "-o", str(tmp_path / "l.csv")])
    assert result.exit_code == 0, result.output
    header = (tmp_path / "l.csv").read_text().splitlines()[0]
    assert "color" in header and "color_prob" in header
    result = runner.invoke(app, ["evaluate", "--gt", str(movie / "ground_truth.csv"), "--pred", str(tmp_path / "l.csv")])
    assert result.exit_code == 0, result.output
    assert "dye correct" in result.output and "true dye 1" in result.output


def test_design_multicolor_refuses_a_single_colour_config(tmp_path):
    path = tmp_path / "one.yaml"
    cfg = dict(TINY_2DYE, emitters={"count": [1, 3]}, model=dict(TINY_2DYE["model"], colors=1))
    path.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["design", "multicolor", str(path), "-o", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "needs 2 to 4 dyes" in result.output and "Traceback" not in result.output


def test_the_loss_prefers_the_right_dye_and_blurs_within_each_dye():
    from deepsmlm.heads.density_loss import deepstorm_loss

    target = torch.zeros(1, 2, 16, 16)
    target[0, 1, 8, 8] = 1.0
    swapped = target.flip(1)
    loss = lambda p: float(deepstorm_loss(p, target, 1.0, 0.0, 1.0, 1.0, dyes=2))  # noqa: E731
    assert loss(target) == pytest.approx(0.0, abs=1e-6)
    assert loss(swapped) > loss(0.5 * target + 0.5 * swapped) > loss(target)
    # a volume of 2 dyes × 1 plane is not blurred across the dyes (it would be as 2 planes of one dye)
    mse = lambda dyes: float(deepstorm_loss(swapped, target, 1.0, 0.0, 1.0, 0.0, dyes=dyes))  # noqa: E731
    assert mse(2) > mse(1)


def test_the_shipped_model_tells_the_preset_dyes_apart(tmp_path):
    """`simulate multicolor_2dye` then `localize --model multicolor-2dye`, as a user runs them: the
    localizations find the emitters and carry the right dye. The preset's mask is what makes this possible:
    with a flat mask in its place the same check gives about 50 %. (The shipped model was trained with the
    preset's physics, issue 18.)"""
    runner = CliRunner()
    movie = tmp_path / "mc"
    result = runner.invoke(app, ["simulate", "multicolor_2dye", "-o", str(movie), "--frames", "12", "--seed", "5"])
    assert result.exit_code == 0, result.output
    truth = read_localizations(movie / "ground_truth.csv", 110.0)
    assert sorted(truth.table["color"].unique()) == [0, 1]
    result = runner.invoke(app, ["localize", str(movie / "frames.tif"), "--model", "multicolor-2dye",
                                 "-o", str(tmp_path / "mc.csv")])
    assert result.exit_code == 0, result.output
    pred = read_localizations(tmp_path / "mc.csv", 110.0)
    assert pred.table["color_prob"].between(0.5, 1.0).all()
    m = evaluate(truth, pred, 250.0, None)
    assert m["n_tp"] >= 40 and m["jaccard"] > 0.9
    assert m["color_accuracy"] > 0.95
