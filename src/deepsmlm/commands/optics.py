"""`deepsmlm psf` and `deepsmlm crlb`: look at a configuration's PSF and its precision limits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from deepsmlm.api.optics import crlb, psf_stack
from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.io.outputs import check_outputs
from deepsmlm.io.tiff import write_z_stack
from deepsmlm.plots import crlb_plot, psf_montage

PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def run_psf(config: str, out: Path, planes: int) -> None:
    """The PSF montage over the config's axial range as ``out`` (PNG), and the z-stack as a float32 TIFF beside it."""
    if out.suffix.lower() != ".png":
        raise UserInputError(f"-o {out}: give a .png path (the float32 TIFF z-stack is written beside it)")
    tif = out.with_suffix(".tif")
    check_outputs({"-o": out}, {"CONFIG": config}, beside={"-o's TIFF": tif})
    psf = psf_stack(config, planes)
    cfg, blur = psf.config, psf.blur_px
    write_z_stack(tif, psf.stack, psf.z_nm, cfg.frame.pixel_size_nm,
                  info={"config": cfg.name, "psf_model": cfg.psf.model, "blur_sigma_px": blur,
                        "photons": "unit-photon emitter at the patch centre"})
    lo, hi = cfg.psf.blur_sigma_px
    blurred = f"blur σ {blur:g} px (middle of {lo:g}–{hi:g})" if blur > 0 else "no blur"
    psf_montage(psf.stack, psf.z_nm, cfg.frame.pixel_size_nm, out,
                title=f"{cfg.name}: {cfg.psf.model} PSF, {cfg.optics.wavelength_nm:g} nm, NA {cfg.optics.na:g}, "
                      f"{blurred}")
    print(f"wrote {out} and {tif}")


def run_crlb(config: str, mask: Path | None, json_out: Path | None, plot: Path | None, photons: float | None,
             background: float | None, planes: int) -> None:
    plot = plot if plot is not None else (json_out.with_suffix(".png") if json_out is not None else None)
    if plot is not None and plot.suffix.lower() not in PLOT_SUFFIXES:
        raise UserInputError(f"--plot {plot}: give a {', '.join(PLOT_SUFFIXES)} path")
    check_outputs({"--json": json_out, "--plot": plot}, {"CONFIG": config, "--mask": mask})
    fig = crlb(config, mask, photons, background, planes)
    n, b = fig["photons"], fig["background_per_px"]
    table = Table(title=f"√CRLB (nm), {fig['config']}\n{n:g} photons, {b:g} bg/px, {fig['noise']}")
    axes = [a for a in ("x", "y", "z") if f"crlb_{a}_nm" in fig]
    table.add_column("z (nm)", justify="right")
    for a in axes:
        table.add_column(a, justify="right")
    for k, z in enumerate(fig["z_nm"]):
        table.add_row(f"{z:.0f}", *[f"{fig[f'crlb_{a}_nm'][k]:.1f}" for a in axes])
    table.add_row("mean", *[f"{fig[f'mean_crlb_{a}_nm']:.1f}" for a in axes])
    Console().print(table)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(fig, indent=2))
    if plot is not None:
        curves = {fig["config"]: {a: np.array(fig[f"crlb_{a}_nm"]) for a in axes}}
        crlb_plot(np.array(fig["z_nm"]), curves, plot, title=f"{n:g} photons, {b:g} background/px")
        print(f"wrote {plot}")
