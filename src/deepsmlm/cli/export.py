"""`deepsmlm export`: a trained network to ONNX (registered in ``cli/__init__.py``)."""

from __future__ import annotations

from pathlib import Path

import typer

from deepsmlm.cli.common import guard


def export(
    model: str = typer.Argument(..., help="shipped model name (e.g. default-2d) or model folder"),
    out: Path = typer.Option(..., "-o", "--out", help="the ONNX file to write (.onnx; never over another file)"),
) -> None:
    """Export a trained network to ONNX, for onnxruntime or any ONNX runtime.

    Batch norm folded; any batch size, frame height and width; the input normalisation, camera conversion,
    output geometry and model config in its metadata. Run it with `localize --backend onnx --model FILE`."""
    from deepsmlm.commands.export import run_export

    guard(run_export, model, out)
