"""A network exported to ONNX, run by onnxruntime where the predictor would call the torch network: the
same normalised input in, the same raw output out, so tiling, batching and the head's post-processing
are shared (:class:`~deepsmlm.inference.predict.Predictor` takes either)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from deepsmlm.errors import UserInputError


def onnxruntime_module() -> Any:
    """The ``onnxruntime`` package, or a one-line error telling how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserInputError("--backend onnx needs onnxruntime: pip install 'deepsmlm[onnx]'") from None
    return onnxruntime


class OnnxNetwork:
    """An ONNX model run on the CPU by onnxruntime: (B, C, H, W) normalised photons (float32) → the raw
    output (B, K, u·H, u·W), returned on the input's device.

    ``model``: the ONNX file or its bytes; ``source``: how errors name it; ``threads``: onnxruntime's
    intra-op threads (default torch's, :func:`torch.get_num_threads`)."""

    def __init__(self, model: bytes | str | os.PathLike, source: str, threads: int | None = None):
        ort = onnxruntime_module()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the library stays silent
        try:
            self.session = ort.InferenceSession(model if isinstance(model, bytes) else os.fspath(model), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types (Fail, InvalidProtobuf, …)
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserInputError(f"{source}: not a usable ONNX model ({reason})") from None
        self.input = self.session.get_inputs()[0].name
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (raw, *_) = self.session.run(None, {self.input: array})
        return torch.from_numpy(raw).to(x.device)
