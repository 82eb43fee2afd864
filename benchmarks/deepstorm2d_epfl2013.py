"""Deep-STORM 2D vs the classic fitter on the real EPFL 2013 Bundled Tubes HD stack (never used for training).

Prints one JSON document: for ``--model`` (default: the shipped default-2d) and gaussian-mle, measured in
the same run, Jaccard / recall / precision / lateral RMSE at 250 nm and 100 nm tolerance (Hungarian),
and frames per second; plus the inference rate of the paper-size architecture (random weights: speed only).

    python benchmarks/deepstorm2d_epfl2013.py [--model default-2d] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import time

import torch

import deepsmlm
import harness
from deepsmlm.config import updated
from deepsmlm.io.images import open_stack
from deepsmlm.models.registry import build_network

KEYS = ("jaccard", "recall", "precision", "rmse_lateral_nm", "bias_x_nm", "bias_y_nm", *harness.COUNTS)


def paper_architecture_fps(frames: int = 8) -> float:
    """Frames/s of the published architecture (×8 upsampling) on 64×64 frames, random weights."""
    cfg = updated(deepsmlm.load_config("epfl2013_bundled_tubes").model,
                  {"architecture": "paper", "upsampling": 8, "channels": 32})
    net = build_network(cfg).eval()
    x = torch.randn(frames, 1, 64, 64)
    with torch.inference_mode():
        net(x[:1])
        t0 = time.perf_counter()
        net(x)
    return frames / (time.perf_counter() - t0)


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--model", default="default-2d")
    harness.add_threads(ap)
    args = ap.parse_args()
    data = harness.shared_data("epfl2013_bundled_tubes_hd")
    truth = deepsmlm.read_localizations(data / "ground_truth.csv")
    methods = {}
    with open_stack(data / "frames.tif") as stack:
        for name, config in ((args.model, None), ("gaussian-mle", "epfl2013_bundled_tubes")):
            run = deepsmlm.load_model(name, config=config).stream(stack, superres=True)
            pred = run.localizations
            row = {"frames_per_s": run.result.fps, "n_pred": len(pred)}
            for tol in (250.0, 100.0):
                row[f"tol_{tol:.0f}nm"] = harness.scores(deepsmlm.evaluate(truth, pred, tol, None), KEYS)
            methods[name] = row
    harness.report({"benchmark": "deepstorm2d_epfl2013", "data": str(data), "n_gt": len(truth),
                    "machine": harness.machine(), "methods": methods,
                    "paper_architecture_frames_per_s": paper_architecture_fps()}, args.out)


if __name__ == "__main__":
    main()
