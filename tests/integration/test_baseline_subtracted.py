"""camera.baseline_subtracted in a training/simulation config: the simulator records baseline-subtracted
frames, so the network's inputs are the photons that made them (they were 100 ADU = 16.7 photons/px too
high for the EPFL camera), and a movie simulated that way is read right by localize's data check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deepsmlm.assembly.fitters import psf_sigma_nm
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.commands.simulate import apply_overrides
from deepsmlm.config import SimulationConfig, load_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.inference.data_check import check_data
from deepsmlm.inference.predict import normalised
from deepsmlm.io.images import open_stack
from deepsmlm.simulation.movies import simulate_to_folder


def epfl_config(subtracted: bool, background: float) -> SimulationConfig:
    return updated(load_config("epfl2016_2d"), {"psf.model": "gaussian", "camera.baseline_subtracted": subtracted,
                                                "background.photons_per_px": (background, background)})


def test_training_inputs_of_a_baseline_subtracted_config_are_the_photons() -> None:
    sim = build_simulator(epfl_config(True, 100.0))
    batch = sim.sample(4, torch.Generator().manual_seed(0))
    inputs = normalised(sim.camera.adu_to_photons(batch.adu), 0.0, 1.0)  # the trainer's conversion, unscaled
    truth = sim.expected_photons(batch.emitters, batch.background, batch.blur_px)
    assert float(inputs.mean()) == pytest.approx(float(truth.mean()), rel=0.01)


def test_a_baseline_subtracted_movie_passes_its_own_check_and_fails_the_raw_one(tmp_path: Path) -> None:
    cfg = apply_overrides(epfl_config(True, 5.0), frames=8, seed=3, density=None, emitters=None)
    simulate_to_folder(cfg, tmp_path / "sim", build_simulator(cfg))
    with open_stack(tmp_path / "sim" / "frames.tif") as stack:
        assert int(np.asarray(stack[:]).min()) == 0  # clipped at 0, as uint16 baseline-subtracted data are
        assert check_data(stack, cfg, "config subtracted", psf_sigma_nm=psf_sigma_nm(cfg), trained=False) is not None
        with pytest.raises(UserInputError, match="below the baseline 100 ADU"):
            raw = epfl_config(False, 5.0)
            check_data(stack, raw, "config raw", psf_sigma_nm=psf_sigma_nm(raw), trained=False)
