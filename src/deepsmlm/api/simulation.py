"""`deepsmlm.simulate`: a seeded movie of a config's physics and its ground truth, in memory or in a folder."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from deepsmlm.api.inputs import ConfigLike, as_config
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import SimulationConfig, updated
from deepsmlm.io.localization_files import read_localizations
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.progress import ProgressCallback
from deepsmlm.simulation.movies import FRAMES, TRUTH, simulate_in_memory, simulate_to_folder

@dataclass
class Simulation:
    """A simulated movie.

    ``frames``: uint16 ADU (frames, height, width), or the TIFF written into ``folder``; ``n_emitters``:
    ground-truth rows (emitters on, summed over frames); ``seconds``: wall time of the simulation.
    """

    config: SimulationConfig
    frames: np.ndarray | Path
    n_emitters: int
    seconds: float
    folder: Path | None = None
    table: pd.DataFrame | None = field(default=None, repr=False)  # the ground truth made in memory

    @cached_property
    def truth(self) -> Localizations:
        """Ground truth in nm and photons, 0-based frames (read from the folder's CSV when one was written),
        with the camera pixel, frame shape and frame count as metadata."""
        f = self.config.frame
        meta = Metadata(pixel_size_nm=f.pixel_size_nm, image_shape=(f.height, f.width), n_frames=self.config.frames)
        if self.folder is None:
            return Localizations(self.table, meta)
        truth = read_localizations(self.folder / TRUTH)
        truth.meta = meta
        return truth


def simulate(config: ConfigLike, frames: int | None = None, seed: int | None = None,
             out_dir: str | os.PathLike | None = None, *, device: str = "cpu",
             progress: ProgressCallback | None = None) -> Simulation:
    """Simulate ``frames`` frames (default: the config's) of the config's physics, seeded by ``seed``
    (default: the config's): the same config and seed always give the same movie.

    Without ``out_dir`` the movie is held in memory (``frames`` an array); with it, frames and ground truth
    stream into the folder (frames.tif in uint16 ADU, ground_truth.csv in ThunderSTORM form, config.yaml),
    memory staying flat in the number of frames. ``progress`` hears of the frames done.

    Example::

        sim = deepsmlm.simulate("epfl2013_bundled_tubes", frames=10, seed=1)
        sim.frames.shape, sim.truth.table[["frame", "x_nm", "y_nm"]]   # (10, 64, 64) ADU; emitters in nm
    """
    cfg = as_config(config)
    changes = {key: value for key, value in (("frames", frames), ("seed", seed)) if value is not None}
    cfg = updated(cfg, changes, "simulate()")
    t0 = time.perf_counter()
    sim = build_simulator(cfg, device)
    if out_dir is None:
        movie, table = simulate_in_memory(cfg, sim, progress=progress)
        return Simulation(cfg, movie, len(table), time.perf_counter() - t0, table=table)
    folder = Path(out_dir)
    rows = simulate_to_folder(cfg, folder, sim, progress=progress)
    return Simulation(cfg, folder / FRAMES, rows, time.perf_counter() - t0, folder=folder)
