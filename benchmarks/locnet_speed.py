"""Frames per second of 2D models on 64×64 and 512×512 frames, in one run (for ratios): `locnet-2d` beside
`default-2d` by default, on frames simulated under locnet_2d's conditions at the preset density, each with
every ``--backend`` asked for (default torch; torch-bf16 runs the network in bfloat16).

Prints one JSON document: per model (``name`` or ``name [backend]``) and frame size, frames/s of
`Model.localize` (the whole path: ADU in, table out; best of ``--repeat``) and the localizations found.

    python benchmarks/locnet_speed.py [--model locnet-2d --model default-2d] [--backend torch --backend torch-bf16]
        [--threads 2] [--out FILE]
"""

from __future__ import annotations

import os

import deepsmlm
import harness
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import updated

SIZES = {64: 256, 512: 8}  # frame side (px) → frames timed


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--model", action="append", default=None, help="shipped name or folder (repeatable)")
    ap.add_argument("--backend", action="append", default=None, help="torch, torch-bf16 or onnx (repeatable)")
    ap.add_argument("--repeat", type=int, default=2)
    harness.add_threads(ap)
    args = ap.parse_args()
    names = args.model or ["locnet-2d", "default-2d"]
    backends = args.backend or ["torch"]
    models = {name if backend == "torch" else f"{name} [{backend}]": deepsmlm.load_model(name, backend=backend)
              for name in names for backend in backends}
    rows = {}
    for size, n_frames in SIZES.items():
        cfg = updated(deepsmlm.load_config("locnet_2d"), {"frame.height": size, "frame.width": size})
        frames, _ = harness.test_set(build_simulator(cfg), n_frames, 7, cfg.frame.pixel_size_nm)
        for name, model in models.items():
            harness.localize(model, frames.adu[:2])  # warm-up
            seconds, table = harness.best_seconds(lambda: harness.localize(model, frames.adu), args.repeat)
            rows.setdefault(f"{size}x{size}", {})[name] = {"frames": n_frames, "frames_per_s": n_frames / seconds,
                                                          "n_localizations": len(table)}
    harness.report({"benchmark": "locnet_speed", "load_average_1min": os.getloadavg()[0], "sizes": rows,
                    "machine": harness.machine()}, args.out)


if __name__ == "__main__":
    main()
