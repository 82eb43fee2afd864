"""Drift correction (RCC and AIM) recovers a known drift of simulated filaments, the two agreeing; FRC
resolution follows the localization precision; one-line errors for tables drift and FRC cannot use."""

from __future__ import annotations

import numpy as np
import pytest

import deepsmlm
from deepsmlm.analysis.frc import halves
from deepsmlm.errors import UserInputError
from deepsmlm.localizations import Localizations

FIELD_NM = 8000.0
N_FRAMES, PER_FRAME = 20_000, 10


def filaments(rng: np.random.Generator, n: int = 10, step_nm: float = 5.0) -> np.ndarray:
    """(M, 3) nm: label positions every ``step_nm`` along ``n`` gently curving filaments crossing the field,
    z a slow sine of ±300 nm along each."""
    out = []
    for _ in range(n):
        k = int(2 * FIELD_NM / step_nm)
        angle = rng.uniform(0, np.pi) + np.cumsum(rng.normal(0, np.sqrt(step_nm / 4000), k))
        xy = rng.uniform(0, FIELD_NM, 2) + np.cumsum(step_nm * np.column_stack([np.cos(angle), np.sin(angle)]), 0)
        xy -= xy[k // 2] - rng.uniform(0, FIELD_NM, 2)
        z = 300 * np.sin(np.arange(k) * step_nm / rng.uniform(500, 1200) + rng.uniform(0, 2 * np.pi))
        inside = ((xy >= 0) & (xy < FIELD_NM)).all(axis=1)
        out.append(np.column_stack([xy, z])[inside])
    return np.vstack(out)


def true_drift(n_frames: int) -> np.ndarray:
    """(n_frames, 3) nm, 0 at frame 0: linear plus sinusoidal, up to ~450 nm laterally and 100 nm in z."""
    t = np.arange(n_frames) / n_frames
    d = np.column_stack([350 * t + 60 * np.sin(3 * np.pi * t), -250 * t + 80 * np.sin(2 * np.pi * t + 1),
                         100 * np.sin(1.6 * np.pi * t)])
    return d - d[0]


def drifting_table(seed: int, three_d: bool) -> tuple[Localizations, np.ndarray]:
    """~10 localizations per frame over 20,000 frames, σ 10 nm laterally (25 nm in z), with ``true_drift``."""
    rng = np.random.default_rng(seed)
    labels = filaments(rng)
    n = N_FRAMES * PER_FRAME
    frame = np.sort(rng.integers(0, N_FRAMES, n))
    drift = true_drift(N_FRAMES)
    pos = labels[rng.integers(0, len(labels), n)] + rng.normal(0, 1, (n, 3)) * [10, 10, 25] + drift[frame]
    z = pos[:, 2] if three_d else None
    locs = Localizations.from_arrays(frame, pos[:, 0], pos[:, 1], z, photons=rng.uniform(500, 5000, n))
    return locs, drift if three_d else drift[:, :2]


def residual_rms(estimated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RMS over frames of estimated − true drift per axis, less its mean (a constant offset is unobservable)."""
    r = estimated - truth
    return np.sqrt(((r - r.mean(axis=0)) ** 2).mean(axis=0))


@pytest.mark.parametrize("three_d", [False, True])
def test_rcc_recovers_known_drift(three_d):
    locs, truth = drifting_table(1, three_d)
    result = deepsmlm.correct_drift(locs)
    drift = result.drift
    assert drift.drift_nm.shape == truth.shape
    rms = residual_rms(drift.drift_nm, truth)
    assert np.hypot(*rms[:2]) <= 5.0, rms
    if three_d:
        assert rms[2] <= 15.0, rms
    # the corrected table: every column kept, positions less the drift at each frame, frame 0 untouched
    t, c = locs.table, result.corrected.table
    assert list(c.columns) == list(t.columns)
    np.testing.assert_array_equal(c["photons"], t["photons"])
    axes = ["x_nm", "y_nm", "z_nm"][:truth.shape[1]]
    np.testing.assert_allclose(c[axes].to_numpy(), t[axes].to_numpy() - drift.at(t["frame"].to_numpy()))
    assert np.all(drift.drift_nm[0] == 0)


@pytest.mark.parametrize("three_d", [False, True])
def test_aim_recovers_known_drift_and_agrees_with_rcc(three_d):
    locs, truth = drifting_table(1, three_d)
    # the whole drift (~450 nm) is beyond the first search radius: AIM follows it segment by segment
    aim = deepsmlm.correct_drift(locs, method="aim", max_drift_nm=250.0)
    rms = residual_rms(aim.drift.drift_nm, truth)
    assert np.hypot(*rms[:2]) <= 5.0, rms
    if three_d:
        assert rms[2] <= 15.0, rms
    rcc = deepsmlm.correct_drift(locs, method="rcc").drift.drift_nm
    gap = np.abs(aim.drift.drift_nm - rcc).max(axis=0)  # every frame: within 3 nm laterally, 6 nm axially
    assert np.all(gap <= [3.0, 3.0, 6.0][:len(gap)]), gap
    axes = ["x_nm", "y_nm", "z_nm"][:truth.shape[1]]
    t, c = locs.table, aim.corrected.table
    np.testing.assert_allclose(c[axes].to_numpy(), t[axes].to_numpy() - aim.drift.at(t["frame"].to_numpy()))
    assert np.all(aim.drift.drift_nm[0] == 0)


def test_drift_correction_sharpens_the_frc():
    locs, _ = drifting_table(2, False)
    before = deepsmlm.frc(locs, pixel_nm=5.0).resolution_nm
    after = deepsmlm.frc(deepsmlm.correct_drift(locs).corrected, pixel_nm=5.0).resolution_nm
    assert after < 0.8 * before, (before, after)


def line_structure(rng: np.random.Generator, sigma_nm: float, field_nm: float = 3000.0) -> Localizations:
    """Labels uniform on 8 random straight lines in a 3 µm field, each localized 5 times with precision
    ``sigma_nm`` in random frames of 2,000."""
    start, angle = rng.uniform(0, field_nm, (8, 2)), rng.uniform(0, np.pi, 8)
    k, s = rng.integers(0, 8, 4000), rng.uniform(-field_nm / 2, field_nm / 2, 4000)
    labels = start[k] + s[:, None] * np.column_stack([np.cos(angle[k]), np.sin(angle[k])])
    labels = np.repeat(labels[((labels >= 0) & (labels < field_nm)).all(axis=1)], 5, axis=0)
    xy = labels + rng.normal(0, sigma_nm, labels.shape)
    return Localizations.from_arrays(rng.integers(0, 2000, len(xy)), xy[:, 0], xy[:, 1])


def test_frc_resolution_follows_localization_precision():
    sigmas = (5.0, 10.0, 20.0)
    res = [deepsmlm.frc(line_structure(np.random.default_rng(0), s)).resolution_nm for s in sigmas]
    assert res[0] < res[1] < res[2], res  # halving σ lowers (improves) the resolution
    for sigma, r in zip(sigmas, res):
        assert 2.0 * sigma < r < 5.0 * sigma, (sigma, r)  # a few σ, as for a Gaussian-blurred structure


def test_frc_halves_alternate_blocks_and_identical_halves_correlate():
    frame = np.arange(1000)
    first = halves(frame, 100)
    assert first[:100].all() and not first[100:200].any() and first[200:300].all()
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 2000, (3000, 2))
    same = Localizations.from_arrays(np.r_[np.zeros(3000), np.ones(3000)], *np.vstack([xy, xy]).T)
    curve = deepsmlm.frc(same, block_frames=1)
    np.testing.assert_allclose(curve.frc, 1.0, atol=1e-9)  # two identical halves correlate at every ring
    assert np.isnan(curve.resolution_nm)


@pytest.mark.parametrize("method", ["rcc", "aim"])
@pytest.mark.parametrize("frames, message", [
    (np.zeros(50, dtype=int), "all 50 localizations are in one frame"),
    (np.r_[np.zeros(45, dtype=int), np.full(5, 3000)], "fewer than 2 segments"),
])
def test_drift_refuses_tables_without_many_frames(frames, message, method):
    rng = np.random.default_rng(0)
    locs = Localizations.from_arrays(frames, rng.uniform(0, 1000, len(frames)), rng.uniform(0, 1000, len(frames)))
    with pytest.raises(UserInputError, match=message) as err:
        deepsmlm.correct_drift(locs, method=method)
    assert "\n" not in str(err.value)


def test_frc_refuses_one_half_empty_and_a_field_too_large():
    rng = np.random.default_rng(0)
    one_block = Localizations.from_arrays(rng.integers(0, 50, 100), *rng.uniform(0, 1000, (2, 100)))
    with pytest.raises(UserInputError, match="only one block of 100 frames"):
        deepsmlm.frc(one_block)
    huge = Localizations.from_arrays([0, 1, 100, 101], [0, 1e5, 0, 1e5], [0, 0, 1, 1])
    with pytest.raises(UserInputError, match="use a larger --pixel-nm"):
        deepsmlm.frc(huge)
