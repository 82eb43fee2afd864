"""`deepsmlm localize`: stream a stack through a model (or the classic fitter) into a localization file."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from deepsmlm.commands.progress_bars import LOCALIZING, progress_bar
from deepsmlm.config import SimulationConfig, load_config
from deepsmlm.errors import UserInputError, check_positive
from deepsmlm.inference.data_check import check_data
from deepsmlm.inference.gaussian_mle import GaussianMLE
from deepsmlm.inference.predict import DensityPredictor
from deepsmlm.inference.stream import Localizer, StackResult, rate_text, run_stack
from deepsmlm.inference.tiling import Plan, plan_passes
from deepsmlm.io.images import ImageStack, open_stack
from deepsmlm.io.outputs import check_outputs
from deepsmlm.io.streaming import TableWriter
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.models.deepstorm3d import receptive_field_px
from deepsmlm.models.registry import fold_batchnorm, jaccard_warning, load_model, recorded_jaccard
from deepsmlm.resources import memory_budget_bytes

CLASSIC = "gaussian-mle"


def check_pixel_size(stack: ImageStack, cfg: SimulationConfig, source: str, declared_nm: float | None = None,
                     force: bool = False) -> bool:
    """The data's pixel size (``declared_nm``, else the file's) must match the model's within 1 % unless
    ``force``. Returns whether the data's pixel size is known (else the model's is assumed)."""
    px = declared_nm if declared_nm is not None else stack.pixel_size_nm
    model_px = cfg.frame.pixel_size_nm
    if px is not None and abs(px / model_px - 1) > 0.01 and not force:
        origin = "declared" if declared_nm is not None else "in the file"
        raise UserInputError(f"{stack.path}: pixel size {px:g} nm ({origin}) differs from {model_px:g} nm of "
                             f"{source}; run anyway with --force")
    return px is not None


def set_threshold(cfg: SimulationConfig, threshold: float | None, classic: bool) -> None:
    """--threshold: gaussian-mle's detection threshold (standard deviations of the filtered background
    noise, > 0) or a network's (the summed density of a detection, 0–1)."""
    if threshold is None:
        return
    if classic:
        if not threshold > 0:
            raise UserInputError(f"--threshold {threshold:g}: gaussian-mle needs a positive threshold "
                                 f"(standard deviations of the background noise)")
        cfg.model.gaussian_mle_threshold = threshold
    else:
        if not 0 <= threshold <= 1:
            raise UserInputError(f"--threshold {threshold:g}: a network's threshold is a summed density "
                                 f"between 0 and 1")
        cfg.model.threshold = threshold


def plan_stack(stack: ImageStack, localizer: Localizer, batch_size: int, max_memory_gb: float | None,
               superres: bool, source: str) -> Plan:
    """Frames per pass and tiles for ``stack`` within the memory budget (--max-memory-gb, default a share
    of the memory available); a super-resolved image is held throughout, with one chunk's part."""
    height, width = stack.shape
    u = localizer.upsampling
    image_bytes = 2 * 4 * u * height * u * width if superres and isinstance(localizer, DensityPredictor) else 0
    return plan_passes(stack.shape, stack.dtype.itemsize, localizer.footprint(height, width),
                       memory_budget_bytes(max_memory_gb), batch_size,
                       f"localizing {height}×{width} px frames with {source}", image_bytes)


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
                   show_progress: bool = True, baseline_subtracted: bool = False, pixel_size_nm: float | None = None,
                   force: bool = False, threshold: float | None = None, max_memory_gb: float | None = None,
                   superres: bool = True,
                   open_writer: Callable[[SimulationConfig], AbstractContextManager[TableWriter]] | None = None,
                   keep_rows: bool = False) -> tuple[SimulationConfig, StackResult]:
    """Run ``model`` (a shipped name, a folder, or gaussian-mle with ``config``) over the whole stack;
    ``baseline_subtracted``: the frames had the camera baseline removed already; ``pixel_size_nm``: the
    data's pixel size (default: the file's); ``force``: run even when the data do not fit the model;
    ``threshold``: see :func:`set_threshold`; ``max_memory_gb``: the memory budget; ``superres``: sum the
    network's super-resolved image. Rows go to ``open_writer(cfg)``'s writer chunk by chunk when given
    (and are kept too with ``keep_rows``), else into the result's table."""
    if model == CLASSIC:
        if config is None:
            raise UserInputError("gaussian-mle needs --config CONFIG (camera and pixel size of the data)")
        cfg, source = load_config(config), f"config {config}"
        cfg.camera.baseline_subtracted |= baseline_subtracted
        set_threshold(cfg, threshold, classic=True)
        localizer = GaussianMLE(cfg, device=device)
    else:
        cfg, net = load_model(model, device)
        if config is not None:
            cfg = with_experiment(cfg, load_config(config), model, config)
        cfg.camera.baseline_subtracted |= baseline_subtracted
        set_threshold(cfg, threshold, classic=False)
        localizer, source = DensityPredictor(cfg, fold_batchnorm(net), device), f"model {model}"
    check_field(stack, cfg, source)
    known = check_pixel_size(stack, cfg, source, pixel_size_nm, force)
    if not force:
        check_data(stack, cfg, source, trained=model != CLASSIC, pixel_declared=known)
    plan = plan_stack(stack, localizer, batch_size, max_memory_gb, superres, source)
    with (torch.inference_mode(), (nullcontext() if open_writer is None else open_writer(cfg)) as write,
          progress_bar(LOCALIZING, transient=True, show=show_progress) as progress):
        result = run_stack(stack, localizer, plan, progress, write, superres, keep_rows)
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
                 batch_size: int, config: str | None, baseline_subtracted: bool = False,
                 pixel_size_nm: float | None = None, force: bool = False, threshold: float | None = None,
                 max_memory_gb: float | None = None) -> None:
    from deepsmlm.analysis.render import gaussian_image, save_render
    from deepsmlm.io.localization_files import localization_writer

    check_positive(pixel_size_nm, "--pixel-size-nm")
    check_localize_outputs(stack_path, model, config, out, fmt, render)
    if model != CLASSIC and (warning := jaccard_warning(recorded_jaccard(model), f"model {model}")):
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    with open_stack(stack_path) as stack:
        shape, assumed = stack.shape, pixel_size_nm is None and stack.pixel_size_nm is None

        def metadata(cfg: SimulationConfig) -> Metadata:
            return Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=shape, n_frames=len(stack),
                            config=cfg.model_dump(mode="json"), source=str(stack_path))

        # rows stream into the file; the classic fitter's render needs them all (a network draws its own)
        cfg, result = localize_stack(stack, model, config, device, batch_size, baseline_subtracted=baseline_subtracted,
                                     pixel_size_nm=pixel_size_nm, force=force, threshold=threshold,
                                     max_memory_gb=max_memory_gb, superres=render is not None,
                                     open_writer=lambda cfg: localization_writer(out, metadata(cfg), fmt),
                                     keep_rows=render is not None and model == CLASSIC)
    if render is not None:
        if result.superres is not None:
            save_render(result.superres, render, cfg.frame.pixel_size_nm / cfg.model.upsampling)
        else:
            save_render(gaussian_image(Localizations(result.table, metadata(cfg)), 10.0), render, 10.0)
    console = Console(stderr=True)
    if assumed:
        source = f"config {config}" if model == CLASSIC else f"model {model}"
        console.print(f"{stack_path}: no pixel size in the file; assumed {cfg.frame.pixel_size_nm:g} nm, that of "
                      f"{source} (declare it with --pixel-size-nm)", markup=False, highlight=False, soft_wrap=True)
    console.print(f"{result.n_localizations} localizations in {result.n_frames} frames, "
                  f"{rate_text(result.n_frames, result.seconds)} → {out}")
