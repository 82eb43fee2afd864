"""The raw estimates of a movie corrected for the emitters its fitter misses, by simulation matching.

A classic fit sees only the emitters bright or focused enough to be detected, so the raw statistics of
:mod:`deepsmlm.calibration.estimate` overstate the photons, understate the density and narrow the axial
range. The correction runs our own physics through the same fitter: a movie as large as the sample is
simulated under the user's config (camera + PSF) from a broad proposal — log-normal photons wider than
the raw ones, z uniform over the config's range, about twice the raw density — and fitted with the same
fitter and threshold; each fit is matched to the simulated emitter it came from (nearest in its frame).
Importance weights p_θ(N, z) / q(N, z) of the emitters then predict, for any photon distribution
θ = (log-normal mean, σ) and uniform axial range, the distribution of the fitted log photons (and depths)
and the fraction P(θ) of emitters detected. θ maximises the binned (deciles of log photons × sextiles of
z) multinomial likelihood of the observed fits under that prediction (simulated maximum likelihood), the
density is the raw one over P(θ), and the background range is shifted by the simulation's own bias of
the frames' median fitted background. Each round simulates again from the last estimate (σ widened; all
rounds' fits pooled, the proposal their mixture) until photons mean, σ, density and z half-range change by
less than TOLERANCE; a solution that keeps moving, sits on a bound, or rests on few detected emitters is
flagged. The axial range and the density trade off where the edges of the range are barely detected
(defocused spots are missed): their corrected values are the least certain.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.spatial import cKDTree
from scipy.special import log_expit

from deepsmlm.calibration.estimate import BACKGROUND_QUANTILES, MovieEstimate

TOLERANCE = 0.05  # successive rounds agreeing within this (relative) end the correction
MAX_ROUNDS = 3
FIRST_SPREAD = 1.5  # the first proposal's σ of log photons: this times the raw one
SPREAD = 1.25  # later proposals' σ: this times the last estimate (weights stay bounded)
MIN_DETECTED = 0.05  # below this detected fraction the density is an extrapolation
PHOTON_BINS, Z_BINS = 10, 6  # the observed fits' quantile bins of log photons (and z)
EDGE_NM = 10.0  # the axial range's soft edge (nm): keeps the likelihood smooth in the range
FRAME_STRIDE = 1e9  # nm between frames when matching fits to emitters in one tree


@dataclass(frozen=True)
class SimulatedFits:
    """One simulated movie and its fits: the emitters' log photons and z (nm), each fit's log photons and
    z and the emitter it came from, the frames' median fitted backgrounds (photons/px), and the proposal
    (μ, σ of log photons; z range nm) the emitters were drawn from."""

    log_photons: np.ndarray
    z_nm: np.ndarray
    fit_log_photons: np.ndarray
    fit_z_nm: np.ndarray
    source: np.ndarray
    frame_backgrounds: np.ndarray
    proposal: tuple[float, float, float, float]


def simulated_fits(truth: pd.DataFrame, fits: pd.DataFrame, proposal: MovieEstimate,
                   z_range_nm: tuple[float, float]) -> SimulatedFits:
    """Match each fit (frame, x_nm, y_nm, photons, bg, z_nm) of a simulated movie to the nearest emitter of
    ``truth`` in its frame; ``proposal`` (photons, z range ``z_range_nm``) is what the emitters were drawn
    from."""
    fits = fits[np.isfinite(fits["photons"]) & (fits["photons"] > 0)]
    tree = cKDTree(np.c_[truth["x_nm"], truth["y_nm"], truth["frame"] * FRAME_STRIDE])
    distance, source = tree.query(np.c_[fits["x_nm"], fits["y_nm"], fits["frame"] * FRAME_STRIDE])
    same_frame = distance < FRAME_STRIDE / 2
    fits, source = fits[same_frame], source[same_frame]
    z_fit = fits["z_nm"].to_numpy(np.float64) if "z_nm" in fits else np.zeros(len(fits))
    sigma = proposal.photons_sigma
    return SimulatedFits(np.log(truth["photons"].to_numpy(np.float64)), truth["z_nm"].to_numpy(np.float64),
                         np.log(fits["photons"].to_numpy(np.float64)), z_fit, source,
                         fits.groupby("frame")["bg"].median().to_numpy(np.float64),
                         (math.log(proposal.photons_mean) - sigma**2 / 2, sigma, *z_range_nm))


def log_density(log_n: np.ndarray, z: np.ndarray, theta: tuple[float, float, float, float] | np.ndarray,
                with_z: bool) -> np.ndarray:
    """Log density of log-normal photons (μ, σ of log photons) and, ``with_z``, uniform z (low, high nm)
    with soft edges of EDGE_NM, at each emitter's log photons ``log_n`` and depth ``z``."""
    mu, sigma, low, high = theta
    value = -0.5 * ((log_n - mu) / sigma) ** 2 - math.log(sigma)
    if with_z:
        value = value + log_expit((z - low) / EDGE_NM) + log_expit((high - z) / EDGE_NM) - math.log(high - low)
    return value


class Matcher:
    """The observed fits' binned counts and, for a candidate θ, their predicted bin probabilities and the
    detected fraction, from the pooled simulated fits reweighted from their proposals to θ."""

    def __init__(self, observed: pd.DataFrame, sims: list[SimulatedFits], with_z: bool):
        self.with_z = with_z
        log_obs = np.log(observed["photons"].to_numpy(np.float64))
        self.edges = [_inner_quantiles(log_obs, PHOTON_BINS)]
        if with_z:
            self.edges.append(_inner_quantiles(observed["z_nm"].to_numpy(np.float64), Z_BINS))
        self.n_bins = math.prod(len(e) + 1 for e in self.edges)
        self.counts = np.bincount(self._bins(log_obs, observed.get("z_nm")), minlength=self.n_bins)
        self.log_n = np.concatenate([s.log_photons for s in sims])
        self.z = np.concatenate([s.z_nm for s in sims])
        offsets = np.cumsum([0] + [len(s.log_photons) for s in sims])
        self.source = np.concatenate([s.source + o for s, o in zip(sims, offsets)])
        self.fit_bins = np.concatenate([self._bins(s.fit_log_photons, s.fit_z_nm) for s in sims])
        shares = np.diff(offsets) / offsets[-1]
        self.log_q = np.logaddexp.reduce([math.log(max(p, 1e-300)) + log_density(self.log_n, self.z, s.proposal, with_z)
                                          for p, s in zip(shares, sims)], axis=0)

    def _bins(self, log_n: np.ndarray, z) -> np.ndarray:
        index = np.digitize(log_n, self.edges[0])
        if self.with_z:
            index = index * (len(self.edges[1]) + 1) + np.digitize(np.asarray(z, np.float64), self.edges[1])
        return index

    def predicted(self, theta) -> tuple[np.ndarray, float]:
        """(bin probabilities of the fits, detected fraction) under θ = (μ, σ, z low, z high)."""
        weights = np.exp(log_density(self.log_n, self.z, theta, self.with_z) - self.log_q)
        per_bin = np.bincount(self.fit_bins, weights=weights[self.source], minlength=self.n_bins)
        return per_bin / max(per_bin.sum(), 1e-300), float(per_bin.sum() / max(weights.sum(), 1e-300))

    def negative_log_likelihood(self, theta) -> float:
        probabilities, _ = self.predicted(theta)
        return float(-(self.counts * np.log(probabilities + 1e-9)).sum())


def _inner_quantiles(values: np.ndarray, n: int) -> np.ndarray:
    return np.quantile(values, np.linspace(0, 1, n + 1)[1:-1])


@dataclass(frozen=True)
class Solution:
    """θ found by one round, its detected fraction, and whether it rests on a bound."""

    theta: tuple[float, float, float, float]
    detected: float
    on_bound: bool


def solve(matcher: Matcher, start: tuple[float, float, float, float], max_sigma: float,
          z_range_nm: tuple[float, float]) -> Solution:
    """Maximise the likelihood over μ, log σ (σ ≤ ``max_sigma``) and, with z, the range's centre and log
    half-width (µm) inside ``z_range_nm``; from ``start`` (μ, σ, low, high)."""
    z0, z1 = z_range_nm
    half_max = max((z1 - z0) / 2, 1.0) / 1000

    def theta(x):
        centre, half = x[2] * 1000, math.exp(min(x[3], math.log(half_max))) * 1000
        low = min(max(centre - half, z0), z1 - 2.0)
        return x[0], math.exp(min(x[1], math.log(max_sigma))), low, max(min(centre + half, z1), low + 2.0)

    mu, sigma, low, high = start
    x0 = [mu, math.log(min(sigma, max_sigma)), (low + high) / 2000, math.log(max(high - low, 2.0) / 2000)]
    bounds = [(None, None), (math.log(0.02), math.log(max_sigma)), (z0 / 1000, z1 / 1000),
              (math.log(1e-3), math.log(half_max))]
    n = 4 if matcher.with_z else 2
    best = minimize(lambda x: matcher.negative_log_likelihood(theta([*x, *x0[n:]])), x0[:n], method="Nelder-Mead",
                    bounds=bounds[:n], options={"xatol": 1e-3, "fatol": 1e-3, "maxiter": 2000})
    x = [*best.x, *x0[n:]]
    found = theta(x)
    return Solution(found, matcher.predicted(found)[1], on_bound=x[1] >= math.log(max_sigma) - 1e-3)


def first_proposal(raw: MovieEstimate, z_range_nm: tuple[float, float] | None) -> MovieEstimate:
    """A proposal broader than the raw fits: σ of log photons FIRST_SPREAD times theirs, the log-photon
    mean one raw σ lower, twice the raw density, z over the config's range."""
    sigma = FIRST_SPREAD * raw.photons_sigma
    mu = math.log(raw.photons_mean) - raw.photons_sigma**2 / 2 - raw.photons_sigma
    return replace(raw, photons_mean=math.exp(mu + sigma**2 / 2), photons_sigma=sigma,
                   density_per_um2=2 * raw.density_per_um2, z_range_nm=z_range_nm)


def next_proposal(found: MovieEstimate, z_range_nm: tuple[float, float] | None) -> MovieEstimate:
    """The last estimate with its σ widened by SPREAD (same log-photon mean) and z over the config's range."""
    mu = math.log(found.photons_mean) - found.photons_sigma**2 / 2
    sigma = SPREAD * found.photons_sigma
    return replace(found, photons_mean=math.exp(mu + sigma**2 / 2), photons_sigma=sigma, z_range_nm=z_range_nm)


def estimate_of(raw: MovieEstimate, solution: Solution, last: SimulatedFits, proposal: MovieEstimate,
                with_z: bool) -> MovieEstimate:
    """The corrected estimate: photons and z of ``solution``, the raw density over the detected fraction,
    the raw background less the bias the ``last`` simulation (drawn from ``proposal``) shows."""
    mu, sigma, low, high = solution.theta
    simulated = np.quantile(last.frame_backgrounds, [BACKGROUND_QUANTILES[0], 0.5, BACKGROUND_QUANTILES[1]])
    (p0, p1), raw_bg = proposal.background_range, (raw.background_range[0], raw.background_photons_per_px,
                                                   raw.background_range[1])
    bias = simulated - np.array([p0, (p0 + p1) / 2, p1])
    low_bg, median_bg, high_bg = np.maximum(np.array(raw_bg) - bias, 0.0)
    return replace(raw, photons_mean=math.exp(mu + sigma**2 / 2), photons_sigma=sigma,
                   density_per_um2=raw.density_per_um2 / max(solution.detected, 1e-9),
                   background_photons_per_px=float(median_bg),
                   background_range=(float(low_bg), float(max(high_bg, low_bg))),
                   z_range_nm=(float(low), float(high)) if with_z else None)


def change(old: MovieEstimate, new: MovieEstimate) -> float:
    """Largest relative change of photons mean, σ, density and z half-range between two estimates."""
    pairs = [(old.photons_mean, new.photons_mean), (old.photons_sigma, new.photons_sigma),
             (old.density_per_um2, new.density_per_um2)]
    if old.z_range_nm is not None and new.z_range_nm is not None:
        pairs.append((old.z_range_nm[1] - old.z_range_nm[0], new.z_range_nm[1] - new.z_range_nm[0]))
    return max(abs(math.log(max(b, 1e-12) / max(a, 1e-12))) for a, b in pairs)


def corrected_estimate(raw: MovieEstimate, observed: pd.DataFrame,
                       simulate: Callable[[MovieEstimate, int], SimulatedFits],
                       z_range_nm: tuple[float, float] | None) -> MovieEstimate:
    """``raw`` (the estimate of the ``observed`` fits) corrected for missed emitters; ``simulate(proposal,
    round)`` fits a movie simulated under the proposal (z over ``z_range_nm``, the config's range; None
    without 3D fits) with the user's fitter. The result carries ``raw`` and, when it is not to be trusted,
    a one-line ``warning``."""
    with_z = z_range_nm is not None
    observed = observed[np.isfinite(observed["photons"]) & (observed["photons"] > 0)]
    proposal, sims, found, moved = first_proposal(raw, z_range_nm), [], None, math.inf
    sigma = raw.photons_sigma
    start = (math.log(raw.photons_mean) - sigma**2 / 2 - sigma / 2, sigma, *(raw.z_range_nm or (0.0, 0.0)))
    for round_ in range(MAX_ROUNDS):
        sims.append(simulate(proposal, round_))
        solution = solve(Matcher(observed, sims, with_z), start, max(s.proposal[1] for s in sims),
                         z_range_nm or (0.0, 0.0))
        new = estimate_of(raw, solution, sims[-1], proposal, with_z)
        moved = math.inf if found is None else change(found, new)
        found, start, proposal = new, solution.theta, next_proposal(new, z_range_nm)
        if moved <= TOLERANCE:
            break
    notes = [f"did not settle in {MAX_ROUNDS} simulated rounds (last change {moved:.0%})"] if moved > TOLERANCE else []
    if solution.on_bound:
        notes.append("the photon spread reached the widest one simulated")
    if solution.detected < MIN_DETECTED:
        notes.append(f"only {solution.detected:.0%} of the emitters are detected, so the density is an extrapolation")
    return replace(found, raw=raw, warning="; ".join(notes) or None)
