"""napari sample data: a small movie simulated on first use under the conditions ``default-2d`` was trained
for (epfl2013_bundled_tubes: 64 × 64 px of 100 nm, Gaussian PSF, CCD camera), at a moderate density, and its
ground truth."""

from __future__ import annotations

from functools import lru_cache

import deepsmlm
from deepsmlm.config import updated
from deepsmlm.napari_plugin.layers import LayerData, points_layer

MODEL = "default-2d"
FRAMES, SEED = 20, 1
DENSITY_PER_UM2 = 2.0  # emitters per µm² and frame: default-2d trained over 1–9, finds ~70 % of these


@lru_cache(maxsize=1)
def sample_simulation() -> deepsmlm.Simulation:
    """The sample movie (FRAMES frames, uint16 ADU, in memory) and its ground truth, made once per session."""
    cfg = updated(deepsmlm.load_model(MODEL).config, {"emitters.density_per_um2": DENSITY_PER_UM2}, "sample")
    return deepsmlm.simulate(cfg, frames=FRAMES, seed=SEED)


def sample_movie() -> list[LayerData]:
    """The sample movie as an image layer and its ground truth as points on the spots."""
    sim = sample_simulation()
    movie = (sim.frames, {"name": "simulated movie", "colormap": "gray"}, "image")
    return [movie, points_layer(sim.truth, "ground truth")]
