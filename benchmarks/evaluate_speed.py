"""Seconds to match and score 1,000,000 GT emitters against ~1,000,000 predictions, Hungarian and greedy.

Prints one JSON document. 10,000 frames × 100 emitters uniform over a 6.4 × 6.4 µm field; predictions
are the GT plus 20 nm Gaussian noise per axis, with 5% of emitters dropped and 5% spurious predictions
added at random frames and places. Times cover `evaluate` (matching + metrics) from the tables in memory.

    python benchmarks/evaluate_speed.py [--frames 10000] [--per-frame 100] [--seed 0] [--out FILE]
"""

from __future__ import annotations

import time

import numpy as np

import deepsmlm
import harness
from deepsmlm.localizations import Localizations

FIELD_NM = 6400.0
NOISE_NM = 20.0
DROPPED = SPURIOUS = 0.05


def make_case(n_frames: int, per_frame: int, seed: int) -> tuple[Localizations, Localizations]:
    """GT and noisy predictions as described in the module docstring."""
    rng = np.random.default_rng(seed)
    n = n_frames * per_frame
    frame = np.repeat(np.arange(n_frames), per_frame)
    xy = rng.uniform(0.0, FIELD_NM, (n, 2))
    kept = rng.random(n) >= DROPPED
    n_spurious = int(round(SPURIOUS * n))
    pred_frame = np.concatenate([frame[kept], rng.integers(0, n_frames, n_spurious)])
    pred_xy = np.concatenate([xy[kept] + rng.normal(0.0, NOISE_NM, (int(kept.sum()), 2)),
                              rng.uniform(0.0, FIELD_NM, (n_spurious, 2))])
    gt = Localizations.from_arrays(frame, xy[:, 0], xy[:, 1])
    return gt, Localizations.from_arrays(pred_frame, pred_xy[:, 0], pred_xy[:, 1])


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--per-frame", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    gt, pred = make_case(args.frames, args.per_frame, args.seed)
    runs = {}
    for method in ("hungarian", "greedy"):
        t0 = time.perf_counter()
        r = deepsmlm.evaluate(gt, pred, 250.0, 500.0, match=method)
        runs[method] = {"seconds": time.perf_counter() - t0,
                        **harness.scores(r, ("jaccard", *harness.COUNTS, "rmse_lateral_nm"))}
    harness.report({
        "benchmark": "evaluate_speed",
        "setup": f"{args.frames} frames x {args.per_frame} emitters, {FIELD_NM / 1000:g} um field, "
                 f"{NOISE_NM:g} nm noise, {DROPPED:.0%} dropped, {SPURIOUS:.0%} spurious, lateral tol 250 nm",
        "n_gt": len(gt), "n_pred": len(pred),
        "machine": harness.machine(),
        "runs": runs,
    }, args.out)


if __name__ == "__main__":
    main()
