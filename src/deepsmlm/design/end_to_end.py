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

from deepsmlm.config import EmitterConfig, MaskConfig, SimulationConfig
from deepsmlm.design.crlb_objective import crlb_cap_penalty
from deepsmlm.design.dye_masks import pinned_grid, shared_mask_dye_psfs
from deepsmlm.design.mask_phase import (MaskPhase, check_basis, random_coefficients, smoothness, wrap_phase,
                                        zernike_modes)
from deepsmlm.io.atomic import atomic_path
from deepsmlm.models.registry import save_model
from deepsmlm.optics.factory import build_pupil_psf, grid_mask_pitch_um
from deepsmlm.simulation.background import sample_background
from deepsmlm.simulation.emitters import Emitters, sample_emitters
from deepsmlm.training.trainer import Trainer, ValidationSet, training_field

MASK_FILE = "mask.npy"
LAST_MASK_FILE = "last_mask.npy"
LAST_COEFFICIENTS_FILE = "last_zernike.npy"
MASK_LR_SCALE = 10.0  # the mask's learning rate relative to the network's (radians move slowly otherwise)
CRLB_PLANES_PER_STEP = 3  # depths the information floor is checked at per step (one per third of the range)
CRLB_REPORT_PLANES = 9  # depths of the worst-plane bound recorded at each validation


class JointTrainer(Trainer):
    """A Trainer whose simulator's mask phase is learned with the network."""

    def __init__(self, cfg: SimulationConfig, out: Path, device: str = "cpu", start_from_mask: bool = True,
                 smoothness_weight: float = 0.0, basis: str = "pixel", max_noll: int = 28,
                 crlb_cap_nm: float | None = None):
        check_basis(basis)
        self.basis = basis
        psf = build_pupil_psf(cfg if start_from_mask else _without_mask(cfg), learnable_mask=basis == "pixel")
        self.smoothness_weight = smoothness_weight
        self.crlb_cap_nm = crlb_cap_nm
        self.psf = psf
        # multicolour: every dye sees the same learnable mask at its own wavelength
        self.dye_psfs = shared_mask_dye_psfs(cfg, psf) if cfg.emitters.dyes else None
        if basis == "zernike":  # mask = start mask + Σ c_k Z_k (Noll 4 … max_noll), c from small noise
            modes = zernike_modes(psf, max_noll)
            self.mask = MaskPhase(random_coefficients(len(modes), cfg.training.seed), psf.aperture, modes,
                                  base=psf.mask_phase.clone())
        else:  # the PSF's own learnable mask is the parameter
            self.mask = MaskPhase(psf.mask_phase, psf.aperture)
        self.mask.to(device)
        super().__init__(cfg, out, device, psf=psf, dye_psfs=self.dye_psfs)
        self.mask_pitch_um = grid_mask_pitch_um(cfg, psf.grid)
        self.variance = self.sim.camera.fisher_variance_photons
        self.refresh_mask()

    def parameter_groups(self) -> list[dict]:
        return super().parameter_groups() + [{"params": [self.mask.parameter], "lr_scale": MASK_LR_SCALE}]

    def refresh_mask(self) -> None:
        """Image through the current mask phase (in the autograd graph unless gradients are off); in the
        pixel basis the PSF's mask is the parameter itself, so this changes nothing."""
        self.psf.mask_phase = self.mask()

    def simulate_input(self, emitters: EmitterConfig) -> tuple[torch.Tensor, Emitters]:
        """Frames rendered through the learnable mask with reparameterised camera noise (differentiable)."""
        self.refresh_mask()
        field = self.sim.cfg
        n = self.cfg.training.batch_size
        em = sample_emitters(emitters, field.frame, n, self.rng)
        background = sample_background(field.background, field.frame, n, self.rng)
        blur = self.sim.blur_px(len(em), self.rng)
        expected = self.sim.expected_photons(em, background, blur)
        noisy = self.sim.camera.reparameterized(expected, self.rng)
        m = self.cfg.model
        return ((noisy - m.input_offset_photons) / m.input_scale_photons).unsqueeze(1), em

    def train_step(self) -> float:
        loss = super().train_step()
        self.mask.wrap_()
        return loss

    def loss_terms(self, loss: torch.Tensor) -> torch.Tensor:
        if self.smoothness_weight > 0:
            loss = loss + self.smoothness_weight * smoothness(self.psf.mask_phase, self.psf.aperture)
        if self.crlb_cap_nm is not None:
            z0, z1 = self.cfg.emitters.z_range_nm
            k = CRLB_PLANES_PER_STEP
            u = (torch.arange(k) + torch.rand(k, generator=self.rng)) / k
            loss = loss + self.crlb_excess(z0 + (z1 - z0) * u)[0]
        return loss

    def crlb_excess(self, z_nm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The information-floor penalty at depths ``z_nm`` and their 3D bounds (nm)."""
        cfg = self.cfg
        return crlb_cap_penalty(self.psf, z_nm.to(self.device), cfg.emitters.photons.expected(),
                                float(np.mean(cfg.background.photons_per_px)), self.variance, self.crlb_cap_nm)

    def validate(self) -> dict:
        with torch.no_grad():
            self.refresh_mask()
            self.validation = ValidationSet.build(self.sim, training_field(self.cfg))
        record = super().validate()
        if self.crlb_cap_nm is not None:  # the worst depth's bound, to see the floor hold
            z = torch.linspace(*self.cfg.emitters.z_range_nm, CRLB_REPORT_PLANES)
            record["worst_crlb_3d_nm"] = float(self.crlb_excess(z)[1].detach().max())
        return record

    def saved_config(self) -> SimulationConfig:
        """The model config with the learned mask (saved beside it) as its phase mask."""
        cfg = pinned_grid(self.cfg, self.psf)
        dispersion = cfg.psf.mask.dispersion_per_nm if cfg.psf.mask is not None else 0.0
        cfg.psf.mask = MaskConfig(file=MASK_FILE, pixel_pitch_um=self.mask_pitch_um, dispersion_per_nm=dispersion)
        return cfg

    def save_best(self, cfg: SimulationConfig) -> None:
        self.save_mask(self.out / MASK_FILE)
        save_model(self.out, cfg, self.net)

    def checkpoint(self, elapsed_s: float) -> None:
        self.save_mask(self.out / LAST_MASK_FILE)
        if self.basis == "zernike":
            save_array(self.out / LAST_COEFFICIENTS_FILE, self.mask.parameter.detach().cpu().numpy())
        super().checkpoint(elapsed_s)

    def resume(self) -> None:
        saved = LAST_MASK_FILE if self.basis == "pixel" else LAST_COEFFICIENTS_FILE
        with torch.no_grad():
            self.mask.parameter.copy_(torch.from_numpy(np.load(self.out / saved)))
        super().resume()
        self.refresh_mask()

    def save_mask(self, path: Path) -> None:
        """The current mask, wrapped to [−π, π) inside the aperture (float32 .npy)."""
        phase = wrap_phase(self.psf.mask_phase.detach()) * self.psf.aperture
        save_array(path, phase.cpu().numpy())


def save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array.astype(np.float32))


def _without_mask(cfg: SimulationConfig) -> SimulationConfig:
    out = cfg.model_copy(deep=True)
    out.psf.mask = None
    return out
