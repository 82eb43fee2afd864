"""Exact Fisher information of one EMCCD pixel (Poisson–Gamma–Normal, quantised), by quadrature.

In input-referred electrons (the EM gain G divided out; PHYSICS.md, "Camera"):

    n ~ Poisson(μ)                      photoelectrons + spurious charge, μ = QE·λ + c
    u ~ Gamma(shape=n, scale=1) if n > 0, else u = 0          (EM register, e'/G)
    y = u + r,  r ~ Normal(0, s),       s = σ_read / G          (electrons)
    ADU − baseline = round(y / q),      q = (e⁻ per ADU) / G     (electrons per ADU step)

The law of u is an atom e^(−μ) at 0 plus the density
f(u) = e^(−μ−u)·√(μ/u)·I₁(2√(μu)), with ∂f/∂μ = e^(−μ−u)·I₀(2√(μu)) − f. The probability of ADU bin b
is P_b = ∫_bin (atom + f) ⊛ N(0, s), and the Fisher information about μ is

    I(μ) = Σ_b (∂P_b/∂μ)² / P_b            (1/electron²).

(bins centred on whole ADU: an integer baseline). The excess-noise model I ≈ 1/(2μ + s² + q²/12) holds
to 1 % above ~25 e⁻; below it the exact information is larger (EPFL 2016 camera, s = 0.248, q = 0.15:
μ·I = 0.58 at μ = 0.5, 23 % above the model), and as μ → 0 the pixel is a photon counter, I → ~1/μ.
:func:`information_table` tabulates log I on a log-μ grid once per (s, q), to be interpolated log–log
(extrapolated along its end segments below ``MU_MIN``); beyond ``MU_MAX`` the model is within 2.5e-4.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.signal import fftconvolve
from scipy.special import ive, ndtr

MU_MIN, MU_MAX = 1e-3, 1e3  # electrons: the table's range
POINTS_PER_DECADE = 8
PROB_FLOOR = 1e-13  # bins less likely than this are left out
TAIL_STD = 8.0  # the read-noise kernel and the Gamma tail are cut at this many standard deviations


def _step(s: float, q: float) -> tuple[float, int]:
    """Quadrature cell (electrons) and the odd number of cells per ADU bin: the cell resolves the read
    noise (s/4) and the Gamma density (≤ 0.02 e⁻); a bin finer than that counts as unquantised."""
    cell = min(max(s / 4, 0.002), 0.02)
    if q < cell:
        return cell, 1
    per_bin = math.ceil(q / cell) | 1
    return q / per_bin, per_bin


def bin_probabilities(mu: float, s: float, q: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P_b, ∂P_b/∂μ, bin centre b·q in electrons) over the ADU bins that carry probability, for μ > 0."""
    cell, per_bin = _step(s, q)
    n = math.ceil((mu + TAIL_STD * math.sqrt(2 * mu) + 40.0) / cell)  # past the Gamma–Poisson tail
    # cell k is centred at k·cell; cell 0 holds the atom e^(−μ) and f on [0, cell/2), midpoint rule
    u = np.arange(n) * cell
    u[0] = cell / 4
    width = np.full(n, cell)
    width[0] = cell / 2
    z = 2 * np.sqrt(mu * u)
    envelope = np.exp(-((math.sqrt(mu) - np.sqrt(u)) ** 2))  # e^(−μ−u+z): the Bessel functions are scaled
    p = envelope * np.sqrt(mu / u) * ive(1, z) * width
    dp = envelope * ive(0, z) * width - p
    p[0] += math.exp(-mu)
    dp[0] -= math.exp(-mu)
    half = math.ceil(TAIL_STD * s / cell) if s > 0 else 0
    if half:
        kernel = np.diff(ndtr((np.arange(-half, half + 2) - 0.5) * cell / s))
        p, dp = fftconvolve(p, kernel / kernel.sum()), fftconvolve(dp, kernel / kernel.sum())
    # index i holds cell k = i − half; bin b holds cells b·per_bin − m … b·per_bin + m, m = (per_bin − 1)/2
    m = (per_bin - 1) // 2
    front = (m - half) % per_bin
    back = -(len(p) + front) % per_bin
    p = np.pad(p, (front, back)).reshape(-1, per_bin).sum(1)
    dp = np.pad(dp, (front, back)).reshape(-1, per_bin).sum(1)
    first_bin = (m - half - front) // per_bin
    centre = (first_bin + np.arange(len(p))) * per_bin * cell
    keep = p > PROB_FLOOR  # below it the FFT's rounding noise, not probability; its information is nil
    return p[keep], dp[keep], centre[keep]


def fisher_information(mu: float, s: float, q: float) -> float:
    """I(μ) = Σ_b (∂P_b/∂μ)² / P_b of one pixel, 1/electron² (μ > 0)."""
    p, dp, _ = bin_probabilities(mu, s, q)
    return float(np.sum(dp**2 / p))


@lru_cache(maxsize=16)
def information_table(s: float, q: float) -> tuple[np.ndarray, np.ndarray]:
    """(log μ, log I(μ)) on a uniform log grid from MU_MIN to MU_MAX electrons, for read noise s and ADU
    step q (electrons, input-referred)."""
    decades = math.log10(MU_MAX / MU_MIN)
    log_mu = np.linspace(math.log(MU_MIN), math.log(MU_MAX), round(decades * POINTS_PER_DECADE) + 1)
    log_info = np.log([fisher_information(math.exp(m), s, q) for m in log_mu])
    return log_mu, log_info
