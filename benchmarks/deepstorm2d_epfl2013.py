"""Deep-STORM 2D vs the classic fitter on the real EPFL 2013 Bundled Tubes HD stack (never used for training).

Prints one JSON document: for ``--model`` (default: the shipped default-2d) and gaussian-mle, measured in
the same run, Jaccard / recall / precision / lateral RMSE at 250 nm and 100 nm tolerance (Hungarian),
and frames per second; plus the inference rate of the paper-size architecture (random weights: speed only).

    python benchmarks/deepstorm2d_epfl2013.py [--model default-2d] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

import deepsmlm
from deepsmlm.io.images import open_stack
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.models.registry import build_network
from deepsmlm.optics.masks import shared_data_root

KEYS = ("jaccard", "recall", "precision", "rmse_lateral_nm", "bias_x_nm", "bias_y_nm", "n_tp", "n_fp", "n_fn")


def paper_architecture_fps(frames: int = 8) -> float:
    """Frames/s of the published architecture (×8 upsampling) on 64×64 frames, random weights."""
    cfg = deepsmlm.load_config("epfl2013_bundled_tubes").model.model_copy(
        update={"architecture": "paper", "upsampling": 8, "channels": 32})
    net = build_network(cfg).eval()
    x = torch.randn(frames, 1, 64, 64)
    with torch.inference_mode():
        net(x[:1])
        t0 = time.perf_counter()
        net(x)
    return frames / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default-2d")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = shared_data_root()
    if root is None:
        raise SystemExit("shared reference data not found (set DEEPSMLM_DATA)")
    data = root / "epfl2013_bundled_tubes_hd"
    truth = deepsmlm.read_localizations(data / "ground_truth.csv")
    out = {"benchmark": "deepstorm2d_epfl2013", "data": str(data), "n_gt": len(truth),
           "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__,
                       "python": platform.python_version()}, "methods": {}}
    with open_stack(data / "frames.tif") as stack:
        for name, config in ((args.model, None), ("gaussian-mle", "epfl2013_bundled_tubes")):
            run = deepsmlm.load_model(name, config=config).stream(stack, superres=True)
            cfg, res = run.config, run.result
            meta = Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=stack.shape, n_frames=len(stack))
            pred = Localizations(res.table, meta)
            row = {"frames_per_s": res.fps, "n_pred": len(pred)}
            for tol in (250.0, 100.0):
                m = deepsmlm.evaluate(truth, pred, tol, None)
                row[f"tol_{tol:.0f}nm"] = {k: m[k] for k in KEYS}
            out["methods"][name] = row
    out["paper_architecture_frames_per_s"] = paper_architecture_fps()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
