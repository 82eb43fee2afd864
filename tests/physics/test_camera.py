"""Camera physics: round trip, excess noise, clipping, reproducibility, sCMOS maps, noise model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from deepsmlm.config import CameraConfig
from deepsmlm.errors import UserInputError
from deepsmlm.physics.camera import Camera
from deepsmlm.sampling import standard_gamma

# EPFL SMLM challenge 2016 camera: 6 ADU per photon.
EPFL = dict(type="emccd", baseline_adu=100.0, e_per_adu=45.0, em_gain=300.0, qe=0.9, read_noise_e=74.4)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _flat(photons: float, n: int = 200) -> torch.Tensor:
    return torch.full((n, n), photons)


def _write_maps(path: Path, shape: tuple[int, int], seed: int = 1, **override: np.ndarray) -> Path:
    rng = np.random.default_rng(seed)
    maps = {
        "offset": rng.uniform(90.0, 110.0, shape),
        "variance": rng.uniform(1.0, 50.0, shape),
        "gain": rng.uniform(1.5, 3.0, shape),
    }
    maps.update(override)
    np.savez(path, **maps)
    return path


def test_epfl_emccd_round_trip() -> None:
    cam = Camera(CameraConfig(**EPFL))
    assert cam.adu_per_photon == pytest.approx(6.0)
    assert cam.excess_noise_factor == 2.0
    x = _flat(50.0)
    assert torch.allclose(cam.adu_to_photons(cam.expected_adu(x)), x)
    adu = cam(x, generator=_seeded())
    assert adu.dtype == torch.float32 and torch.equal(adu, adu.round())
    assert cam.adu_to_photons(adu).mean().item() == pytest.approx(50.0, rel=0.01)
    assert adu.mean().item() == pytest.approx(100.0 + 6.0 * 50.0, rel=0.01)


def test_adu_to_photons_integer_input_and_baseline_subtracted() -> None:
    cam = Camera(CameraConfig(**EPFL))
    adu = torch.tensor([100, 400, 700], dtype=torch.uint16)
    photons = cam.adu_to_photons(adu)
    assert photons.dtype == torch.float32
    assert torch.allclose(photons, torch.tensor([0.0, 50.0, 100.0]))
    assert torch.allclose(cam.adu_to_photons(adu, baseline_subtracted=True), torch.tensor([100, 400, 700]) / 6.0)
    subtracted = Camera(CameraConfig(**EPFL, baseline_subtracted=True))
    assert torch.allclose(subtracted.adu_to_photons(adu), torch.tensor([100, 400, 700]) / 6.0)


@pytest.mark.parametrize("mean_e", [2.0, 50.0])
def test_emccd_excess_noise_factor_two(mean_e: float) -> None:
    """Var(e' / G) = 2·E[e] for Poisson photoelectrons through a Gamma EM register, at any count."""
    cfg = CameraConfig(type="emccd", qe=1.0, em_gain=300.0, e_per_adu=1.0, baseline_adu=100.0, read_noise_e=0.0)
    cam = Camera(cfg)
    adu = cam(_flat(mean_e), generator=_seeded(3))
    electrons = (adu - 100.0) * cfg.e_per_adu / cfg.em_gain
    assert electrons.mean().item() == pytest.approx(mean_e, rel=0.02)
    assert (electrons.var() / electrons.mean()).item() == pytest.approx(2.0, rel=0.05)


def test_ccd_noise_factor_one() -> None:
    cfg = CameraConfig(type="ccd", qe=1.0, em_gain=300.0, e_per_adu=1.0, baseline_adu=100.0, read_noise_e=0.0)
    cam = Camera(cfg)
    assert cam.excess_noise_factor == 1.0 and cam.adu_per_photon == 1.0  # EM gain ignored off EMCCD
    electrons = cam(_flat(50.0), generator=_seeded(4)) - 100.0
    assert (electrons.var() / electrons.mean()).item() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("alpha", [1.0, 3.0, 1.0e4])
def test_standard_gamma_matches_distribution(alpha: float) -> None:
    samples = standard_gamma(torch.full((20000,), alpha), _seeded(5)).numpy()
    assert stats.kstest(samples, stats.gamma(alpha).cdf).pvalue > 1e-3


def test_uint16_clipping() -> None:
    bright = Camera(CameraConfig(**EPFL))(_flat(1.0e5, 8), generator=_seeded())
    assert torch.all(bright == 65535.0)
    cfg = CameraConfig(type="ccd", qe=1.0, e_per_adu=1.0, baseline_adu=0.0, read_noise_e=100.0)
    dark = Camera(cfg)(_flat(0.0), generator=_seeded())
    assert dark.min().item() == 0.0
    assert (dark == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)  # the negative half


@pytest.mark.parametrize(
    "cfg",
    [
        CameraConfig(**EPFL, spurious_charge=0.05),
        CameraConfig(type="ccd", read_noise_e=5.0),
        CameraConfig(type="scmos", read_noise_e=1.5, e_per_adu=0.5),
        CameraConfig(type="ideal"),
    ],
    ids=lambda c: c.type,
)
def test_same_seed_bit_identical(cfg: CameraConfig) -> None:
    cam = Camera(cfg)
    x = torch.rand(2, 32, 32) * 100
    first, second = cam(x, generator=_seeded(7)), cam(x, generator=_seeded(7))
    assert torch.equal(first, second)
    assert not torch.equal(first, cam(x, generator=_seeded(8)))
    assert torch.equal(cam.reparameterized(x, _seeded(7)), cam.reparameterized(x, _seeded(7)))


def test_ideal_camera_is_poisson_counts() -> None:
    cam = Camera(CameraConfig(type="ideal", qe=0.5, baseline_adu=100.0, read_noise_e=10.0))
    counts = cam(_flat(20.0), generator=_seeded())
    assert counts.mean().item() == pytest.approx(20.0, rel=0.01)
    assert counts.var().item() == pytest.approx(20.0, rel=0.05)
    assert torch.equal(cam.adu_to_photons(counts), counts)


def test_scmos_per_pixel_maps(tmp_path: Path) -> None:
    path = _write_maps(tmp_path / "maps.npz", (8, 8))
    maps = np.load(path)
    cam = Camera(CameraConfig(type="scmos", qe=0.9, scmos_maps=str(path)), shape=(8, 8))
    lam = 100.0
    adu = cam(torch.full((4000, 8, 8), lam), generator=_seeded(9)).double()
    gain, offset, var = (torch.as_tensor(maps[k]) for k in ("gain", "offset", "variance"))
    mean_expected = offset + gain * 0.9 * lam
    assert torch.allclose(cam.expected_adu(torch.full((8, 8), lam)).double(), mean_expected, atol=1e-3)
    assert (adu.mean(0) - mean_expected).abs().max().item() < 2.5  # ~5 standard errors
    var_expected = gain**2 * 0.9 * lam + var + 1 / 12  # shot + read + rounding
    assert torch.allclose(adu.var(0), var_expected, rtol=0.12)
    assert torch.allclose(cam.adu_to_photons(adu).mean(0), torch.full((8, 8), lam, dtype=torch.float64), rtol=0.01)


@pytest.mark.parametrize(
    ("maps", "message"),
    [
        ({"gain": np.ones((8, 9))}, "shape"),
        ({"offset": np.full((8, 8), np.nan)}, "NaN"),
    ],
)
def test_scmos_bad_maps_name_the_file(tmp_path: Path, maps: dict, message: str) -> None:
    path = _write_maps(tmp_path / "bad_maps.npz", (8, 8), **maps)
    with pytest.raises(UserInputError, match=message) as err:
        Camera(CameraConfig(type="scmos", scmos_maps=str(path)))
    assert "bad_maps.npz" in str(err.value) and "\n" not in str(err.value)


def test_scmos_maps_shape_mismatch_and_missing(tmp_path: Path) -> None:
    path = _write_maps(tmp_path / "maps.npz", (8, 8))
    with pytest.raises(UserInputError, match="maps.npz.*expected \\(16, 16\\)"):
        Camera(CameraConfig(type="scmos", scmos_maps=str(path)), shape=(16, 16))
    with pytest.raises(UserInputError, match="nowhere.npz"):
        Camera(CameraConfig(type="scmos", scmos_maps=str(tmp_path / "nowhere.npz")))
    np.savez(tmp_path / "partial.npz", offset=np.zeros((8, 8)))
    with pytest.raises(UserInputError, match="partial.npz.*variance, gain"):
        Camera(CameraConfig(type="scmos", scmos_maps=str(tmp_path / "partial.npz")))


def test_reparameterized_gradient_and_moments() -> None:
    cam = Camera(CameraConfig(**EPFL))
    x = _flat(50.0).requires_grad_()
    noisy = cam.reparameterized(x, generator=_seeded(11))
    noisy.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.mean().item() == pytest.approx(1.0, abs=0.01)
    assert noisy.mean().item() == pytest.approx(50.0, rel=0.01)
    assert noisy.var().item() == pytest.approx(cam.variance_photons(torch.tensor(50.0)).item(), rel=0.05)
    zero = torch.zeros(4, requires_grad=True)
    Camera(CameraConfig(type="ideal")).reparameterized(zero).sum().backward()
    assert torch.isfinite(zero.grad).all()


@pytest.mark.parametrize(
    "cfg",
    [
        CameraConfig(**EPFL),
        CameraConfig(**EPFL, spurious_charge=0.5),
        CameraConfig(type="ccd", qe=0.8, e_per_adu=2.0, baseline_adu=100.0, read_noise_e=8.0),
        CameraConfig(type="scmos", qe=0.8, e_per_adu=0.5, baseline_adu=100.0, read_noise_e=3.0),
        CameraConfig(type="ideal"),
    ],
    ids=["emccd", "emccd-spurious", "ccd", "scmos", "ideal"],
)
def test_variance_photons_matches_simulation(cfg: CameraConfig) -> None:
    cam = Camera(cfg)
    x = _flat(80.0)
    photons = cam.adu_to_photons(cam(x, generator=_seeded(12)))
    assert photons.mean().item() == pytest.approx(80.0, rel=0.01)
    assert photons.var().item() == pytest.approx(cam.variance_photons(torch.tensor(80.0)).item(), rel=0.05)


def test_baseline_range_draws_one_uniform_baseline_per_frame() -> None:
    cfg = CameraConfig(type="ccd", qe=1.0, e_per_adu=1.0, baseline_adu=(20.0, 40.0), read_noise_e=0.0)
    cam = Camera(cfg)
    adu = cam(torch.zeros(20000, 3, 3), generator=_seeded(5))
    per_frame = adu.flatten(1)
    assert (per_frame.amax(1) - per_frame.amin(1)).max() == 0  # no signal, no read noise: flat frames
    base = per_frame[:, 0]
    assert 20.0 <= float(base.min()) and float(base.max()) <= 40.0
    # rounded uniform on [20, 40]: mean 30, variance 400/12 + 1/12
    assert float(base.mean()) == pytest.approx(30.0, abs=0.2)
    assert float(base.var()) == pytest.approx(401 / 12, rel=0.1)
    # the deterministic inverse uses the nominal (middle) baseline
    assert cam.offset == 30.0 and float(cam.adu_to_photons(torch.tensor(30.0))) == 0.0


def test_read_noise_range_is_a_smooth_map_spanning_the_range() -> None:
    cfg = CameraConfig(type="ccd", qe=1.0, e_per_adu=2.0, baseline_adu=1000.0, read_noise_e=(16.0, 24.0),
                       read_noise_map_length_px=30.0)
    cam = Camera(cfg)
    assert cam.read_std == 10.0  # nominal 20 e⁻ at 2 e⁻/ADU
    std = cam._frame_read_std(torch.zeros(3, 120, 120), _seeded(6))
    assert std.shape == (3, 120, 120)
    for frame in std:  # each frame reaches both bounds (ADU) and varies slowly
        assert float(frame.min()) == pytest.approx(8.0) and float(frame.max()) == pytest.approx(12.0)
        assert float((frame[:, 1:] - frame[:, :-1]).abs().max()) < 0.5
    assert not torch.allclose(std[0], std[1])  # a fresh map per frame
    # the simulated read noise lies between the bounds: 8² < variance < 12² (+1/12 from rounding)
    adu = cam(torch.zeros(4000, 4, 4), generator=_seeded(7)) - 1000.0
    assert 64.0 < float(adu.var()) < 144.0 and abs(float(adu.mean())) < 0.5


def test_ranges_with_scmos_maps_are_refused(tmp_path: Path) -> None:
    maps = _write_maps(tmp_path / "maps.npz", (4, 4))
    with pytest.raises(ValueError, match="baseline_adu"):
        CameraConfig(type="scmos", scmos_maps=str(maps), baseline_adu=(20.0, 40.0))


def test_baseline_subtracted_camera_records_adu_minus_baseline() -> None:
    """Frames of a baseline-subtracted camera invert to the photons that made them (they were 100 ADU =
    16.7 photons/px too high for the EPFL camera), are whole ADU ≥ 0, and lose only the dark tail."""
    cam = Camera(CameraConfig(**EPFL, baseline_subtracted=True))
    x = _flat(50.0)
    assert torch.allclose(cam.adu_to_photons(cam.expected_adu(x)), x)
    adu = cam(x, generator=_seeded())
    assert torch.equal(adu, adu.round()) and float(adu.min()) >= 0.0
    assert cam.adu_to_photons(adu).mean().item() == pytest.approx(50.0, rel=0.01)
    raw = Camera(CameraConfig(**EPFL))(x, generator=_seeded())
    assert torch.equal(adu, (raw - 100.0).clamp_min(0.0))  # the same frame, baseline removed
    dark = cam(_flat(0.0), generator=_seeded(1))
    assert (dark == 0).float().mean().item() > 0.5  # clipped: the negative read-noise half of empty pixels


def test_rounding_to_whole_adu_is_in_the_variance() -> None:
    """1/12 ADU² of rounding noise, here 22 % of the variance: 0.2 (shot) + 0.09 (read) + 0.083 ADU²."""
    cfg = CameraConfig(type="ccd", qe=1.0, e_per_adu=10.0, baseline_adu=100.0, read_noise_e=3.0)
    cam = Camera(cfg)
    photons = cam.adu_to_photons(cam(_flat(20.0), generator=_seeded(13)))
    expected = 20.0 + (3.0**2 + 10.0**2 / 12)  # photons²: shot + (σ_e² + (e⁻/ADU)²/12)/QE²
    assert cam.variance_photons(torch.tensor(20.0)).item() == pytest.approx(expected)
    assert photons.var().item() == pytest.approx(expected, rel=0.03)
