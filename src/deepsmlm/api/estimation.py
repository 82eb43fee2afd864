"""`deepsmlm.estimate`: a training config estimated from the raw movie it is meant for (no hand-tuning).

A classic fitter localizes frames sampled evenly over the movie (``gaussian-mle``; ``psf-mle`` for a 3D
config, which also gives the axial range in use), and :mod:`deepsmlm.calibration.estimate` turns the fits
into photons, background, density and z range; the config (camera, PSF, model) is the one given, with
those four replaced. Unless ``correct=False`` the raw figures are corrected for the emitters the fitter
misses by simulation matching (:mod:`deepsmlm.calibration.estimate_correction`): movies of the sample's
size simulated under the config are fitted by the same fitter with the same threshold.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepsmlm.api.inputs import ConfigLike, Frames, as_config, config_label, opened
from deepsmlm.api.model import Model, load_model
from deepsmlm.api.simulation import simulate
from deepsmlm.calibration.estimate import MovieEstimate, estimate_from_fits, training_config
from deepsmlm.calibration.estimate_correction import SimulatedFits, corrected_estimate, simulated_fits
from deepsmlm.config import SimulationConfig, dump_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.io.images import ImageStack
from deepsmlm.io.outputs import check_outputs
from deepsmlm.localizations import field_size_nm
from deepsmlm.plots import histogram_panels
from deepsmlm.progress import ProgressCallback

HEADER = "# training config written by `deepsmlm estimate`\n"
MAX_SAMPLE_BYTES = 256 * 2**20  # sampled frames are held in memory as float32: at most this much
SEED = 20  # the simulated movies' seeds (SEED + round): the same movie gives the same correction


@dataclass
class Estimation:
    """The estimates, the training config made from them and the fits they came from."""

    estimate: MovieEstimate
    config: SimulationConfig
    fitter: str


def fitter_for(cfg: SimulationConfig) -> str:
    """``psf-mle`` for a config whose PSF encodes z over a non-empty axial range, else ``gaussian-mle``."""
    return "psf-mle" if cfg.encodes_z_range() else "gaussian-mle"


def sampled_frames(stack: ImageStack, frames: int) -> np.ndarray:
    """Up to ``frames`` frames evenly spaced over the stack (fewer when they would pass MAX_SAMPLE_BYTES)."""
    height, width = stack.shape
    n = max(1, min(frames, stack.n_frames, MAX_SAMPLE_BYTES // (4 * height * width)))
    picks = np.unique(np.linspace(0, stack.n_frames - 1, n).round().astype(int))
    return np.stack([stack[int(i)] for i in picks])


def check_output(out: Path, inputs: dict) -> None:
    """``out`` (a .yaml) and the plot beside it (.png) can be written, neither over an input; a YAML there
    is replaced only when this command wrote it."""
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise UserInputError(f"-o {out}: give a .yaml path (the training config)")
    check_outputs({"-o": out, "-o's plot": out.with_suffix(".png")}, inputs)
    if out.exists() and not out.read_text(errors="replace").startswith(HEADER):
        raise UserInputError(f"-o {out}: exists and was not written by `deepsmlm estimate`; it would be written "
                             f"over (choose another output name)")


def estimate(movie: Frames, config: ConfigLike, out: str | os.PathLike | None = None, *, frames: int = 300,
             fitter: str | None = None, threshold: float | None = None, pixel_size_nm: float | None = None,
             correct: bool = True, progress: ProgressCallback | None = None) -> Estimation:
    """Estimate photons, background, density (and z range) of ``movie`` (ADU) under ``config`` (its camera
    and PSF), from up to ``frames`` evenly spaced frames fitted by ``fitter`` (default :func:`fitter_for`),
    ``correct``-ed for the emitters the fit misses; with ``out`` write the training config there and a
    histogram plot beside it (.png)."""
    if frames < 1:
        raise UserInputError(f"--frames {frames}: need at least 1")
    if out is not None:
        out = Path(out)
        check_output(out, {"MOVIE": None if isinstance(movie, (np.ndarray, ImageStack)) else movie,
                           "--config": None if isinstance(config, SimulationConfig) else config})
    cfg = as_config(config)
    fitter = fitter or fitter_for(cfg)
    with opened(movie) as stack:
        source = str(stack.path)
        sample = sampled_frames(stack, frames)
    model = load_model(fitter, config=cfg)
    locs = model.localize(sample, threshold=threshold, pixel_size_nm=pixel_size_nm, force=True, progress=progress)
    pixel = locs.meta.pixel_size_nm or cfg.frame.pixel_size_nm
    width_nm, height_nm = field_size_nm(*sample.shape[1:], pixel)
    with_z = fitter == "psf-mle"
    found = estimate_from_fits(locs.table, len(sample), width_nm * height_nm / 1e6, source, with_z=with_z)
    if correct:
        run = simulated_run(cfg, model, sample.shape, pixel, threshold)
        found = corrected_estimate(found, locs.table, run, cfg.emitters.z_range_nm if with_z else None)
    result = Estimation(found, training_config(cfg, found, f"estimate from {source}"), fitter)
    if out is not None:
        write_text_atomic(out, HEADER + f"# from {source} under {config_label(config)} ({fitter} fits)\n"
                          + dump_config(result.config))
        plot_estimate(locs.table, found, out.with_suffix(".png"), f"{Path(source).name}: {len(locs.table)} fits "
                                                                  f"in {len(sample)} frames ({fitter})"
                      + ("; marks corrected for missed emitters" if found.raw else ""))
    return result


def simulated_run(cfg: SimulationConfig, model: Model, shape: tuple[int, int, int], pixel_nm: float,
                  threshold: float | None) -> Callable[[MovieEstimate, int], SimulatedFits]:
    """``run(proposal, round)``: a movie of ``shape`` (frames, height, width; ``pixel_nm``) simulated under
    ``cfg`` with the proposal's emitters (uniform, no blinking) and background, fitted by ``model``."""
    frames, height, width = shape
    z_range = cfg.emitters.z_range_nm

    def run(proposal: MovieEstimate, round_: int) -> SimulatedFits:
        sim_cfg = updated(training_config(cfg, proposal, "estimate (simulated)"), {
            "frame.height": height, "frame.width": width, "frame.pixel_size_nm": pixel_nm,
            "emitters.margin_px": 0.0, "emitters.structure.kind": "uniform", "emitters.blinking.enabled": False})
        sim = simulate(sim_cfg, frames=frames, seed=SEED + round_)
        locs = model.localize(sim.frames, threshold=threshold, pixel_size_nm=pixel_nm, force=True)
        return simulated_fits(sim.truth.table, locs.table, proposal, proposal.z_range_nm or z_range)
    return run


def plot_estimate(table, found: MovieEstimate, path: Path, title: str) -> None:
    """Histograms of the fitted photons, backgrounds (and depths) with the estimates marked."""
    panels = [("photons per emitter", table["photons"].to_numpy(), [found.photons_mean]),
              ("background (photons/px)", table["bg"].to_numpy(), list(found.background_range))]
    if found.z_range_nm is not None:
        panels.append(("z (nm)", table["z_nm"].to_numpy(), list(found.z_range_nm)))
    histogram_panels(panels, path, title)
