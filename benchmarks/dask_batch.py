"""Many stacks and a whole chip on Dask distributed (``deepsmlm.localize_batch`` on LocalClusters of processes).

Prints one JSON document:

- **scaling**: the same ``--stacks`` stacks (``--frames`` frames of ``--size``² px each, simulated at the
  shipped ``default-2d``'s conditions) localized by 1 worker and by 2 workers (one thread each), the runs
  taking turns ``--rounds`` times, the best of each kept; frames/s from submitting the chunks to the last
  file joined, with the model already loaded on every worker; the ratio 2 : 1 workers; the load average
  before and after each run (the machine may be busy with other work, which slows every run).
- **whole chip**: a simulated ``--chip``² px movie of ``--chip-frames`` frames localized by 2 workers, one
  frame per task, each worker within ``--worker-gb`` GiB of working memory (frames tiled to fit), against
  one process (whole frames in the default budget): the counts and the largest position difference (nm),
  each worker process's peak resident set (VmHWM, MB, model loaded) and the seconds of each (the workers'
  with the model preloaded).

    python benchmarks/dask_batch.py [--stacks 4] [--frames 48] [--size 128] [--rounds 2] [--chip 2048]
        [--chip-frames 4] [--worker-gb 1.0] [--out benchmarks/results/dask_batch.json]
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

import harness

MODEL = "default-2d"
PRESET = "epfl2013_bundled_tubes"  # default-2d's training conditions: 100 nm pixels, 2D Gaussian-like PSF


def simulate(folder: Path, frames: int, size: int, seed: int) -> Path:
    """A simulated movie of ``frames`` frames of size² px (ADU) in ``folder``; its frames.tif."""
    import deepsmlm
    from deepsmlm.config import updated

    cfg = updated(deepsmlm.load_config(PRESET), {"frame.height": size, "frame.width": size,
                                                 "emitters.density_per_um2": 1.5, "emitters.count": None})
    deepsmlm.simulate(cfg, frames, seed, folder)
    return folder / "frames.tif"


def peak_mb() -> float:
    """This process's peak resident set (VmHWM), MB (run on each worker)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024


def cluster(workers: int):
    from distributed import Client, LocalCluster

    local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                         silence_logs=logging.ERROR)
    return local, Client(local)


def timed_batch(paths: list[Path], out: Path, workers: int, chunk: int) -> dict:
    """One run of the scaling benchmark on a fresh cluster of ``workers`` processes, the model preloaded."""
    from deepsmlm.api.batch import localize_batch
    from deepsmlm.api.batch_parts import worker_model

    local, client = cluster(workers)
    with local, client:
        client.run(worker_model, MODEL, "cpu", None, "torch")
        load = os.getloadavg()[0]
        result = localize_batch([str(p) for p in paths], MODEL, out, scheduler=local.scheduler_address,
                                chunk_frames=chunk, force=True)
    return {"frames": result.frames_run, "seconds": round(result.seconds, 2), "fps": round(result.fps, 2),
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}


def scaling(root: Path, n_stacks: int, frames: int, size: int, rounds: int) -> dict:
    movie = simulate(root / "movie", n_stacks * frames, size, 11)
    from deepsmlm.io.images import open_stack
    from deepsmlm.io.tiff import write_stack

    with open_stack(movie) as stack:
        paths = [root / f"stack{i}.tif" for i in range(n_stacks)]
        for i, path in enumerate(paths):
            write_stack(path, stack[i * frames:(i + 1) * frames], pixel_size_nm=100.0)
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for r in range(rounds):
        for workers in runs:
            runs[workers].append(timed_batch(paths, root / f"out{workers}_{r}", workers, frames // 4))
    best = {w: max(rs, key=lambda run: run["fps"]) for w, rs in runs.items()}
    return {"stacks": n_stacks, "frames_per_stack": frames, "frame_px": [size, size], "chunk_frames": frames // 4,
            "runs": {f"{w} worker{'s' if w > 1 else ''}": rs for w, rs in runs.items()},
            "best_fps": {str(w): b["fps"] for w, b in best.items()},
            "speedup_2_over_1": round(best[2]["fps"] / best[1]["fps"], 2)}


def whole_chip(root: Path, size: int, frames: int, worker_gb: float) -> dict:
    import deepsmlm
    from deepsmlm.api.batch import localize_batch
    from deepsmlm.api.batch_parts import worker_model
    from deepsmlm.io.localization_files import read_localizations

    path = simulate(root / "chip", frames, size, 12)
    local, client = cluster(2)
    with local, client:
        client.run(worker_model, MODEL, "cpu", None, "torch")  # timed without loading (its memory counts)
        result = localize_batch(path, MODEL, root / "chip_out", scheduler=local.scheduler_address, chunk_frames=1,
                                max_memory_gb=worker_gb, force=True)
        peaks = sorted(client.run(peak_mb).values())
    got = read_localizations(root / "chip_out" / "frames.parquet").table
    t0 = time.perf_counter()
    ref = deepsmlm.load_model(MODEL).localize(path, force=True).table
    seconds = time.perf_counter() - t0
    same_rows = len(got) == len(ref) and bool((got["frame"].to_numpy() == ref["frame"].to_numpy()).all())
    diff = float(max(np.abs(got[c] - ref[c]).max() for c in ("x_nm", "y_nm"))) if same_rows else None
    return {"frame_px": [size, size], "frames": frames, "worker_budget_gb": worker_gb,
            "dask_2_workers": {"localizations": len(got), "seconds": round(result.seconds, 1),
                               "worker_peak_rss_mb": [round(p) for p in peaks]},
            "one_process": {"localizations": len(ref), "seconds": round(seconds, 1)},
            "same_rows": same_rows, "max_position_difference_nm": diff}


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--stacks", type=int, default=4)
    ap.add_argument("--frames", type=int, default=48, help="frames per stack (4 chunks each)")
    ap.add_argument("--size", type=int, default=128, help="frame size of the scaling stacks (px)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--chip", type=int, default=2048, help="whole-chip frame size (px)")
    ap.add_argument("--chip-frames", type=int, default=4)
    ap.add_argument("--worker-gb", type=float, default=1.0, help="each worker's working-memory budget (GiB)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # the single-process reference runs as one worker does
    with harness.scratch() as root:
        document = {"model": MODEL, "preset": PRESET,
                    "scaling": scaling(root, args.stacks, args.frames, args.size, args.rounds),
                    "whole_chip": whole_chip(root, args.chip, args.chip_frames, args.worker_gb)}
    harness.report({**document, "machine": harness.machine()}, args.out)


if __name__ == "__main__":
    main()
