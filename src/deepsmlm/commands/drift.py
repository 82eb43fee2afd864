"""`deepsmlm drift`: estimate the stage drift of a localization file, write the corrected table and a plot."""

from __future__ import annotations

from pathlib import Path

from deepsmlm.api.drift import check_drift_options, correct_drift
from deepsmlm.commands.progress_bars import DESIGNING, progress_bar
from deepsmlm.errors import check_positive
from deepsmlm.io.localization_files import output_format, write_localizations
from deepsmlm.io.outputs import check_outputs
from deepsmlm.plots import drift_plot


def run_drift(locs_path: Path, out: Path, method: str = "rcc", segment_frames: int = 1000, plot: Path | None = None,
              pixel_size_nm: float | None = None, pixel_nm: float = 20.0, max_drift_nm: float = 1000.0) -> None:
    """Correct ``locs_path`` for drift into ``out`` (format by its extension, every column kept) and draw the
    drift against frame into ``plot`` (default: ``out`` with .png)."""
    check_drift_options(method, segment_frames, pixel_nm, max_drift_nm)
    check_positive(pixel_size_nm, "--pixel-size-nm")
    output_format(out)
    plot = out.with_suffix(".png") if plot is None else plot
    check_outputs({"-o": out, "--plot": plot}, {"LOCS": locs_path})
    with progress_bar(DESIGNING, transient=True) as progress:
        result = correct_drift(locs_path, method=method, segment_frames=segment_frames, pixel_nm=pixel_nm,
                               max_drift_nm=max_drift_nm, pixel_size_nm=pixel_size_nm, progress=progress)
    drift = result.drift
    write_localizations(out, result.corrected)
    drift_plot(drift.frames, drift.drift_nm, drift.segment_centres, drift.segment_drift_nm, plot,
               title=f"drift of {locs_path.name} ({method.upper()})")
    lows, highs = drift.drift_nm.min(axis=0), drift.drift_nm.max(axis=0)
    span = " ".join(f"{a} {lo:+.1f}…{hi:+.1f}" for a, lo, hi in zip("xyz", lows, highs))
    rejected = f", {drift.rejected}/{drift.n_pairs} pairs rejected" if method == "rcc" else ""
    print(f"drift ({method}, {len(drift.segment_centres)} segments of ~{drift.segment_frames:.0f} frames"
          f"{rejected}): {span} nm; corrected {len(result.corrected)} localizations into {out}; plot {plot}")
