"""The forward model of a microscope: emitters -> PSF render -> background -> camera, batched over frames.

The same object serves training (on-the-fly batches), design (differentiable, reparameterised noise)
and evaluation (``simulate`` writes a movie and its ground truth).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepsmlm.config import EmitterConfig, SimulationConfig
from deepsmlm.optics.factory import build_dye_psfs, build_psf
from deepsmlm.optics.psf import PSF, render
from deepsmlm.physics.camera import Camera
from deepsmlm.simulation.background import background_chunks
from deepsmlm.simulation.emitters import Emitters, sample_emitters


@dataclass
class FrameBatch:
    """Simulated frames with their truth: ADU (F, H, W), emitters, the background photons (F, H, W) and
    each emitter's model-mismatch blur (camera px; None without blur)."""

    adu: torch.Tensor
    emitters: Emitters
    background: torch.Tensor
    first_frame: int = 0
    blur_px: torch.Tensor | None = None


class Simulator:
    """Forward model of one configuration (PSF, camera, emitter and background statistics)."""

    def __init__(self, cfg: SimulationConfig, psf: PSF | None = None, device: str | torch.device = "cpu",
                 base_dir: Path | None = None, dye_psfs: list[PSF] | None = None):
        self.cfg = cfg
        self.device = torch.device(device)
        self.psf = (psf if psf is not None else build_psf(cfg, fast=True, base_dir=base_dir)).to(self.device)
        # multicolour: one PSF per dye (its wavelength through the same optics and mask)
        if dye_psfs is None:
            dye_psfs = build_dye_psfs(cfg, fast=True, base_dir=base_dir)
        self.dye_psfs = [p.to(self.device) for p in dye_psfs]
        self.camera = Camera(cfg.camera, (cfg.frame.height, cfg.frame.width)).to(self.device)

    @property
    def shape(self) -> tuple[int, int]:
        return self.cfg.frame.height, self.cfg.frame.width

    def blur_px(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """Per-emitter model-mismatch blur (camera px), uniform in the configured range, or None."""
        lo, hi = self.cfg.psf.blur_sigma_px
        if hi <= 0:
            return None
        u = torch.rand(n, generator=generator)
        return (lo + (hi - lo) * u).to(self.device)

    def expected_photons(self, emitters: Emitters, background: torch.Tensor,
                         blur_px: torch.Tensor | None = None) -> torch.Tensor:
        """Noise-free photons per pixel (F, H, W): rendered emitters plus background."""
        h, w = self.shape
        em = emitters.to(self.device)
        n = background.shape[0]
        if not self.dye_psfs:
            return render(self.psf, em.xyz_nm, em.photons, em.frame, n, h, w, blur_px) + background.to(self.device)
        signal = torch.zeros(n, h, w, device=self.device)
        for dye, psf in enumerate(self.dye_psfs):
            sel = em.color == dye
            blur = None if blur_px is None else blur_px[sel]
            signal = signal + render(psf, em.xyz_nm[sel], em.photons[sel], em.frame[sel], n, h, w, blur)
        return signal + background.to(self.device)

    def sample(self, n_frames: int, generator: torch.Generator, emitters: EmitterConfig | None = None) -> FrameBatch:
        """Draw emitters and background for ``n_frames`` and image them through the camera, in one batch."""
        return next(self.movie(n_frames, generator, chunk=n_frames, emitters=emitters))

    def movie(self, n_frames: int, gen: torch.Generator, chunk: int = 32,
              emitters: EmitterConfig | None = None) -> Iterator[FrameBatch]:
        """Yield a movie in chunks of frames; the same generator state gives the same movie.

        Emitters (with blinking and structure) are drawn for the whole movie at once (a few tens of
        bytes each); background and frames are made chunk by chunk, so pixels take memory for one chunk
        only. ``emitters`` overrides the config's emitter statistics.
        """
        emitters = sample_emitters(emitters or self.cfg.emitters, self.cfg.frame, n_frames, gen)
        backgrounds = background_chunks(self.cfg.background, self.cfg.frame, n_frames, chunk, gen)
        blur = self.blur_px(len(emitters), gen)
        dev_gen = _device_generator(gen, self.device)
        starts = range(0, n_frames, chunk)
        # rows are sorted by frame: each chunk's emitters are one slice
        bounds = torch.searchsorted(emitters.frame, torch.tensor([*starts, n_frames])).tolist()
        for start, background, lo, hi in zip(starts, backgrounds, bounds, bounds[1:]):
            part = emitters.select(slice(lo, hi))
            local = Emitters(part.xyz_nm, part.photons, part.frame - start, part.molecule, part.color)
            part_blur = None if blur is None else blur[lo:hi]
            with torch.no_grad():
                photons = self.expected_photons(local, background, part_blur)
                adu = self.camera(photons, generator=dev_gen)
            yield FrameBatch(adu=adu, emitters=part, background=background, first_frame=start, blur_px=part_blur)


def _device_generator(gen: torch.Generator, device: torch.device) -> torch.Generator:
    """The CPU generator itself, or a device generator seeded from it (reproducible per seed)."""
    if device.type == "cpu":
        return gen
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    return torch.Generator(device=device).manual_seed(seed)


def to_uint16(adu: torch.Tensor) -> np.ndarray:
    """Camera output as a uint16 numpy array (values are already whole and clipped)."""
    return adu.detach().cpu().numpy().astype(np.uint16)
