"""`deepsmlm estimate`: on simulated movies with known photons, background and density the estimates are
within 15 % (issue 20), the training config written is loadable and carries them, and a user's YAML is
never written over."""

from __future__ import annotations

import math

import pytest
import tifffile

import deepsmlm
from deepsmlm.cli import app
from deepsmlm.config import load_config, updated

PHOTONS_MEAN, PHOTONS_SIGMA, BACKGROUND, DENSITY = 3000.0, 0.4, (80.0, 120.0), 0.3


def known_config():
    return updated(load_config("epfl2016_2d"), {
        "psf.model": "gaussian", "frame.height": 48, "frame.width": 48, "emitters.density_per_um2": DENSITY,
        "emitters.photons": {"distribution": "lognormal", "mean": PHOTONS_MEAN, "sigma": PHOTONS_SIGMA},
        "background.photons_per_px": BACKGROUND})


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    folder = tmp_path_factory.mktemp("estimate")
    sim = deepsmlm.simulate(known_config(), frames=200, seed=5)
    tifffile.imwrite(folder / "movie.tif", sim.frames)
    return folder / "movie.tif"


def test_estimates_are_within_15_percent_of_the_truth(movie):
    result = deepsmlm.estimate(movie, known_config(), frames=200)
    found = result.estimate
    assert found.photons_mean == pytest.approx(PHOTONS_MEAN, rel=0.15)
    assert found.photons_sigma == pytest.approx(PHOTONS_SIGMA, rel=0.15)
    assert found.background_photons_per_px == pytest.approx(sum(BACKGROUND) / 2, rel=0.15)
    assert BACKGROUND[0] * 0.85 <= found.background_range[0] < found.background_range[1] <= BACKGROUND[1] * 1.15
    assert found.density_per_um2 == pytest.approx(DENSITY, rel=0.15)
    assert found.z_range_nm is None and result.fitter == "gaussian-mle"
    cfg = result.config
    assert cfg.emitters.photons.mean == pytest.approx(found.photons_mean)
    assert cfg.emitters.density_per_um2 == pytest.approx(found.density_per_um2)
    assert cfg.training.density_range_per_um2 == pytest.approx((0.5 * found.density_per_um2,
                                                                1.5 * found.density_per_um2))
    assert cfg.camera == known_config().camera and cfg.psf == known_config().psf  # the microscope is kept


def test_the_command_writes_a_loadable_config_and_never_a_users_yaml(runner, movie, tmp_path, write_yaml, one_line):
    base = write_yaml(known_config(), name="base.yaml")
    out = tmp_path / "train.yaml"
    args = ["estimate", str(movie), "--config", str(base), "--frames", "60"]
    res = runner.invoke(app, [*args, "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "photons per emitter" in res.stdout and out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    trained = load_config(out)
    assert trained.emitters.photons.distribution == "lognormal"
    assert math.isclose(trained.emitters.photons.mean, PHOTONS_MEAN, rel_tol=0.2)
    assert runner.invoke(app, [*args, "-o", str(out)]).exit_code == 0  # its own earlier output is replaced
    res = runner.invoke(app, [*args, "-o", str(base)])
    assert res.exit_code == 2 and "is the input --config" in one_line(res.output)
    other = write_yaml({"name": "mine"}, name="mine.yaml")
    res = runner.invoke(app, [*args, "-o", str(other)])
    assert res.exit_code == 2 and "was not written by `deepsmlm estimate`" in one_line(res.output)
    assert other.read_text().strip() == "name: mine"
    res = runner.invoke(app, [*args, "-o", str(tmp_path / "train.txt")])
    assert res.exit_code == 2 and "give a .yaml path" in one_line(res.output)


def test_a_movie_without_emitters_is_one_line(runner, tmp_path, write_yaml, one_line):
    cfg = known_config()
    dark = tmp_path / "dark.tif"
    tifffile.imwrite(dark, deepsmlm.simulate(updated(cfg, {"emitters.density_per_um2": 0.0}), frames=5, seed=1).frames)
    res = runner.invoke(app, ["estimate", str(dark), "--config", str(write_yaml(cfg)), "-o", str(tmp_path / "t.yaml")])
    assert res.exit_code == 2 and "emitters fitted in 5 frames" in one_line(res.output.splitlines()[-1])  # after the bar
    assert not (tmp_path / "t.yaml").exists()


def test_a_3d_config_estimates_the_axial_range_with_psf_mle():
    """An astigmatic config is fitted by psf-mle: z range in use within 15 % of the simulated one's span."""
    cfg = updated(known_config(), {"psf.gaussian": {"sigma_nm": 110.0, "astig_focus_offset_nm": 250.0,
                                                     "astig_depth_nm": 400.0},
                                   "emitters.z_range_nm": (-400.0, 400.0), "emitters.density_per_um2": 0.1})
    sim = deepsmlm.simulate(cfg, frames=300, seed=8)  # sparse: astigmatic spots are wide
    wide = updated(cfg, {"emitters.z_range_nm": (-600.0, 600.0)})  # the fitter's range covers the data's
    result = deepsmlm.estimate(sim.frames, wide)
    found = result.estimate
    assert result.fitter == "psf-mle" and found.z_range_nm is not None
    low, high = found.z_range_nm
    assert abs(low + 400.0) < 0.15 * 800 and abs(high - 400.0) < 0.15 * 800
    assert found.photons_mean == pytest.approx(PHOTONS_MEAN, rel=0.15)
    assert found.density_per_um2 == pytest.approx(0.1, rel=0.15)
    assert result.config.emitters.z_range_nm == pytest.approx(found.z_range_nm)


def test_a_detection_limited_movie_is_corrected_by_simulation_matching():
    """Dim log-normal photons (mean 1,000, σ 0.8): the fits miss the dim emitters, so their raw photons are
    > 25 % high and their density > 25 % low; matched by simulation through the same fitter, both come out
    within 15 % (the correction matters), the raw figures are kept beside them and no warning is raised."""
    cfg = updated(known_config(), {"emitters.density_per_um2": 0.5,
                                   "emitters.photons": {"distribution": "lognormal", "mean": 1000.0, "sigma": 0.8}})
    sim = deepsmlm.simulate(cfg, frames=200, seed=5)
    found = deepsmlm.estimate(sim.frames, cfg).estimate
    raw = found.raw
    assert raw is not None and deepsmlm.estimate(sim.frames, cfg, correct=False).estimate == raw
    assert raw.photons_mean > 1.25 * 1000.0 and raw.density_per_um2 < 0.75 * 0.5
    assert found.photons_mean == pytest.approx(1000.0, rel=0.15)
    assert found.photons_sigma == pytest.approx(0.8, rel=0.15)
    assert found.density_per_um2 == pytest.approx(0.5, rel=0.15)
    assert BACKGROUND[0] * 0.9 <= found.background_range[0] < found.background_range[1] <= BACKGROUND[1] * 1.1
    assert found.warning is None
