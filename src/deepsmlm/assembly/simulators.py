"""A config's simulator: its PSF (one per dye for multicolour samples), camera, emitter and background
samplers and model-mismatch blur, built and handed to :class:`~deepsmlm.simulation.simulator.Simulator`."""

from __future__ import annotations

from pathlib import Path

import torch

from deepsmlm.config import SimulationConfig
from deepsmlm.optics.factory import build_dye_psfs, build_psf
from deepsmlm.optics.psf import PSF
from deepsmlm.physics.camera import Camera
from deepsmlm.simulation.background import BackgroundSampler
from deepsmlm.simulation.emitters import EmitterSampler
from deepsmlm.simulation.simulator import Simulator


def build_simulator(cfg: SimulationConfig, device: str | torch.device = "cpu", psf: PSF | None = None,
                    dye_psfs: list[PSF] | None = None, base_dir: Path | None = None) -> Simulator:
    """The forward model of ``cfg`` on ``device``: its fast PSF (unless ``psf`` is given), one per dye of
    ``emitters.dyes`` (unless ``dye_psfs`` is given; a mask file relative to ``base_dir``), its camera on
    the frame, its emitter and background statistics on the frame and its ``psf.blur_sigma_px``."""
    if psf is None:
        psf = build_psf(cfg, fast=True, base_dir=base_dir)
    if dye_psfs is None:
        dye_psfs = build_dye_psfs(cfg, fast=True, base_dir=base_dir)
    f = cfg.frame
    camera = Camera(cfg.camera, (f.height, f.width))
    return Simulator(psf, camera, EmitterSampler(cfg.emitters, f), BackgroundSampler(cfg.background, f),
                     cfg.psf.blur_sigma_px, dye_psfs, device)
