"""End-to-end optics design: the pupil phase mask and the localization network trained together.

The mask is a parameter of the image-formation layer (the differentiable pupil PSF): every pupil pixel's
phase, or the coefficients of Zernike modes Noll 4 … K added to the start mask (fewer, smoother
degrees of freedom whose gradients average over the whole pupil: far faster on a CPU budget). Each batch of
random emitters is rendered through it, the camera noise is reparameterised (λ + √var(λ)·ε, so
gradients reach the mask), and the network's localization loss is minimised over both network weights
and mask phase; an optional smoothness penalty keeps the phase printable. Validation frames are
re-rendered with the current mask (same seeded emitters) before each validation. The learned mask is
saved wrapped to [−π, π) with the model; its config points at it, so the folder reproduces the PSF.

An optional information floor (``crlb_cap_nm``) adds the mask-only penalty
:func:`~deepsmlm.design.crlb_objective.crlb_cap_penalty` at a few stratified random depths per step (a
centred emitter of the config's mean photons on its mean background): the network's loss alone lets the
mask give up on part of the axial range where dense emitters are hard, since a network that predicts
nothing there sends the mask no gradient to keep those depths informative.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepsmlm.config import MaskConfig, SimulationConfig, updated
from deepsmlm.design.crlb_objective import crlb_cap_penalty
from deepsmlm.design.dye_masks import pinned_grid, shared_mask_dye_psfs
from deepsmlm.design.mask_phase import (MaskPhase, check_basis, random_coefficients, smoothness, wrap_phase,
                                        zernike_modes)
from deepsmlm.io.atomic import atomic_path
from deepsmlm.models.registry import save_model
from deepsmlm.optics.factory import build_pupil_psf, grid_mask_pitch_um
from deepsmlm.optics.pupil import PupilPSF
from deepsmlm.training.loop import Hooks
from deepsmlm.training.trainer import DensityParts
from deepsmlm.training.validation import ValidationScorer, kept_config

MASK_FILE = "mask.npy"
LAST_MASK_FILE = "last_mask.npy"
LAST_COEFFICIENTS_FILE = "last_zernike.npy"
MASK_LR_SCALE = 10.0  # the mask's learning rate relative to the network's (radians move slowly otherwise)
CRLB_PLANES_PER_STEP = 3  # depths the information floor is checked at per step (one per third of the range)
CRLB_REPORT_PLANES = 9  # depths of the worst-plane bound recorded at each validation


class JointTrainer:
    """The density network of ``cfg`` and the phase mask of its pupil PSF learned together into ``out``;
    ``loop`` runs it. The plain run's parts are composed with a learnable-PSF batch source (the mask
    refreshed before each batch, the camera noise reparameterised), the mask's parameter group, the
    smoothness (``smoothness_weight``) and information-floor (``crlb_cap_nm``) loss terms, a validation
    that re-renders its frames through the current mask, and hooks that save and restore the mask.

    ``start_from_mask``: start from the config's mask (else a flat pupil); ``basis``: learn every pupil
    pixel ("pixel") or Zernike coefficients Noll 4 … ``max_noll`` added to the start mask ("zernike")."""

    def __init__(self, cfg: SimulationConfig, out: Path, device: str = "cpu", start_from_mask: bool = True,
                 smoothness_weight: float = 0.0, basis: str = "pixel", max_noll: int = 28,
                 crlb_cap_nm: float | None = None):
        check_basis(basis)
        self.basis, self.out = basis, out
        self.smoothness_weight, self.crlb_cap_nm = smoothness_weight, crlb_cap_nm
        self.psf = build_pupil_psf(cfg if start_from_mask else _without_mask(cfg), learnable_mask=basis == "pixel")
        # multicolour: every dye sees the same learnable mask at its own wavelength
        self.dye_psfs = shared_mask_dye_psfs(cfg, self.psf) if cfg.emitters.dyes else None
        self.mask = start_mask(self.psf, basis, max_noll, cfg.training.seed).to(device)
        self.parts = parts = DensityParts.build(cfg, out, device, psf=self.psf, dye_psfs=self.dye_psfs)
        self.cfg = parts.cfg
        self.mask_pitch_um = grid_mask_pitch_um(cfg, self.psf.grid)
        self.variance = parts.sim.camera.fisher_variance_photons
        terms = ([self.smoothness_term] if smoothness_weight > 0 else []) + \
            ([self.crlb_term] if crlb_cap_nm is not None else [])
        hooks = Hooks(keep_best=self.keep_best, extra_terms=terms, after_step=[self.mask.wrap_],
                      before_checkpoint=[self.save_last_mask], after_resume=[self.load_last_mask])
        optim = parts.optimiser([{"params": [self.mask.parameter], "lr_scale": MASK_LR_SCALE}])
        batches = parts.batches(differentiable=True, before=self.refresh_mask)
        self.loop = parts.loop(optim, batches, self.validate, hooks)
        self.refresh_mask()

    def refresh_mask(self) -> None:
        """Image through the current mask phase (in the autograd graph unless gradients are off); in the
        pixel basis the PSF's mask is the parameter itself, so this changes nothing."""
        self.psf.set_mask(self.mask())

    def smoothness_term(self) -> torch.Tensor:
        """The weighted smoothness penalty of the current mask."""
        return self.smoothness_weight * smoothness(self.psf.mask_phase, self.psf.aperture)

    def crlb_term(self) -> torch.Tensor:
        """The information-floor penalty at :data:`CRLB_PLANES_PER_STEP` stratified random depths."""
        z0, z1 = self.cfg.emitters.z_range_nm
        k = CRLB_PLANES_PER_STEP
        u = (torch.arange(k) + torch.rand(k, generator=self.parts.rng)) / k
        return self.crlb_excess(z0 + (z1 - z0) * u)[0]

    def crlb_excess(self, z_nm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The information-floor penalty at depths ``z_nm`` and their 3D bounds (nm)."""
        cfg = self.cfg
        return crlb_cap_penalty(self.psf, z_nm.to(self.parts.device), cfg.emitters.photons.expected(),
                                float(np.mean(cfg.background.photons_per_px)), self.variance, self.crlb_cap_nm)

    def validate(self, net: nn.Module, step: int) -> dict:
        """The validation record of the frames re-rendered through the current mask (the same seeded
        emitters), with the worst depth's 3D bound when an information floor is set (to see it hold)."""
        with torch.no_grad():
            self.refresh_mask()
            frames = self.parts.validation_set()
        record = ValidationScorer(frames, self.cfg, self.parts.device)(net, step)
        if self.crlb_cap_nm is not None:
            z = torch.linspace(*self.cfg.emitters.z_range_nm, CRLB_REPORT_PLANES)
            record["worst_crlb_3d_nm"] = float(self.crlb_excess(z)[1].detach().max())
        return record

    def saved_config(self) -> SimulationConfig:
        """The model config with the learned mask (saved beside it) as its phase mask."""
        cfg = pinned_grid(self.cfg, self.psf)
        dispersion = cfg.psf.mask.dispersion_per_nm if cfg.psf.mask is not None else 0.0
        mask = MaskConfig(file=MASK_FILE, pixel_pitch_um=self.mask_pitch_um, dispersion_per_nm=dispersion)
        return updated(cfg, {"psf.mask": mask})

    def keep_best(self, net: nn.Module, record: dict) -> None:
        """Save the mask and the network with the record's chosen threshold (and σ calibration)."""
        cfg = kept_config(self.saved_config(), record)
        self.save_mask(self.out / MASK_FILE)
        save_model(self.out, cfg, net)

    def save_last_mask(self) -> None:
        """The mask (and in the Zernike basis its coefficients) a resumed run continues from."""
        self.save_mask(self.out / LAST_MASK_FILE)
        if self.basis == "zernike":
            save_array(self.out / LAST_COEFFICIENTS_FILE, self.mask.parameter.detach().cpu().numpy())

    def load_last_mask(self) -> None:
        """Restore the mask parameter a checkpoint was saved with."""
        saved = LAST_MASK_FILE if self.basis == "pixel" else LAST_COEFFICIENTS_FILE
        with torch.no_grad():
            self.mask.parameter.copy_(torch.from_numpy(np.load(self.out / saved)))
        self.refresh_mask()

    def save_mask(self, path: Path) -> None:
        """The current mask, wrapped to [−π, π) inside the aperture (float32 .npy)."""
        phase = wrap_phase(self.psf.mask_phase.detach()) * self.psf.aperture
        save_array(path, phase.cpu().numpy())


def start_mask(psf: PupilPSF, basis: str, max_noll: int, seed: int) -> MaskPhase:
    """The learnable mask of a design: the PSF's own learnable mask ("pixel"), or the PSF's start mask plus
    Σ c_k Z_k over Noll 4 … ``max_noll`` with coefficients c from seeded small noise ("zernike")."""
    if basis == "zernike":
        modes = zernike_modes(psf, max_noll)
        return MaskPhase(random_coefficients(len(modes), seed), psf.aperture, modes, base=psf.mask_phase.clone())
    return MaskPhase(psf.mask_phase, psf.aperture)


def save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array.astype(np.float32))


def _without_mask(cfg: SimulationConfig) -> SimulationConfig:
    """``cfg`` with a flat pupil: a set mask oversampling becomes 1, which without a mask keeps the grid the
    same (2·patch_px·s + 1, optics/factory.py)."""
    q = cfg.psf.mask_oversample
    return updated(cfg, {"psf.mask": None, "psf.mask_oversample": None if q is None else 1})
