"""`deepsmlm localize`: stream a stack through a model (or the classic fitter) into a localization file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from deepsmlm.config import SimulationConfig, load_config
from deepsmlm.errors import UserInputError
from deepsmlm.inference.postprocess import detected_density
from deepsmlm.inference.predict import DensityPredictor
from deepsmlm.inference.stream import Localizer, StackResult, run_stack
from deepsmlm.io.images import ImageStack, open_stack
from deepsmlm.io.outputs import check_outputs
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.models.deepstorm3d import receptive_field_px
from deepsmlm.models.registry import fold_batchnorm, load_model
from deepsmlm.physics.camera import Camera

CLASSIC = "gaussian-mle"


def check_pixel_size(stack: ImageStack, cfg: SimulationConfig, source: str) -> None:
    """The stack's pixel size (when its metadata has one) must match the model's within 1 %."""
    px = stack.pixel_size_nm
    if px is not None and abs(px / cfg.frame.pixel_size_nm - 1) > 0.01:
        raise UserInputError(f"{stack.path}: pixel size {px:g} nm differs from {cfg.frame.pixel_size_nm:g} nm "
                             f"of {source}")


def check_camera(stack: ImageStack, cfg: SimulationConfig, source: str) -> None:
    """The first frames' median must not sit far below the camera baseline the model expects."""
    first = stack[: min(8, len(stack))].astype(np.float64)
    median = float(np.median(first))
    camera = Camera(cfg.camera)
    photons = float(camera.adu_to_photons(torch.tensor(median)))
    noise = float(camera.variance_photons(torch.tensor(max(photons, 0.0))).sqrt())
    if photons < -5 * max(noise, 1.0):
        base = "0 (baseline-subtracted)" if cfg.camera.baseline_subtracted else f"{float(camera.offset):g}"
        raise UserInputError(f"{stack.path}: median pixel {median:g} ADU lies far below the baseline {base} ADU "
                             f"of {source}'s camera; the camera or its baseline differs from the model's")


def deep_localizer(predictor: DensityPredictor) -> Localizer:
    """Localizations plus the summed density of the accepted detections (the super-resolved image),
    in sub-batches small enough for large 3D output grids."""
    m = predictor.cfg.model

    def localize(adu: torch.Tensor, first: int):
        step = predictor.frames_per_pass(*adu.shape[-2:])
        tables, image = [], None
        for i in range(0, len(adu), step):
            density = predictor.density(adu[i:i + step])
            peaks = predictor.peaks(density)
            occupancy = predictor.occupancy(density)
            part = detected_density(occupancy, peaks, m.window_px, predictor.window_planes).sum(dim=(0, 1))
            image = part if image is None else image + part
            tables.append(predictor.localize(density, first + i, peaks=peaks))
        return pd.concat(tables, ignore_index=True), image
    return localize


def classic_localizer(cfg: SimulationConfig, device: str) -> Localizer:
    from deepsmlm.inference.gaussian_mle import GaussianMLE

    fitter = GaussianMLE(cfg, device=device)
    return lambda adu, first: (fitter.localize(adu, first), None)


def check_field(stack: ImageStack, cfg: SimulationConfig, source: str) -> None:
    """A 3D model needs frames at least as large as its receptive field (the Tetrapod's lobes)."""
    if cfg.model.kind != "deepstorm3d":
        return
    need = receptive_field_px(cfg.model.dilations)
    height, width = stack.shape
    if min(height, width) < need:
        raise UserInputError(f"{stack.path}: frames of {height}×{width} px are smaller than the {need} px "
                             f"receptive field of {source}")


def with_experiment(model_cfg: SimulationConfig, experiment: SimulationConfig, model: str,
                    config: str) -> SimulationConfig:
    """The model's config with the experiment's camera (ADU → photons by the data's own camera, so a model
    survives a change of gain or baseline); its pixel size must match and, for a 3D model, its axial range
    must lie within the trained one."""
    if abs(experiment.frame.pixel_size_nm / model_cfg.frame.pixel_size_nm - 1) > 0.01:
        raise UserInputError(f"{config}: pixel size {experiment.frame.pixel_size_nm:g} nm differs from "
                             f"{model_cfg.frame.pixel_size_nm:g} nm of model {model}")
    if model_cfg.model.z_planes > 1:
        (z0, z1), (t0, t1) = experiment.emitters.z_range_nm, model_cfg.emitters.z_range_nm
        if z0 < t0 or z1 > t1:
            raise UserInputError(f"{config}: z range {z0:g} … {z1:g} nm lies outside the range {t0:g} … {t1:g} nm "
                                 f"model {model} was trained for")
    out = model_cfg.model_copy(deep=True)
    out.camera = experiment.camera.model_copy(deep=True)
    return out


def localize_stack(stack: ImageStack, model: str, config: str | None, device: str, batch_size: int,
                   show_progress: bool = True, baseline_subtracted: bool = False
                   ) -> tuple[SimulationConfig, StackResult]:
    """Run ``model`` (a shipped name, a folder, or gaussian-mle with ``config``) over the whole stack;
    ``baseline_subtracted``: the frames had the camera baseline removed already."""
    if model == CLASSIC:
        if config is None:
            raise UserInputError("gaussian-mle needs --config CONFIG (camera and pixel size of the data)")
        cfg, source = load_config(config), f"config {config}"
        cfg.camera.baseline_subtracted |= baseline_subtracted
        localizer = classic_localizer(cfg, device)
    else:
        cfg, net = load_model(model, device)
        if config is not None:
            cfg = with_experiment(cfg, load_config(config), model, config)
        cfg.camera.baseline_subtracted |= baseline_subtracted
        localizer, source = deep_localizer(DensityPredictor(cfg, fold_batchnorm(net), device)), f"model {model}"
    check_field(stack, cfg, source)
    check_pixel_size(stack, cfg, source)
    check_camera(stack, cfg, source)
    with torch.inference_mode():
        result = run_stack(stack, localizer, batch_size, show_progress)
    return cfg, result


def check_localize_outputs(stack_path: Path, model: str, config: str | None, out: Path, fmt: str | None,
                           render: Path | None) -> None:
    """Before any work: a known output format, a .png render, and no output on an input or on another."""
    from deepsmlm.io.localization_files import output_format

    picasso = output_format(out, fmt) == "picasso"
    if render is not None and render.suffix.lower() != ".png":
        raise UserInputError(f"--render {render}: give a .png path (the float32 TIFF is written beside it)")
    sidecars = {f"STACK's {suffix}": stack_path.with_suffix(suffix) for suffix in (".yaml", ".inf")}
    check_outputs({"-o": out, "--render": render},
                  {"STACK": stack_path, **sidecars, "--model": model, "--config": config},
                  beside={"--render's TIFF": None if render is None else render.with_suffix(".tif"),
                          "-o's YAML": out.with_suffix(".yaml") if picasso else None})


def run_localize(stack_path: Path, model: str, out: Path, fmt: str | None, render: Path | None, device: str,
                 batch_size: int, config: str | None, baseline_subtracted: bool = False) -> None:
    from deepsmlm.analysis.render import gaussian_image, save_render
    from deepsmlm.io.localization_files import write_localizations

    check_localize_outputs(stack_path, model, config, out, fmt, render)
    with open_stack(stack_path) as stack:
        cfg, result = localize_stack(stack, model, config, device, batch_size, baseline_subtracted=baseline_subtracted)
        shape = stack.shape
    meta = Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=shape, n_frames=result.n_frames,
                    config=cfg.model_dump(mode="json"), source=str(stack_path))
    locs = Localizations(result.table, meta)
    write_localizations(out, locs, fmt)
    if render is not None:
        if result.superres is not None:
            save_render(result.superres, render, cfg.frame.pixel_size_nm / cfg.model.upsampling)
        else:
            save_render(gaussian_image(locs, 10.0), render, 10.0)
    Console(stderr=True).print(f"{len(locs)} localizations in {result.n_frames} frames, "
                               f"{result.fps:.0f} frames/s → {out}")
