"""Speed of onnxruntime against torch on CPU: the same shipped network, the same frames, the same run.

Prints one JSON document. For default-2d (64×64 px frames) and tetrapod-3d (121×121 px), frames are
simulated from the model's own config (seeded) and localized through the public API twice: with the torch
backend and with ``backend="onnx"`` (the network exported to ONNX in memory, run by onnxruntime with
torch's thread count); pre- and post-processing are shared. Reported: frames/s of the whole localization
(``localize``) and of the network alone (normalised input → raw output, in the passes localize makes),
best of 3 after a warm-up with the backends taking turns, and the ratio onnxruntime / torch (> 1:
onnxruntime faster). Both backends must give the same localizations (checked: same count, positions within 0.1 nm).
``--threads`` (default 2) sets the CPU threads of both; the load average at the start is recorded, as a
busy machine slows both.

    python benchmarks/onnx_speed.py [--threads 2] [--out benchmarks/results/onnx_speed.json]
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import numpy as np
import torch

import deepsmlm
import harness
from deepsmlm.api.model import NETWORK_BATCH
from deepsmlm.assembly.simulators import build_simulator

CASES = {"default-2d": 64, "tetrapod-3d": 16}  # model → frames localized (64×64 and 121×121 px)
SEED = 22
T = TypeVar("T")


def interleaved_best(calls: dict[str, Callable[[], T]], repeat: int = 3) -> tuple[dict[str, float], dict[str, T]]:
    """Best wall time (s) of each call and its last result, the calls taking turns (a busy machine slows
    each alike), after one warm-up call each."""
    best, results = {}, {}
    for round_ in range(repeat + 1):
        for key, call in calls.items():
            seconds, results[key] = harness.best_seconds(call, 1)
            if round_:  # round 0 warms up
                best[key] = min(best.get(key, float("inf")), seconds)
    return best, results


def run(name: str, n_frames: int) -> dict:
    """Simulate the model's frames; time both backends end to end and network only (in the passes localize
    makes); compare their tables."""
    models = {backend: deepsmlm.load_model(name, backend=backend) for backend in ("torch", "onnx")}
    cfg = models["torch"].config
    frames, _ = harness.test_set(build_simulator(cfg), n_frames, SEED, cfg.frame.pixel_size_nm)
    seconds, tables = interleaved_best({b: partial(harness.localize, m, frames.adu) for b, m in models.items()})
    predictors = {backend: model.localizer() for backend, model in models.items()}
    per_pass = min(NETWORK_BATCH, predictors["torch"].frames_per_pass(*frames.adu.shape[-2:]))
    m = cfg.model  # the network's input: photons less the model's offset, over its scale, one channel
    x = ((predictors["torch"].photons(frames.adu) - m.input_offset_photons) / m.input_scale_photons).unsqueeze(1)

    def network(net: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with torch.inference_mode():
            for i in range(0, n_frames, per_pass):
                net(x[i:i + per_pass])

    net_seconds, _ = interleaved_best({b: partial(network, p.net) for b, p in predictors.items()})
    a, b = tables["torch"], tables["onnx"]
    same = len(a) == len(b) and all(np.abs(a[c] - b[c]).max() <= 0.1 for c in ("x_nm", "y_nm", "z_nm") if c in a)
    fps = {k: n_frames / v for k, v in seconds.items()}
    net_fps = {k: n_frames / v for k, v in net_seconds.items()}
    return {"model": name, "frame_px": list(frames.adu.shape[-2:]), "n_frames": n_frames,
            "frames_per_network_pass": per_pass, "n_localizations": {"torch": len(a), "onnx": len(b)},
            "same_localizations": bool(same),
            "localize_frames_per_s": {**fps, "ratio_onnx_over_torch": fps["onnx"] / fps["torch"]},
            "network_frames_per_s": {**net_fps, "ratio_onnx_over_torch": net_fps["onnx"] / net_fps["torch"]}}


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of torch and onnxruntime (default 2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    busy = load > os.cpu_count() - args.threads
    runs = [run(name, n) for name, n in CASES.items()]
    import onnxruntime

    harness.report({
        "benchmark": "onnx_speed",
        "setup": f"shipped models on frames simulated from their configs (seed {SEED}); {args.threads} CPU threads "
                 f"for torch and onnxruntime; frames/s best of 3 after a warm-up; ratio > 1: onnxruntime faster",
        "threads": args.threads,
        "load_average_1min_at_start": round(load, 2),
        "busy_machine": busy,
        "note": (f"machine busy (load average {load:.1f} on {os.cpu_count()} cores): both backends measured alike "
                 f"with {args.threads} thread(s), taking turns" if busy else "machine quiet"),
        "machine": {**harness.machine(), "onnxruntime": onnxruntime.__version__},
        "runs": runs,
    }, args.out)


if __name__ == "__main__":
    main()
