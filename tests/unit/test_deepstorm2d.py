"""Deep-STORM 2D pieces: targets, loss, peak extraction, architectures, model folders, exact resume."""

from __future__ import annotations

import math

import pytest
import torch

from deepsmlm.config import SimulationConfig, updated
from deepsmlm.errors import UserInputError
from deepsmlm.heads.density_loss import deepstorm_loss, gaussian_blur
from deepsmlm.heads.density_peaks import density_peaks
from deepsmlm.heads.density_targets import spike_volume
from deepsmlm.heads.grid import OutputGrid
from deepsmlm.models.deepstorm2d import DeepStorm2DCPU, DeepStorm2DPaper
from deepsmlm.models.registry import build_network, load_model, save_model
from deepsmlm.training.trainer import Trainer


def tiny_config() -> SimulationConfig:
    return SimulationConfig.model_validate({
        "frame": {"height": 16, "width": 16, "pixel_size_nm": 100.0},
        "psf": {"model": "gaussian", "gaussian": {"sigma_nm": 110.0}, "patch_px": 9},
        "camera": {"type": "ccd", "qe": 1.0, "e_per_adu": 0.25, "baseline_adu": 100.0},
        "emitters": {"density_per_um2": 2.0, "photons": {"distribution": "constant", "low": 800.0}},
        "background": {"photons_per_px": [10.0, 10.0]},
        "model": {"channels": 4, "head_channels": 2, "upsampling": 4},
        "training": {"batch_size": 2, "validation_frames": 2, "validate_every": 2, "steps": 4},
    })


def test_spike_mass_is_split_so_the_centroid_is_exact():
    xyz = torch.tensor([[130.0, 260.0, 0.0], [12.5, 12.5, 0.0], [-30.0, 5.0, 0.0]])
    img = spike_volume(xyz, torch.tensor([0, 1, 1]), 2, 4, 4, OutputGrid(100.0, 4))
    assert img.shape == (2, 1, 16, 16)
    a = img[0, 0]
    rows, cols = torch.meshgrid(torch.arange(16) + 0.5, torch.arange(16) + 0.5, indexing="ij")
    assert float(a.sum()) == pytest.approx(1.0)
    assert float((a * cols).sum() * 25.0) == pytest.approx(130.0, abs=1e-3)  # 25 nm fine pixels
    assert float((a * rows).sum() * 25.0) == pytest.approx(260.0, abs=1e-3)
    assert img[1, 0, 0, 0] == pytest.approx(1.0)  # at a pixel centre all mass stays in that pixel
    assert float(img[1].sum()) == pytest.approx(1.0)  # the emitter left of the field is dropped


def test_loss_is_zero_for_a_perfect_prediction_and_blur_keeps_mass():
    target = spike_volume(torch.tensor([[200.0, 200.0, 0.0]]), torch.tensor([0]), 1, 4, 4, OutputGrid(100.0, 4))
    assert float(deepstorm_loss(target.clone(), target)) == 0.0
    assert float(deepstorm_loss(torch.zeros_like(target), target)) > 0
    assert float(gaussian_blur(target, 1.0).sum()) == pytest.approx(1.0, rel=1e-5)
    assert float(deepstorm_loss(target, target, l1_weight=0.5)) == pytest.approx(0.5 * float(target.abs().mean()))


def blob(h, w, centres, sigma=1.2, mass=1.0):
    rr, cc = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    img = torch.zeros(h, w)
    for r, c in centres:
        g = torch.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * sigma**2))
        img += mass * g / g.sum()
    return img[None, None]


def test_peaks_give_sub_pixel_centroids_and_confidence():
    img = blob(40, 40, [(10.3, 12.7), (25.6, 28.2)], sigma=0.8)
    peaks = density_peaks(img, threshold=0.5, window_px=3)
    got = sorted(zip(peaks["row"].tolist(), peaks["col"].tolist()))
    assert got[0] == pytest.approx((10.3, 12.7), abs=0.05) and got[1] == pytest.approx((25.6, 28.2), abs=0.05)
    assert torch.all(peaks["prob"] > 0.95)
    assert len(density_peaks(blob(40, 40, [(10.3, 12.7)], mass=0.3), 0.5, 3)["row"]) == 0


@pytest.mark.parametrize("net,up", [(DeepStorm2DCPU(4, 4, 2), 4), (DeepStorm2DPaper(4, 4), 4)])
def test_architectures_map_frames_to_the_upsampled_grid(net, up):
    with torch.no_grad():
        y = net(torch.randn(2, 1, 20, 24))
    assert y.shape == (2, 1, 20 * up, 24 * up) and torch.isfinite(y).all()


def test_model_folder_round_trip_and_bad_weights(tmp_path):
    cfg = updated(tiny_config(), {"model.input_offset_photons": 10.0, "model.input_scale_photons": 100.0})
    net = build_network(cfg.model)
    save_model(tmp_path / "m", cfg, net)
    cfg2, net2 = load_model(tmp_path / "m")
    assert cfg2 == cfg
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))
    other = updated(cfg, {"model.channels": 8})
    save_model(tmp_path / "foreign", other, build_network(other.model))
    (tmp_path / "foreign" / "config.yaml").write_text((tmp_path / "m" / "config.yaml").read_text())
    with pytest.raises(UserInputError, match="model.safetensors"):
        load_model(tmp_path / "foreign")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(UserInputError, match="no model.safetensors"):
        load_model(tmp_path / "m")


def test_resume_continues_training_exactly(tmp_path):
    straight = Trainer(tiny_config(), tmp_path / "a").loop
    straight.run(steps=4)
    first = Trainer(tiny_config(), tmp_path / "b").loop
    first.run(steps=2)
    again = Trainer(tiny_config(), tmp_path / "b").loop
    again.resume()
    again.run(steps=4)
    for (k, a), b in zip(straight.net.state_dict().items(), again.net.state_dict().values()):
        assert torch.equal(a, b), k
    assert [h["step"] for h in again.history] == [2, 4]
    assert math.isfinite(again.history[-1]["jaccard"])


def test_summed_image_keeps_only_the_mass_of_detections():
    from deepsmlm.heads.density_peaks import detected_density, peak_map

    img = blob(30, 30, [(10.5, 10.5)], sigma=0.8)
    img[0, 0, 25, 25] = 0.05  # an isolated faint bump: a local maximum below the threshold
    kept = detected_density(img, peak_map(img, 0.5, 2), window_px=2)
    assert float(kept[0, 0, 25, 25]) == 0.0
    assert torch.allclose(kept[0, 0, 8:13, 8:13], img[0, 0, 8:13, 8:13])


def test_folding_batchnorm_keeps_the_outputs():
    from deepsmlm.models.registry import fold_batchnorm

    net = DeepStorm2DCPU(4, 8, 4)
    for m in net.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), folded(x), atol=1e-5)
