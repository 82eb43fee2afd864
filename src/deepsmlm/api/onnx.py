"""`deepsmlm.export_onnx`: a trained network as a self-describing ONNX model, for onnxruntime (``localize
--backend onnx``) or any other ONNX runtime."""

from __future__ import annotations

import os
from pathlib import Path

from deepsmlm.api.model import CLASSICS
from deepsmlm.assembly.onnx_networks import exported_by_deepsmlm, onnx_bytes
from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import write_atomic
from deepsmlm.io.outputs import check_outputs, check_writable_file
from deepsmlm.models import registry


def check_onnx_output(out: Path, model: str) -> None:
    """Before any work: an ``.onnx`` path, not the model's own files, and never over a file that is not an
    earlier export of deepsmlm."""
    check_writable_file(out, "-o", suffixes=(".onnx",))
    check_outputs({"-o": out}, {"MODEL": model})
    if out.exists() and not exported_by_deepsmlm(out):
        raise UserInputError(f"-o {out}: exists and is not an ONNX model deepsmlm exported; it would be written "
                             f"over (choose another output name)")


def export_onnx(model: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the network of ``model`` (a shipped name or model folder) to ``out`` (.onnx) with its batch
    norm folded, input (B, T, H, W) of any batch, height and width, and the normalisation, camera
    conversion, output geometry and config in its metadata
    (:mod:`deepsmlm.assembly.onnx_networks`). The classic fitters have no network: one-line error.

    Example::

        deepsmlm.export_onnx("default-2d", "default-2d.onnx")
    """
    name, out = str(model), Path(out)
    if name in CLASSICS:
        raise UserInputError(f"{name}: a classic fitter has no network to export (export a trained model: "
                             f"{', '.join(registry.shipped_models())} or a model folder)")
    check_onnx_output(out, name)
    cfg, net = registry.load_model(name)
    data = onnx_bytes(cfg, registry.fold_batchnorm(net))
    return write_atomic(out, lambda tmp: tmp.write_bytes(data))
