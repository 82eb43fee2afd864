"""DeepSTORM3D pieces: voxel targets, the 3D loss, 3D peaks, the network, training and localizing a tiny 3D model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from deepsmlm.cli import app
from deepsmlm.config import SimulationConfig, config_from_dict, updated
from deepsmlm.errors import UserInputError
from deepsmlm.assembly.predictors import build_predictor
from deepsmlm.heads.density_loss import deepstorm_loss
from deepsmlm.heads.density_peaks import density_peaks
from deepsmlm.heads.density_targets import spike_volume
from deepsmlm.heads.grid import OutputGrid
from deepsmlm.models.deepstorm3d import DeepStorm3D, receptive_field_px
from deepsmlm.models.registry import build_network
from deepsmlm.training.batches import density_range, training_emitters, training_field
from deepsmlm.training.trainer import Trainer

Z_RANGE = (-1000.0, 1000.0)  # 10 planes of 200 nm
GRID = OutputGrid(100.0, 2, Z_RANGE, 10)  # 50 nm fine pixels


def tiny_3d_config() -> SimulationConfig:
    return SimulationConfig.model_validate({
        "frame": {"height": 24, "width": 24, "pixel_size_nm": 100.0},
        "psf": {"model": "gaussian", "patch_px": 9,
                "gaussian": {"sigma_nm": 110.0, "astig_focus_offset_nm": 300.0, "astig_depth_nm": 400.0}},
        "camera": {"type": "ccd", "qe": 1.0, "e_per_adu": 1.0, "baseline_adu": 30.0, "read_noise_e": 5.0},
        "emitters": {"count": [1, 6], "z_range_nm": list(Z_RANGE),
                     "photons": {"distribution": "gamma", "shape": 3.0, "scale": 1000.0}},
        "background": {"photons_per_px": [5.0, 10.0]},
        "model": {"kind": "deepstorm3d", "channels": 4, "upsampling": 2, "z_planes": 10, "dilations": [1, 2]},
        "training": {"batch_size": 2, "validation_frames": 2, "validate_every": 2, "steps": 4, "field_px": 16,
                     "dice_weight": 1.0, "label_min_photons": 2000.0, "axial_tol_nm": 250.0},
    })


def test_voxel_target_centroid_is_the_exact_3d_position():
    xyz = torch.tensor([[130.0, 260.0, 123.0], [510.0, 90.0, -990.0]])
    vol = spike_volume(xyz, torch.tensor([0, 1]), 2, 4, 8, GRID)
    assert vol.shape == (2, 10, 8, 16)
    a = vol[0]
    planes, rows, cols = torch.meshgrid(torch.arange(10) + 0.5, torch.arange(8) + 0.5, torch.arange(16) + 0.5,
                                        indexing="ij")
    assert float(a.sum()) == pytest.approx(1.0)
    assert float((a * cols).sum() * 50.0) == pytest.approx(130.0, abs=1e-3)  # 50 nm fine pixels
    assert float((a * rows).sum() * 50.0) == pytest.approx(260.0, abs=1e-3)
    assert float(Z_RANGE[0] + (a * planes).sum() * 200.0) == pytest.approx(123.0, abs=1e-2)
    assert float(vol[1].sum()) == pytest.approx(1.0)  # an emitter in the outer half-plane stays in plane 0
    assert float(vol[1, 0].sum()) == pytest.approx(1.0)


def test_3d_loss_is_zero_for_a_perfect_prediction_and_penalises_the_wrong_plane():
    xyz = torch.tensor([[200.0, 200.0, 100.0]])
    target = spike_volume(xyz, torch.tensor([0]), 1, 4, 4, GRID)
    assert float(deepstorm_loss(target, target, 1.0, 0.0, 1.0, 1.0)) == pytest.approx(0.0, abs=1e-5)
    near = spike_volume(xyz + torch.tensor([[0.0, 0.0, 200.0]]), torch.tensor([0]), 1, 4, 4, GRID)
    far = spike_volume(xyz + torch.tensor([[0.0, 0.0, 600.0]]), torch.tensor([0]), 1, 4, 4, GRID)
    assert 0 < float(deepstorm_loss(near, target, 1.0, 0.0, 1.0, 1.0)) < float(deepstorm_loss(far, target, 1.0, 0.0, 1.0, 1.0))


def test_3d_peaks_give_sub_voxel_centroids():
    xyz = torch.tensor([[730.0, 410.0, 355.0], [260.0, 1510.0, -620.0]])
    vol = spike_volume(xyz, torch.tensor([0, 0]), 1, 20, 20, GRID)
    peaks = density_peaks(vol, threshold=0.5, window_px=2, window_planes=1)
    order = torch.argsort(peaks["col"], descending=True)
    got = torch.stack([peaks["col"][order] * 50.0, peaks["row"][order] * 50.0,
                       Z_RANGE[0] + peaks["plane"][order] * 200.0], 1)
    torch.testing.assert_close(got, xyz, atol=1e-2, rtol=0)
    assert torch.allclose(peaks["prob"], torch.ones(2))


def test_network_maps_a_frame_to_planes_on_the_fine_grid():
    for arch in ("cpu", "paper"):
        net = DeepStorm3D(planes=7, upsampling=2, channels=4, dilations=(1, 2), architecture=arch).eval()
        assert net(torch.zeros(2, 1, 15, 17)).shape == (2, 7, 30, 34)
    assert receptive_field_px((1, 2, 4, 8, 12)) == 57


def test_count_range_becomes_a_density_and_training_fields_keep_it():
    cfg = tiny_3d_config()
    lo, hi = density_range(cfg)
    area = (24 * 0.1) ** 2
    assert (lo, hi) == pytest.approx((1 / area, 6 / area))
    field = training_field(cfg)
    assert (field.frame.height, field.frame.width) == (16, 16)
    assert density_range(field) == pytest.approx((lo, hi))
    # with a margin the counts fall in the inner (24 − 2·4)² px, and training crops place emitters everywhere
    cfg = updated(cfg, {"emitters.margin_px": 4.0})
    inner = (16 * 0.1) ** 2
    assert density_range(training_field(cfg)) == pytest.approx((1 / inner, 6 / inner))
    assert training_emitters(cfg, 1.0).margin_px == 0.0


def test_a_margin_that_leaves_no_room_is_refused():
    data = tiny_3d_config().model_dump()
    data["emitters"]["margin_px"] = 12.0
    with pytest.raises(UserInputError, match="margin_px 12.0 leaves no room in a 24x24 px frame"):
        config_from_dict(data, "cfg.yaml")


def test_bfloat16_training_runs_the_network_in_bfloat16_and_learns(tmp_path, monkeypatch):
    loop = Trainer(updated(tiny_3d_config(), {"training.bfloat16": True}), tmp_path / "m").loop
    seen = []
    loop.net.head.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    first = loop.train_step()
    losses = [loop.train_step() for _ in range(30)]
    assert seen[0] == torch.bfloat16 and all(p.dtype == torch.float32 for p in loop.net.parameters())
    assert np.mean(losses[-5:]) < first


def test_tiny_3d_model_trains_saves_and_localizes_in_3d(tmp_path):
    cfg = tiny_3d_config()
    trainer = Trainer(cfg, tmp_path / "m")
    summary = trainer.loop.run(steps=2)
    assert summary["steps"] == 2 and "rmse_axial_nm" in trainer.loop.history[-1]
    # a voxel target fed through the predictor's post-processing comes back as 3D localizations
    predictor = build_predictor(trainer.cfg, build_network(trainer.cfg.model))
    xyz = torch.tensor([[730.0, 410.0, 355.0]])
    vol = spike_volume(xyz, torch.tensor([0]), 1, 24, 24, GRID)
    table = predictor.localize(vol, first_frame=3, threshold=0.5)
    assert list(table.columns) == ["frame", "x_nm", "y_nm", "z_nm", "prob"]
    np.testing.assert_allclose(table[["x_nm", "y_nm", "z_nm"]].to_numpy()[0], [730.0, 410.0, 355.0], atol=0.05)
    # the CLI refuses frames smaller than the receptive field, 3 + 2·(1 + 2) = 9 px
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.full((2, 8, 8), 40, np.uint16))
    result = CliRunner().invoke(app, ["localize", str(small), "--model", str(tmp_path / "m"), "-o",
                                      str(tmp_path / "l.csv")])
    assert result.exit_code == 2 and "receptive field" in result.output
    assert not (tmp_path / "l.csv").exists()
    ok = tmp_path / "ok.tif"
    tifffile.imwrite(ok, np.full((2, 24, 24), 40, np.uint16))
    result = CliRunner().invoke(app, ["localize", str(ok), "--model", str(tmp_path / "m"), "-o", str(tmp_path / "l.csv")])
    assert result.exit_code == 0, result.output


def test_experiment_config_outside_the_trained_z_range_or_pixel_size_is_refused(tmp_path):
    cfg = tiny_3d_config()
    Trainer(cfg, tmp_path / "m").loop.run(steps=1)
    stack = tmp_path / "ok.tif"
    tifffile.imwrite(stack, np.full((2, 24, 24), 40, np.uint16))
    runner = CliRunner()
    for change, needle in (({"emitters": {"z_range_nm": [-1500.0, 500.0]}}, "outside the range -1000 … 1000 nm"),
                           ({"frame": {"pixel_size_nm": 160.0}}, "pixel size 160 nm differs")):
        exp = cfg.model_dump(mode="json")
        for key, value in change.items():
            exp[key].update(value)
        path = tmp_path / "exp.yaml"
        path.write_text(__import__("yaml").safe_dump(exp))
        result = runner.invoke(app, ["localize", str(stack), "--model", str(tmp_path / "m"), "--config", str(path),
                                     "-o", str(tmp_path / "l.csv")])
        assert result.exit_code == 2 and needle in result.output, result.output
        assert not (tmp_path / "l.csv").exists()


@pytest.mark.parametrize("content, needle", [(np.zeros((3, 8, 8)), "must be a 2D array"),
                                             (np.full((8, 8), np.nan), "NaN or infinite")])
def test_bad_mask_files_fail_in_one_line(tmp_path, content, needle):
    mask = tmp_path / "mask.npy"
    np.save(mask, content)
    result = CliRunner().invoke(app, ["crlb", "tetrapod_paper", "--mask", str(mask)])
    assert result.exit_code == 2 and needle in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_candidate_peak_search_equals_pooling_the_whole_volume():
    """Gathering windows around voxels above threshold / window size finds exactly the pooled peaks."""
    from deepsmlm.heads.density_peaks import _pooled_peaks, peak_map

    g = torch.Generator().manual_seed(4)
    vol = torch.rand(2, 6, 30, 30, generator=g) * (torch.rand(2, 6, 30, 30, generator=g) < 0.05)
    for thr, wp, wz in ((0.3, 2, 1), (0.6, 1, 0), (0.05, 2, 2)):
        torch.testing.assert_close(peak_map(vol, thr, wp, wz), _pooled_peaks(vol, thr, wp, wz))


def test_stack_localization_runs_in_memory_bounded_passes_with_the_same_result(monkeypatch):
    import deepsmlm.inference.predict as predict

    cfg = updated(tiny_3d_config(), {"model.input_offset_photons": 10.0, "model.input_scale_photons": 100.0})
    torch.manual_seed(0)
    predictor = build_predictor(cfg, build_network(cfg.model))
    adu = 30.0 + 200.0 * torch.rand(5, 24, 24)
    whole = predictor.localize_frames(adu, first_frame=7, threshold=0.0)
    per_frame = 10 * (2 * 24) ** 2  # planes × upsampled pixels of one frame
    monkeypatch.setattr(predict, "MAX_OUTPUT_VOXELS", 2 * per_frame + 1)
    assert predictor.frames_per_pass(24, 24) == 2
    monkeypatch.setattr(predict, "MAX_OUTPUT_VOXELS", per_frame // 3)
    assert predictor.frames_per_pass(24, 24) == 1  # never fewer than one frame
    passes = predictor.localize_frames(adu, first_frame=7, threshold=0.0)
    assert len(whole) > 0 and sorted(set(whole.frame)) == list(range(7, 12))
    pd.testing.assert_frame_equal(passes, whole, check_exact=False, atol=1e-3)
