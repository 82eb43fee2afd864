"""Training windows for networks with temporal context: independent short movies of T consecutive frames
whose molecules blink (so one molecule is often on in neighbouring frames), each window under one
background, and the truth of each window's middle frame, the frame the network localizes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from deepsmlm.simulation.background import BackgroundSampler
from deepsmlm.simulation.emitters import Emitters, EmitterSampler
from deepsmlm.simulation.simulator import FrameBatch, Simulator


@dataclass(frozen=True)
class WindowEmitters:
    """Emitters of consecutive windows of ``frames`` frames, each an independent movie of ``sampler``
    (frames k·T … k·T + T − 1 hold window k; molecule ids are unique over the windows)."""

    sampler: EmitterSampler
    frames: int

    def __call__(self, n_frames: int, generator: torch.Generator) -> Emitters:
        parts, molecules = [], 0
        for k in range(n_frames // self.frames):
            e = self.sampler(self.frames, generator)
            parts.append(Emitters(e.xyz_nm, e.photons, e.frame + k * self.frames, e.molecule + molecules, e.color))
            molecules += int(e.molecule.max()) + 1 if len(e) else 0
        return Emitters.cat(parts)


@dataclass(frozen=True)
class WindowBackground:
    """``sampler``'s backgrounds, one per window of ``frames`` frames, repeated over the window's frames."""

    sampler: BackgroundSampler
    frames: int

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) px of a frame."""
        return self.sampler.shape

    def chunks(self, n_frames: int, chunk: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """The background of ``n_frames`` frames (whole windows) in pieces of ``chunk`` frames (whole
        windows)."""
        t = self.frames
        for part in self.sampler.chunks(n_frames // t, max(chunk // t, 1), generator):
            yield part.repeat_interleave(t, dim=0)


def window_batch(sim: Simulator, n_windows: int, frames: int, gen: torch.Generator,
                 emitters: EmitterSampler) -> FrameBatch:
    """``n_windows`` windows of ``frames`` frames of ``emitters`` (blinking, for neighbouring frames to
    share molecules) through ``sim``'s PSF, camera and blur, one background per window: ``adu``
    (n, T, H, W), the emitters of each window's middle frame (``frame`` the window's index) with their
    blur, and that frame's background (n, H, W)."""
    windows = Simulator(sim.psf, sim.camera, sim.emitters, WindowBackground(sim.background, frames),
                        sim.blur_sigma_px, sim.dye_psfs, sim.device)
    batch = windows.sample(n_windows * frames, gen, WindowEmitters(emitters, frames))
    middle = batch.emitters.frame % frames == frames // 2
    e = batch.emitters.select(middle)
    h, w = batch.adu.shape[-2:]
    return FrameBatch(adu=batch.adu.reshape(n_windows, frames, h, w),
                      emitters=Emitters(e.xyz_nm, e.photons, e.frame // frames, e.molecule, e.color),
                      background=batch.background.reshape(n_windows, frames, h, w)[:, frames // 2],
                      blur_px=None if batch.blur_px is None else batch.blur_px[middle])
