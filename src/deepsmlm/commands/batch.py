"""`deepsmlm batch`: many stacks (or one whole-chip stack) localized on a Dask cluster, one file per stack."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from deepsmlm.api.batch import localize_batch
from deepsmlm.commands.progress_bars import LOCALIZING, progress_bar
from deepsmlm.inference.stream import rate_text

PARTIAL = 3  # exit code when some stacks were refused and the others localized (2: nothing was localized)


def run_batch(stacks: list[str], model: str, out: Path, scheduler: str, workers: int | None, chunk_frames: int,
              fmt: str, config: str | None, device: str, batch_size: int | None, threshold: float | None,
              pixel_size_nm: float | None, baseline_subtracted: bool, force: bool, max_memory_gb: float | None,
              backend: str) -> int:
    """Run the batch with a progress bar, name each file written and each stack refused; the exit code."""
    with progress_bar(LOCALIZING, transient=True) as progress:
        result = localize_batch(stacks, model, out, scheduler=scheduler, workers=workers, chunk_frames=chunk_frames,
                                format=fmt, config=config, device=device, backend=backend, batch_size=batch_size,
                                threshold=threshold, pixel_size_nm=pixel_size_nm,
                                baseline_subtracted=baseline_subtracted, force=force, max_memory_gb=max_memory_gb,
                                progress=progress)
    console = Console(stderr=True)
    for path, n in result.outputs.items():
        console.print(f"{n} localizations → {path}", markup=False, highlight=False, soft_wrap=True)
    for reason in result.refused.values():
        console.print(f"[red]refused:[/red] {reason}", highlight=False, soft_wrap=True)
    earlier = f" ({result.frames_skipped} done by an earlier run)" if result.frames_skipped else ""
    workers = f"{result.workers} worker{'s' if result.workers != 1 else ''}"
    console.print(f"{len(result.outputs)} stacks, {result.frames_run} frames localized on {workers}{earlier}, "
                  f"{rate_text(result.frames_run, result.seconds)} → {out}", highlight=False)
    if result.refused:
        return PARTIAL if result.outputs else 2
    return 0
