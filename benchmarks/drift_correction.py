"""Drift correction (RCC and AIM): residual drift RMS on simulated filaments with a known drift, seconds for
1,000,000 localizations, and how far the two methods' drifts differ.

Prints one JSON document. Labels lie on the simulator's worm-like-chain filaments (12 filaments in a
12 × 12 µm field, 3D: ±300 nm axial excursion); each localization is a random label plus Gaussian noise
(σ 10 nm laterally, 25 nm axially) plus the drift of its frame: linear plus sinusoidal, up to ~450 nm
laterally and ±120 nm axially over the movie. The accuracy cases have 20,000 frames × 10 localizations
(the acceptance case), the speed cases 20,000 × 50 (1 M). Residual RMS: per axis, over frames, of the
estimated minus the true drift less its mean (a constant offset is unobservable); lateral = √(x² + y²).
Seconds: `deepsmlm.correct_drift(method=…)` on a table in memory (default options: 1000-frame segments,
20 nm pixels), one thread; the machine may be shared (its 1-minute load average at the start and at the
end is recorded). AIM rows also give the largest |AIM − RCC| over frames per axis.

    python benchmarks/drift_correction.py [--seed 0] [--out FILE]
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

import deepsmlm
import harness
from deepsmlm.config import StructureConfig
from deepsmlm.localizations import Localizations
from deepsmlm.simulation.structures import filament_paths, sample_on_filaments

FIELD_NM = 12_000.0
SIGMA_NM = np.array([10.0, 10.0, 25.0])


def known_drift(n_frames: int) -> np.ndarray:
    """(n_frames, 3) nm, 0 at frame 0."""
    t = np.arange(n_frames) / n_frames
    d = np.column_stack([400 * t + 50 * np.sin(4 * np.pi * t), -300 * t + 90 * np.sin(2 * np.pi * t + 0.5),
                         120 * np.sin(2 * np.pi * t)])
    return d - d[0]


def case(n_frames: int, per_frame: int, three_d: bool, seed: int) -> tuple[Localizations, np.ndarray]:
    """A drifting table and its true drift (n_frames, 2|3)."""
    gen = torch.Generator().manual_seed(seed)
    cfg = StructureConfig(kind="filaments", n_filaments=12, filament_z_amplitude_nm=300.0 if three_d else 0.0)
    labels = sample_on_filaments(filament_paths(cfg, FIELD_NM, FIELD_NM, 0.0, gen), 200_000, gen).numpy()
    rng = np.random.default_rng(seed)
    n = n_frames * per_frame
    frame = np.sort(rng.integers(0, n_frames, n))
    drift = known_drift(n_frames)
    pos = labels[rng.integers(0, len(labels), n)] + rng.normal(0, 1, (n, 3)) * SIGMA_NM + drift[frame]
    k = 3 if three_d else 2
    return Localizations.from_arrays(frame, pos[:, 0], pos[:, 1], pos[:, 2] if three_d else None), drift[:, :k]


def timed(locs: Localizations, truth: np.ndarray, method: str) -> tuple[dict, np.ndarray]:
    """(the row of ``method`` on ``locs``, its drift (frames, 2|3) nm)."""
    t0 = time.perf_counter()
    drift = deepsmlm.correct_drift(locs, method=method).drift
    seconds = time.perf_counter() - t0
    r = drift.drift_nm - truth
    rms = np.sqrt(((r - r.mean(axis=0)) ** 2).mean(axis=0))
    out = {"localizations": len(locs), "frames": len(truth), "segments": len(drift.segment_centres),
           "max_true_drift_nm": round(float(np.abs(truth).max()), 1), "seconds": round(seconds, 2),
           "residual_rms_lateral_nm": round(float(np.hypot(rms[0], rms[1])), 2),
           "residual_rms_x_nm": round(float(rms[0]), 2), "residual_rms_y_nm": round(float(rms[1]), 2)}
    if truth.shape[1] == 3:
        out["residual_rms_axial_nm"] = round(float(rms[2]), 2)
    return out, drift.drift_nm


def run(n_frames: int, per_frame: int, three_d: bool, seed: int) -> dict[str, dict]:
    """The rows of RCC and AIM on one drifting table."""
    locs, truth = case(n_frames, per_frame, three_d, seed)
    rcc, rcc_drift = timed(locs, truth, "rcc")
    aim, aim_drift = timed(locs, truth, "aim")
    aim["max_abs_aim_minus_rcc_nm"] = [round(float(v), 2) for v in np.abs(aim_drift - rcc_drift).max(axis=0)]
    return {"rcc": rcc, "aim": aim}


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    cases = {f"{method}_{dim}_{n_frames * per_frame // 1000}k": row
             for n_frames, per_frame in ((20_000, 10), (20_000, 50)) for dim in ("2d", "3d")
             for method, row in run(n_frames, per_frame, dim == "3d", args.seed).items()}
    doc = {"benchmark": "drift_correction", "methods": ["rcc", "aim"], "sigma_nm": SIGMA_NM.tolist(),
           "load_average_1min": [round(load, 2), round(os.getloadavg()[0], 2)], "cases": cases,
           "acceptance": {"lateral_rms_le_5nm": all(c["residual_rms_lateral_nm"] <= 5 for c in cases.values()),
                          "axial_rms_le_15nm": all(c.get("residual_rms_axial_nm", 0) <= 15 for c in cases.values()),
                          "seconds_1M_le_30": all(c["seconds"] <= 30 for c in cases.values())},
           "machine": harness.machine()}
    harness.report(doc, args.out)


if __name__ == "__main__":
    main()
