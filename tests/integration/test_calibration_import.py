"""`deepsmlm calibrate import`: a Picasso 3D calibration written by the format's rules from known width curves
(our parametric astigmatic Gaussian, fitted as Picasso does: numpy.polyfit of degree 6 in the stage position)
becomes a Gaussian PSF whose widths are those curves; psf-mle recovers z at the CRLB on frames simulated with
it; bad files are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

import deepsmlm
from deepsmlm.assembly.fitters import build_psf_mle
from deepsmlm.cli import app
from deepsmlm.config import SimulationConfig, updated
from deepsmlm.errors import UserInputError
from deepsmlm.optics.factory import build_psf
from tests.physics.test_psf_mle import astigmatic_gaussian, box_crlb, movie, pair

SIGMA0, FOCUS_OFFSET, DEPTH = 93.0, 300.0, 400.0  # the known curves: astigmatic_gaussian()'s
MAG, STEP, FRAMES = 0.8, 10.0, 151  # a scan of ±750 nm stage = ±600 nm of z


def known_widths_nm(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """σx, σy (nm) of the parametric astigmatic Gaussian at z (nm)."""
    return (SIGMA0 * np.sqrt(1 + ((z - FOCUS_OFFSET) / DEPTH) ** 2),
            SIGMA0 * np.sqrt(1 + ((z + FOCUS_OFFSET) / DEPTH) ** 2))


def picasso_file(path, fit: str = "lq", pixel_nm: float = 100.0, **changes):
    """A Picasso 3D calibration of the known curves: widths (camera px; a sampled Gaussian's for LQ, an
    integrated one's for MLE) per frame of a stage scan s_k = −(k·step − (frames − 1)·step/2), fitted by a
    degree-6 polynomial in s (highest power first); Picasso's z = magnification factor · s."""
    s = -(np.arange(FRAMES) * STEP - (FRAMES - 1) * STEP / 2)
    data = {"Number of frames": FRAMES, "Step size in nm": STEP, "Magnification factor": MAG, "Frame bounds": (0, 150)}
    for key, width in zip(("X Coefficients", "Y Coefficients"), known_widths_nm(MAG * s)):
        width_px = width / pixel_nm
        width_px = np.sqrt(width_px**2 + 1 / 12) if fit == "lq" else width_px
        data[key] = [float(a) for a in np.polyfit(s, width_px, 6)]
    data.update(changes)
    path.write_text(yaml.dump({k: v for k, v in data.items() if v is not None}))  # yaml.dump, as Picasso writes
    return path


@pytest.mark.parametrize("fit", ["lq", "mle"])
def test_imported_widths_are_the_known_curves(tmp_path, fit):
    r = deepsmlm.import_calibration(picasso_file(tmp_path / "cal.yaml", fit), astigmatic_gaussian(),
                                    tmp_path / "out.yaml", picasso_fit=fit)
    cfg = deepsmlm.load_config(tmp_path / "out.yaml")
    assert cfg == r.config and cfg.psf.model == "gaussian" and cfg.psf.encodes_z()
    assert cfg.emitters.z_range_nm == pytest.approx((-MAG * 750, MAG * 750))
    z = torch.linspace(*cfg.emitters.z_range_nm, 121)
    sx, sy = build_psf(cfg).sigmas_nm(z)
    kx, ky = known_widths_nm(z.double().numpy())
    worst = max(np.abs(sx.numpy() / kx - 1).max(), np.abs(sy.numpy() / ky - 1).max())
    print(f"{fit}: largest width error {worst:.3%} over z ±{MAG * 750:.0f} nm")
    assert worst < 0.01
    assert cfg.psf.gaussian.sigma_nm == pytest.approx(SIGMA0 * np.hypot(1, FOCUS_OFFSET / DEPTH), rel=0.01)


def test_psf_mle_recovers_z_at_the_crlb_with_the_imported_config(tmp_path, one_thread):
    cfg = deepsmlm.import_calibration(picasso_file(tmp_path / "cal.yaml"), astigmatic_gaussian()).config
    adu, xyz, frame = movie(cfg, n_frames=6)  # 150 spots, z in ±400 nm
    table = build_psf_mle(cfg).localize(adu)
    idx = pair(table, xyz, frame)
    err = table.z_nm.to_numpy() - xyz[idx, 2].numpy()
    bound = np.sqrt((box_crlb(cfg, xyz)[idx, 2] ** 2).mean())
    rmse = np.sqrt((err**2).mean())
    print(f"imported Picasso calibration: z RMSE {rmse:.1f} nm, √CRLB {bound:.1f} nm, bias {err.mean():.1f} nm")
    assert rmse < 1.3 * bound and abs(err.mean()) < 0.3 * bound
    bounds = deepsmlm.crlb(cfg, planes=3)  # the CRLB command sees an axial PSF
    assert 0 < bounds["mean_crlb_z_nm"] < 100


def test_older_file_needs_the_magnification_factor(tmp_path, runner, one_line):
    old = picasso_file(tmp_path / "old.yaml", **{"Magnification factor": None, "Number of frames": None,
                                                  "Step size in nm": None, "Frame bounds": None})
    res = runner.invoke(app, ["calibrate", "import", str(old), "--config", "epfl2016_2d", "-o",
                              str(tmp_path / "o.yaml")])
    assert res.exit_code == 2 and "Magnification factor" in one_line(res.output) and "old.yaml" in res.output
    cfg = deepsmlm.import_calibration(old, "epfl2016_2d", magnification=MAG).config
    assert cfg.emitters.z_range_nm == pytest.approx((-MAG * 1000, MAG * 1000))  # no scan: Picasso's fit bounds


def test_cli_prints_the_pixel_size_and_writes_a_loadable_config(tmp_path, runner):
    res = runner.invoke(app, ["calibrate", "import", str(picasso_file(tmp_path / "cal.yaml")), "--config",
                              "epfl2016_2d", "-o", str(tmp_path / "out.yaml")])
    assert res.exit_code == 0, res.output
    assert "camera pixels of 100 nm" in res.output and "-600 … 600 nm" in res.output
    assert deepsmlm.load_config(tmp_path / "out.yaml").psf.gaussian.polynomial
    rerun = runner.invoke(app, ["calibrate", "import", str(tmp_path / "cal.yaml"), "--config", "epfl2016_2d", "-o",
                                str(tmp_path / "out.yaml")])
    assert rerun.exit_code == 0, rerun.output  # its own earlier output is replaced


@pytest.mark.parametrize("content, needle", [
    ("frame: {height: 32}\npsf: {model: gaussian}\n", "a deepsmlm config (no 'X Coefficients' key)"),
    ("X Coefficients: [1.0, 2.0]\n", "no 'Y Coefficients' key"),
    ("X Coefficients: [1.0, abc]\nY Coefficients: [1.0]\nMagnification factor: 1\n", "'X Coefficients' is 'abc'"),
    ("X Coefficients: 3\nY Coefficients: [1.0]\nMagnification factor: 1\n", "'X Coefficients' is 3, not a list"),
    ("X Coefficients: [1.0]\nY Coefficients: [1.0]\nMagnification factor: high\n", "'Magnification factor' is"),
    ("X Coefficients: [1.0]\nY Coefficients: [1.0]\nMagnification factor: 1\nStep size in nm: 10\n",
     "'Number of frames' None"),
    ("X Coefficients: [-1.0]\nY Coefficients: [1.0]\nMagnification factor: 1\n", "'X Coefficients' gives a width"),
    ("- just\n- a list\n", "not a Picasso 3D calibration"),
    (b"\x89HDF\r\n\x1a\n\x00\x00", "HDF5 file (a uiPSF .h5?)"),
    (b"MATLAB 5.0 MAT-file, Platform: GLNXA64", "SMAP 3dcal.mat"),
    (b"\xff\xfe\x00binary", "not a YAML text file"),
])
def test_bad_files_are_one_line_errors(tmp_path, runner, one_line, content, needle):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    res = runner.invoke(app, ["calibrate", "import", str(bad), "--config", "epfl2016_2d", "-o",
                              str(tmp_path / "o.yaml")])
    line = one_line(res.output)
    assert res.exit_code == 2 and "bad.yaml" in line and needle in line, line
    assert not (tmp_path / "o.yaml").exists()


def test_outputs_and_options_are_checked_first(tmp_path, runner, one_line):
    cal = picasso_file(tmp_path / "cal.yaml")
    (tmp_path / "mine.yaml").write_text("precious: true\n")
    for args, needle in ((["-o", str(tmp_path / "mine.yaml")], "was not written by"),
                         (["-o", str(cal)], "is the input FILE"),
                         (["-o", str(tmp_path / "o.yaml"), "--picasso-fit", "fast"], "--picasso-fit fast"),
                         (["-o", str(tmp_path / "o.yaml"), "--magnification-factor", "-1"], "--magnification")):
        res = runner.invoke(app, ["calibrate", "import", str(cal), "--config", "epfl2016_2d", *args])
        assert res.exit_code == 2 and needle in one_line(res.output), res.output
    assert (tmp_path / "mine.yaml").read_text() == "precious: true\n"


def test_config_checks_polynomial_widths():
    cfg = astigmatic_gaussian()
    with pytest.raises(UserInputError, match="<= 0 at z = "):  # σx = 100 + 0.2·z: zero at z = −500 nm
        updated(cfg, {"psf.gaussian.astig_focus_offset_nm": 0.0, "psf.gaussian.sigma_x_poly_nm": (0.2, 100.0),
                      "psf.gaussian.sigma_y_poly_nm": (120.0,)})
    with pytest.raises(UserInputError, match="set both or neither"):
        updated(cfg, {"psf.gaussian.astig_focus_offset_nm": 0.0, "psf.gaussian.sigma_x_poly_nm": (120.0,)})
    with pytest.raises(UserInputError, match="replace astig_focus_offset_nm"):
        updated(cfg, {"psf.gaussian.sigma_x_poly_nm": (120.0,), "psf.gaussian.sigma_y_poly_nm": (120.0,)})
    flat = updated(cfg, {"psf.gaussian.astig_focus_offset_nm": 0.0, "psf.gaussian.sigma_x_poly_nm": (120.0,),
                         "psf.gaussian.sigma_y_poly_nm": (0.1, 120.0)})
    assert isinstance(flat, SimulationConfig) and flat.psf.gaussian.focus_sigma_nm((-600, 600)) == pytest.approx(
        np.sqrt(120.0 * 60.0))
