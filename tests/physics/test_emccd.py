"""Exact EMCCD Fisher information (Poisson–Gamma–Normal, quantised) against quadrature, simulation and
the excess-noise model it replaces at low counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.special import ive

from deepsmlm.config import CameraConfig
from deepsmlm.optics.psf import GaussianPSF
from deepsmlm.physics import emccd
from deepsmlm.physics.camera import Camera
from deepsmlm.physics.crlb import crlb

# EPFL SMLM challenge 2016 camera: read noise 74.4/300 = 0.248 e⁻ and one ADU = 0.15 e⁻, input-referred
EPFL = dict(type="emccd", baseline_adu=100.0, e_per_adu=45.0, em_gain=300.0, qe=0.9, read_noise_e=74.4)
S, Q = 74.4 / 300.0, 45.0 / 300.0


def gamma_poisson_information(mu: float) -> float:
    """Noiseless, unquantised EM register by adaptive quadrature: atom e^(−μ) at 0 (score −1) and the
    density f(u) = e^(−μ−u)√(μ/u)I₁(2√(μu)) with score −1 + √(u/μ)·I₀/I₁."""

    def term(u: float) -> float:
        z = 2 * math.sqrt(mu * u)
        f = math.exp(-((math.sqrt(mu) - math.sqrt(u)) ** 2)) * math.sqrt(mu / u) * ive(1, z)
        score = -1 + math.sqrt(u / mu) * ive(0, z) / ive(1, z)
        return f * score**2

    return math.exp(-mu) + quad(term, 0, mu + 60 * math.sqrt(mu) + 60, limit=400)[0]


@pytest.mark.parametrize("mu", [0.05, 0.5, 2.0, 10.0])
def test_noiseless_register_matches_quadrature(mu: float) -> None:
    assert emccd.fisher_information(mu, 0.0, 0.0) == pytest.approx(gamma_poisson_information(mu), rel=1e-3)


def test_bin_probabilities_are_the_simulated_camera_histogram() -> None:
    """P_b and ∂P_b/∂μ of the EPFL camera at 1 e⁻ against 10⁶ simulated pixels and a finite difference."""
    mu = 1.0
    p, dp, centre = emccd.bin_probabilities(mu, S, Q)
    adu = np.rint(centre / Q).astype(int)
    assert p.sum() == pytest.approx(1.0, abs=1e-5) and dp.sum() == pytest.approx(0.0, abs=1e-5)
    cam = Camera(CameraConfig(**EPFL))
    frames = cam(torch.full((1000, 1000), mu / 0.9), generator=torch.Generator().manual_seed(0)) - 100.0
    counts = np.bincount(frames.flatten().long().numpy() - adu[0], minlength=len(p))[: len(p)]
    expected = 1e6 * p
    big = expected > 50
    z = (counts[big] - expected[big]) / np.sqrt(expected[big])
    assert np.abs(z).max() < 5 and abs(np.mean(z**2) - 1) < 0.5  # Poisson scatter (~76 bins), no systematic part
    plus, minus = emccd.bin_probabilities(mu + 1e-4, S, Q)[0], emccd.bin_probabilities(mu - 1e-4, S, Q)[0]
    n = min(len(plus), len(minus), len(p))
    np.testing.assert_allclose((plus[:n] - minus[:n]) / 2e-4, dp[:n], atol=1e-6)


def test_low_signal_information_exceeds_the_excess_noise_model() -> None:
    """PHYSICS.md: μ·I = 0.55–0.58 at 0.5–2 e⁻ (the model: ≤ 0.5); within 1 % of the model from 25 e⁻."""
    for mu in (0.5, 1.0, 2.0):
        assert 0.55 <= mu * emccd.fisher_information(mu, S, Q) <= 0.59
    model = lambda mu: 1 / (2 * mu + S**2 + Q**2 / 12)  # noqa: E731
    assert emccd.fisher_information(0.5, S, Q) / model(0.5) == pytest.approx(1.234, abs=0.005)  # 23 % more
    for mu in (25.0, 100.0, 999.0):
        assert 1.0 < emccd.fisher_information(mu, S, Q) / model(mu) < 1.011


def test_camera_fisher_variance_is_exact_for_emccd_and_the_variance_otherwise() -> None:
    cam = Camera(CameraConfig(**EPFL))
    lam = torch.tensor([0.0, 0.1, 0.5 / 0.9, 3.0, 40.0, 2000.0], dtype=torch.float64)
    fisher = cam.fisher_variance_photons(lam)
    exact = [1 / (0.81 * emccd.fisher_information(0.9 * float(x), S, Q)) for x in lam[1:5]]
    np.testing.assert_allclose(fisher[1:5].numpy(), exact, rtol=2e-3)  # log–log interpolation of the table
    assert float(fisher[0]) == 0.0  # an empty pixel: a photon counter is never wrong
    assert float(fisher[-1]) == pytest.approx(float(cam.variance_photons(lam[-1:])), rel=1e-12)  # past the table
    assert float(cam.variance_photons(lam[2:3]) / fisher[2]) == pytest.approx(1.234, abs=0.005)
    x = lam[1:5].clone().requires_grad_()
    cam.fisher_variance_photons(x).sum().backward()
    assert torch.all(x.grad > 0)  # differentiable and increasing with the mean
    for cfg in (CameraConfig(type="ccd", read_noise_e=5.0), CameraConfig(type="scmos", read_noise_e=1.5),
                CameraConfig(type="ideal"), CameraConfig(**{**EPFL, "em_gain": 1.0})):
        other = Camera(cfg)
        assert torch.equal(other.fisher_variance_photons(lam), other.variance_photons(lam))


def test_exact_emccd_bound_is_tighter_at_low_background() -> None:
    """At 0.5 photons/px background most pixels hold < 1 e⁻, where the exact likelihood knows more."""
    psf = GaussianPSF(100.0, 25, 120.0)
    cam = Camera(CameraConfig(**EPFL))
    theta = torch.tensor([[7.0, -12.0, 0.0, 300.0, 0.5]], dtype=torch.float64)
    p = ("x", "y", "photons", "background")
    exact, model = crlb(psf, theta, cam.fisher_variance_photons, p)[0], crlb(psf, theta, cam.variance_photons, p)[0]
    assert torch.all(exact < model) and float(exact[0] / model[0]) < 0.98  # x: 2.8 % tighter
    high = theta.clone()
    high[0, 3:] = torch.tensor([5000.0, 200.0], dtype=torch.float64)
    ratio = crlb(psf, high, cam.fisher_variance_photons, p)[0] / crlb(psf, high, cam.variance_photons, p)[0]
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=2e-3)  # bright: the excess-noise model holds
