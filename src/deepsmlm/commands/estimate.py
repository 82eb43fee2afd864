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
                 pixel_size_nm: float | None) -> None:
    base = as_config(config)
    with progress_bar(LOCALIZING) as progress:
        result = estimate(movie, config, out, frames=frames, threshold=threshold, pixel_size_nm=pixel_size_nm,
                          progress=progress)
    found, new = result.estimate, result.config
    table = Table(title=f"{movie.name}: {found.n_localizations} {result.fitter} fits in {found.n_frames} frames")
    for column in ("", "estimated", f"config {config}"):
        table.add_column(column, justify="right")
    table.add_row("photons per emitter (mean)", f"{found.photons_mean:.0f}", f"{base.emitters.photons.expected():.0f}")
    table.add_row("σ of log photons", f"{found.photons_sigma:.2f}",
                  f"{base.emitters.photons.sigma:.2f}" if base.emitters.photons.distribution == "lognormal" else "—")
    table.add_row("background (photons/px)", _span(found.background_range), _span(base.background.photons_per_px))
    table.add_row("density (µm⁻²)", f"{found.density_per_um2:.3g}",
                  "—" if base.emitters.density_per_um2 is None else f"{base.emitters.density_per_um2:.3g}")
    if found.z_range_nm is not None:
        table.add_row("z range (nm)", _span(found.z_range_nm), _span(base.emitters.z_range_nm))
    Console().print(table)
    print(f"wrote {out} (training config: {new.name}) and {out.with_suffix('.png')}")


def _span(values) -> str:
    low, high = (float(v) for v in values)
    return f"{low:.0f} … {high:.0f}" if not np.isclose(low, high) else f"{low:.0f}"
