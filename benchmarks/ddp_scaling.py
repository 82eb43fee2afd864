"""Training speed on 1 against 2 processes (torchrun, DistributedDataParallel over gloo on CPU).

Prints one JSON document. The same recipe (``epfl2013_bundled_tubes``: 64×64 px frames, the Deep-STORM 2D
network, global batch 8, so 4 frames a rank on 2 processes) is trained through ``torchrun -m deepsmlm``'s
code path (``deepsmlm.train`` in each process) for ``--steps`` steps, validation only at the end: 1 process
with 2 CPU threads and with 1, and 2 processes with 1 thread each. Reported: steps/s of rank 0 over the
steps after a warm-up of 3 (simulating the batch, forward, backward, the gradient all-reduce, the
optimiser), the frames/s it means, the speed-up of 2 processes over 1, and the load average before and after
each run (the machine may be busy with other work, which slows all runs; the runs take turns ``--rounds``
times and the best of each is kept).

    python benchmarks/ddp_scaling.py [--steps 20] [--rounds 2] [--out benchmarks/results/ddp_scaling.json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import harness

PRESET = "epfl2013_bundled_tubes"
RUNS = {"1 process, 2 threads": (1, 2), "1 process, 1 thread": (1, 1), "2 processes, 1 thread each": (2, 1)}
WARMUP = 3


def worker(config: str, steps: int, record: Path, out: Path) -> None:
    """One process of the torchrun job: train and, on rank 0, write each step's time to ``record``."""
    import deepsmlm

    times: list[float] = []
    summary = deepsmlm.train(config, out, steps=steps, progress=lambda event: times.append(time.perf_counter()))
    if times:
        record.write_text(json.dumps({"times": times, "steps": summary["steps"]}))


def timed_run(config: Path, processes: int, threads: int, steps: int, batch: int, folder: Path) -> dict:
    """Steps/s of one torchrun job (rank 0's steps after the warm-up; ``batch`` frames a step) and the load
    average around it."""
    folder.mkdir(exist_ok=True)
    record, out = folder / f"times_{processes}_{threads}.json", folder / f"model_{processes}_{threads}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    load_before = os.getloadavg()[0]
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                    str(processes), __file__, "--worker", str(config), str(steps), str(record), str(out)],
                   check=True, env=env, capture_output=True)
    times = json.loads(record.read_text())["times"]  # event 0 before the first step, event k after step k
    timed = times[WARMUP + 1:steps]  # the last event follows the final validation: left out
    rate = (len(timed) - 1) / (timed[-1] - timed[0])
    return {"steps_per_s": round(rate, 3), "frames_per_s": round(batch * rate, 1), "steps_timed": len(timed) - 1,
            "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--steps", type=int, default=20, help="steps of each run (default 20)")
    ap.add_argument("--rounds", type=int, default=2, help="times each run is repeated, taking turns (default 2)")
    args = ap.parse_args()
    import torch  # noqa: F401 (its version in the machine description)

    import deepsmlm
    from deepsmlm.config import dump_config, updated

    cfg = updated(deepsmlm.load_config(PRESET), {"training.validation_frames": 8,
                                                  "training.validate_every": args.steps})
    best: dict[str, dict] = {}
    with harness.scratch() as folder:
        config = folder / "config.yaml"
        config.write_text(dump_config(cfg))
        for round_ in range(args.rounds):
            for name, (processes, threads) in RUNS.items():
                run = timed_run(config, processes, threads, args.steps, cfg.training.batch_size,
                                folder / f"round{round_}")
                if run["steps_per_s"] > best.get(name, {}).get("steps_per_s", 0.0):
                    best[name] = run
    harness.report({
        "benchmark": "ddp_scaling", "config": PRESET, "global_batch": cfg.training.batch_size,
        "steps": args.steps, "warmup_steps": WARMUP, "rounds": args.rounds, "runs": best,
        "speedup_2_processes_over_1_process_2_threads":
            round(best["2 processes, 1 thread each"]["steps_per_s"] / best["1 process, 2 threads"]["steps_per_s"], 2),
        "speedup_2_processes_over_1_process_1_thread":
            round(best["2 processes, 1 thread each"]["steps_per_s"] / best["1 process, 1 thread"]["steps_per_s"], 2),
        "gpu": "none lent to this task: CPU only",
        "machine": harness.machine(),
    }, args.out)


if __name__ == "__main__":
    if "--worker" in sys.argv:
        _, _, config_path, n_steps, record_path, out_path = sys.argv
        worker(config_path, int(n_steps), Path(record_path), Path(out_path))
    else:
        main()
