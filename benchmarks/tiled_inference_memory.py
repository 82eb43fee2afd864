"""Peak memory and speed of `deepsmlm localize` on frames of any size: tiled inference, memory budget,
localizations streamed to the file.

Simulates movies at the shipped default-2d's conditions (the EPFL 2013 preset: 100 nm pixels, Gaussian
PSF, CCD) with uniformly placed emitters at 0.1 µm⁻² (≈ 4,200 per 2048×2048 frame), writes them with
tifffile under a temporary folder, and runs `deepsmlm localize` on each in a fresh subprocess, whose
peak resident set (VmHWM) is its own peak memory. Prints one JSON document:

- ``runs``: peak RSS, its baseline after imports, frames/s and the pass plan (frames per pass, tile
  core) for default-2d and gaussian-mle on 64², 512² and 2048² frames with the default memory budget;
- ``tiled_vs_whole_512``: default-2d on 512² frames whole and in tiles (``--max-memory-gb 0.25``): same
  file, and the speed ratio;
- ``flat_in_frames``: peak RSS of default-2d on 200 and 2,000 frames of 64² (rows stream to the file);
- ``stack_2048x100``: gaussian-mle on a 2048×2048×100 stack: peak RSS (≤ 2 GB wanted) and frames/s;
- ``working_memory_per_px``: the planner's estimate of one pass's working memory per pixel against the
  peak-RSS growth of one pass measured here, for each shipped model and gaussian-mle;
- ``load_average``: the machine's 1-minute load before and after (other jobs share its cores).

    python benchmarks/tiled_inference_memory.py [--big-frames 100] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import numpy as np
import tifffile

import harness

DENSITY_PER_UM2 = 0.1
PRESET = "epfl2013_bundled_tubes"
PIXEL_NM = 100.0


def simulate(folder: Path, size: int, frames: int, seed: int = 3) -> Path:
    """``frames`` frames of size² px at DENSITY_PER_UM2 (uniform emitters) into folder/frames.tif, with
    the config beside it (config.yaml, the data's camera for gaussian-mle)."""
    import deepsmlm
    from deepsmlm.config import updated

    cfg = updated(deepsmlm.load_config(PRESET), {"frame.height": size, "frame.width": size,
                                                 "emitters.structure.kind": "uniform",
                                                 "emitters.density_per_um2": DENSITY_PER_UM2, "emitters.count": None})
    return deepsmlm.simulate(cfg, frames=frames, seed=seed, out_dir=folder).frames


def first_frames(stack: Path, frames: int, name: str) -> Path:
    """The first ``frames`` frames of ``stack`` as another stack beside it (its config.yaml applies)."""
    from deepsmlm.io.tiff import write_stack

    target = stack.with_name(name)
    write_stack(target, tifffile.imread(stack, key=range(frames)), pixel_size_nm=PIXEL_NM)
    return target


def cycled_stack(source: Path, target: Path, frames: int) -> Path:
    """A stack of ``frames`` frames cycling through those of ``source``, written page by page."""
    from deepsmlm.simulation.movies import write_frames

    bank = tifffile.imread(source)
    write_frames(target, (bank[i % len(bank)][None] for i in range(frames)), (frames, *bank.shape[1:]), PIXEL_NM)
    return target


def child_localize(argv: list[str]) -> dict:
    """Run `deepsmlm localize ARGV` in this (fresh) process: seconds (all, and localizing the frames),
    peak and baseline RSS, and the pass plan."""
    import torch  # noqa: F401  (imported before the baseline)

    import deepsmlm.api.model as model
    from deepsmlm.cli import app

    seen = {}

    def recording(name, function):
        def wrapped(*args, **kwargs):
            seen[name] = function(*args, **kwargs)
            return seen[name]
        return wrapped

    model.plan_stack = recording("plan", model.plan_stack)
    model.run_stack = recording("result", model.run_stack)
    baseline = harness.vm_hwm_mb()
    t0 = time.perf_counter()
    app(["localize", *argv], standalone_mode=False)
    plan = seen["plan"]
    return {"seconds": time.perf_counter() - t0, "seconds_localizing": seen["result"].seconds,
            "peak_rss_mb": harness.vm_hwm_mb(), "baseline_rss_mb": baseline,
            "plan": {"frames_per_chunk": plan.frames_per_chunk, "frames_per_pass": plan.frames_per_pass,
                     "tile_core_px": plan.core_px, "halo_px": plan.halo_px}}


def child_pass(model: str, path: str, size: int, config: str | None) -> dict:
    """Peak-RSS growth per pixel of one pass over a size² crop (repeating the stack's first frame), and
    the planner's estimate."""
    import torch

    import deepsmlm
    from deepsmlm.inference.tiling import Tile

    localizer = deepsmlm.load_model(model, config=config).localizer()
    frame = tifffile.imread(path, key=0).astype(np.float32)
    reps = -(-size // min(frame.shape))
    adu = torch.from_numpy(np.tile(frame, (reps, reps))[None, :size, :size].copy())
    with torch.inference_mode():
        photons = localizer.photons(adu)
        localizer.localize_tile(photons[:, :64, :64], 0, Tile.whole(64, 64), True)  # warm up
        before = harness.vm_hwm_mb()
        localizer.localize_tile(photons, 0, Tile.whole(size, size), True)
        grown = (harness.vm_hwm_mb() - before) * 2**20
    footprint = localizer.footprint(size, size)
    return {"model": model, "frame_px": size, "measured_bytes_per_px": round(grown / size**2),
            "estimate_bytes_per_px": round(footprint.bytes_per_px),
            "estimate_fixed_mb": round(footprint.fixed_bytes / 2**20, 1)}


def in_child(args: list[str], threads: int) -> dict:
    """This script with ``args`` in a fresh process of ``threads`` OpenMP threads: its JSON document."""
    return harness.run_child(__file__, args, {"OMP_NUM_THREADS": str(threads)})


def localize(stack: Path, model: str, out: Path, threads: int, extra: tuple[str, ...] = ()) -> dict:
    """One `deepsmlm localize` run in a fresh process, with frames/s and the rows written."""
    config = ["--config", str(stack.parent / "config.yaml")] if model == "gaussian-mle" else []
    load = os.getloadavg()[0]
    run = in_child(["--child-localize", str(stack), "--model", model, "-o", str(out), *config, *extra], threads)
    with tifffile.TiffFile(stack) as tif:
        frames, shape = len(tif.pages), tif.pages[0].shape
    run.update(model=model, frame_px=list(shape), frames=frames,
               frames_per_s=round(frames / run["seconds_localizing"], 3),
               localizations=sum(1 for _ in open(out)) - 1, load_average_before=round(load, 2))
    for key in ("seconds", "seconds_localizing", "peak_rss_mb", "baseline_rss_mb"):
        run[key] = round(run[key], 2)
    return run


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--big-frames", type=int, default=100, help="frames of the 2048×2048 stack")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the localize runs")
    ap.add_argument("--child-localize", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ap.add_argument("--child-pass", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_localize is not None:
        harness.report(child_localize(args.child_localize), indent=None)
        return
    if args.child_pass is not None:
        model, path, size, config = args.child_pass
        harness.report(child_pass(model, path, int(size), None if config == "-" else config), indent=None)
        return

    load_before = os.getloadavg()
    frames = {("default-2d", 64): 200, ("default-2d", 512): 4, ("default-2d", 2048): 2,
              ("gaussian-mle", 64): 200, ("gaussian-mle", 512): 20, ("gaussian-mle", 2048): 10}
    with harness.scratch() as tmp:
        stacks = {}
        for size, n in ((64, 2000), (512, 20), (2048, 10)):
            (tmp / f"s{size}").mkdir()
            stacks[size] = simulate(tmp / f"s{size}", size, n)
        runs = [localize(first_frames(stacks[size], n, f"{model}_{n}.tif"), model, tmp / f"{model}_{size}.csv",
                         args.threads) for (model, size), n in frames.items()]

        first4 = first_frames(stacks[512], 4, "first4.tif")
        whole = localize(first4, "default-2d", tmp / "whole512.csv", args.threads)
        tiled = localize(first4, "default-2d", tmp / "tiled512.csv", args.threads, ("--max-memory-gb", "0.25"))
        tiled_vs_whole = {"whole": whole, "tiled": tiled,
                          "same_file": digest(tmp / "whole512.csv") == digest(tmp / "tiled512.csv"),
                          "speed_ratio_tiled_over_whole": round(tiled["frames_per_s"] / whole["frames_per_s"], 3)}
        flat = [localize(first_frames(stacks[64], n, f"flat{n}.tif"), "default-2d", tmp / f"flat{n}.csv",
                         args.threads) for n in (200, 2000)]

        big = cycled_stack(stacks[2048], tmp / "s2048" / "big.tif", args.big_frames)
        big_run = localize(big, "gaussian-mle", tmp / "big.csv", args.threads)
        big_run["peak_rss_at_most_2gb"] = big_run["peak_rss_mb"] <= 2048
        big.unlink()

        per_px = [in_child(["--child-pass", model, str(stacks[512]), str(size),
                            str(stacks[512].parent / "config.yaml") if model == "gaussian-mle" else "-"],
                           args.threads)
                  for model, size in (("default-2d", 512), ("tetrapod-3d", 384), ("learned-3d", 384),
                                      ("multicolor-2dye", 384), ("gaussian-mle", 1024))]
    harness.report({
        "benchmark": "tiled_inference_memory",
        "data": f"{PRESET} preset, uniform emitters at {DENSITY_PER_UM2} µm⁻², 100 nm pixels",
        "threads": args.threads,
        "machine": harness.machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "runs": runs,
        "tiled_vs_whole_512": tiled_vs_whole,
        "flat_in_frames": flat,
        "stack_2048x100": big_run,
        "working_memory_per_px": per_px,
    }, args.out)


if __name__ == "__main__":
    main()
