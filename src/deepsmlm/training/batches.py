"""Training batches simulated on the fly: uniformly random emitters at a density drawn per batch from the
training range (on fields of ``training.field_px`` when set), imaged by the run's simulator, converted to
the network's normalised input, with the output head's training target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deepsmlm.assembly.predictors import input_normalisation
from deepsmlm.config import EmitterConfig, SimulationConfig, updated
from deepsmlm.heads.base import OutputHead
from deepsmlm.inference.predict import normalised
from deepsmlm.optics.psf import PSF
from deepsmlm.simulation.emitters import Emitters, EmitterSampler, placement_area_um2
from deepsmlm.simulation.simulator import Simulator
from deepsmlm.simulation.windows import window_batch


def density_range(cfg: SimulationConfig) -> tuple[float, float]:
    """Training densities (µm⁻²): the training range, else the config's density, else its emitter count
    range over the area emitters are placed in (the frame less ``emitters.margin_px``)."""
    if cfg.training.density_range_per_um2 is not None:
        return cfg.training.density_range_per_um2
    if cfg.emitters.density_per_um2 is not None:
        return cfg.emitters.density_per_um2, cfg.emitters.density_per_um2
    area_um2 = placement_area_um2(cfg.emitters, cfg.frame)
    lo, hi = cfg.emitters.count
    return lo / area_um2, hi / area_um2


def training_field(cfg: SimulationConfig) -> SimulationConfig:
    """The config the training frames are simulated with: square fields of ``training.field_px`` when
    set (the densities stay those of the full frame), else the config's frame."""
    if cfg.training.field_px is None:
        return cfg
    size = cfg.training.field_px
    return updated(cfg, {"training.density_range_per_um2": density_range(cfg), "frame.height": size,
                         "frame.width": size})


def training_emitters(cfg: SimulationConfig, density: float) -> EmitterConfig:
    """Uniformly random, independent emitters at ``density`` with the config's photons and z range, up to
    the field's edge (training fields are crops of a frame, so a frame margin does not apply); for a network
    that sees several frames, molecules blinking by the config's on/off probabilities (no bleaching)."""
    return updated(cfg.emitters, {"density_per_um2": density, "count": None, "margin_px": 0.0,
                                  "structure.kind": "uniform", "blinking.enabled": cfg.model.frames > 1,
                                  "blinking.photon_budget": None})


def labelled(cfg: SimulationConfig, photons: torch.Tensor) -> torch.Tensor:
    """Emitters bright enough to be labelled (and to count in validation): ``training.label_min_photons``."""
    return photons >= cfg.training.label_min_photons


def with_normalisation(cfg: SimulationConfig, psf: PSF) -> SimulationConfig:
    """``cfg`` with its input normalisation, (offset, scale) photons, filled in where unset: the mean
    background, and the peak pixel of a mean-brightness emitter in the middle of the z range; a LocNet's
    photon unit with them: the mean photons of an emitter."""
    if cfg.model.input_offset_photons is not None and cfg.model.input_scale_photons is not None:
        return cfg
    z0, z1 = cfg.emitters.z_range_nm
    with torch.no_grad():
        peak = float(psf.z_stack(torch.tensor([(z0 + z1) / 2])).max())
    photons = cfg.emitters.photons.expected()
    changes = {"model.input_offset_photons": float(np.mean(cfg.background.photons_per_px)),
               "model.input_scale_photons": peak * photons}
    if cfg.model.kind == "locnet" and cfg.model.photon_unit_photons is None:
        changes["model.photon_unit_photons"] = photons
    return updated(cfg, changes)


@dataclass
class SimulatedBatches:
    """Batches of ``cfg.training.batch_size`` frames from ``sim`` (the training field's simulator), drawn
    with ``rng``: the normalised network input (B, T, H, W) (T: ``model.frames``, the target that of the
    middle frame), in ``layout``, and the ``head``'s target.
    ``differentiable``: the camera noise reparameterised, so the input stays in the autograd graph of
    the PSF (end-to-end design); ``before`` runs before each batch is drawn (a learnable mask's refresh)."""

    sim: Simulator
    head: OutputHead
    cfg: SimulationConfig
    rng: torch.Generator
    layout: torch.memory_format = torch.contiguous_format
    differentiable: bool = False
    before: Callable[[], None] | None = None

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = density_range(training_field(self.cfg))
        density = lo + (hi - lo) * float(torch.rand(1, generator=self.rng))
        x, em, background = self.simulate_input(training_emitters(self.cfg, density))
        return x.contiguous(memory_format=self.layout), self.targets(em.to(self.sim.device),
                                                                     self.cfg.training.batch_size, background)

    def simulate_input(self, emitters: EmitterConfig) -> tuple[torch.Tensor, Emitters, torch.Tensor | None]:
        """A batch of frames of ``emitters``: the network input (B, T, H, W) in photons normalised by the
        model's (offset, scale), the emitters (of the middle frames) and the true background (B, H, W)
        photons/px (None when ``differentiable``)."""
        if self.before is not None:
            self.before()
        n, sampler = self.cfg.training.batch_size, EmitterSampler(emitters, self.sim.emitters.frame)
        if self.cfg.model.frames > 1:
            batch = window_batch(self.sim, n, self.cfg.model.frames, self.rng, sampler)
            photons, em, background = self.sim.camera.adu_to_photons(batch.adu), batch.emitters, batch.background
        elif self.differentiable:
            photons, em = self.sim.reparameterized_sample(n, self.rng, sampler)
            background = None
        else:
            batch = self.sim.sample(n, self.rng, sampler)
            photons, em, background = self.sim.camera.adu_to_photons(batch.adu), batch.emitters, batch.background
        return normalised(photons, *input_normalisation(self.cfg)), em, background

    def targets(self, em: Emitters, n_frames: int, background: torch.Tensor | None = None) -> torch.Tensor:
        """The head's training target of the labelled emitters of ``n_frames`` frames (a density head's:
        (F, C·D, u·H, u·W), one volume per dye, each emitter a unit mass in its own dye's volume), with
        their photons and the frames' true ``background`` (F, H, W) photons/px when known."""
        h, w = self.sim.shape
        return self.head.targets(em.xyz_nm, em.frame, em.color, labelled(self.cfg, em.photons), n_frames, h, w,
                                 photons=em.photons, background=background)
