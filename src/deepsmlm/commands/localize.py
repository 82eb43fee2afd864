"""`deepsmlm localize`: stream a stack through a model (or the classic fitter) into a localization file."""

from __future__ import annotations

import math
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from deepsmlm.api import load_model
from deepsmlm.api.model import CLASSICS, Model, Run
from deepsmlm.assembly.onnx_networks import is_onnx_file
from deepsmlm.commands.progress_bars import DESIGNING, LOCALIZING, progress_bar
from deepsmlm.errors import UserInputError, check_positive
from deepsmlm.inference.stream import rate_text
from deepsmlm.io.images import open_stack
from deepsmlm.io.outputs import check_outputs
from deepsmlm.io.report import REPORT_SUFFIXES
from deepsmlm.models.registry import jaccard_warning, recorded_jaccard


@dataclass(frozen=True)
class ReportRequest:
    """``--report PATH`` (an HTML run report) and what it adds: the drift curve (``drift``) and the FRC
    resolution (``frc``)."""

    path: Path | None = None
    drift: bool = False
    frc: bool = False

    def check(self) -> None:
        """One-line errors for additions without a report, and a report path that is not .html."""
        if self.path is None and (self.drift or self.frc):
            raise UserInputError("--report-drift and --report-frc add to the run report: give --report PATH too")
        if self.path is not None and self.path.suffix.lower() not in REPORT_SUFFIXES:
            raise UserInputError(f"--report {self.path}: give an .html path (a self-contained page)")


def command_line() -> str:
    """The shell command that reproduces this run: the working folder and deepsmlm's arguments, quoted."""
    return f"cd {shlex.quote(os.getcwd())} && {shlex.join(['deepsmlm', *sys.argv[1:]])}"


def check_localize_outputs(stack_path: Path, model: str, config: str | None, out: Path, fmt: str | None,
                           render: Path | None, report: Path | None = None) -> None:
    """Before any work: a known output format, a .png render, and no output on an input or on another."""
    from deepsmlm.io.localization_files import output_format

    picasso = output_format(out, fmt) == "picasso"
    if render is not None and render.suffix.lower() != ".png":
        raise UserInputError(f"--render {render}: give a .png path (the float32 TIFF is written beside it)")
    sidecars = {f"STACK's {suffix}": stack_path.with_suffix(suffix) for suffix in (".yaml", ".inf")}
    check_outputs({"-o": out, "--render": render, "--report": report},
                  {"STACK": stack_path, **sidecars, "--model": model, "--config": config},
                  beside={"--render's TIFF": None if render is None else render.with_suffix(".tif"),
                          "-o's YAML": out.with_suffix(".yaml") if picasso else None})


def run_localize(stack_path: Path, model: str, out: Path, fmt: str | None, render: Path | None, device: str,
                 batch_size: int | None, config: str | None, baseline_subtracted: bool = False,
                 pixel_size_nm: float | None = None, force: bool = False, threshold: float | None = None,
                 max_memory_gb: float | None = None, max_uncertainty_nm: float | None = None,
                 backend: str = "torch", report: ReportRequest = ReportRequest()) -> None:
    from deepsmlm.io.localization_files import localization_writer

    check_positive(pixel_size_nm, "--pixel-size-nm")
    report.check()
    check_localize_outputs(stack_path, model, config, out, fmt, render, report.path)
    if model not in CLASSICS and not is_onnx_file(model) and (
            warning := jaccard_warning(recorded_jaccard(model), f"model {model}")):
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    with open_stack(stack_path) as stack:
        assumed = pixel_size_nm is None and stack.pixel_size_nm is None
        localizer = load_model(model, device, config=config, backend=backend)
        # rows stream into the file; an image of the classic fitter's, or of the rows --max-uncertainty-nm
        # keeps, is drawn from the rows (a network draws its own, of every detection): kept for --render,
        # read back from the file for the report alone
        from_rows = localizer.classic or max_uncertainty_nm is not None
        with progress_bar(LOCALIZING, transient=True) as progress:
            run = localizer.stream(stack, batch_size=batch_size, threshold=threshold, pixel_size_nm=pixel_size_nm,
                                   baseline_subtracted=baseline_subtracted, force=force, max_memory_gb=max_memory_gb,
                                   max_uncertainty_nm=max_uncertainty_nm, progress=progress,
                                   superres=(render or report.path) is not None and not from_rows,
                                   open_writer=lambda meta: localization_writer(out, meta, fmt),
                                   keep_rows=render is not None and from_rows)
    cfg, result = run.config, run.result
    notes = [f"{stack_path}: no pixel size in the file; assumed {cfg.frame.pixel_size_nm:g} nm, that of "
             f"{localizer.source} (declare it with --pixel-size-nm)"] if assumed else []
    write_outputs(run, localizer, out, render, report, notes)
    console = Console(stderr=True)
    for note in notes:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    kept = "" if max_uncertainty_nm is None else f" with lateral σ ≤ {max_uncertainty_nm:g} nm"
    console.print(f"{result.n_localizations} localizations{kept} in {result.n_frames} frames, "
                  f"{rate_text(result.n_frames, result.seconds)} → {out}")


def write_outputs(run: Run, localizer: Model, out: Path, render: Path | None, report: ReportRequest,
                  notes: list[str]) -> None:
    """The super-resolved image (--render) and the run report (--report), from the rows the run kept or, for
    the report, the table read back from ``out`` (memory flat in the rows streamed)."""
    from deepsmlm.analysis.render import save_render
    from deepsmlm.api.report import run_picture, write_run_report
    from deepsmlm.io.localization_files import read_localizations

    if render is None and report.path is None:
        return
    rows = run.localizations if run.result.table is not None else None
    if rows is None and report.path is not None:
        rows = read_localizations(out, run.config.frame.pixel_size_nm)
    picture = run_picture(run, rows)
    if render is not None:
        save_render(picture.image, render, picture.pixel_nm)
    if report.path is None:
        return
    with progress_bar(DESIGNING, transient=True) as progress:
        done = write_run_report(report.path, run, localizer, locs=rows, picture=picture, drift=report.drift,
                                frc=report.frc, command=command_line(), output=str(out), input_notes=notes,
                                progress=progress)
    console = Console(stderr=True)
    for note in done.notes:
        console.print(f"[yellow]warning:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    if done.frc is not None and math.isfinite(done.frc.resolution_nm):
        console.print(f"FRC resolution {done.frc.resolution_nm:.1f} nm (1/7 threshold)", highlight=False)
    console.print(f"report → {report.path}", markup=False, highlight=False, soft_wrap=True)
