"""The measured-stack PSF (issue 20): bead z-stacks simulated with a pupil PSF at random sub-pixel positions
and axial offsets, aligned and averaged, give back that pupil PSF within 2 % per plane (noise-free and
noisy at high photon counts); a `psf.model: measured` config simulates, shows its PSF and CRLB, trains,
and psf-mle localizes its frames at the Cramér–Rao bound; bad files and configs are one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import deepsmlm
from deepsmlm.calibration.measured_stack import measured_psf_from_beads, write_measured_psf
from deepsmlm.cli import app
from deepsmlm.config import SimulationConfig, load_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.optics.cubic_stack import CubicZStackPSF
from deepsmlm.optics.factory import build_dye_psfs, build_psf, pupil_grid_for
from deepsmlm.optics.psf import split_positions
from deepsmlm.physics.camera import Camera
from deepsmlm.physics.crlb import crlb, crlb_vs_z

PX, STEP, Z_SCAN = 100.0, 20.0, 500.0  # bead scan: −500 … 500 nm every 20 nm
BG = 20.0  # photons/px around the beads
Z_EMITTERS = 400.0  # the measured config's emitters.z_range_nm: ±400, inside the trimmed scan


def pupil_config(patch_px: int = 21, em_gain: float = 300.0) -> SimulationConfig:
    """The EPFL 2016 microscope (NA 1.49, 660 nm, 100 nm pixels, EMCCD) with a scalar astigmatic pupil, its
    grid that of the bead scan's z range (whatever the emitters' range: the same PSF)."""
    cfg = updated(load_config("epfl2016_2d"), {
        "psf.model": "pupil", "psf.patch_px": patch_px, "psf.zernike_rad": {6: 0.8}, "camera.em_gain": em_gain,
        "emitters.z_range_nm": (-Z_SCAN, Z_SCAN)})
    return updated(cfg, {"psf.pupil_grid": pupil_grid_for(cfg).n})


def bead_scan(cfg: SimulationConfig, beads: int, photons: float, noisy: bool, seed: int = 0):
    """Crops (B, K, P, P) ADU of ``beads`` beads at random sub-pixel x, y (±½ px) and axial offsets (±30 nm,
    mean 0) scanned through z (noise-free: the expected ADU), the scan's z, the truth (B, 3) x, y px and z nm, and
    the expected background ADU."""
    g = torch.Generator().manual_seed(seed)
    z = torch.arange(-Z_SCAN, Z_SCAN + 1, STEP)
    xy = torch.rand(beads, 2, generator=g) - 0.5
    dz = (torch.rand(beads, generator=g) - 0.5) * 60
    dz -= dz.mean()
    offset = torch.zeros(beads, len(z), 3)
    offset[..., :2], offset[..., 2] = xy[:, None] * PX, z + dz[:, None]
    p = cfg.psf.patch_px
    with torch.no_grad():
        signal = build_psf(cfg, fast=False).patches(offset.reshape(-1, 3), torch.full((offset[..., 0].numel(),),
                                                                                      photons)).reshape(beads, -1, p, p)
    camera = Camera(cfg.camera)
    adu = camera(signal + BG, generator=g) if noisy else camera.expected_adu(signal + BG)
    return adu.numpy(), z.numpy(), torch.cat([xy, dz[:, None]], 1).numpy(), camera.expected_adu(torch.tensor(BG)).item()


def plane_errors(cfg: SimulationConfig, measured) -> np.ndarray:
    """Relative L2 error per plane of the measured stack against the pupil PSF, both scaled as unit-photon
    planes (the brightest sums to 1 over the crop)."""
    with torch.no_grad():
        truth = build_psf(cfg, fast=False).z_stack(torch.as_tensor(measured.z_nm, dtype=torch.float32))
    truth = truth.double().numpy() / crop_share(cfg)
    diff = (measured.stack - truth).reshape(len(truth), -1)
    return np.linalg.norm(diff, axis=1) / np.linalg.norm(truth.reshape(len(truth), -1), axis=1)


def alignment_errors(measured, truth: np.ndarray) -> tuple[float, float]:
    """Largest error of the beads' fitted x, y (px) and axial offsets (nm), the common shift removed."""
    rel = measured.offsets - truth
    rel -= rel.mean(axis=0)
    return float(np.abs(rel[:, :2]).max()), float(np.abs(rel[:, 2]).max())


@pytest.mark.parametrize("patch_px, background", [(21, "given"), (31, "border")])
def test_noise_free_beads_give_back_the_pupil_psf(patch_px, background, one_thread):
    cfg = pupil_config(patch_px)
    adu, z, truth, bg_adu = bead_scan(cfg, beads=6, photons=30000.0, noisy=False)
    measured = measured_psf_from_beads(adu, z, Camera(cfg.camera), PX,
                                       background_adu=bg_adu if background == "given" else None)
    err = plane_errors(cfg, measured)
    xy_err, z_err = alignment_errors(measured, truth)
    print(f"P {patch_px}, background {background}: relative L2 per plane median {np.median(err):.4f}, "
          f"max {err.max():.4f}; alignment error ≤ {xy_err:.4f} px, {z_err:.3f} nm; planes "
          f"{measured.z_nm[0]:g}…{measured.z_nm[-1]:g} nm")
    assert err.max() < 0.02
    assert xy_err < 0.005 and z_err < 0.5
    # planes every bead covers after its axial shift: the scan less the largest shift at each end
    assert -Z_SCAN < measured.z_nm[0] <= -Z_SCAN + 2 * STEP and Z_SCAN - 2 * STEP <= measured.z_nm[-1] < Z_SCAN
    assert measured.photons == pytest.approx(30000.0 * crop_share(cfg), rel=0.03)


def crop_share(cfg: SimulationConfig) -> float:
    """The share of a bead's light in the crop of its brightest plane (the unit of a measured stack)."""
    with torch.no_grad():
        return float(build_psf(cfg, fast=False).z_stack(torch.arange(-Z_SCAN, Z_SCAN + 1, STEP)).sum(dim=(1, 2)).max())


def test_noisy_high_photon_beads_give_back_the_pupil_psf(one_thread):
    cfg = pupil_config(em_gain=30.0)  # 0.6 ADU per photon: 500,000-photon beads stay below 65535 ADU
    adu, z, truth, bg_adu = bead_scan(cfg, beads=12, photons=5e5, noisy=True, seed=1)
    assert adu.max() < 65535
    measured = measured_psf_from_beads(adu, z, Camera(cfg.camera), PX, background_adu=bg_adu)
    err = plane_errors(cfg, measured)
    xy_err, z_err = alignment_errors(measured, truth)
    print(f"noisy: relative L2 per plane median {np.median(err):.4f}, max {err.max():.4f}; alignment error "
          f"≤ {xy_err:.4f} px, {z_err:.3f} nm")
    assert err.max() < 0.02 and xy_err < 0.01 and z_err < 1.0


def test_z_smoothing_trades_a_little_bias_for_less_noise(one_thread):
    cfg = pupil_config()
    camera = Camera(cfg.camera)
    adu, z, _, bg_adu = bead_scan(cfg, beads=6, photons=30000.0, noisy=False)
    bias = plane_errors(cfg, measured_psf_from_beads(adu, z, camera, PX, bg_adu, z_smoothing_nm=15.0))
    adu, z, _, bg_adu = bead_scan(cfg, beads=6, photons=30000.0, noisy=True, seed=2)  # the EPFL beads' photons
    raw, smooth = (np.median(plane_errors(cfg, measured_psf_from_beads(adu, z, camera, PX, bg_adu, z_smoothing_nm=s)))
                   for s in (0.0, 15.0))
    print(f"z smoothing σ 15 nm: noise-free error ≤ {bias.max():.4f}; 6 noisy beads of 30,000 photons: median "
          f"error {raw:.4f} unsmoothed, {smooth:.4f} smoothed")
    assert bias.max() < 0.01 and smooth < 0.75 * raw


@pytest.fixture(scope="module")
def measured_file(tmp_path_factory) -> Path:
    """psf.npz: the measured stack of 6 noise-free beads of the astigmatic pupil, background given."""
    cfg = pupil_config()
    adu, z, _, bg_adu = bead_scan(cfg, beads=6, photons=30000.0, noisy=False)
    out = tmp_path_factory.mktemp("measured") / "psf.npz"
    write_measured_psf(out, adu, z, Camera(cfg.camera), PX, background_adu=bg_adu)
    return out


def measured_yaml(folder: Path, write_yaml, **changes) -> Path:
    """A config beside ``folder``/psf.npz naming it by a relative path: the pupil config's microscope with
    psf.model measured, sparse emitters of 3000 photons on 30 photons/px, ±400 nm."""
    cfg = updated(pupil_config(), {"psf.model": "measured", "psf.measured": {"file": "psf.npz"},
                                   "psf.zernike_rad": {}, "psf.pupil_grid": None,
                                   "emitters.z_range_nm": (-Z_EMITTERS, Z_EMITTERS),
                                   "emitters.density_per_um2": 0.05, "emitters.blinking.enabled": False,
                                   "emitters.photons": {"distribution": "constant", "low": 3000.0},
                                   "background.photons_per_px": (30.0, 30.0), "frames": 120, **changes})
    path = write_yaml(cfg)
    return path.rename(folder / path.name)


def test_measured_config_simulates_and_psf_mle_fits_it_at_the_crlb(measured_file, write_yaml, runner, one_thread):
    path = measured_yaml(measured_file.parent, write_yaml)
    cfg = load_config(path)
    assert Path(cfg.psf.measured.file) == measured_file  # relative to the config's folder
    out = measured_file.parent / "movie"
    res = runner.invoke(app, ["simulate", str(path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    truth = isolated(deepsmlm.read_localizations(out / "ground_truth.csv").table, cfg)
    res = runner.invoke(app, ["localize", str(out / "frames.tif"), "--model", "psf-mle", "--config", str(path),
                              "-o", str(out / "fits.csv")])
    assert res.exit_code == 0, res.output
    table = deepsmlm.read_localizations(out / "fits.csv").table
    pairs = nearest(table, truth)
    err = table.loc[pairs.index, "z_nm"].to_numpy() - pairs["z_nm"].to_numpy()
    bound = box_crlb_z(cfg, pairs)
    rmse, rms_bound = float(np.sqrt(np.mean(err**2))), float(np.sqrt(np.mean(bound**2)))
    print(f"measured PSF: {len(pairs)} of {len(truth)} isolated emitters found, z RMSE {rmse:.1f} nm, "
          f"√CRLB {rms_bound:.1f} nm, bias {err.mean():.1f} nm")
    assert len(pairs) >= 0.95 * len(truth) > 80
    assert rmse < 1.3 * rms_bound and abs(err.mean()) < 0.3 * rms_bound


def isolated(truth: pd.DataFrame, cfg: SimulationConfig, gap_nm: float = 1500.0) -> pd.DataFrame:
    """The sparse emitters: at least ``gap_nm`` from any other in their frame, and ``gap_nm`` / 2 inside it."""
    width, height = cfg.frame.width * PX, cfg.frame.height * PX
    keep = []
    for _, same in truth.groupby("frame"):
        xy = same[["x_nm", "y_nm"]].to_numpy()
        d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1)) + np.eye(len(xy)) * gap_nm
        inside = (np.minimum(xy, [width, height] - xy) > gap_nm / 2).all(axis=1)
        keep.append(same[(d >= gap_nm).all(axis=1) & inside])
    return pd.concat(keep)


def nearest(table: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The true emitter nearest each localization of the same frame within 150 nm, indexed like the
    localizations."""
    rows = {}
    for i, loc in table.iterrows():
        same = truth[truth.frame == loc.frame]
        d = np.hypot(same.x_nm - loc.x_nm, same.y_nm - loc.y_nm)
        if len(d) and d.min() < 150:
            rows[i] = same.loc[d.idxmin()]
    return pd.DataFrame.from_dict(rows, orient="index")


def box_crlb_z(cfg: SimulationConfig, pairs: pd.DataFrame) -> np.ndarray:
    """√CRLB of z (nm) of each true emitter: the measured PSF on psf-mle's 13-px box, the camera's noise."""
    xyz = torch.tensor(pairs[["x_nm", "y_nm", "z_nm"]].to_numpy(np.float64), dtype=torch.float32)
    _, _, offset = split_positions(xyz, PX)
    theta = torch.cat([offset, torch.full((len(xyz), 2), 3000.0)], 1)
    theta[:, 4] = 30.0
    psf = build_psf(updated(cfg, {"psf.patch_px": 13}))
    return crlb(psf, theta, Camera(cfg.camera).variance_photons)[:, 2].double().numpy()


def test_psf_crlb_and_train_take_a_measured_config(measured_file, write_yaml, runner, tmp_path, one_thread):
    path = measured_yaml(measured_file.parent, write_yaml, **{"emitters.density_per_um2": 1.0})
    res = runner.invoke(app, ["psf", str(path), "-o", str(tmp_path / "psf.png"), "--planes", "9"])
    assert res.exit_code == 0, res.output
    shown = deepsmlm.psf_stack(path, planes=9)
    with np.load(measured_file) as f:  # −400, −300, … 400 nm are planes of the file: shown as they are
        planes = f["stack"][np.searchsorted(f["z_nm"], shown.z_nm)]
    assert np.abs(shown.stack - planes).max() < 1e-5 * planes.max()
    # the CRLB of the pupil's own z-stack (the same lateral model: a Fourier-shifted 21-px patch, which puts
    # σ_x 2 % below the exact pupil's where the spot is long in x), its photons counted in the crop of the
    # sharpest plane (4 % of the light falls outside)
    measured = deepsmlm.crlb(path, photons=3000.0, background=30.0, planes=5)
    cfg = updated(pupil_config(), {"psf.cache_z_step_nm": STEP})
    pupil = crlb_vs_z(CubicZStackPSF.of(build_psf(cfg)), torch.tensor(measured["z_nm"]), 3000.0 / crop_share(cfg),
                      30.0, variance=Camera(cfg.camera).fisher_variance_photons)
    for axis in "xyz":
        np.testing.assert_allclose(measured[f"crlb_{axis}_nm"], pupil[axis].detach().numpy(), rtol=0.003)
    tiny = updated(load_config(path), {"frame.height": 16, "frame.width": 16, "psf.patch_px": 9,
                                       "model.channels": 4, "model.head_channels": 2, "training.batch_size": 2,
                                       "training.validation_frames": 2, "training.validate_every": 2})
    res = runner.invoke(app, ["train", str(write_yaml(tiny, "tiny.yaml")), "-o", str(tmp_path / "model"),
                              "--steps", "2"])
    assert res.exit_code == 0, res.output


def bad_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_bad_measured_psfs_are_one_line_errors(measured_file, write_yaml, tmp_path, runner, one_line):
    with np.load(measured_file) as f:
        good = {k: f[k] for k in ("stack", "z_nm", "pixel_nm")}
    uneven = good["z_nm"].copy()
    uneven[5] += 5.0
    cases = {
        "missing.npz": ("measured PSF file not found", None),
        "flat.npz": ("planes with P odd", {**good, "stack": good["stack"][0]}),
        "uneven.npz": ("equal steps", {**good, "z_nm": uneven}),
        "pixel.npz": ("pixel is 160 nm", {**good, "pixel_nm": np.float64(160.0)}),
        "counts.npz": ("unit-photon", {**good, "stack": good["stack"] * 3e4}),
        "keys.npz": ("needs arrays stack, z_nm and pixel_nm", {"stack": good["stack"]}),
    }
    for name, (message, arrays) in cases.items():
        if arrays is not None:
            bad_npz(tmp_path / name, **arrays)
        cfg = load_config(measured_yaml(tmp_path, write_yaml, **{"psf.measured.file": name}))
        with pytest.raises(UserInputError, match=message) as err:
            build_psf(cfg)
        assert name in str(err.value) and "\n" not in str(err.value)
    cfg = load_config(measured_yaml(measured_file.parent, write_yaml))
    for changes, message in [({"emitters.z_range_nm": (-600.0, 400.0)}, "do not cover emitters.z_range_nm"),
                             ({"psf.patch_px": 25}, "smaller than psf.patch_px 25")]:
        with pytest.raises(UserInputError, match=message):
            build_psf(updated(cfg, changes))
    dyes = {"emitters.dyes": [{"wavelength_nm": 600.0}, {"wavelength_nm": 680.0}]}
    with pytest.raises(UserInputError, match="one colour"):
        build_dye_psfs(updated(cfg, dyes))
    with pytest.raises(UserInputError, match="psf.model: measured needs psf.measured.file"):
        updated(pupil_config(), {"psf.model": "measured"})
    res = runner.invoke(app, ["psf", str(measured_yaml(tmp_path, write_yaml, **{"psf.measured.file": "no.npz"})),
                              "-o", str(tmp_path / "psf.png")])
    assert res.exit_code != 0 and "no.npz: measured PSF file not found" in one_line(res.output)
