"""A trained network's predictor built from its config: the output grid, the head, the camera and the input
normalisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from deepsmlm.config import SimulationConfig
from deepsmlm.heads.base import OutputHead
from deepsmlm.heads.grid import OutputGrid
from deepsmlm.heads.registry import head_for
from deepsmlm.inference.predict import Predictor
from deepsmlm.models.footprint import network_footprint
from deepsmlm.physics.camera import Camera


def output_grid(cfg: SimulationConfig) -> OutputGrid:
    """The grid of the model's outputs: the frame's pixel over ``model.upsampling``, ``model.z_planes``
    planes over ``emitters.z_range_nm`` for a 3D model (:meth:`~deepsmlm.config.SimulationConfig.localizes_z`;
    no axial range otherwise), ``model.colors`` dyes."""
    m = cfg.model
    z_range = tuple(cfg.emitters.z_range_nm) if cfg.localizes_z() else (0.0, 0.0)
    return OutputGrid(cfg.frame.pixel_size_nm, m.upsampling, z_range, m.z_planes, m.colors)


def build_head(cfg: SimulationConfig) -> OutputHead:
    """The output head of ``model.kind`` with the config's post-processing settings and training loss."""
    return head_for(cfg.model).from_config(output_grid(cfg), cfg.model, cfg.training)


def input_normalisation(cfg: SimulationConfig) -> tuple[float, float]:
    """(offset, scale) in photons: the model config's values (set when training started)."""
    m = cfg.model
    if m.input_offset_photons is None or m.input_scale_photons is None:
        raise ValueError("model config lacks input normalisation (input_offset_photons / input_scale_photons)")
    return m.input_offset_photons, m.input_scale_photons


def build_predictor(cfg: SimulationConfig, net: nn.Module | Callable[[torch.Tensor], torch.Tensor],
                    device: str | torch.device = "cpu") -> Predictor:
    """The predictor of network ``net`` (torch, or an ONNX one) trained by ``cfg`` (its camera,
    normalisation, head and threshold), on ``device``."""
    return Predictor(net, network_footprint(cfg.model), Camera(cfg.camera), input_normalisation(cfg),
                     build_head(cfg), device, cfg.model.frames)
