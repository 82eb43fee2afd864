"""Background: per-frame level and smooth nonuniform modulation."""

from __future__ import annotations

import math

import pytest
import torch

from deepsmlm.config import BackgroundConfig, FrameConfig
from deepsmlm.simulation.background import sample_background

FRAME = FrameConfig(height=48, width=64, pixel_size_nm=100.0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_uniform_background_levels_span_the_range():
    bg = sample_background(BackgroundConfig(photons_per_px=(10.0, 30.0)), FRAME, 400, gen())
    assert bg.shape == (400, 48, 64) and bg.dtype == torch.float32
    levels = bg[:, 0, 0]
    assert torch.equal(bg, levels[:, None, None].expand_as(bg))
    assert levels.min() >= 10 and levels.max() < 30
    assert levels.mean().item() == pytest.approx(20, rel=0.05)
    assert levels.std().item() == pytest.approx(20 / math.sqrt(12), rel=0.1)


def test_nonuniform_background_keeps_mean_and_has_given_amplitude():
    cfg = BackgroundConfig(photons_per_px=(50.0, 50.0), nonuniform_amplitude=0.3, nonuniform_length_nm=2000.0)
    bg = sample_background(cfg, FRAME, 8, gen()).double()
    assert torch.allclose(bg.mean(dim=(1, 2)), torch.full((8,), 50.0, dtype=torch.float64), rtol=1e-5)
    assert torch.allclose((bg / 50 - 1).abs().amax(dim=(1, 2)), torch.full((8,), 0.3, dtype=torch.float64), rtol=1e-5)
    assert bg.min() >= 0
    assert not torch.equal(bg[0], bg[1])  # a fresh field per frame


def test_nonuniform_background_is_smooth_with_given_correlation_length():
    cfg = BackgroundConfig(photons_per_px=(20.0, 20.0), nonuniform_amplitude=0.5, nonuniform_length_nm=300.0)
    bg = sample_background(cfg, FrameConfig(height=128, width=128, pixel_size_nm=100.0), 16, gen())
    assert _corr(bg[:, :, 1:], bg[:, :, :-1]) > 0.9
    # Gaussian autocorrelation exp(-r^2 / (2 L^2)) with L = 3 px
    assert _corr(bg[:, :, 3:], bg[:, :, :-3]) == pytest.approx(math.exp(-0.5), abs=0.06)
    assert _corr(bg[:, 3:, :], bg[:, :-3, :]) == pytest.approx(math.exp(-0.5), abs=0.06)
    assert abs(_corr(bg[:, :, 15:], bg[:, :, :-15])) < 0.05


def test_background_is_reproducible():
    cfg = BackgroundConfig(photons_per_px=(5.0, 50.0), nonuniform_amplitude=0.2)
    assert torch.equal(sample_background(cfg, FRAME, 3, gen(3)), sample_background(cfg, FRAME, 3, gen(3)))
