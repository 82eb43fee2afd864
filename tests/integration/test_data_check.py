"""localize checks the data against what the model was trained on: good data of every shipped model passes,
a wrong pixel size, an unsubtracted baseline, 10× photons or extra noise stop in one line naming the file,
the measured and the expected value and the override, and --force runs anyway."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepsmlm.assembly.fitters import psf_sigma_nm
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.cli import app
from deepsmlm.commands.simulate import apply_overrides
from deepsmlm.config import SimulationConfig, dump_config, load_config, updated
from deepsmlm.inference.data_check import MIN_SPOTS, check_data
from deepsmlm.io.images import open_stack
from deepsmlm.io.tiff import write_stack
from deepsmlm.models.registry import load_model
from deepsmlm.optics.masks import shared_data_root
from deepsmlm.simulation.movies import simulate_to_folder

DATA = shared_data_root()
needs_data = pytest.mark.skipif(DATA is None or not (DATA / "deepstorm3d_tetrapod").is_dir(),
                                reason="shared reference data not found")


def simulated(tmp_path: Path, preset: str | SimulationConfig, frames: int = 8, seed: int = 3, add_adu: int = 0,
              pixel_metadata: bool = True) -> Path:
    """Frames simulated from a preset (or config) as a TIFF, optionally offset and without pixel size."""
    cfg = preset if isinstance(preset, SimulationConfig) else load_config(preset)
    cfg = apply_overrides(cfg, frames=frames, seed=seed, density=None, emitters=None)
    simulate_to_folder(cfg, tmp_path / "sim", build_simulator(cfg))
    with open_stack(tmp_path / "sim" / "frames.tif") as stack:
        adu = stack[:].astype(np.int64) + add_adu
    path = tmp_path / "data.tif"
    write_stack(path, adu.astype(np.uint16), cfg.frame.pixel_size_nm if pixel_metadata else None)
    return path


def localize(runner, stack: Path, *args: str):
    out = stack.with_name("locs.csv")
    result = runner.invoke(app, ["localize", str(stack), *args, "-o", str(out)])
    return result, out


GOOD = [
    ("epfl2013_bundled_tubes", "default-2d", None),
    pytest.param("tetrapod_paper", "tetrapod-3d", None, marks=needs_data),
    ("learned_paper", "learned-3d", None),
    ("multicolor_2dye", "multicolor-2dye", None),
    ("epfl2016_3d", "epfl2016-as-3d", None),
    ("locnet_2d", "locnet-2d", None),
    pytest.param("locnet_tetrapod", "locnet-tetrapod", None, marks=needs_data),
    ("epfl2016_2d", "gaussian-mle", "epfl2016_2d"),
]


@pytest.mark.parametrize("preset, model, config", GOOD)
def test_each_shipped_model_accepts_frames_of_its_own_physics(tmp_path, preset, model, config):
    """Frames simulated with the physics a model states it was trained with (its folder's config: the
    preset's set-up), or with the preset for the model-free fitter."""
    cfg = load_config(config) if model == "gaussian-mle" else load_model(model)[0]
    stack_path = simulated(tmp_path, cfg)
    with open_stack(stack_path) as stack:
        data = check_data(stack, cfg, f"model {model}", psf_sigma_nm=psf_sigma_nm(cfg), trained=model != "gaussian-mle")
    assert data is not None and data.n_spots >= MIN_SPOTS  # the spot checks ran, not skipped
    assert data.noise < 1.5 * data.noise_expected
    if model == "default-2d":
        assert 1.05 < data.sigma_px < 1.25  # σ 110 nm (+ 0 … 0.4 px blur) at 100 nm
        assert 500 < data.photons[0] < 4000  # 750 photons per emitter, lognormal, overlapping on filaments


def test_a_good_stack_without_pixel_size_runs_and_says_what_it_assumed(runner, tmp_path):
    stack = simulated(tmp_path, "epfl2013_bundled_tubes", frames=4, pixel_metadata=False)
    result, out = localize(runner, stack, "--model", "default-2d")
    assert result.exit_code == 0, result.output
    assert f"{stack}: no pixel size in the file; assumed 100 nm, that of model default-2d" in result.output
    assert out.is_file()
    result, _ = localize(runner, stack, "--model", "default-2d", "--pixel-size-nm", "100")
    assert result.exit_code == 0 and "assumed" not in result.output, result.output


@needs_data
@pytest.mark.parametrize("file, model", [("epfl2013_bundled_tubes_hd/frames.tif", "default-2d"),
                                         ("deepstorm3d_tetrapod/real_frames.tif", "tetrapod-3d")])
def test_the_shipped_models_accept_the_real_data_they_were_made_for(file, model):
    cfg = load_model(model)[0]
    with open_stack(DATA / file) as stack:
        data = check_data(stack, cfg, f"model {model}", psf_sigma_nm=psf_sigma_nm(cfg), pixel_declared=False)
    assert data is not None and data.n_spots >= MIN_SPOTS


def pixels_150(cfg: SimulationConfig) -> SimulationConfig:
    return updated(cfg, {"frame.pixel_size_nm": 150.0})


def photons_10x(cfg: SimulationConfig) -> SimulationConfig:
    return updated(cfg, {"emitters.photons.mean": 10 * cfg.emitters.photons.mean})


BAD = [
    # the tester's case: 150 nm pixels in a TIFF without pixel size, through default-2d trained at 100 nm
    pytest.param(lambda t: simulated(t, pixels_150(load_config("epfl2013_bundled_tubes")), pixel_metadata=False),
                 "default-2d", ["spots are 0.8", "px wide", "0.96 … 1.35 px", "--pixel-size-nm", "--force"],
                 id="px150"),
    pytest.param(lambda t: simulated(t, load_model("tetrapod-3d")[0], frames=2, add_adu=600), "tetrapod-3d",
                 ["lies above the -10 … 10 photons/px over a baseline of 20 … 40 ADU", "--force"],
                 id="tetrapod+600ADU", marks=needs_data),
    pytest.param(lambda t: simulated(t, load_model("learned-3d")[0], frames=2, add_adu=600), "learned-3d",
                 ["lies above the 7 … 78 photons/px over a baseline of 30 ADU", "--config", "--force"],
                 id="learned+600ADU"),
    pytest.param(lambda t: simulated(t, photons_10x(load_config("epfl2013_bundled_tubes"))), "default-2d",
                 ["photons (median bounds", "more than 2× the 201 … 2380 photons per emitter", "--force"],
                 id="photons10x"),
]


@pytest.mark.parametrize("make, model, needles", BAD)
def test_data_unlike_the_training_data_stop_in_one_line_unless_forced(runner, one_line, tmp_path, make, model,
                                                                      needles):
    stack = make(tmp_path)
    result, out = localize(runner, stack, "--model", model)
    line = one_line(result.output)
    assert result.exit_code == 2 and line.startswith(f"error: {stack}: "), line
    assert all(n in line for n in needles), line
    assert not out.exists()
    result, out = localize(runner, stack, "--model", model, "--force")
    assert result.exit_code == 0 and out.is_file(), result.output


def test_more_noise_than_the_camera_model_gives_is_refused(runner, one_line, tmp_path):
    stack = simulated(tmp_path, "epfl2013_bundled_tubes", frames=4)
    with open_stack(stack) as s:
        adu = s[:].astype(np.float64)
    adu += np.random.default_rng(0).normal(0, 40, adu.shape)  # 10 photons/px of read noise at 4 ADU/photon
    write_stack(stack, np.clip(adu.round(), 0, None).astype(np.uint16), 100.0)
    result, _ = localize(runner, stack, "--model", "default-2d")
    line = one_line(result.output)
    assert result.exit_code == 2 and "background noise" in line and "camera" in line and "--force" in line, line


def test_a_declared_pixel_size_is_checked_against_the_model(runner, one_line, tmp_path):
    stack = simulated(tmp_path, "epfl2013_bundled_tubes", frames=2, pixel_metadata=False)
    result, _ = localize(runner, stack, "--model", "default-2d", "--pixel-size-nm", "150")
    line = one_line(result.output)
    assert result.exit_code == 2 and "pixel size 150 nm (declared) differs from 100 nm" in line, line
    result, _ = localize(runner, stack, "--model", "default-2d", "--pixel-size-nm", "-3")
    assert result.exit_code == 2 and "--pixel-size-nm" in one_line(result.output)


def scmos_config(tmp_path: Path, shape: tuple[int, int]) -> Path:
    """The epfl2013 preset on an sCMOS camera with per-pixel maps of ``shape`` (about 4 ADU per photon)."""
    rng = np.random.default_rng(1)
    maps = tmp_path / "maps.npz"
    np.savez(maps, offset=100 + rng.normal(0, 2, shape), variance=rng.uniform(4, 16, shape),
             gain=rng.uniform(3.6, 4.4, shape))
    cfg = updated(load_config("epfl2013_bundled_tubes"), {"camera.type": "scmos", "camera.scmos_maps": str(maps)})
    path = tmp_path / "scmos.yaml"
    path.write_text(dump_config(cfg))
    return path


@pytest.mark.parametrize("model", ["default-2d", "gaussian-mle"])
def test_a_camera_with_scmos_maps_localizes(runner, tmp_path, model):
    config = scmos_config(tmp_path, (64, 64))
    stack = simulated(tmp_path, load_config(config), frames=3)
    result, out = localize(runner, stack, "--model", model, "--config", str(config))
    assert result.exit_code == 0 and out.is_file(), (result.output, result.exception)


def test_scmos_maps_of_another_size_than_the_frames_fail_in_one_line(runner, one_line, tmp_path):
    config = scmos_config(tmp_path, (32, 32))
    stack = tmp_path / "data.tif"
    write_stack(stack, np.full((2, 64, 64), 140, np.uint16), 100.0)
    result, _ = localize(runner, stack, "--model", "default-2d", "--config", str(config))
    line = one_line(result.output)
    assert result.exit_code == 2 and "maps.npz" in line and "(32, 32)" in line, line
