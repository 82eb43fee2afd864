"""FRC resolution of simulated structures against the localization precision σ, and against an independent
FRC computed another way.

Prints one JSON document. Labels lie uniformly on 8 random straight lines in a 3 × 3 µm field (about 4,000
labels), each localized 5 times in random frames of 2,000 with Gaussian precision σ ∈ {5, 10, 20, 40} nm.
`deepsmlm.frc` (histogram images of 5 nm pixels, FFT ring sums, halves from alternating 100-frame blocks)
is compared with an independent FRC of the same two halves, computed without images, FFT or rings: the
exact angular average of the unbinned Fourier transforms of the point sets,

    Σ_ring F_A F_B* ∝ Σ_{j∈A, k∈B} J₀(2π q |x_j − x_k|)   (likewise A·A and B·B, self pairs included),

from histograms of all pair distances (0.25 nm bins), evaluated at deepsmlm's ring frequencies and smoothed
by the same Gaussian width (1% of the curve's length); its 1/7 crossing is found here by its own
interpolation. No maintained FRC was installed for this: locan (BSD) brings asdf, cython, scikit-image,
scikit-learn, shapely, networkx, qtpy, protobuf, lmfit…; picassosr pins pandas < 3 and needs PyQt6 and numba.

    python benchmarks/frc_resolution.py [--seed 0] [--out FILE]
"""

from __future__ import annotations

import time

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.special import j0

import deepsmlm
import harness
from deepsmlm.localizations import Localizations

FIELD_NM = 3000.0
BIN_NM = 0.25
SIGMAS = (5.0, 10.0, 20.0, 40.0)


def structure(rng: np.random.Generator) -> np.ndarray:
    """(M, 2) nm: labels uniform on 8 random lines, inside the field."""
    start, angle = rng.uniform(0, FIELD_NM, (8, 2)), rng.uniform(0, np.pi, 8)
    k, s = rng.integers(0, 8, 4000), rng.uniform(-FIELD_NM / 2, FIELD_NM / 2, 4000)
    xy = start[k] + s[:, None] * np.column_stack([np.cos(angle[k]), np.sin(angle[k])])
    return xy[((xy >= 0) & (xy < FIELD_NM)).all(axis=1)]


def pair_histogram(a: np.ndarray, b: np.ndarray, n_bins: int) -> np.ndarray:
    """Counts of |a_j − b_k| over all ordered pairs (j, k), in bins of BIN_NM."""
    counts = np.zeros(n_bins)
    for chunk in np.array_split(a, max(1, len(a) // 500)):
        r = np.hypot(chunk[:, None, 0] - b[None, :, 0], chunk[:, None, 1] - b[None, :, 1]).ravel()
        counts += np.bincount((r / BIN_NM).astype(np.int64), minlength=n_bins)
    return counts


def bessel_frc(a: np.ndarray, b: np.ndarray, q: np.ndarray) -> np.ndarray:
    """FRC(q) of point sets a, b from pair-distance histograms and J₀ (see the module docstring)."""
    n_bins = int(np.ceil(FIELD_NM * 1.5 / BIN_NM)) + 1
    r = (np.arange(n_bins) + 0.5) * BIN_NM
    r[0] = 0.0  # bin 0 holds the self pairs (distance 0) and the few closer than BIN_NM
    kernel = j0(2 * np.pi * q[:, None] * r[None, :])
    ab, aa, bb = (kernel @ pair_histogram(u, v, n_bins) for u, v in ((a, b), (a, a), (b, b)))
    return ab / np.sqrt(aa * bb)


def first_crossing(q: np.ndarray, curve: np.ndarray, level: float = 1 / 7) -> float:
    """1/q where ``curve`` first drops below ``level`` after its first sample (linear in q)."""
    i = 1 + int(np.argmax(curve[1:] < level))
    q_cross = np.interp(level, [curve[i], curve[i - 1]], [q[i], q[i - 1]])
    return float(1.0 / q_cross)


def run(sigma: float, labels: np.ndarray, rng: np.random.Generator) -> dict:
    xy = np.repeat(labels, 5, axis=0) + rng.normal(0, sigma, (5 * len(labels), 2))
    frame = rng.integers(0, 2000, len(xy))
    t0 = time.perf_counter()
    ours = deepsmlm.frc(Localizations.from_arrays(frame, xy[:, 0], xy[:, 1]), pixel_nm=5.0, block_frames=100)
    seconds = time.perf_counter() - t0
    first = (frame // 100) % 2 == 0
    t0 = time.perf_counter()
    raw = bessel_frc(xy[first], xy[~first], ours.q_per_nm)
    independent = first_crossing(ours.q_per_nm, gaussian_filter1d(raw, max(1.0, 0.01 * len(raw)), mode="nearest"))
    return {"sigma_nm": sigma, "localizations": len(xy), "frc_resolution_nm": round(ours.resolution_nm, 2),
            "independent_resolution_nm": round(independent, 2),
            "relative_difference": round(abs(ours.resolution_nm - independent) / independent, 4),
            "resolution_over_sigma": round(ours.resolution_nm / sigma, 2), "seconds": round(seconds, 3),
            "independent_seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    labels = structure(rng)
    cases = [run(sigma, labels, rng) for sigma in SIGMAS]
    res = [c["frc_resolution_nm"] for c in cases]
    doc = {"benchmark": "frc_resolution", "labels": len(labels), "field_nm": FIELD_NM, "cases": cases,
           "acceptance": {"halving_sigma_lowers_resolution": all(a < b for a, b in zip(res, res[1:])),
                          "within_10_percent_of_independent": all(c["relative_difference"] <= 0.10 for c in cases)},
           "independent": "exact ring average of the unbinned point-set Fourier transforms (J0 pair sums)",
           "machine": harness.machine()}
    harness.report(doc, args.out)


if __name__ == "__main__":
    main()
