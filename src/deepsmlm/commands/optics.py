"""`deepsmlm psf` and `deepsmlm crlb`: look at a configuration's PSF and its precision limits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from deepsmlm.assembly.axial import axial_range
from deepsmlm.config import PUPIL_MODELS, MaskConfig, SimulationConfig, load_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.io.outputs import check_outputs
from deepsmlm.io.tiff import write_z_stack
from deepsmlm.optics.factory import build_psf, grid_mask_pitch_um, pupil_grid_for
from deepsmlm.physics.camera import Camera
from deepsmlm.physics.crlb import crlb_vs_z
from deepsmlm.plots import crlb_plot, psf_montage

PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def display_blur_px(cfg: SimulationConfig) -> float:
    """The blur σ (camera px) shown by ``deepsmlm psf``: the middle of the configured psf.blur_sigma_px range."""
    return 0.5 * sum(cfg.psf.blur_sigma_px)


def blurred_z_stack(cfg: SimulationConfig, z_nm: torch.Tensor, blur_px: float) -> np.ndarray:
    """Unit-photon PSFs (Z, P, P) of a centred emitter at each z (nm), convolved with a Gaussian of σ
    ``blur_px`` camera pixels (none when 0), as float32."""
    psf = build_psf(cfg, fast=False)
    offsets = torch.zeros(len(z_nm), 3)
    offsets[:, 2] = z_nm
    blur = torch.full((len(z_nm),), blur_px) if blur_px > 0 else None
    with torch.inference_mode():
        return psf.patches(offsets, torch.ones(len(z_nm)), blur).cpu().numpy().astype(np.float32)


def run_psf(config: str, out: Path, planes: int) -> None:
    """The PSF montage over the config's axial range as ``out`` (PNG), and the z-stack as a float32 TIFF beside it."""
    if out.suffix.lower() != ".png":
        raise UserInputError(f"-o {out}: give a .png path (the float32 TIFF z-stack is written beside it)")
    tif = out.with_suffix(".tif")
    check_outputs({"-o": out}, {"CONFIG": config}, beside={"-o's TIFF": tif})
    cfg = load_config(config)
    z = torch.linspace(*axial_range(cfg), planes)
    blur = display_blur_px(cfg)
    stack = blurred_z_stack(cfg, z, blur)
    write_z_stack(tif, stack, z.tolist(), cfg.frame.pixel_size_nm,
                  info={"config": cfg.name, "psf_model": cfg.psf.model, "blur_sigma_px": blur,
                        "photons": "unit-photon emitter at the patch centre"})
    lo, hi = cfg.psf.blur_sigma_px
    blurred = f"blur σ {blur:g} px (middle of {lo:g}–{hi:g})" if blur > 0 else "no blur"
    psf_montage(stack, z.tolist(), cfg.frame.pixel_size_nm, out,
                title=f"{cfg.name}: {cfg.psf.model} PSF, {cfg.optics.wavelength_nm:g} nm, NA {cfg.optics.na:g}, "
                      f"{blurred}")
    print(f"wrote {out} and {tif}")


def with_mask(cfg: SimulationConfig, mask: Path) -> SimulationConfig:
    """The config with its phase-mask file replaced: same mask geometry as the config's mask, or, for a
    config without one, a mask on the config's own pupil grid (as ``deepsmlm design`` writes them)."""
    if cfg.psf.model not in PUPIL_MODELS:
        cfg = updated(cfg, {"psf.model": "pupil"}, "--mask")
    if cfg.psf.mask is None:
        pitch = grid_mask_pitch_um(cfg, pupil_grid_for(cfg))
        return updated(cfg, {"psf.mask": MaskConfig(file=str(mask), pixel_pitch_um=pitch)}, "--mask")
    return updated(cfg, {"psf.mask.file": str(mask), "psf.mask.key": None}, "--mask")


def crlb_figures(cfg: SimulationConfig, photons: float, background: float, planes: int) -> dict:
    """CRLB of x, y (and z when the PSF encodes it) at ``planes`` z values, with the camera's noise model."""
    psf = build_psf(cfg, fast=False)
    camera = Camera(cfg.camera, (cfg.frame.height, cfg.frame.width))
    z = torch.linspace(*axial_range(cfg), planes)
    encodes_z = cfg.psf.model in PUPIL_MODELS or cfg.psf.gaussian.astig_focus_offset_nm != 0
    params = ("x", "y", "z", "photons", "background") if encodes_z else ("x", "y", "photons", "background")
    if cfg.camera.scmos_maps is not None:
        raise UserInputError(f"{cfg.camera.scmos_maps}: CRLB vs z assumes a uniform camera; drop scmos_maps for it")
    bounds = crlb_vs_z(psf, z, photons, background, variance=camera.fisher_variance_photons, params=params)
    fig = {"config": cfg.name, "photons": photons, "background_per_px": background,
           "noise": cfg.camera.type, "z_nm": z.tolist()}
    for axis in ("x", "y", "z"):
        if axis in bounds:
            vals = bounds[axis].detach().numpy()
            fig[f"crlb_{axis}_nm"] = vals.tolist()
            fig[f"mean_crlb_{axis}_nm"] = float(vals.mean())
    return fig


def run_crlb(config: str, mask: Path | None, json_out: Path | None, plot: Path | None, photons: float | None,
             background: float | None, planes: int) -> None:
    plot = plot if plot is not None else (json_out.with_suffix(".png") if json_out is not None else None)
    if plot is not None and plot.suffix.lower() not in PLOT_SUFFIXES:
        raise UserInputError(f"--plot {plot}: give a {', '.join(PLOT_SUFFIXES)} path")
    check_outputs({"--json": json_out, "--plot": plot}, {"CONFIG": config, "--mask": mask})
    cfg = load_config(config)
    if mask is not None:
        cfg = with_mask(cfg, mask)
    n = photons if photons is not None else cfg.emitters.photons.expected()
    b = background if background is not None else float(np.mean(cfg.background.photons_per_px))
    fig = crlb_figures(cfg, n, b, planes)
    table = Table(title=f"√CRLB (nm), {cfg.name}\n{n:g} photons, {b:g} bg/px, {cfg.camera.type}")
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
        curves = {cfg.name: {a: np.array(fig[f"crlb_{a}_nm"]) for a in axes}}
        crlb_plot(np.array(fig["z_nm"]), curves, plot, title=f"{n:g} photons, {b:g} background/px")
        print(f"wrote {plot}")
