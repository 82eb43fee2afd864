"""A network as an ONNX graph (torch.onnx's dynamo exporter, onnxscript): input ``frames`` (B, C, H, W)
normalised photons, output ``output`` (B, K, u·H, u·W) raw values, with batch, height and width left free.

Every network of ``models/`` takes any H × W: its poolings round up (``ceil_mode``), its upsamplings are
cropped to the skip they meet and Deep-STORM 2D ``paper`` pads to its 8-px grid, all as shape arithmetic
that the exported graph keeps, so the graph needs no padding around it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from deepsmlm.errors import UserInputError

OPSET = 18  # onnxruntime ≥ 1.14 runs it; the dynamo exporter's own
INPUT, OUTPUT = "frames", "output"
SAMPLE_PX = 64  # traced frame size (a multiple of every network's pooling grid); H and W stay free


def onnx_module() -> Any:
    """The ``onnx`` package, or a one-line error telling how to install it."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise UserInputError("ONNX export needs the onnx extra: pip install 'deepsmlm[onnx]'") from None
    return onnx


@contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter without its warnings and log lines (library modules are silent)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_network(net: nn.Module, channels: int) -> Any:
    """The ``onnx.ModelProto`` of ``net`` (in eval mode, on CPU; batch norm best folded first) for inputs of
    ``channels`` channels, opset OPSET, batch/height/width dynamic."""
    onnx_module()
    net = net.to("cpu").eval()
    sample = torch.zeros(2, channels, SAMPLE_PX, SAMPLE_PX)
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    with quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(net, (sample,), dynamo=True, verbose=False, opset_version=OPSET,
                                    input_names=[INPUT], output_names=[OUTPUT], dynamic_shapes=(dims,))
    return program.model_proto
