"""Memory a training run needs, estimated before any work (bytes): one simulated batch, the network's
activations kept for the backward pass, the loss on the output grid, and the stored validation frames."""

from __future__ import annotations

import torch
from torch import nn

from deepsmlm.assembly.predictors import output_grid
from deepsmlm.config import EmitterConfig, SimulationConfig
from deepsmlm.models.registry import build_network
from deepsmlm.simulation.emitters import mean_emitters_per_frame
from deepsmlm.simulation.requirements import BYTES_PER_EMITTER, chunk_bytes, psf_cache_bytes

PROBE_PX = 32  # side of the frame the network's activations are measured on
LOSS_COPIES = 6  # output-sized float32 tensors in the loss: prediction, target, their blurs, gradients


def activation_bytes_per_pixel(net: nn.Module, frames: int = 1) -> float:
    """Bytes autograd keeps per input pixel in a training forward pass of ``net`` on ``frames`` input
    frames (measured on a small frame; saved tensors counted each time they are saved, so an upper
    estimate)."""
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net.train()(torch.zeros(1, frames, PROBE_PX, PROBE_PX))
    return saved / PROBE_PX**2


def training_memory_bytes(field: SimulationConfig, densest: EmitterConfig) -> float:
    """Memory of a training step on ``field`` (the config of the training frames) with its densest
    emitters, plus the stored validation frames."""
    t, m, f = field.training, field.model, field.frame
    pixels = f.height * f.width
    emitters = mean_emitters_per_frame(densest, f)
    frames = t.batch_size * m.frames  # a network that sees T frames trains on windows of T
    simulation = chunk_bytes(field, frames, emitters) + frames * emitters * BYTES_PER_EMITTER
    net = build_network(m, field.localizes_z())
    network = 2 * activation_bytes_per_pixel(net, m.frames) * t.batch_size * pixels  # forward and backward
    loss = LOSS_COPIES * 4 * t.batch_size * output_grid(field).voxels(f.height, f.width)
    validation = 4 * t.validation_frames * m.frames * pixels
    return simulation + network + loss + validation + psf_cache_bytes(field)
