"""`deepsmlm frc`: the Fourier ring correlation resolution of a localization file, printed and plotted."""

from __future__ import annotations

import json
import math
from pathlib import Path

from deepsmlm.analysis.frc import THRESHOLD
from deepsmlm.api.resolution import check_frc_options, frc
from deepsmlm.errors import check_positive
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.io.outputs import check_outputs
from deepsmlm.plots import frc_plot


def run_frc(locs_path: Path, pixel_nm: float = 5.0, plot: Path | None = None, block_frames: int = 100,
            pixel_size_nm: float | None = None, json_out: Path | None = None) -> None:
    """Print the FRC resolution (nm, 1/7 threshold) of ``locs_path``; draw the curve into ``plot`` and write
    the curve and figures as JSON into ``json_out`` when given."""
    check_frc_options(pixel_nm, block_frames)
    check_positive(pixel_size_nm, "--pixel-size-nm")
    check_outputs({"--plot": plot, "--json": json_out}, {"LOCS": locs_path})
    curve = frc(locs_path, pixel_nm=pixel_nm, block_frames=block_frames, pixel_size_nm=pixel_size_nm)
    if plot is not None:
        frc_plot(curve.q_per_nm, curve.frc, curve.smoothed, THRESHOLD, curve.resolution_nm, plot,
                 title=f"FRC of {locs_path.name}")
    if json_out is not None:
        doc = {"resolution_nm": None if math.isnan(curve.resolution_nm) else curve.resolution_nm,
               "pixel_nm": pixel_nm, "block_frames": block_frames, "localizations_per_half": list(curve.n_halves),
               "q_per_nm": curve.q_per_nm.tolist(), "frc": curve.frc.tolist(), "smoothed": curve.smoothed.tolist()}
        write_text_atomic(json_out, json.dumps(doc, indent=1))
    halves = f"halves of {curve.n_halves[0]} and {curve.n_halves[1]} localizations, blocks of {block_frames} frames"
    if math.isnan(curve.resolution_nm):
        print(f"FRC stays above 1/7 up to the Nyquist frequency of {pixel_nm:g} nm pixels: resolution finer than "
              f"{2 * pixel_nm:g} nm (use a smaller --pixel-nm) ({halves})")
    else:
        print(f"FRC resolution {curve.resolution_nm:.1f} nm (1/7 threshold; {halves})")
