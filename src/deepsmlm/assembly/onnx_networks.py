"""A trained network as a self-describing ONNX model, and back to the config and network a predictor runs.

The model's ``metadata_props`` (JSON values) tell another program all it needs around the graph:
``deepsmlm.input`` (frames per input, the normalisation (photons − offset) / scale), ``deepsmlm.camera``
(ADU → photons as the torch path converts), ``deepsmlm.output`` (output geometry: kind, channels,
upsampling, z planes, dyes, pixel sizes, z range, the activation), ``deepsmlm.config`` (the whole model
config, from which ``--backend onnx`` rebuilds the post-processing) and ``deepsmlm.version``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepsmlm._version import __version__
from deepsmlm.assembly.predictors import input_normalisation, output_grid
from deepsmlm.config import SimulationConfig
from deepsmlm.config.loading import config_from_dict
from deepsmlm.errors import UserInputError
from deepsmlm.inference.onnx_network import OnnxNetwork
from deepsmlm.models.footprint import network_footprint
from deepsmlm.models.onnx_export import INPUT, OUTPUT, export_network, onnx_module
from deepsmlm.physics.camera import Camera

CONFIG_KEY = "deepsmlm.config"
PER_PIXEL = "per-pixel map (camera.scmos_maps)"


def _scalar(value: float | torch.Tensor) -> float | str:
    return PER_PIXEL if isinstance(value, torch.Tensor) else float(value)


def camera_metadata(cfg: SimulationConfig) -> dict[str, Any]:
    """How the torch path turns the camera's ADU into the photons it normalises."""
    camera = Camera(cfg.camera)
    return {"adu_to_photons": "((ADU - baseline_adu) / adu_per_e - spurious_charge_e) / qe; "
                              "no baseline subtracted when baseline_subtracted",
            "baseline_adu": _scalar(camera.offset), "adu_per_e": _scalar(camera.adu_per_e),
            "spurious_charge_e": float(camera.spurious_charge), "qe": float(camera.qe),
            "baseline_subtracted": cfg.camera.baseline_subtracted, "camera": cfg.camera.model_dump(mode="json")}


def input_metadata(cfg: SimulationConfig) -> dict[str, Any]:
    """The graph's input: T consecutive frames in photons, normalised; any height and width."""
    offset, scale = input_normalisation(cfg)
    footprint = network_footprint(cfg.model)
    return {"name": INPUT, "layout": "NCHW", "dtype": "float32", "channels": cfg.model.frames,
            "channel_meaning": "consecutive frames, the middle one localized",
            "offset_photons": offset, "scale_photons": scale,
            "normalisation": "(photons - offset_photons) / scale_photons",
            "size": "any height and width (poolings round up inside the graph)",
            "pooling_grid_px": footprint.align_px, "receptive_radius_px": footprint.reach_px}


def output_metadata(cfg: SimulationConfig, channels: int) -> dict[str, Any]:
    """The graph's raw output on the fine grid and what the head makes of it."""
    m, grid = cfg.model, output_grid(cfg)
    density = m.kind != "locnet"
    return {"name": OUTPUT, "layout": "NCHW", "kind": m.kind, "channels": channels, "upsampling": grid.upsampling,
            "z_planes": grid.planes, "colors": grid.colors, "pixel_size_nm": grid.pixel_nm,
            "fine_pixel_nm": grid.fine_nm, "z_range_nm": list(grid.z_range_nm) if cfg.localizes_z() else None,
            "channel_order": ("dye-major: channel c*z_planes + d is dye c, plane d" if density else
                              "LocNet per-pixel quantities (deepsmlm.heads.locnet)"),
            "activation": "density = max(output, 0)" if density else "deepsmlm.heads.locnet.LocNetHead.activate",
            "threshold": m.threshold}


def onnx_bytes(cfg: SimulationConfig, net: nn.Module) -> bytes:
    """The serialised ONNX model of ``net`` (batch norm folded) trained by ``cfg``, with its metadata."""
    onnx = onnx_module()
    proto = export_network(net, cfg.model.frames)
    channels = proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    meta = {"deepsmlm.version": __version__, "deepsmlm.input": input_metadata(cfg),
            "deepsmlm.camera": camera_metadata(cfg), "deepsmlm.output": output_metadata(cfg, channels),
            CONFIG_KEY: cfg.model_dump(mode="json")}
    onnx.helper.set_model_props(proto, {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    return proto.SerializeToString()


def exported_network(cfg: SimulationConfig, net: nn.Module, source: str) -> OnnxNetwork:
    """``net`` exported to ONNX in memory and opened in onnxruntime (a few seconds)."""
    return OnnxNetwork(onnx_bytes(cfg, net), source)


def is_onnx_file(name: str | os.PathLike) -> bool:
    """Whether a ``--model`` names an ONNX file (by its extension)."""
    return Path(name).suffix.lower() == ".onnx"


def load_onnx(path: str | os.PathLike) -> tuple[SimulationConfig, OnnxNetwork]:
    """The config and network of an ONNX model ``deepsmlm export`` wrote; one-line error otherwise."""
    if not Path(path).is_file():
        raise UserInputError(f"{path}: no such ONNX file")
    net = OnnxNetwork(path, str(path))
    if CONFIG_KEY not in net.metadata:
        raise UserInputError(f"{path}: an ONNX model without deepsmlm's metadata (write one with deepsmlm export)")
    return config_from_dict(json.loads(net.metadata[CONFIG_KEY]), str(path)), net


def exported_by_deepsmlm(path: Path) -> bool:
    """Whether ``path`` is an ONNX model ``deepsmlm export`` wrote (one an export may replace)."""
    onnx = onnx_module()
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not a readable ONNX model: certainly not one of ours
        return False
    return any(prop.key == CONFIG_KEY for prop in proto.metadata_props)
