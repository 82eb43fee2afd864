"""Temporal context (LocNet with ``model.frames`` T = 3): training windows whose molecules blink by the
two-state chain, one background per window, the truth of the middle frame; a stack streamed with its
neighbouring frames, the same however it is chunked and tiled, its ends padded with the end frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from deepsmlm.assembly.predictors import build_head, build_predictor
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import ModelConfig, load_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.inference.predict import frame_windows
from deepsmlm.inference.stream import run_stack
from deepsmlm.inference.tiling import Plan
from deepsmlm.io.images import array_stack
from deepsmlm.cli import app
from deepsmlm.models.registry import build_network, save_model
from deepsmlm.simulation.emitters import EmitterSampler
from deepsmlm.simulation.windows import WindowEmitters, window_batch
from deepsmlm.training.batches import SimulatedBatches, training_emitters, training_field, with_normalisation

P_OFF = 0.3  # per-frame probability to switch off


def t3_config(**changes):
    cfg = updated(load_config("locnet_2d"), {"model.frames": 3, "emitters.blinking.p_on_to_off": P_OFF,
                                             "emitters.blinking.p_off_to_on": 0.05, **changes})
    return training_field(cfg)


def test_windows_share_blinking_molecules_and_one_background():
    cfg = t3_config()
    sim = build_simulator(cfg)
    sampler = EmitterSampler(training_emitters(cfg, 2.0), cfg.frame)
    assert sampler.statistics.blinking.enabled
    gen = torch.Generator().manual_seed(3)
    batch = window_batch(sim, 48, 3, gen, sampler)
    assert batch.adu.shape == (48, 3, 64, 64) and batch.background.shape == (48, 64, 64)
    assert int(batch.emitters.frame.max()) == 47
    # all frames of the window, to check which middle molecules are also on in the frame before
    gen = torch.Generator().manual_seed(3)
    every = WindowEmitters(sampler, 3)(48 * 3, gen)
    middle = every.frame % 3 == 1
    before = set(zip(every.molecule[every.frame % 3 == 0].tolist(), (every.frame[every.frame % 3 == 0] // 3).tolist()))
    also_before = [(int(m), int(f) // 3) in before for m, f in zip(every.molecule[middle], every.frame[middle])]
    # a stationary two-state chain: P(on at t − 1 | on at t) = 1 − p_on_to_off
    assert np.mean(also_before) == pytest.approx(1 - P_OFF, abs=0.05)
    assert len(also_before) > 1000
    # the middle frames' emitters are the batch's, per window
    assert len(batch.emitters) == int(middle.sum())


def test_window_background_is_one_level_per_window():
    cfg = t3_config(**{"background.photons_per_px": (5.0, 50.0)})
    sim = build_simulator(cfg)
    sampler = EmitterSampler(training_emitters(cfg, 0.0), cfg.frame)
    batch = window_batch(sim, 16, 3, torch.Generator().manual_seed(0), sampler)
    photons = sim.camera.adu_to_photons(batch.adu).mean(dim=(-2, -1))  # (16, 3) mean photons, no emitters
    assert float((photons.std(dim=1) / photons.mean(dim=1)).max()) < 0.05
    assert float(photons[:, 1].std()) > 5.0  # levels differ between windows
    torch.testing.assert_close(photons[:, 1], batch.background.mean(dim=(-2, -1)), rtol=0.05, atol=0.5)


def test_training_batches_feed_t_frames_and_target_the_middle_one():
    cfg = with_normalisation(t3_config(), build_simulator(t3_config()).psf)
    sim = build_simulator(cfg)
    batches = SimulatedBatches(sim, build_head(cfg), cfg, torch.Generator().manual_seed(1))
    x, target = batches()
    assert x.shape == (cfg.training.batch_size, 3, 64, 64)
    assert target.shape[0] == cfg.training.batch_size
    net = build_network(cfg.model)
    assert net(x).shape[-2:] == (64, 64)


def test_only_an_odd_locnet_window_is_allowed():
    assert ModelConfig(kind="locnet", upsampling=1, frames=3).frames == 3
    for bad in ({"kind": "locnet", "upsampling": 1, "frames": 2}, {"frames": 3}):
        with pytest.raises((ValueError, UserInputError), match="frames"):
            ModelConfig(**bad)


def t3_predictor():
    cfg = updated(load_config("locnet_2d"), {"model.frames": 3, "model.input_offset_photons": 10.0,
                                             "model.input_scale_photons": 200.0, "model.threshold": 0.05,
                                             "model.split_mass": None})  # a random net's near-ties: no splits
    torch.manual_seed(0)
    return build_predictor(cfg, build_network(cfg.model).eval())


def test_a_stack_localizes_the_same_in_any_chunks_and_tiles_with_its_neighbours():
    predictor = t3_predictor()
    rng = np.random.default_rng(0)
    frames = (100 + rng.poisson(30.0, size=(9, 72, 80))).astype(np.uint16)
    frames[4, 30:34, 40:44] += 2000  # a bright spot in the middle frame
    stack = array_stack(frames)
    whole = run_stack(stack, predictor, Plan(9, 9, None, 0)).table
    chunked = run_stack(stack, predictor, Plan(2, 2, None, 0)).table
    core, halo = 32, predictor.footprint(72, 80).reach_px
    tiled = run_stack(stack, predictor, Plan(4, 4, core, halo)).table
    assert len(whole) > 10
    pd.testing.assert_frame_equal(whole, chunked)
    pd.testing.assert_frame_equal(whole, tiled, check_exact=False, atol=1e-3, rtol=0)
    # frame k is localized from frames k − 1, k, k + 1, the ends from the end frame repeated
    padded = torch.from_numpy(np.concatenate([frames[:1], frames, frames[-1:]]).astype(np.float32))
    direct = predictor.localize_frames(frame_windows(padded, 3).contiguous())
    pd.testing.assert_frame_equal(whole, direct, check_exact=False, atol=1e-3, rtol=0)


def test_a_stack_shorter_than_the_window_is_refused_in_one_line(tmp_path, runner):
    cfg = updated(load_config("locnet_2d"), {"model.frames": 3, "model.input_offset_photons": 10.0,
                                             "model.input_scale_photons": 200.0})
    save_model(tmp_path / "t3", cfg, build_network(cfg.model).eval())
    stack = tmp_path / "two.tif"
    tifffile.imwrite(stack, np.full((2, 32, 32), 110, dtype=np.uint16))
    out = tmp_path / "locs.csv"
    result = runner.invoke(app, ["localize", str(stack), "--model", str(tmp_path / "t3"), "-o", str(out)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "2 frame(s)" in lines[0] and "3 consecutive frames" in lines[0]
    assert not out.exists()
