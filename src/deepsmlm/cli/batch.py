"""`deepsmlm batch`: many stacks, or whole-chip stacks, localized on a Dask distributed cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepsmlm.cli.common import DeviceOpt, guard


def batch(
    stacks: list[str] = typer.Argument(..., help="stacks: glob patterns (quoted, e.g. 'data/*.tif') or paths"),
    model: str = typer.Option(..., "--model", help="shipped model name, model folder, gaussian-mle or psf-mle"),
    out: Path = typer.Option(..., "-o", "--out", help="output folder: one file per stack, named by the stack"),
    scheduler: str = typer.Option("local", "--scheduler", help="local (a LocalCluster here) or a Dask scheduler "
                                  "address (tcp://host:8786); stacks and -o on paths every worker sees"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="worker processes of --scheduler local "
                                          "(default: Dask's choice from the cores)"),
    chunk_frames: int = typer.Option(256, "--chunk-frames", min=1, help="frames per task (a Parquet part each)"),
    fmt: str = typer.Option("parquet", "--format", help="parquet, csv (ThunderSTORM) or hdf5 (Picasso)"),
    config: Optional[str] = typer.Option(None, "--config", help="the data's camera/pixel/z config (classic fitters need it)"),
    device: str = DeviceOpt,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="most frames per pass on a worker"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="detection threshold (as localize)"),
    pixel_size_nm: Optional[float] = typer.Option(None, "--pixel-size-nm", help="the data's pixel size (nm)"),
    baseline_subtracted: bool = typer.Option(False, "--baseline-subtracted",
                                             help="the frames already had the camera baseline removed"),
    force: bool = typer.Option(False, "--force", help="run even when the data do not fit the model"),
    max_memory_gb: Optional[float] = typer.Option(None, "--max-memory-gb", help="each worker's working-memory budget "
                                                  "(GiB; default half its Dask memory limit); large frames are tiled"),
    backend: str = typer.Option("torch", "--backend", help="torch, torch-bf16 or onnx (as localize)"),
) -> None:
    """Localize many stacks on Dask: frame chunks on the workers, parts joined per stack; a restarted run
    skips the chunks done. Exit code 3 when some stacks were refused (each named) and the others localized."""
    from deepsmlm.commands.batch import run_batch

    codes: list[int] = []
    guard(lambda *args: codes.append(run_batch(*args)), stacks, model, out, scheduler, workers, chunk_frames, fmt,
          config, device, batch_size, threshold, pixel_size_nm, baseline_subtracted, force, max_memory_gb, backend)
    if codes and codes[0]:
        raise typer.Exit(codes[0])
