"""Command-line contract: simulate / psf / crlb outputs, reproducibility, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from deepsmlm.cli import app
from deepsmlm.commands.simulate import apply_overrides
from deepsmlm.config import load_config, updated

THUNDERSTORM_GT_HEADER = '"id","frame","x [nm]","y [nm]","z [nm]","intensity [photon]","offset [photon]"'
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def invoke(runner, *args: str):
    return runner.invoke(app, [str(a) for a in args])


def simulate(runner, config, out: Path, *extra: str):
    res = invoke(runner, "simulate", config, "-o", out, *extra)
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    return res


def ground_truth(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "ground_truth.csv")


def per_frame_counts(gt: pd.DataFrame, n_frames: int) -> np.ndarray:
    """Emitters per frame, frames 1..n_frames (missing frames count 0)."""
    return gt["frame"].value_counts().reindex(range(1, n_frames + 1), fill_value=0).to_numpy()


def assert_png(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) > 50
    assert float(np.std(img)) > 0


# --- simulate: outputs --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tubes_runs(tmp_path_factory):
    """epfl2013_bundled_tubes, 4 frames: seed 3 twice (two folders) and seed 4 once."""
    from typer.testing import CliRunner

    runner = CliRunner()
    base = tmp_path_factory.mktemp("tubes")
    runs = {}
    for key, seed in (("a", 3), ("b", 3), ("c", 4)):
        simulate(runner, "epfl2013_bundled_tubes", base / key, "--frames", "4", "--seed", str(seed))
        runs[key] = base / key
    return runs


def test_simulate_writes_the_three_outputs(tubes_runs):
    out = tubes_runs["a"]
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "frames.tif", "ground_truth.csv"]


def test_simulate_frames_are_uint16_adu_stack(tubes_runs):
    stack = tifffile.imread(tubes_runs["a"] / "frames.tif")
    assert stack.dtype == np.uint16
    assert stack.shape == (4, 64, 64)
    # ADU above the 100 ADU baseline on average (background ~10 photons at 4 ADU/photon + emitters)
    assert stack.mean() > 100.0


def test_simulate_ground_truth_is_thunderstorm_csv(tubes_runs):
    out = tubes_runs["a"]
    header, first_row = (out / "ground_truth.csv").read_text().splitlines()[:2]
    assert header == THUNDERSTORM_GT_HEADER
    assert '"' not in first_row  # values are plain numbers, only the header is quoted
    gt = ground_truth(out)
    assert len(gt) > 0
    assert gt["id"].tolist() == list(range(1, len(gt) + 1))
    assert gt["frame"].min() >= 1 and gt["frame"].max() <= 4
    field_nm = 64 * 100.0
    assert gt["x [nm]"].between(0.0, field_nm).all()
    assert gt["y [nm]"].between(0.0, field_nm).all()
    assert (gt["z [nm]"] == 0.0).all()  # 2D preset: z range (0, 0)
    assert (gt["intensity [photon]"] > 0).all()
    assert gt["offset [photon]"].between(6.0, 16.0).all()  # background range of the preset


def test_simulate_config_yaml_is_the_resolved_config(tubes_runs):
    cfg = load_config(tubes_runs["a"] / "config.yaml")
    assert cfg.frames == 4 and cfg.seed == 3
    expected = apply_overrides(load_config("epfl2013_bundled_tubes"), frames=4, seed=3, density=None, emitters=None)
    assert cfg == expected


def test_simulate_same_seed_is_byte_identical(tubes_runs):
    a, b = tubes_runs["a"], tubes_runs["b"]
    for name in ("frames.tif", "ground_truth.csv", "config.yaml"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_simulate_other_seed_differs(tubes_runs):
    a, c = tubes_runs["a"], tubes_runs["c"]
    assert not np.array_equal(tifffile.imread(a / "frames.tif"), tifffile.imread(c / "frames.tif"))
    assert (a / "ground_truth.csv").read_bytes() != (c / "ground_truth.csv").read_bytes()


def test_simulate_frames_option_defaults_to_config(runner, uniform_gaussian_config, tmp_path):
    simulate(runner, uniform_gaussian_config, tmp_path / "out", "--seed", "1")
    assert tifffile.imread(tmp_path / "out" / "frames.tif").shape == (5, 32, 32)  # frames: 5 in the file


# --- simulate: emitter count and density -------------------------------------------------------

def test_simulate_emitters_gives_exact_count_per_frame(runner, uniform_gaussian_config, tmp_path):
    out = tmp_path / "five"
    simulate(runner, uniform_gaussian_config, out, "--frames", "6", "--seed", "2", "--emitters", "5")
    gt = ground_truth(out)
    assert per_frame_counts(gt, 6).tolist() == [5] * 6
    assert len(gt) == 30
    assert gt["x [nm]"].between(0.0, 3200.0).all() and gt["y [nm]"].between(0.0, 3200.0).all()
    assert (gt["intensity [photon]"] == 1000.0).all()  # constant photons
    cfg = load_config(out / "config.yaml")
    assert cfg.emitters.count == (5, 5) and cfg.emitters.density_per_um2 is None


def test_simulate_density_sets_mean_count(runner, uniform_gaussian_config, tmp_path):
    area_um2 = 3.2 * 3.2
    means = {}
    for density in (2.0, 8.0):
        out = tmp_path / f"d{density:g}"
        simulate(runner, uniform_gaussian_config, out, "--frames", "40", "--seed", "5", "--density", str(density))
        means[density] = per_frame_counts(ground_truth(out), 40).mean()
        assert means[density] == pytest.approx(density * area_um2, rel=0.12)
        assert load_config(out / "config.yaml").emitters.density_per_um2 == density
    assert means[8.0] > 2.5 * means[2.0]


def test_simulate_zero_emitters_gives_empty_ground_truth(runner, uniform_gaussian_config, tmp_path):
    out = tmp_path / "none"
    simulate(runner, uniform_gaussian_config, out, "--frames", "2", "--emitters", "0")
    text = (out / "ground_truth.csv").read_text().splitlines()
    assert text == [THUNDERSTORM_GT_HEADER]


def test_simulate_density_and_emitters_together_exit_2(runner, uniform_gaussian_config, tmp_path, one_line):
    out = tmp_path / "both"
    res = invoke(runner, "simulate", uniform_gaussian_config, "-o", out, "--density", "1", "--emitters", "3")
    assert res.exit_code == 2
    line = one_line(res.stderr)
    assert "--density" in line and "--emitters" in line
    assert not (out / "frames.tif").exists()


# --- simulate: camera ---------------------------------------------------------------------------

def test_simulate_background_mean_adu_matches_emccd_camera(runner, write_yaml, tmp_path):
    cfg = load_config("epfl2016_2d")
    cam = cfg.camera
    assert cam.type == "emccd"
    assert cam.qe * cam.em_gain / cam.e_per_adu == pytest.approx(6.0)  # ADU per photon
    assert cam.baseline_adu == 100.0
    cfg = updated(cfg, {"psf.model": "gaussian",  # no emitters: the PSF does not matter, keep it fast
                        "background.photons_per_px": (20.0, 20.0), "background.nonuniform_amplitude": 0.0})
    path = write_yaml(cfg, "emccd_bg20.yaml")
    out = tmp_path / "emccd"
    simulate(runner, path, out, "--frames", "4", "--seed", "0", "--emitters", "0")
    stack = tifffile.imread(out / "frames.tif").astype(np.float64)
    assert stack.shape == (4, 64, 64)
    assert stack.mean() == pytest.approx(100.0 + 6.0 * 20.0, rel=0.02)
    # EMCCD excess noise: var = F² (G/e_per_adu)² QE λ + (read/e_per_adu)², F² = 2
    g = cam.em_gain / cam.e_per_adu
    var = 2.0 * g**2 * cam.qe * 20.0 + (cam.read_noise_e / cam.e_per_adu) ** 2
    assert stack.var() == pytest.approx(var, rel=0.1)
    gt = ground_truth(out)
    assert len(gt) == 0


# --- simulate: errors ---------------------------------------------------------------------------

def test_simulate_unknown_config_key_exits_2_naming_key_and_file(runner, write_yaml, tmp_path, one_line):
    path = write_yaml("psf: {model: gaussian, bogus: 1}\n", "typo.yaml")
    res = invoke(runner, "simulate", path, "-o", tmp_path / "out")
    assert res.exit_code == 2
    line = one_line(res.stderr)
    assert "psf.bogus" in line and str(path) in line
    assert not (tmp_path / "out").exists()


def test_simulate_missing_config_exits_2(runner, tmp_path, one_line):
    path = tmp_path / "nope.yaml"
    res = invoke(runner, "simulate", path, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert str(path) in one_line(res.stderr)


def test_simulate_unknown_preset_exits_2_listing_presets(runner, tmp_path, one_line):
    res = invoke(runner, "simulate", "epfl2099", "-o", tmp_path / "out")
    assert res.exit_code == 2
    line = one_line(res.stderr)
    assert "epfl2099" in line and "epfl2013_bundled_tubes" in line


def test_error_message_keeps_square_brackets_of_a_path(runner, tmp_path, one_line):
    """File names are printed verbatim (not eaten as rich markup)."""
    path = tmp_path / "run[v2].yaml"
    res = invoke(runner, "simulate", path, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert str(path) in one_line(res.stderr)


def test_binary_config_exits_2(runner, tubes_runs, tmp_path, one_line):
    """Arguments swapped: a TIFF stack given as CONFIG is bad input, not a traceback."""
    stack = tubes_runs["a"] / "frames.tif"
    res = invoke(runner, "simulate", stack, "-o", tmp_path / "out")
    assert res.exit_code == 2, res.exception
    assert str(stack) in one_line(res.stderr)


def test_subprocess_bad_config_exits_2_with_one_stderr_line(write_yaml, tmp_path, one_line):
    path = write_yaml("emitters:\n  photons: {distribution: gamma, bogus_key: 3}\n", "typo.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "deepsmlm.cli", "simulate", str(path), "-o", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "40"},
    )
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)  # one line even when the terminal is narrow
    assert "emitters.photons.bogus_key" in line and str(path) in line
    assert proc.stdout == ""


def test_subprocess_simulate_succeeds_quietly(tmp_path):
    out = tmp_path / "sub"
    proc = subprocess.run(
        [sys.executable, "-m", "deepsmlm.cli", "simulate", "epfl2013_bundled_tubes", "-o", str(out),
         "--frames", "2", "--seed", "3"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert tifffile.imread(out / "frames.tif").shape == (2, 64, 64)


# --- psf ----------------------------------------------------------------------------------------

def _tetrapod_mask_present() -> bool:
    from deepsmlm.optics.masks import shared_data_root

    root = shared_data_root()
    return root is not None and (root / "deepstorm3d_tetrapod" / "mask_tetrapod_printed.mat").is_file()


def test_psf_tetrapod_writes_png(runner, tmp_path):
    if not _tetrapod_mask_present():
        pytest.skip("shared reference data (Tetrapod mask) not present")
    out = tmp_path / "x.png"
    res = invoke(runner, "psf", "tetrapod_paper", "-o", out, "--planes", "6")
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert_png(out)


def test_psf_2d_pupil_writes_png(runner, tmp_path):
    out = tmp_path / "psf2d.png"
    res = invoke(runner, "psf", "epfl2016_2d", "-o", out, "--planes", "4")
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert_png(out)


# --- crlb ---------------------------------------------------------------------------------------

CRLB_KEYS = ("z_nm", "crlb_x_nm", "crlb_y_nm", "crlb_z_nm")
MEAN_KEYS = ("mean_crlb_x_nm", "mean_crlb_y_nm", "mean_crlb_z_nm")


def _crlb(runner, config, tmp_path, planes: int) -> dict:
    out = tmp_path / "out.json"
    res = invoke(runner, "crlb", config, "--planes", str(planes), "--json", out)
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert_png(out.with_suffix(".png"))
    return json.loads(out.read_text())


def test_crlb_pupil_2d_json_and_plot(runner, tmp_path):
    """Four planes (z = ±250, ±750 nm) avoid the focal plane, where z is not identifiable."""
    fig = _crlb(runner, "epfl2016_2d", tmp_path, planes=4)
    for key in CRLB_KEYS:
        assert len(fig[key]) == 4, key
    assert fig["z_nm"] == pytest.approx([-750.0, -250.0, 250.0, 750.0])
    for key in CRLB_KEYS[1:]:
        assert all(math.isfinite(v) and v > 0 for v in fig[key]), (key, fig[key])
    for key in MEAN_KEYS:
        assert fig[key] == pytest.approx(np.mean(fig[key.replace("mean_", "")]))
    # defocus without aberration is symmetric: the bounds at ±z agree
    for key in CRLB_KEYS[1:]:
        assert fig[key][0] == pytest.approx(fig[key][3], rel=0.02)
        assert fig[key][1] == pytest.approx(fig[key][2], rel=0.02)
    # lateral precision is best near focus
    assert fig["crlb_x_nm"][1] < fig["crlb_x_nm"][0]


def test_crlb_pupil_2d_with_the_focal_plane(runner, tmp_path):
    """--planes 5 samples z = 0, where ∂μ/∂z = 0: the z bound is infinite there, x and y stay finite."""
    fig = _crlb(runner, "epfl2016_2d", tmp_path, planes=5)
    for key in CRLB_KEYS + MEAN_KEYS:
        assert key in fig, key
    for key in CRLB_KEYS:
        assert len(fig[key]) == 5, key
    for key in ("crlb_x_nm", "crlb_y_nm"):
        assert all(math.isfinite(v) and v > 0 for v in fig[key]), (key, fig[key])
    z = fig["crlb_z_nm"]
    assert all(v > 0 and not math.isnan(v) for v in z)
    assert all(math.isfinite(v) for k, v in enumerate(z) if k != 2)


def test_crlb_2d_gaussian_has_no_z(runner, tmp_path):
    fig = _crlb(runner, "epfl2013_bundled_tubes", tmp_path, planes=5)
    assert "crlb_z_nm" not in fig and "mean_crlb_z_nm" not in fig
    assert len(fig["z_nm"]) == 5
    for key in ("crlb_x_nm", "crlb_y_nm"):
        vals = fig[key]
        assert len(vals) == 5 and all(math.isfinite(v) and v > 0 for v in vals)
        assert max(vals) == pytest.approx(min(vals), rel=1e-4)  # the Gaussian does not change with z
    assert fig["crlb_x_nm"][0] == pytest.approx(fig["crlb_y_nm"][0], rel=1e-4)
    assert fig["photons"] == pytest.approx(750.0) and fig["background_per_px"] == pytest.approx(11.0)


def test_the_api_gives_what_psf_and_crlb_write(runner, tmp_path):
    """`deepsmlm.crlb` and `deepsmlm.psf_stack` are what the commands write (the commands only add files)."""
    import tifffile

    import deepsmlm

    assert deepsmlm.crlb("epfl2016_2d", planes=4) == _crlb(runner, "epfl2016_2d", tmp_path, planes=4)
    res = invoke(runner, "psf", "epfl2016_2d", "-o", tmp_path / "psf.png", "--planes", "4")
    assert res.exit_code == 0, (res.stderr, res.exception)
    psf = deepsmlm.psf_stack("epfl2016_2d", planes=4)
    assert psf.z_nm == pytest.approx([-750.0, -250.0, 250.0, 750.0]) and psf.blur_px == 0.0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "psf.tif"), psf.stack)
