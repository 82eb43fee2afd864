"""`deepsmlm localize`: stream a stack through a model (or the classic fitter) into a localization file."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from deepsmlm.api import load_model
from deepsmlm.api.model import CLASSICS
from deepsmlm.assembly.onnx_networks import is_onnx_file
from deepsmlm.commands.progress_bars import LOCALIZING, progress_bar
from deepsmlm.errors import UserInputError, check_positive
from deepsmlm.inference.stream import rate_text
from deepsmlm.io.images import open_stack
from deepsmlm.io.outputs import check_outputs
from deepsmlm.models.registry import jaccard_warning, recorded_jaccard


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
                 batch_size: int | None, config: str | None, baseline_subtracted: bool = False,
                 pixel_size_nm: float | None = None, force: bool = False, threshold: float | None = None,
                 max_memory_gb: float | None = None, max_uncertainty_nm: float | None = None,
                 backend: str = "torch") -> None:
    from deepsmlm.analysis.render import gaussian_image, save_render
    from deepsmlm.io.localization_files import localization_writer

    check_positive(pixel_size_nm, "--pixel-size-nm")
    check_localize_outputs(stack_path, model, config, out, fmt, render)
    if model not in CLASSICS and not is_onnx_file(model) and (
            warning := jaccard_warning(recorded_jaccard(model), f"model {model}")):
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    with open_stack(stack_path) as stack:
        assumed = pixel_size_nm is None and stack.pixel_size_nm is None
        localizer = load_model(model, device, config=config, backend=backend)
        # rows stream into the file; the classic fitter's render needs them all (a network draws its own, of
        # every detection: with --max-uncertainty-nm the rows kept are drawn instead)
        drawn_from_rows = render is not None and (localizer.classic or max_uncertainty_nm is not None)
        with progress_bar(LOCALIZING, transient=True) as progress:
            run = localizer.stream(stack, batch_size=batch_size, threshold=threshold, pixel_size_nm=pixel_size_nm,
                                   baseline_subtracted=baseline_subtracted, force=force, max_memory_gb=max_memory_gb,
                                   max_uncertainty_nm=max_uncertainty_nm, progress=progress,
                                   superres=render is not None and not drawn_from_rows,
                                   open_writer=lambda meta: localization_writer(out, meta, fmt),
                                   keep_rows=drawn_from_rows)
    cfg, result = run.config, run.result
    if render is not None:
        if result.superres is not None:
            save_render(result.superres, render, run.superres_pixel_nm)
        else:
            save_render(gaussian_image(run.localizations, 10.0), render, 10.0)
    console = Console(stderr=True)
    if assumed:
        console.print(f"{stack_path}: no pixel size in the file; assumed {cfg.frame.pixel_size_nm:g} nm, that of "
                      f"{localizer.source} (declare it with --pixel-size-nm)", markup=False, highlight=False,
                      soft_wrap=True)
    kept = "" if max_uncertainty_nm is None else f" with lateral σ ≤ {max_uncertainty_nm:g} nm"
    console.print(f"{result.n_localizations} localizations{kept} in {result.n_frames} frames, "
                  f"{rate_text(result.n_frames, result.seconds)} → {out}")
