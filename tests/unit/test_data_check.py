"""The data check's estimators: background and noise robust to spots, the trained ranges the way the simulator
draws them, the model PSF's width, and a sample bounded on large frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepsmlm.assembly.fitters import build_gaussian_mle
from deepsmlm.config import CameraConfig, PhotonConfig, SimulationConfig
from deepsmlm.inference.data_check import (REGION_PX, SAMPLE_FRAMES, background_and_noise, cropped_camera,
                                           model_expectation, photon_range, sample_frames, trained_background)
from deepsmlm.io.images import open_stack
from deepsmlm.io.tiff import write_stack
from deepsmlm.models.registry import load_model
from deepsmlm.physics.camera import Camera
from deepsmlm.simulation.emitters import sample_photons


def test_background_and_noise_ignore_bright_spots_on_a_fifth_of_the_pixels():
    g = torch.Generator().manual_seed(0)
    frames = 50.0 + 5.0 * torch.randn(4, 128, 128, generator=g, dtype=torch.float64)
    spots = torch.rand(4, 128, 128, generator=g, dtype=torch.float64) < 0.2
    frames[spots] += 200.0
    level, noise = background_and_noise(frames)
    # the spots shift the low quantiles a little (+0.25 σ in level, +9 % in σ); the pixels' std is 80
    assert level == pytest.approx(50.0, abs=1.5)
    assert noise == pytest.approx(5.0, rel=0.1)
    assert float(frames.std()) > 75


@pytest.mark.parametrize("photons", [PhotonConfig(distribution="gamma", shape=3.0, scale=3000.0),
                                     PhotonConfig(distribution="lognormal", mean=750.0, sigma=0.4),
                                     PhotonConfig(distribution="uniform", low=500.0, high=10000.0)])
def test_the_trained_photon_range_is_that_of_the_simulator_draws(photons):
    drawn = sample_photons(photons, 400_000, torch.Generator().manual_seed(1)).double().numpy()
    lo, hi = photon_range(photons)
    assert lo == pytest.approx(np.quantile(drawn, 0.001), rel=0.05)
    assert hi == pytest.approx(np.quantile(drawn, 0.999), rel=0.05)


def test_the_trained_background_counts_a_baseline_drawn_per_frame_and_a_modulation():
    cfg = SimulationConfig.model_validate({
        "camera": {"type": "ccd", "qe": 1.0, "e_per_adu": 0.5, "baseline_adu": [20.0, 40.0]},
        "background": {"photons_per_px": [10.0, 60.0], "nonuniform_amplitude": 0.3}})
    # 2 ADU per photon: the frame's baseline is ±10 ADU = ±5 photons around the subtracted 30 ADU
    assert trained_background(cfg, Camera(cfg.camera)) == pytest.approx((7.0 - 5.0, 78.0 + 5.0))


def test_a_gaussian_psf_is_compact_and_its_fitted_width_is_sigma_with_the_blur():
    cfg = SimulationConfig.model_validate({
        "frame": {"pixel_size_nm": 100.0}, "psf": {"gaussian": {"sigma_nm": 110.0}, "blur_sigma_px": [0.0, 0.4]}})
    fitter = build_gaussian_mle(cfg)
    expected = model_expectation(cfg, fitter.camera, fitter, trained=True)
    assert expected.sigma_px == pytest.approx((1.1, np.hypot(1.1, 0.4)), rel=0.01)
    low, high = expected.dog_peak  # a spot on a pixel corner peaks lower than one on a pixel centre
    assert 0 < low < high < 1


def test_an_engineered_3d_psf_gets_no_width_check_but_a_photon_bound():
    cfg = load_model("learned-3d")[0]
    fitter = build_gaussian_mle(cfg)
    expected = model_expectation(cfg, fitter.camera, fitter, trained=True)
    assert expected.sigma_px is None
    low, high = expected.dog_peak
    assert high > 2 * low  # the peak of a spread 3D PSF changes several-fold over z


def test_the_sample_is_a_few_frames_spread_over_the_stack_and_a_central_region(tmp_path):
    frames = np.arange(20, dtype=np.uint16)[:, None, None] * np.ones((1, 600, 400), np.uint16)
    write_stack(tmp_path / "s.tif", frames)
    with open_stack(tmp_path / "s.tif") as stack:
        sample, (rows, cols) = sample_frames(stack)
    assert sample.shape == (SAMPLE_FRAMES, REGION_PX, REGION_PX)
    assert sample[0, 0, 0] == 0 and sample[-1, 0, 0] == 19  # first and last frame
    assert (rows.start, cols.start) == ((600 - REGION_PX) // 2, (400 - REGION_PX) // 2)


def test_a_cropped_scmos_camera_converts_with_the_maps_of_its_region(tmp_path):
    offset = np.arange(12.0).reshape(3, 4) + 100
    np.savez(tmp_path / "maps.npz", offset=offset, variance=np.ones((3, 4)), gain=np.full((3, 4), 2.0))
    camera = Camera(CameraConfig(type="scmos", qe=1.0, scmos_maps=str(tmp_path / "maps.npz")), (3, 4))
    region = (slice(1, 3), slice(2, 4))
    part = cropped_camera(camera, region)
    adu = torch.tensor(offset[region] + 8.0)
    assert torch.allclose(part.adu_to_photons(adu), torch.full((2, 2), 4.0, dtype=torch.float64))
    assert camera.offset.shape == (3, 4)  # the original is untouched
