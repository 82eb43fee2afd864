"""`deepsmlm simulate`: write a simulated movie, its ground truth and the resolved config."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from deepsmlm.config import SimulationConfig, dump_config, load_config
from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.io.thunderstorm import write_thunderstorm_csv
from deepsmlm.io.tiff import write_stack
from deepsmlm.simulation.simulator import FrameBatch, Simulator, to_uint16


def apply_overrides(cfg: SimulationConfig, frames: int | None, seed: int | None, density: float | None,
                    emitters: int | None) -> SimulationConfig:
    """A copy of the config with the command-line overrides applied."""
    if density is not None and emitters is not None:
        raise UserInputError("give either --density or --emitters, not both")
    cfg = cfg.model_copy(deep=True)
    if frames is not None:
        cfg.frames = frames
    if seed is not None:
        cfg.seed = seed
    if density is not None:
        cfg.emitters.density_per_um2, cfg.emitters.count = density, None
    if emitters is not None:
        cfg.emitters.density_per_um2, cfg.emitters.count = None, (emitters, emitters)
    return cfg


def ground_truth_table(batch: FrameBatch, pixel_nm: float) -> pd.DataFrame:
    """Canonical ground-truth rows (0-based frames) of one simulated chunk, with the local background
    (and the dye index ``color`` of multicolour samples)."""
    em = batch.emitters
    xyz = em.xyz_nm.cpu().numpy().astype(np.float64)
    frame = em.frame.cpu().numpy()
    h, w = batch.background.shape[-2:]
    rows = np.clip((xyz[:, 1] // pixel_nm).astype(int), 0, h - 1)
    cols = np.clip((xyz[:, 0] // pixel_nm).astype(int), 0, w - 1)
    bg = batch.background.cpu().numpy()[frame - batch.first_frame, rows, cols]
    table = pd.DataFrame({"frame": frame, "x_nm": xyz[:, 0], "y_nm": xyz[:, 1], "z_nm": xyz[:, 2],
                          "photons": em.photons.cpu().numpy().astype(np.float64), "bg": bg.astype(np.float64)})
    if em.color is not None:
        table["color"] = em.color.cpu().numpy().astype(np.int64)
    return table


def simulate_to_folder(cfg: SimulationConfig, out: Path, device: str = "cpu", chunk: int = 32) -> dict:
    """Simulate ``cfg.frames`` frames with ``cfg.seed`` into ``out``; returns a small summary."""
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulator(cfg, device=device)
    gen = torch.Generator().manual_seed(cfg.seed)
    frames, tables = [], []
    t0 = time.perf_counter()
    with Progress(transient=True) as progress:
        task = progress.add_task("simulating", total=cfg.frames)
        for batch in sim.movie(cfg.frames, gen, chunk=chunk):
            frames.append(to_uint16(batch.adu))
            tables.append(ground_truth_table(batch, cfg.frame.pixel_size_nm))
            progress.advance(task, batch.adu.shape[0])
    stack = np.concatenate(frames)
    table = pd.concat(tables, ignore_index=True)
    table.insert(0, "id", np.arange(1, len(table) + 1))
    write_stack(out / "frames.tif", stack, cfg.frame.pixel_size_nm)
    write_thunderstorm_csv(out / "ground_truth.csv", table)
    write_text_atomic(out / "config.yaml", dump_config(cfg))
    return {"frames": int(stack.shape[0]), "emitters": len(table), "seconds": time.perf_counter() - t0}


def run_simulate(config: str, out: Path, frames: int | None, seed: int | None, density: float | None,
                 emitters: int | None, device: str) -> None:
    cfg = apply_overrides(load_config(config), frames, seed, density, emitters)
    summary = simulate_to_folder(cfg, out, device)
    print(f"wrote {summary['frames']} frames with {summary['emitters']} emitters to {out} "
          f"in {summary['seconds']:.1f} s")
