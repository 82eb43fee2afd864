"""The `gaussian-mle` baseline on simulated isolated spots: unbiased, at the CRLB, honest uncertainties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepsmlm.assembly.fitters import build_gaussian_mle, psf_sigma_nm
from deepsmlm.config import SimulationConfig, load_config, updated
from deepsmlm.inference.gaussian_fit import integrated_gaussian
from deepsmlm.optics.psf import GaussianPSF, render, split_positions
from deepsmlm.physics.camera import Camera
from deepsmlm.physics.crlb import crlb

PX, SIGMA, SIZE, SPACING = 100.0, 93.0, 64, 12
PHOTONS, BG = 2000.0, 20.0
CAMERAS = {"ideal": {"type": "ideal"}, "epfl2016": load_config("epfl2016_2d").camera.model_dump()}


def config(camera: str) -> SimulationConfig:
    return SimulationConfig.model_validate({
        "frame": {"height": SIZE, "width": SIZE, "pixel_size_nm": PX},
        "psf": {"model": "gaussian", "patch_px": 15, "gaussian": {"sigma_nm": SIGMA}},
        "camera": CAMERAS[camera]})


def grid_movie(camera: str, n_frames: int, max_offset_px: float = 0.5, seed: int = 0):
    """Spots on a 12 px grid (25 per frame) with random sub-pixel offsets: ADU frames, truth (E, 3) nm, frame."""
    g = torch.Generator().manual_seed(seed)
    centres = (torch.arange(SPACING // 2 + 2, SIZE - SPACING // 2, SPACING) + 0.5).double() * PX
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    xy = torch.stack([xx.flatten(), yy.flatten()], 1).repeat(n_frames, 1)
    xy = xy + (2 * torch.rand(xy.shape, generator=g, dtype=torch.float64) - 1) * max_offset_px * PX
    xyz = torch.cat([xy, torch.zeros(len(xy), 1, dtype=xy.dtype)], 1)
    frame = torch.arange(n_frames).repeat_interleave(xx.numel())
    signal = render(GaussianPSF(PX, 15, SIGMA), xyz, torch.full((len(xy),), PHOTONS, dtype=xy.dtype),
                    frame, n_frames, SIZE, SIZE)
    adu = Camera(config(camera).camera)((signal + BG).float(), generator=g)
    return adu, xyz, frame


def pair(table, xyz: torch.Tensor, frame: torch.Tensor) -> np.ndarray:
    """Index of the true spot nearest each localization (same frame), asserting one-to-one within 250 nm."""
    d = np.hypot(table.x_nm.to_numpy()[:, None] - xyz[:, 0].numpy(), table.y_nm.to_numpy()[:, None] - xyz[:, 1].numpy())
    d[table.frame.to_numpy()[:, None] != frame.numpy()[None]] = np.inf
    idx = d.argmin(axis=1)
    assert (d[np.arange(len(idx)), idx] < 250).all() and len(set(idx)) == len(idx) == len(xyz)
    return idx


def true_crlb(camera: str, xyz: torch.Tensor) -> torch.Tensor:
    """(E, 2) √CRLB of x, y (nm) at the truth, with the camera's noise model."""
    _, _, offset = split_positions(xyz, PX)
    theta = torch.cat([offset, torch.full_like(offset[:, :2], PHOTONS)], 1)
    theta[:, 4] = BG
    bounds = crlb(GaussianPSF(PX, 15, SIGMA), theta, Camera(config(camera).camera).variance_photons,
                  params=("x", "y", "photons", "background"))
    return bounds[:, :2]


@pytest.mark.parametrize("camera", ["ideal", "epfl2016"])
def test_fit_is_unbiased_and_reaches_the_crlb(camera):
    adu, xyz, frame = grid_movie(camera, n_frames=20)  # 500 spots
    table = build_gaussian_mle(config(camera)).localize(adu, first_frame=7)
    assert list(table.columns[:10]) == ["frame", "x_nm", "y_nm", "z_nm", "photons", "bg", "prob",
                                        "sigma_x_nm", "sigma_y_nm", "sigma_z_nm"]
    table["frame"] -= 7
    idx = pair(table, xyz, frame)
    err = table[["x_nm", "y_nm"]].to_numpy() - xyz[idx, :2].numpy()
    bound = true_crlb(camera, xyz)[idx].numpy()
    rms_bound = np.sqrt((bound**2).mean(axis=0))
    ratio = np.sqrt((err**2).mean(axis=0)) / rms_bound
    print(f"{camera}: RMSE / sqrt(CRLB) = {ratio.round(3)}, sqrt(CRLB) = {rms_bound.round(2)} nm")
    assert (np.abs(err.mean(axis=0)) < 1.0).all()
    assert ((ratio > 0.87) & (ratio < 1.15)).all()
    assert table.sigma_x_nm.mean() == pytest.approx(rms_bound[0], rel=0.03)
    assert table.photons.mean() == pytest.approx(PHOTONS, rel=0.02)
    assert table.bg.mean() == pytest.approx(BG, rel=0.02)
    assert table.psf_sigma_nm.mean() == pytest.approx(SIGMA, rel=0.02)
    assert (table.prob > 0.99).all() and (table.z_nm == 0).all()


def test_emccd_bound_is_sqrt2_wider():
    ratio = true_crlb("epfl2016", torch.tensor([[3250.0, 3250.0, 0.0]], dtype=torch.float64)) / \
        true_crlb("ideal", torch.tensor([[3250.0, 3250.0, 0.0]], dtype=torch.float64))
    # √(2/QE) for QE 0.9, read noise adds a little
    assert float(ratio[0, 0]) == pytest.approx(np.sqrt(2 / 0.9), rel=0.02)


@pytest.mark.parametrize("camera", ["ideal", "epfl2016"])
def test_no_detections_on_pure_background(camera):
    cam = Camera(config(camera).camera)
    adu = cam(torch.full((50, SIZE, SIZE), BG), generator=torch.Generator().manual_seed(5))
    assert len(build_gaussian_mle(config(camera)).localize(adu)) == 0


def crlb_at_fit(row, camera: Camera) -> np.ndarray:
    """√CRLB of x, y (nm) from physics.crlb at one localization's fitted values (7 px patch, the fit box)."""
    xyz = torch.tensor([[row.x_nm, row.y_nm, 0.0]], dtype=torch.float64)
    _, _, offset = split_positions(xyz, PX)
    theta = torch.cat([offset, torch.tensor([[row.photons, row.bg]], dtype=torch.float64)], 1)
    bounds = crlb(GaussianPSF(PX, 7, row.psf_sigma_nm), theta, camera.variance_photons,
                  params=("x", "y", "photons", "background"))
    return bounds[0, :2].numpy()


@pytest.mark.parametrize("fit_sigma", [False, True])
def test_reported_uncertainty_is_the_crlb_at_the_fit(fit_sigma):
    adu, xyz, frame = grid_movie("epfl2016", n_frames=1, max_offset_px=0.2)  # spots stay in their pixel
    cfg = config("epfl2016")
    table = build_gaussian_mle(cfg, fit_sigma=fit_sigma).localize(adu)
    pair(table, xyz, frame)
    if not fit_sigma:
        np.testing.assert_allclose(table.psf_sigma_nm, SIGMA, rtol=1e-6)
    expected = np.stack([crlb_at_fit(row, Camera(cfg.camera)) for row in table.itertuples()])
    # with σ free the bound is that of 5 parameters, equal to the 4-parameter one within 1e-5 by symmetry
    np.testing.assert_allclose(table[["sigma_x_nm", "sigma_y_nm"]].to_numpy(), expected, rtol=2e-3)


def test_analytic_jacobian_matches_autograd():
    theta = torch.tensor([[0.3, -0.7, 1500.0, 12.0, 1.1], [-1.2, 0.4, 300.0, 3.0, 0.8]], dtype=torch.float64)
    _, jac = integrated_gaussian(theta, 7)
    auto = torch.func.vmap(torch.func.jacfwd(lambda t: integrated_gaussian(t[None], 7)[0][0]))(theta)
    torch.testing.assert_close(jac, auto.permute(0, 3, 1, 2))


def test_spots_at_the_frame_edge_and_an_empty_frame():
    """Boxes move inwards at the edges: spots 0.6 px from the edge are found; spots centred within half a
    pixel of it (more off the sensor than on) are not reported."""
    cfg = config("ideal")
    xyz = torch.tensor([[60.0, 3000.0, 0.0], [2000.0, 60.0, 0.0], [6340.0, 6330.0, 0.0],
                        [30.0, 1000.0, 0.0], [4000.0, 6370.0, 0.0]], dtype=torch.float64)
    frame = torch.zeros(5, dtype=torch.int64)
    signal = render(GaussianPSF(PX, 15, SIGMA), xyz, torch.full((5,), PHOTONS, dtype=xyz.dtype), frame, 2, SIZE, SIZE)
    adu = Camera(cfg.camera)((signal + BG).float(), generator=torch.Generator().manual_seed(2))
    table = build_gaussian_mle(cfg).localize(adu)
    idx = pair(table, xyz[:3], frame[:3])
    assert np.hypot(*(table[["x_nm", "y_nm"]].to_numpy() - xyz[idx, :2].numpy()).T).max() < 25.0


def test_close_pairs_are_fitted_as_two_spots():
    """Pairs 150–400 nm apart (inside the 5×5 detection window, one candidate or two overlapping boxes)
    come out as two spots each, near the truth, and isolated spots stay single."""
    cfg = config("ideal")
    g = torch.Generator().manual_seed(3)
    centres = (torch.arange(SPACING // 2 + 2, SIZE - SPACING // 2, SPACING) + 0.5).double() * PX
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    first = torch.stack([xx.flatten(), yy.flatten()], 1).repeat(4, 1)
    angle = 2 * math.pi * torch.rand(len(first), generator=g, dtype=torch.float64)
    sep = 150 + 250 * torch.rand(len(first), generator=g, dtype=torch.float64)
    second = first + sep[:, None] * torch.stack([angle.cos(), angle.sin()], 1)
    frame = torch.arange(4).repeat_interleave(xx.numel())
    xy = torch.cat([first, second])
    xyz = torch.cat([xy, torch.zeros(len(xy), 1, dtype=xy.dtype)], 1)
    frames = torch.cat([frame, frame])
    signal = render(GaussianPSF(PX, 15, SIGMA), xyz, torch.full((len(xy),), PHOTONS, dtype=xy.dtype),
                    frames, 4, SIZE, SIZE)
    adu = Camera(cfg.camera)((signal + BG).float(), generator=g)
    table = build_gaussian_mle(cfg).localize(adu)
    d = np.hypot(table.x_nm.to_numpy()[:, None] - xyz[:, 0].numpy(), table.y_nm.to_numpy()[:, None] - xyz[:, 1].numpy())
    d[table.frame.to_numpy()[:, None] != frames.numpy()[None]] = np.inf
    nearest, err = d.argmin(axis=1), d.min(axis=1)
    assert len(set(nearest)) == len(nearest) >= 0.95 * len(xyz)
    assert np.sqrt((err**2).mean()) < 15.0
    single = build_gaussian_mle(cfg, max_spots=1).localize(adu)
    assert len(single) < 0.7 * len(xyz)  # one spot per pair without the split


def test_the_fitter_of_a_config_takes_its_pixel_size_psf_width_threshold_and_camera():
    cfg = SimulationConfig.model_validate({
        "frame": {"pixel_size_nm": 100.0}, "model": {"gaussian_mle_threshold": 4.0}, "camera": CAMERAS["epfl2016"],
        "psf": {"model": "gaussian", "gaussian": {"sigma_nm": 110.0}, "blur_sigma_px": [0.0, 0.4]}})
    fitter = build_gaussian_mle(cfg, box_px=9)
    assert (fitter.pixel_nm, fitter.threshold, fitter.box_px) == (100.0, 4.0, 9)
    assert fitter.sigma_px == pytest.approx(math.hypot(1.1, 0.2))  # σ with the mean blur in quadrature
    camera = Camera(cfg.camera)
    assert fitter.spot_fit.scale == pytest.approx(2.0 / camera.qe)  # EMCCD: F² = 2 per detected photon
    pupil = updated(cfg, {"psf.model": "pupil", "psf.blur_sigma_px": (0.0, 0.0)})
    assert psf_sigma_nm(pupil) == pytest.approx(0.21 * cfg.optics.wavelength_nm / cfg.optics.na)
