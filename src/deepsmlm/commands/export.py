"""`deepsmlm export`: a trained network as a self-describing ONNX model."""

from __future__ import annotations

from pathlib import Path

from deepsmlm.api.onnx import export_onnx


def run_export(model: str, out: Path) -> None:
    """Export ``model`` (shipped name or model folder) to ``out`` (.onnx) and say where it went."""
    path = export_onnx(model, out)
    print(f"exported {model} → {path} ({path.stat().st_size / 1e6:.1f} MB, ONNX; dynamic batch, height and width)")
