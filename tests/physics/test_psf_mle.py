"""The 3D fitter `psf-mle` on simulated isolated spots of an astigmatic Gaussian and of an astigmatic
pupil: unbiased in x, y, z, at the Cramér–Rao bound, with honest uncertainties; one-line errors; the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

import deepsmlm
from deepsmlm.assembly.fitters import build_psf_mle
from deepsmlm.cli import app
from deepsmlm.config import SimulationConfig, load_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.optics.factory import build_psf
from deepsmlm.optics.psf import render, split_positions
from deepsmlm.physics.camera import Camera
from deepsmlm.physics.crlb import crlb

PX, SIZE, SPACING, BOX = 100.0, 80, 16, 13
PHOTONS, BG = 3000.0, 30.0
Z_TRUE = 400.0  # truth z uniform in ±Z_TRUE, inside the configs' ±600 nm (a bounded fit is biased at its edges)


def astigmatic_gaussian() -> SimulationConfig:
    cfg = load_config("epfl2016_2d")
    return updated(cfg, {"psf.model": "gaussian", "psf.patch_px": 21, "psf.gaussian.astig_focus_offset_nm": 300.0,
                         "psf.gaussian.astig_depth_nm": 400.0, "emitters.z_range_nm": (-600.0, 600.0),
                         "frame.height": SIZE, "frame.width": SIZE})


def astigmatic_pupil() -> SimulationConfig:
    cfg = load_config("epfl2016_2d")
    return updated(cfg, {"psf.model": "pupil", "psf.patch_px": 21, "psf.zernike_rad": {6: 0.8},
                         "emitters.z_range_nm": (-600.0, 600.0), "frame.height": SIZE, "frame.width": SIZE})


def movie(cfg: SimulationConfig, n_frames: int, seed: int = 0):
    """Spots on a 16 px grid with random sub-pixel offsets and z, rendered by the config's exact PSF (no
    z-stack cache) through its camera: ADU frames, truth (E, 3) nm, frame index."""
    g = torch.Generator().manual_seed(seed)
    centres = (torch.arange(SPACING // 2, SIZE - SPACING // 2 + 1, SPACING) + 0.5).double() * PX
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    xy = torch.stack([xx.flatten(), yy.flatten()], 1).repeat(n_frames, 1)
    xy = xy + (torch.rand(xy.shape, generator=g, dtype=torch.float64) - 0.5) * PX
    z = (2 * torch.rand(len(xy), 1, generator=g, dtype=torch.float64) - 1) * Z_TRUE
    xyz = torch.cat([xy, z], 1).float()
    frame = torch.arange(n_frames).repeat_interleave(xx.numel())
    signal = render(build_psf(cfg, fast=False), xyz, torch.full((len(xy),), PHOTONS), frame, n_frames, SIZE, SIZE)
    return Camera(cfg.camera)(signal + BG, generator=g), xyz.double(), frame


def pair(table, xyz: torch.Tensor, frame: torch.Tensor) -> np.ndarray:
    """Index of the true spot nearest each localization (same frame), asserting one-to-one within 150 nm."""
    d = np.hypot(table.x_nm.to_numpy()[:, None] - xyz[:, 0].numpy(), table.y_nm.to_numpy()[:, None] - xyz[:, 1].numpy())
    d[table.frame.to_numpy()[:, None] != frame.numpy()[None]] = np.inf
    idx = d.argmin(axis=1)
    assert (d[np.arange(len(idx)), idx] < 150).all() and len(set(idx)) == len(idx) == len(xyz)
    return idx


def box_crlb(cfg: SimulationConfig, xyz: torch.Tensor) -> np.ndarray:
    """(E, 3) √CRLB of x, y, z (nm) at the truth: the exact PSF on the fit box, the camera's noise model."""
    psf = build_psf(updated(cfg, {"psf.patch_px": BOX}), fast=False)
    _, _, offset = split_positions(xyz.float(), PX)
    theta = torch.cat([offset, torch.full_like(offset[:, :2], PHOTONS)], 1)
    theta[:, 4] = BG
    return crlb(psf, theta, Camera(cfg.camera).variance_photons)[:, :3].double().numpy()


@pytest.mark.parametrize("make", [astigmatic_gaussian, astigmatic_pupil])
def test_fit_is_unbiased_at_the_crlb_and_reports_it(make, one_thread):
    cfg = make()
    adu, xyz, frame = movie(cfg, n_frames=12)  # 300 spots
    table = build_psf_mle(cfg).localize(adu)
    idx = pair(table, xyz, frame)
    err = table[["x_nm", "y_nm", "z_nm"]].to_numpy() - xyz[idx].numpy()
    bound = np.sqrt((box_crlb(cfg, xyz)[idx] ** 2).mean(axis=0))
    bias, rmse = err.mean(axis=0), np.sqrt((err**2).mean(axis=0))
    reported = table[["sigma_x_nm", "sigma_y_nm", "sigma_z_nm"]].to_numpy()
    normalised = np.sqrt(((err / reported) ** 2).mean(axis=0))
    print(f"{make.__name__}: sqrt(CRLB) {bound.round(1)} nm, bias {bias.round(2)}, RMSE / sqrt(CRLB) "
          f"{(rmse / bound).round(3)}, RMS(error / reported sigma) {normalised.round(3)}")
    assert (np.abs(bias) < 0.3 * bound).all()
    assert (rmse < 1.3 * bound).all()
    assert ((normalised > 0.8) & (normalised < 1.25)).all()  # the reported σ_x, σ_y, σ_z match the scatter
    assert table.photons.median() == pytest.approx(PHOTONS, rel=0.05)
    assert table.bg.median() == pytest.approx(BG, rel=0.05)


def test_2d_config_fits_in_focus(one_thread):
    cfg = updated(astigmatic_gaussian(), {"psf.gaussian.astig_focus_offset_nm": 0.0, "emitters.z_range_nm": (0, 0)})
    adu, xyz, frame = movie(updated(cfg, {}), n_frames=2)
    table = build_psf_mle(cfg).localize(adu)
    pair(table, xyz * torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), frame)
    assert (table.z_nm == 0).all() and table.sigma_z_nm.isna().all() and (table.sigma_x_nm < 10).all()


@pytest.mark.filterwarnings("ignore:.*zero-size array")
def test_empty_stack_and_wrong_psf_give_one_line_errors(tmp_path, runner):
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 32, 32), np.uint16))
    res = runner.invoke(app, ["localize", str(tmp_path / "empty.tif"), "--model", "psf-mle", "--config",
                              "epfl2016_2d", "-o", str(tmp_path / "out.csv")])
    assert res.exit_code != 0 and len(res.output.strip().splitlines()) == 1 and "empty.tif" in res.output
    with pytest.raises(UserInputError, match="psf-mle needs --config"):
        deepsmlm.load_model("psf-mle")
    # data of a 160 nm camera pixel under a config of 100 nm pixels: refused unless forced
    adu = np.asarray(movie(astigmatic_gaussian(), n_frames=1)[0])
    tifffile.imwrite(tmp_path / "px.tif", adu.astype(np.uint16), resolution=(1e7 / 160, 1e7 / 160),
                     resolutionunit="CENTIMETER")
    with pytest.raises(UserInputError, match="pixel size 160 nm"):
        deepsmlm.load_model("psf-mle", config=astigmatic_gaussian()).localize(tmp_path / "px.tif")


def test_localize_cli_writes_3d_localizations(tmp_path, runner, write_yaml, one_thread):
    cfg = astigmatic_gaussian()
    adu, xyz, frame = movie(cfg, n_frames=2, seed=3)
    tifffile.imwrite(tmp_path / "stack.tif", adu.numpy().round().astype(np.uint16))
    # --force: the data check's spot width is gaussian-mle's, which splits elongated astigmatic spots in two
    # (1.01 px median here against the 1.16 px this PSF has at best): a limit of the check, not of psf-mle
    res = runner.invoke(app, ["localize", str(tmp_path / "stack.tif"), "--model", "psf-mle", "--config",
                              str(write_yaml(cfg)), "-o", str(tmp_path / "out.csv"), "--pixel-size-nm", "100",
                              "--force"])
    assert res.exit_code == 0, res.output
    table = deepsmlm.read_localizations(tmp_path / "out.csv").table
    idx = pair(table, xyz, frame)
    assert np.abs(table.z_nm.to_numpy() - xyz[idx, 2].numpy()).max() < 150
