"""Training a density network (Deep-STORM 2D or DeepSTORM3D) on batches simulated on the fly by the
shared forward model.

Each step draws a batch from the config's physics (PSF, camera, photons, background) with uniformly
random emitters at a density drawn from the training range (on fields of ``training.field_px`` when
set), converts ADU to photons with the camera model, and minimises the output head's loss (3D: on the
voxel grid, with the Dice term). Every ``validate_every`` steps a fixed seeded validation set
is localized and scored (Jaccard, RMSE) at several detection thresholds; the threshold with the best
SMLM-2016 lateral efficiency is chosen, the model with the best validation Jaccard (at its chosen
threshold) is kept with that threshold, and a resumable checkpoint is written.

:class:`DensityParts` builds what every density run shares from its config; :class:`Trainer` composes
them into the :class:`~deepsmlm.training.loop.TrainingLoop` of a plain run, on one process or as one rank
of a torchrun world (:mod:`deepsmlm.training.distributed`: per-rank batches and generators).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from deepsmlm.assembly.predictors import build_head
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import SimulationConfig
from deepsmlm.heads.base import OutputHead
from deepsmlm.models.registry import build_network, save_model
from deepsmlm.optics.psf import PSF
from deepsmlm.resources import require_memory
from deepsmlm.simulation.simulator import Simulator
from deepsmlm.training.batches import (SimulatedBatches, density_range, training_emitters, training_field,
                                       with_normalisation)
from deepsmlm.training.distributed import World, unvalidated
from deepsmlm.training.loop import BatchSource, Hooks, TrainingLoop, Validator
from deepsmlm.training.requirements import training_memory_bytes
from deepsmlm.training.validation import ValidationSet, ValidationScorer, kept_config


@dataclass
class DensityParts:
    """What a density network's run is made of: its config (input normalisation filled in), the training
    field's simulator, the seeded network, the run's data generator, the output head and the memory
    layout of the network's input; ``out`` the model folder, ``device`` where it all runs, ``world`` the
    processes training together."""

    cfg: SimulationConfig
    sim: Simulator
    net: nn.Module
    rng: torch.Generator
    head: OutputHead
    layout: torch.memory_format
    out: Path
    device: torch.device
    world: World

    @classmethod
    def build(cls, cfg: SimulationConfig, out: Path, device: str | torch.device = "cpu", psf: PSF | None = None,
              dye_psfs: list[PSF] | None = None, world: World | None = None) -> DensityParts:
        """The parts of ``cfg``'s run into ``out`` (its memory checked first), imaging through ``psf`` and
        ``dye_psfs`` when given (else the config's); the network is seeded by ``training.seed``, the data
        generator by ``world``'s seed of it (``training.seed`` itself on one process)."""
        world = world or World()
        field = training_field(cfg)
        share, f = world.share(field), field.frame
        require_memory(training_memory_bytes(share, training_emitters(field, density_range(field)[1])),
                       f"training on batches of {share.training.batch_size} frames of {f.height}×{f.width} px")
        device = torch.device(device)
        sim = build_simulator(field, device, psf=psf, dye_psfs=dye_psfs)
        cfg = with_normalisation(cfg, sim.psf)
        torch.manual_seed(cfg.training.seed)
        # channels-last speeds float32 convolutions on CPU, but its bfloat16 backward of dilated
        # convolutions crashes (torch 2.13 CPU): bfloat16 runs keep the default layout
        layout = torch.contiguous_format if cfg.training.bfloat16 else torch.channels_last
        net = build_network(cfg.model, cfg.localizes_z()).to(device).to(memory_format=layout)
        rng = torch.Generator().manual_seed(world.seed(cfg.training.seed))
        return cls(cfg, sim, net, rng, build_head(cfg), layout, out, device, world)

    def batches(self, differentiable: bool = False, before: Callable[[], None] | None = None) -> SimulatedBatches:
        """The run's batch source, this rank's share of the batch (see :class:`SimulatedBatches` for
        ``differentiable`` and ``before``)."""
        return SimulatedBatches(self.sim, self.head, self.world.share(self.cfg), self.rng, self.layout,
                                differentiable, before)

    def validation_set(self) -> ValidationSet:
        """The seeded validation frames, imaged through the simulator as it is now."""
        return ValidationSet.build(self.sim, training_field(self.cfg))

    def optimiser(self, extra_groups: Sequence[dict] = ()) -> torch.optim.Optimizer:
        """Adam over the network and ``extra_groups`` (each with its ``lr_scale``) at the training rate."""
        groups = [{"params": list(self.net.parameters())}, *extra_groups]
        return torch.optim.Adam(groups, lr=self.cfg.training.learning_rate)

    def loop(self, optim: torch.optim.Optimizer, batches: BatchSource, validator: Validator,
             hooks: Hooks) -> TrainingLoop:
        """The training loop of the network with these parts and the head's loss."""
        return TrainingLoop(self.net, optim, batches, self.head.loss, validator, hooks, self.cfg.training, self.out,
                            self.rng, self.device, self.world)


class Trainer:
    """A plain run: the density network of ``cfg`` trained into the model folder ``out``; ``loop`` runs it.
    ``psf`` and ``dye_psfs`` replace the config's PSFs in the simulation (e.g. a measured PSF); ``world``:
    the torchrun world this process is a rank of (one process by default)."""

    def __init__(self, cfg: SimulationConfig, out: Path, device: str = "cpu", psf: PSF | None = None,
                 dye_psfs: list[PSF] | None = None, world: World | None = None):
        parts = DensityParts.build(cfg, out, device, psf, dye_psfs, world)
        self.cfg, self.head, self.out = parts.cfg, parts.head, out
        self.batches = parts.batches()
        validator = (ValidationScorer(parts.validation_set(), parts.cfg, parts.device) if parts.world.main
                     else unvalidated)
        self.loop = parts.loop(parts.optimiser(), self.batches, validator, Hooks(keep_best=self.keep_best))

    def keep_best(self, net: nn.Module, record: dict) -> None:
        """Save the network with the config, the record's chosen threshold and σ calibration."""
        save_model(self.out, kept_config(self.cfg, record), net)
