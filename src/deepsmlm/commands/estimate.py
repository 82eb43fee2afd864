"""`deepsmlm estimate`: a training config from the raw movie, the estimates printed beside the config's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from deepsmlm.api.estimation import estimate
from deepsmlm.api.inputs import as_config
from deepsmlm.commands.progress_bars import LOCALIZING, progress_bar


def run_estimate(movie: Path, config: str, out: Path, frames: int, threshold: float | None,
                 pixel_size_nm: float | None, correct: bool = True) -> None:
    base = as_config(config)
    with progress_bar(LOCALIZING) as progress:
        result = estimate(movie, config, out, frames=frames, threshold=threshold, pixel_size_nm=pixel_size_nm,
                          correct=correct, progress=progress)
    found, new = result.estimate, result.config
    shown = [found] if found.raw is None else [found, found.raw]
    table = Table(title=f"{movie.name}: {found.n_localizations} {result.fitter} fits in {found.n_frames} frames")
    for column in ("", "estimated", *(["raw fits"] if found.raw else []), f"config {config}"):
        table.add_column(column, justify="right")
    photons = base.emitters.photons
    table.add_row("photons per emitter (mean)", *(f"{e.photons_mean:.0f}" for e in shown), f"{photons.expected():.0f}")
    table.add_row("σ of log photons", *(f"{e.photons_sigma:.2f}" for e in shown),
                  f"{photons.sigma:.2f}" if photons.distribution == "lognormal" else "—")
    table.add_row("background (photons/px)", *(_span(e.background_range) for e in shown),
                  _span(base.background.photons_per_px))
    table.add_row("density (µm⁻²)", *(f"{e.density_per_um2:.3g}" for e in shown),
                  "—" if base.emitters.density_per_um2 is None else f"{base.emitters.density_per_um2:.3g}")
    if found.z_range_nm is not None:
        table.add_row("z range (nm)", *(_span(e.z_range_nm) for e in shown), _span(base.emitters.z_range_nm))
    Console().print(table)
    if found.raw is not None:
        print("estimated: corrected for missed emitters by simulating this microscope and fitting alike"
              + (f"; not to be trusted: {found.warning}" if found.warning else ""))
    print(f"wrote {out} (training config: {new.name}) and {out.with_suffix('.png')}")


def _span(values) -> str:
    low, high = (float(v) for v in values)
    return f"{low:.0f} … {high:.0f}" if not np.isclose(low, high) else f"{low:.0f}"
