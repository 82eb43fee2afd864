"""Camera calibration (issue 20): photon-transfer gain, offset and read noise recovered from stacks our own
camera model simulates with known settings; sCMOS per-pixel maps; streaming; one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from deepsmlm.api.camera_calibration import calibrate_camera
from deepsmlm.calibration import camera as calibration
from deepsmlm.config import CameraConfig, load_config
from deepsmlm.errors import UserInputError
from deepsmlm.io.images import array_stack
from deepsmlm.optics.masks import shared_data_root
from deepsmlm.physics.camera import Camera

# The EMCCD of the shared EPFL 2016 data: 300/45 = 6.667 ADU/e⁻, 6 ADU/photon, read noise 74.4 e⁻ = 1.653 ADU.
EPFL = dict(type="emccd", baseline_adu=100.0, e_per_adu=45.0, em_gain=300.0, qe=0.9, read_noise_e=74.4)
EPFL_GAIN = 300.0 / 45.0


def _frames(cam: Camera, photons: float | torch.Tensor, n: int, seed: int, shape=(32, 32)) -> np.ndarray:
    """``n`` uint16 frames of ``photons`` per pixel (a scalar, an (H, W) map or (n, H, W) frames)."""
    lam = torch.as_tensor(photons, dtype=torch.float32).expand(n, *shape)
    return cam(lam, generator=torch.Generator().manual_seed(seed)).numpy().astype(np.uint16)


@pytest.fixture(scope="module")
def epfl() -> Camera:
    return Camera(CameraConfig(**EPFL))


def test_emccd_gain_offset_and_read_noise_from_dark_and_flats(epfl: Camera, tmp_path: Path) -> None:
    dark = _frames(epfl, 0.0, 60, seed=1)
    flats = [_frames(epfl, p, 60, seed=2 + k) for k, p in enumerate((10.0, 40.0, 160.0))]
    r = calibrate_camera(dark, flats, base_config="epfl2016_2d", out=tmp_path)
    assert r["gain_adu_per_e"] == pytest.approx(EPFL_GAIN, rel=0.03)
    assert r["adu_per_photon"] == pytest.approx(6.0, rel=0.03)
    assert abs(r["offset_adu"] - 100.0) < 1.0
    assert r["read_noise_e"] == pytest.approx(74.4, rel=0.05)
    assert r["excess_noise_factor_sq"] == 2.0 and r["slope"] == pytest.approx(2 * r["gain_adu_per_e"])
    cfg = load_config(tmp_path / "camera.yaml")  # the base config with the measured camera, EM gain kept
    assert cfg.frame == load_config("epfl2016_2d").frame and cfg.camera.em_gain == 300.0
    assert cfg.camera.e_per_adu == pytest.approx(45.0, rel=0.03)
    assert Camera(cfg.camera).adu_per_photon == pytest.approx(6.0, rel=0.03)
    assert (tmp_path / "mean_variance.png").stat().st_size > 10_000


def test_emccd_e_per_adu_known_gives_the_em_gain(epfl: Camera) -> None:
    flats = [_frames(epfl, p, 40, seed=10 + k) for k, p in enumerate((20.0, 80.0))]
    r = calibrate_camera(_frames(epfl, 0.0, 40, seed=9), flats, e_per_adu=45.0)
    assert r["camera"]["em_gain"] == pytest.approx(300.0, rel=0.03)
    assert r["camera"]["e_per_adu"] == 45.0 and r["camera"]["baseline_adu"] == pytest.approx(100.0, abs=1.0)


def _movie(cam: Camera, n: int, emitters_per_frame: float, seed: int, shape=(32, 32)) -> np.ndarray:
    """A raw SMLM movie: an unlit 6-column margin, a background gradient of 1 … 40 photons/px and blinking
    emitters (σ 1.3 px, log-normal photons around 2,000) at ``emitters_per_frame`` on average."""
    rng = np.random.default_rng(seed)
    photons = torch.linspace(1.0, 40.0, shape[1]).expand(n, *shape).clone()
    photons[..., :6] = 0.0
    yy, xx = torch.meshgrid(torch.arange(float(shape[0])), torch.arange(float(shape[1])), indexing="ij")
    for f in range(n):
        for _ in range(rng.poisson(emitters_per_frame)):
            (cy, cx), total = rng.uniform(2, 30, 2), rng.lognormal(np.log(2000.0), 0.7)
            photons[f] += total / (2 * np.pi * 1.3**2) * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.3**2))
    return _frames(cam, photons, n, seed)


def test_emccd_from_a_movie_alone(epfl: Camera) -> None:
    """A raw movie without dark frames, at 0.5 emitters/µm² (5 per 32×32 px frame of 100 nm px): the offset
    from the unlit pixels, the gain from the pixels' quiet frames (emitters left out)."""
    r = calibrate_camera(movie=_movie(epfl, 200, 5.0, seed=3), em_gain=300.0)
    assert r["offset_from"] == "the movie's zero-signal peak"
    assert abs(r["offset_adu"] - 100.0) < 1.0
    assert r["gain_adu_per_e"] == pytest.approx(EPFL_GAIN, rel=0.03)


BEADS = (shared_data_root() or Path("/nonexistent")) / "epfl2016_beads" / "beads_AS.tif"


@pytest.mark.skipif(not BEADS.is_file(), reason="shared EPFL 2016 bead stacks not present")
def test_real_bead_stack_gives_the_nominal_camera() -> None:
    """The shared real bead z-stack read as a movie (no dark frames; the beads change with the focus scan):
    the nominal EPFL 2016 camera, 100 ADU and 300/45 ADU/e⁻."""
    r = calibrate_camera(movie=BEADS, base_config="epfl2016_2d")
    assert abs(r["offset_adu"] - 100.0) < 1.0
    assert r["gain_adu_per_e"] == pytest.approx(EPFL_GAIN, rel=0.03)


def test_ccd_has_no_excess_noise() -> None:
    cam = Camera(CameraConfig(type="ccd", e_per_adu=2.0, baseline_adu=500.0, read_noise_e=6.0, qe=0.7))
    flats = [_frames(cam, p, 60, seed=20 + k) for k, p in enumerate((300.0, 1200.0, 3000.0))]
    r = calibrate_camera(_frames(cam, 0.0, 60, seed=19), flats, camera_type="ccd")
    assert r["excess_noise_factor_sq"] == 1.0
    assert r["gain_adu_per_e"] == pytest.approx(0.5, rel=0.03)
    assert r["camera"]["e_per_adu"] == pytest.approx(2.0, rel=0.03) and r["camera"]["em_gain"] == 1.0
    assert abs(r["offset_adu"] - 500.0) < 1.0 and r["read_noise_e"] == pytest.approx(6.0, rel=0.05)


def test_scmos_per_pixel_maps_correlate_with_the_truth(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    shape = (24, 24)
    truth = {"offset": rng.uniform(90.0, 110.0, shape), "variance": rng.lognormal(np.log(4.0), 0.5, shape),
             "gain": rng.normal(2.0, 0.3, shape)}
    np.savez(tmp_path / "truth.npz", **truth)
    cam = Camera(CameraConfig(type="scmos", qe=0.8, scmos_maps=str(tmp_path / "truth.npz")), shape)
    dark = _frames(cam, 0.0, 300, seed=30, shape=shape)
    flats = [_frames(cam, p, 500, seed=31 + k, shape=shape) for k, p in enumerate((200.0, 600.0, 1500.0))]
    r = calibrate_camera(dark, flats, camera_type="scmos", out=tmp_path / "out")
    for key, true in truth.items():
        assert np.corrcoef(true.ravel(), r["maps"][key].ravel())[0, 1] >= 0.95, key
    assert np.abs(r["maps"]["offset"] - truth["offset"]).max() < 1.0
    assert r["maps"]["gain"].mean() == pytest.approx(truth["gain"].mean(), rel=0.03)
    cfg = load_config(tmp_path / "out" / "camera.yaml")  # a camera: section; the maps found beside it
    measured = Camera(cfg.camera, shape)
    assert torch.allclose(measured.adu_per_e, torch.as_tensor(r["maps"]["gain"], dtype=torch.float32))


def test_streamed_moments_equal_the_whole_stack_ones(monkeypatch) -> None:
    """Chunks of 3 frames (memory flat in the frame count) give the statistics of the whole array."""
    frames = np.random.default_rng(5).poisson(50.0, (20, 8, 8)).astype(np.uint16) + 100
    monkeypatch.setattr(calibration, "CHUNK_PIXELS", 3 * 64)
    m = calibration.stack_moments(array_stack(frames), "array")
    x = frames.astype(np.float64)
    assert np.allclose(m.mean, x.mean(0)) and np.allclose(m.variance, x.var(0, ddof=1))
    assert np.allclose(m.diff_variance, (np.diff(x, axis=0) ** 2).sum(0) / (2 * 19))
    assert m.histogram.sum() == frames.size and m.histogram[frames.max()] > 0


def _bad_inputs(epfl: Camera) -> dict:
    dark = _frames(epfl, 0.0, 20, seed=40)
    lit = [_frames(epfl, p, 20, seed=41 + k) for k, p in enumerate((20.0, 80.0))]
    saturated = _frames(Camera(CameraConfig(**{**EPFL, "e_per_adu": 1.0})), 300.0, 20, seed=43)
    return {
        "no frames": (dict(), "no frames"),
        "mismatched shapes": (dict(dark=dark, flats=[lit[0], lit[1][:, :16]]), "all stacks must come from one"),
        "flat darker than the dark": (dict(dark=dark, flats=[lit[0], dark + 0]), "no brighter than the dark"),
        "saturated flat": (dict(dark=dark, flats=[lit[0], saturated]), "saturated"),
        "one illumination level": (dict(dark=dark, flats=[lit[0], lit[0][::-1].copy()]), "one light level"),
        "one frame": (dict(dark=dark[:1], flats=lit), "at least 2"),
        "EMCCD without its EM gain": (dict(dark=dark, flats=lit, base_config=None, em_gain=None), "EM gain"),
        "scmos without dark": (dict(flats=lit, camera_type="scmos"), "dark stack"),
    }


@pytest.mark.parametrize("case", ["no frames", "mismatched shapes", "flat darker than the dark", "saturated flat",
                                  "one illumination level", "one frame", "EMCCD without its EM gain",
                                  "scmos without dark"])
def test_bad_input_is_one_line(epfl: Camera, case: str) -> None:
    kwargs, words = _bad_inputs(epfl)[case]
    kwargs = {"em_gain": 300.0, **kwargs}
    with pytest.raises(UserInputError) as err:
        calibrate_camera(**kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_cli_prints_one_summary_line(epfl: Camera, tmp_path: Path, runner, one_line) -> None:
    from deepsmlm.cli import app

    paths = {}
    for name, photons, seed in (("dark", 0.0, 50), ("f1", 15.0, 51), ("f2", 60.0, 52)):
        paths[name] = tmp_path / f"{name}.tif"
        tifffile.imwrite(paths[name], _frames(epfl, photons, 30, seed))
    args = ["calibrate", "camera", "--dark", str(paths["dark"]), "--flat", str(paths["f1"]), "--flat",
            str(paths["f2"]), "--config", "epfl2016_2d", "-o", str(tmp_path / "cal")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    line = one_line(res.stdout.strip())  # the progress bar is transient: it leaves at most a blank line
    assert line.startswith("emccd: offset 10") and "ADU/photon" in line
    assert load_config(tmp_path / "cal" / "camera.yaml").camera.e_per_adu == pytest.approx(45.0, rel=0.05)
    res = runner.invoke(app, args[:6] + ["--em-gain", "300", "-o", str(tmp_path / "cal2")])  # one flat: one level
    assert res.exit_code == 2 and "one light level" in one_line(res.stderr)
