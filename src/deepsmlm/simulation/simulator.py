"""The forward model of a microscope: emitters -> PSF render -> background -> camera, batched over frames.

The simulator is handed its parts (PSF, one per dye for multicolour samples, camera, emitter and background
samplers, the model-mismatch blur range); ``deepsmlm.assembly.simulators`` builds them from a config. One
path draws every batch: emitters, background, blur, then the noise. The same object serves training
(on-the-fly batches), design (the noise reparameterised, so gradients reach the PSF) and evaluation
(movies with their ground truth).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from deepsmlm.optics.psf import PSF, render
from deepsmlm.physics.camera import Camera
from deepsmlm.simulation.background import BackgroundSampler
from deepsmlm.simulation.emitters import Emitters, EmitterSampler

CHUNK = 32  # frames per chunk of a movie; part of what a seed means (the noise is drawn chunk by chunk)

Noise = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # expected photons (F, H, W) -> frames


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
    """Forward model of one sample on one microscope: ``psf`` (or ``dye_psfs``, one per dye of the emitters'
    ``color``), ``camera``, the ``emitters`` and ``background`` samplers and the per-emitter blur, uniform in
    ``blur_sigma_px`` (camera px; (0, 0): none), all on ``device``."""

    def __init__(self, psf: PSF, camera: Camera, emitters: EmitterSampler, background: BackgroundSampler,
                 blur_sigma_px: tuple[float, float] = (0.0, 0.0), dye_psfs: Sequence[PSF] = (),
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.psf = psf.to(self.device)
        self.dye_psfs = [p.to(self.device) for p in dye_psfs]
        self.camera = camera.to(self.device)
        self.emitters = emitters
        self.background = background
        self.blur_sigma_px = blur_sigma_px

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) px of a frame."""
        return self.background.shape

    def blur_px(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """Per-emitter model-mismatch blur (camera px), uniform in the configured range, or None."""
        lo, hi = self.blur_sigma_px
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

    def sample(self, n_frames: int, gen: torch.Generator, emitters: EmitterSampler | None = None) -> FrameBatch:
        """Draw emitters and background for ``n_frames`` and image them through the camera, in one batch."""
        return next(self.movie(n_frames, gen, chunk=n_frames, emitters=emitters))

    def movie(self, n_frames: int, gen: torch.Generator, chunk: int = CHUNK,
              emitters: EmitterSampler | None = None) -> Iterator[FrameBatch]:
        """Yield a movie in chunks of frames through the camera (ADU); the same generator state gives the
        same movie.

        Emitters (with blinking and structure) are drawn for the whole movie at once (a few tens of
        bytes each); background and frames are made chunk by chunk, so pixels take memory for one chunk
        only. ``emitters`` replaces the simulator's emitter sampler.
        """
        for adu, part, background, start, blur in self._frames(n_frames, gen, chunk, emitters, self.camera,
                                                                differentiable=False):
            yield FrameBatch(adu=adu, emitters=part, background=background, first_frame=start, blur_px=blur)

    def reparameterized_sample(self, n_frames: int, gen: torch.Generator,
                               emitters: EmitterSampler | None = None) -> tuple[torch.Tensor, Emitters]:
        """``sample``'s draws (the same generator state gives the same emitters, background and blur), with
        the camera noise replaced by its differentiable stand-in (``Camera.reparameterized``): noisy photons
        (F, H, W) in the autograd graph of the PSF, and the emitters."""
        frames, part, *_ = next(self._frames(n_frames, gen, n_frames, emitters, self.camera.reparameterized,
                                             differentiable=True))
        return frames, part

    def _frames(self, n_frames: int, gen: torch.Generator, chunk: int, emitters: EmitterSampler | None,
                noise: Noise, differentiable: bool
                ) -> Iterator[tuple[torch.Tensor, Emitters, torch.Tensor, int, torch.Tensor | None]]:
        """(frames, emitters, background, first frame, blur) chunk by chunk: every draw in one order
        (emitters, background, blur, then ``noise`` per chunk), made outside autograd unless
        ``differentiable``."""
        drawn = (emitters or self.emitters)(n_frames, gen)
        backgrounds = self.background.chunks(n_frames, chunk, gen)
        blur = self.blur_px(len(drawn), gen)
        dev_gen = _device_generator(gen, self.device)
        starts = range(0, n_frames, chunk)
        # rows are sorted by frame: each chunk's emitters are one slice
        bounds = torch.searchsorted(drawn.frame, torch.tensor([*starts, n_frames])).tolist()
        for start, background, lo, hi in zip(starts, backgrounds, bounds, bounds[1:]):
            part = drawn.select(slice(lo, hi))
            local = Emitters(part.xyz_nm, part.photons, part.frame - start, part.molecule, part.color)
            part_blur = None if blur is None else blur[lo:hi]
            with nullcontext() if differentiable else torch.no_grad():
                frames = noise(self.expected_photons(local, background, part_blur), dev_gen)
            yield frames, part, background, start, part_blur


def _device_generator(gen: torch.Generator, device: torch.device) -> torch.Generator:
    """The CPU generator itself, or a device generator seeded from it (reproducible per seed)."""
    if device.type == "cpu":
        return gen
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    return torch.Generator(device=device).manual_seed(seed)


def to_uint16(adu: torch.Tensor) -> np.ndarray:
    """Camera output as a uint16 numpy array (values are already whole and clipped)."""
    return adu.detach().cpu().numpy().astype(np.uint16)
