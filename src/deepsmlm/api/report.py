"""`deepsmlm.write_run_report`: one self-contained HTML page on a localization run — input, model, the
super-resolved image, histograms of the fitted values, detections per frame, optionally the drift and the
FRC resolution, and the command that reproduces it."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from deepsmlm._version import __version__
from deepsmlm.analysis.frc import MARGIN_PX, MAX_SIDE_PX, THRESHOLD, FRCCurve
from deepsmlm.analysis.render import gaussian_image, render_figure
from deepsmlm.api.analysis import LocalizationsLike, as_localizations
from deepsmlm.api import resolution
from deepsmlm.api.drift import DriftCorrection, correct_drift
from deepsmlm.errors import UserInputError
from deepsmlm.inference.stream import rate_text
from deepsmlm.io.report import ReportFigure, Section, write_report
from deepsmlm.localizations import Localizations, lateral_sigma_nm
from deepsmlm.models.registry import training_log
from deepsmlm.plots import detections_plot, drift_plot, frc_plot, histogram_panels, save_figure, training_curves
from deepsmlm.progress import ProgressCallback, ignore

if TYPE_CHECKING:
    from deepsmlm.api.model import Model, Run

RENDER_PIXEL_NM = 10.0  # the Gaussian rendering's pixel when no image is given
MAX_IMAGE_SIDE_PX = 1600  # the report's image is binned to at most this many pixels a side
FRC_PIXEL_NM = 5.0  # the FRC images' pixel, larger only when the field needs it
FRC_BLOCK_FRAMES = 100  # the FRC halves: alternating blocks of this many frames (a tenth of a shorter movie)
DRIFT_SEGMENTS = 10  # drift segments of a short movie (segments of at most 1000 frames otherwise)
SHOWN_PERCENTILES = (0.5, 99.5)  # the histograms' range


@dataclass(frozen=True)
class ReportResult:
    """What the report found besides its page: the drift correction and FRC curve when asked for and the
    data allowed them, and ``notes``, a sentence for each analysis the data refused (shown in the report)."""

    path: Path
    drift: DriftCorrection | None
    frc: FRCCurve | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Picture:
    """A run's super-resolved image (rows, cols) of ``pixel_nm`` pixels, and how it was made (a caption)."""

    image: np.ndarray
    pixel_nm: float
    how: str


def run_picture(run: Run, locs: Localizations | None) -> Picture:
    """The network's own super-resolved image when the run summed one, else a Gaussian rendering of ``locs``
    (σ: each localization's, else one pixel) at RENDER_PIXEL_NM."""
    if run.result.superres is not None:
        return Picture(run.result.superres, run.superres_pixel_nm,
                       "the network's super-resolved image (summed density of every detection)")
    return Picture(gaussian_image(locs, RENDER_PIXEL_NM), RENDER_PIXEL_NM,
                   "Gaussian rendering of the localizations (σ: each one's, else one pixel)")


def png(draw: Callable[[BinaryIO], None]) -> bytes:
    """The PNG bytes a plotting function (of :mod:`deepsmlm.plots`, given an open binary file) draws."""
    buffer = io.BytesIO()
    draw(buffer)
    return buffer.getvalue()


def binned(image: np.ndarray, pixel_nm: float, max_side: int = MAX_IMAGE_SIDE_PX) -> tuple[np.ndarray, float]:
    """``image`` (rows, cols[, 3]) summed over square blocks so no side exceeds ``max_side`` pixels (a few
    edge pixels dropped), and its pixel (nm)."""
    f = math.ceil(max(image.shape[:2]) / max_side)
    if f <= 1:
        return image, pixel_nm
    rows, cols = image.shape[0] // f, image.shape[1] // f
    blocks = image[:rows * f, :cols * f].reshape(rows, f, cols, f, *image.shape[2:])
    return blocks.sum(axis=(1, 3)), pixel_nm * f


def input_section(run: Run, locs: Localizations, output: str | None, notes: Sequence[str]) -> Section:
    """The input stack and what came of it: file, frames, shape, pixel, localizations, time."""
    meta, result = run.metadata, run.result
    rows, cols = meta.image_shape
    facts = [("file", str(meta.source)), ("frames", f"{meta.n_frames}"),
             ("frame shape", f"{rows} × {cols} px ({rows * meta.pixel_size_nm / 1000:.1f} × "
                             f"{cols * meta.pixel_size_nm / 1000:.1f} µm)"),
             ("pixel size", f"{meta.pixel_size_nm:g} nm"), ("localizations", f"{len(locs):,}")]
    if output is not None:
        facts.append(("written to", output))
    facts += [("time", f"{result.seconds:.1f} s ({rate_text(result.n_frames, result.seconds)})"),
              ("run", f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, deepsmlm {__version__}")]
    return Section("Input", facts, notes=notes, anchor="input")


def model_section(model: Model, run: Run) -> Section:
    """The model: name, kind, 2D/3D, threshold; the training figures and curves when its folder has a log."""
    cfg = run.config
    kind = model.name if model.classic else cfg.model.kind
    threshold = (f"{cfg.model.gaussian_mle_threshold:g} (noise standard deviations)" if model.classic
                 else f"{cfg.model.threshold:g} (summed density)")
    facts = [("model", model.name), ("kind", kind), ("localizes", "3D (x, y, z)" if cfg.localizes_z() else "2D (x, y)"),
             ("detection threshold", threshold), ("device", str(model.device))]
    if not model.classic:
        facts.insert(3, ("trained for pixels of", f"{cfg.frame.pixel_size_nm:g} nm"))
    log = None if model.classic else _training_log(model.name)
    training = _training_facts(log["history"], log.get("elapsed_s")) if log else []
    figures = [ReportFigure(png(lambda f: training_curves(log["history"], f)), "training curves",
                            "validation scores against the training step (the model folder's training_log.json)")
               ] if training else []
    return Section("Model", facts + training, figures, anchor="model")


def _training_log(name: str) -> dict | None:
    try:
        return training_log(name)
    except UserInputError:  # an ONNX file: no model folder
        return None


def _training_facts(history: list[dict], elapsed_s: float | None) -> list[tuple[str, str]]:
    """Steps, training time and the best validation record of a training log (none for a malformed log)."""
    scores = [("jaccard", "Jaccard", ".3f"), ("rmse_lateral_nm", "lateral RMSE (nm)", ".1f"),
              ("rmse_axial_nm", "axial RMSE (nm)", ".1f")]
    try:
        best = max(history, key=lambda h: h["jaccard"] if math.isfinite(h["jaccard"]) else -1.0)
        minutes = "" if elapsed_s is None else f", {elapsed_s / 60:.0f} min"
        return [("training", f"{history[-1]['step']} steps{minutes}"),
                ("best validation", ", ".join(f"{label} {best[key]:{fmt}}" for key, label, fmt in scores
                                              if best.get(key) is not None) + f" at step {best['step']}")]
    except (KeyError, TypeError, ValueError):
        return []


def image_section(picture: Picture) -> Section:
    """The super-resolved image (binned to at most MAX_IMAGE_SIDE_PX a side)."""
    shown, shown_nm = binned(np.asarray(picture.image, dtype=np.float32), picture.pixel_nm)
    figure = ReportFigure(png(lambda f: save_figure(render_figure(shown, shown_nm), f, dpi=150)),
                          "super-resolved image", f"{picture.how}; {shown_nm:g} nm pixels shown")
    return Section("Super-resolved image", figures=[figure], anchor="image")


def _panel(label: str, values: np.ndarray) -> tuple[tuple[str, np.ndarray, list[float]], tuple[str, str]] | None:
    """A histogram panel of the finite ``values`` within SHOWN_PERCENTILES, marked at the median, and its
    fact (median, 5–95 % range); None when there are none or that range holds one value."""
    v = values[np.isfinite(values)]
    if not len(v):
        return None
    lo, p5, median, p95, hi = np.percentile(v, (SHOWN_PERCENTILES[0], 5, 50, 95, SHOWN_PERCENTILES[1]))
    if lo == hi:
        return None
    fact = f"median {median:.3g}; 5–95 %: {p5:.3g} … {p95:.3g}" + (f" ({len(v):,} given)" if len(v) < len(values) else "")
    return (f"{label}, median {median:.3g}", v[(v >= lo) & (v <= hi)], [float(median)]), (label, fact)


def statistics_section(locs: Localizations, three_d: bool) -> Section:
    """Histograms (and medians, ranges) of the detection confidence (when it varies), photons, background,
    lateral σ, and in 3D σ_z and z; a note for values the model does not give."""
    t = locs.table
    wanted = [("detection confidence", t["prob"]), ("photons", t["photons"]), ("background (photons/px)", t["bg"]),
              ("lateral σ (nm)", lateral_sigma_nm(t))]
    if three_d:
        wanted += [("axial σ (nm)", t["sigma_z_nm"]), ("z (nm)", t["z_nm"])]
    wanted = [(label, np.asarray(values, dtype=np.float64)) for label, values in wanted]
    shown = [p for label, values in wanted if (p := _panel(label, values)) is not None]
    missing = [label for label, values in wanted if not np.isfinite(values).any()]
    notes = [f"not given by this model: {', '.join(missing)}"] if missing else []
    panels = [panel for panel, _ in shown]
    figures = [ReportFigure(png(lambda f: histogram_panels(panels, f)), "histograms",
                            f"{len(t):,} localizations; red line: median; the {SHOWN_PERCENTILES[0]:g}–"
                            f"{SHOWN_PERCENTILES[1]:g} percentile range shown")] if panels else []
    return Section("Localization statistics", [fact for _, fact in shown], figures, notes, anchor="statistics")


def detections_section(locs: Localizations, n_frames: int) -> Section:
    """Localizations per frame: the plot and its mean over the first and last tenth of the movie."""
    counts = np.bincount(locs.table["frame"].to_numpy(np.int64), minlength=n_frames)
    tenth = max(len(counts) // 10, 1)
    facts = [("mean per frame", f"{counts.mean():.2f}"),
             ("first / last tenth", f"{counts[:tenth].mean():.2f} / {counts[-tenth:].mean():.2f}")]
    figure = ReportFigure(png(lambda f: detections_plot(counts, f)), "detections per frame")
    return Section("Detections per frame", facts, [figure], anchor="detections")


def drift_section(locs: Localizations, n_frames: int,
                  progress: ProgressCallback) -> tuple[Section, DriftCorrection | None]:
    """The RCC drift (:func:`~deepsmlm.api.drift.correct_drift`, segments of 1000 frames or, in a shorter
    movie, DRIFT_SEGMENTS segments), or a note why not."""
    try:
        result = correct_drift(locs, segment_frames=min(1000, max(n_frames // DRIFT_SEGMENTS, 1)), progress=progress)
    except UserInputError as err:
        return Section("Drift", notes=[f"drift not estimated: {err}"], anchor="drift"), None
    d = result.drift
    span = ", ".join(f"{a} {lo:+.1f} … {hi:+.1f}" for a, lo, hi in zip("xyz", d.drift_nm.min(0), d.drift_nm.max(0)))
    facts = [("method", f"RCC, {len(d.segment_centres)} segments of ~{d.segment_frames:.0f} frames, "
                        f"{d.rejected} of {d.n_pairs} pairs rejected"), ("range (nm)", span)]
    figure = ReportFigure(png(lambda f: drift_plot(d.frames, d.drift_nm, d.segment_centres, d.segment_drift_nm, f)),
                          "drift curve", "drift against frame (0 at the first); the table written is not corrected "
                                         "(deepsmlm drift writes a corrected one)")
    return Section("Drift", facts, [figure], anchor="drift"), result


def frc_pixel_nm(locs: Localizations) -> float:
    """FRC_PIXEL_NM, or the whole nm that fits the field into MAX_SIDE_PX pixels when it is larger."""
    xy = locs.table[["x_nm", "y_nm"]].to_numpy(np.float64)
    extent = float(np.ptp(xy, axis=0).max()) if len(xy) else 0.0
    return max(FRC_PIXEL_NM, float(math.ceil(extent / (MAX_SIDE_PX - 2 * MARGIN_PX - 2))))


def frc_section(locs: Localizations, n_frames: int, corrected: bool) -> tuple[Section, FRCCurve | None]:
    """The FRC curve and 1/7 resolution (on the drift-corrected table when ``corrected``), or a note why not."""
    pixel, block = frc_pixel_nm(locs), min(FRC_BLOCK_FRAMES, max(n_frames // 10, 1))
    try:
        curve = resolution.frc(locs, pixel_nm=pixel, block_frames=block)
    except UserInputError as err:
        return Section("FRC resolution", notes=[f"FRC not measured: {err}"], anchor="frc"), None
    value = (f"{curve.resolution_nm:.1f} nm" if math.isfinite(curve.resolution_nm)
             else f"finer than {2 * pixel:g} nm (the curve stays above 1/7)")
    facts = [("resolution (1/7 threshold)", value),
             ("halves", f"{curve.n_halves[0]:,} and {curve.n_halves[1]:,} localizations, alternating blocks of "
                        f"{block} frames; {pixel:g} nm pixels; {'after' if corrected else 'without'} drift correction")]
    figure = ReportFigure(png(lambda f: frc_plot(curve.q_per_nm, curve.frc, curve.smoothed, THRESHOLD,
                                                 curve.resolution_nm, f)), "FRC curve")
    return Section("FRC resolution", facts, [figure], anchor="frc"), curve


def write_run_report(path: str | os.PathLike, run: Run, model: Model, *, locs: LocalizationsLike | None = None,
                     picture: Picture | None = None, drift: bool = False, frc: bool = False,
                     command: str | None = None, output: str | None = None,
                     input_notes: Sequence[str] = (), progress: ProgressCallback = ignore) -> ReportResult:
    """Write the HTML report of ``run`` (:meth:`Model.stream`'s result) by ``model`` to ``path`` atomically.

    ``locs``: the run's table or the file it was written to (default the rows the run kept); ``picture``: its
    super-resolved image (default :func:`run_picture`); ``drift``/``frc``: also estimate the RCC drift / the FRC resolution (on the
    drift-corrected table when both); ``command``: the shell command that reproduces the run; ``output``:
    where the table was written; ``input_notes``: sentences shown with the input (e.g. an assumed pixel).

    Example::

        model = deepsmlm.load_model("default-2d")
        with open_stack("frames.tif") as stack:             # deepsmlm.io.images.open_stack
            run = model.stream(stack, superres=True)
        deepsmlm.write_run_report("report.html", run, model, drift=True, frc=True)
    """
    table, _ = as_localizations(run.localizations if locs is None else locs, run.config.frame.pixel_size_nm)
    sections = [input_section(run, table, output, input_notes), model_section(model, run),
                image_section(picture or run_picture(run, table)), statistics_section(table, run.config.localizes_z()),
                detections_section(table, run.metadata.n_frames)]
    corrected = curve = None
    if drift:
        section, corrected = drift_section(table, run.metadata.n_frames, progress)
        sections.append(section)
    if frc:
        section, curve = frc_section(table if corrected is None else corrected.corrected, run.metadata.n_frames,
                                     corrected is not None)
        sections.append(section)
    if command is not None:
        sections.append(Section("Command", notes=[], code=command, anchor="command"))
    notes = tuple(n for s in sections if s.anchor in ("drift", "frc") for n in s.notes)
    title = f"deepsmlm run report: {Path(str(run.metadata.source)).name}"
    return ReportResult(write_report(path, title, sections), corrected, curve, notes)
