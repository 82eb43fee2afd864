"""A pixel-wise pupil phase for engineered PSFs no low-order Zernike set explains (the double helix).

After the Zernike fit of :mod:`~deepsmlm.calibration.pupil_fit`, the pupil phase is freed per pupil-grid
pixel: φ(f) (rad, N×N, used inside the aperture), started at the fitted Zernike sum, replaces that sum in
the same :class:`~deepsmlm.calibration.pupil_fit.ScanModel` and is fitted by maximum likelihood under the
same camera deviance, with the apodisation and the beads' parameters. A smoothness penalty is added:
w · mean over pairs (a, b) of row- and column-neighbours inside the aperture of |e^{iφ_a} − e^{iφ_b}|² =
2 − 2·cos(φ_a − φ_b), the squared phase gradient for small steps, blind to 2π wraps (a phase vortex costs
no more than its smooth surroundings). The weight w is chosen on held-out slices, not by eye: a path of
decreasing weights (:data:`PENALTY_WEIGHTS`), each fit started from the last, keeps the phase with the
lowest deviance on slices not fitted.

The result is a phase mask on the pupil grid (:func:`with_pixel_phase`): one mask pixel per grid pixel
(``psf.mask.pixel_pitch_um`` from :func:`~deepsmlm.optics.factory.grid_mask_pitch_um`) and the grid pinned
(``psf.pupil_grid``), so the mask is copied onto the grid, not resampled. It replaces the base config's
mask and holds it: the file is the base mask + the pixel phase's departure from the fitted Zernike terms,
which stay in ``psf.zernike_rad``; mask + Zernike terms is the fitted pupil phase.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from deepsmlm.calibration.pupil_fit import CHUNK_SLICES, ScanData, ScanModel, fit_scan, slice_errors
from deepsmlm.config import SimulationConfig, updated
from deepsmlm.config.optics import MaskConfig
from deepsmlm.io.atomic import write_atomic
from deepsmlm.optics.factory import build_pupil_psf, grid_mask_pitch_um
from deepsmlm.progress import ProgressCallback

PHASE_FILE = "pupil_phase.npz"  # written beside calibrated.yaml
PHASE_KEY = "phase"
PENALTY_WEIGHTS = (0.01, 1e-3, 1e-4, 1e-5, 1e-6)  # smoothness weights tried, strongest first
PIXEL_ITERATIONS = 40  # L-BFGS iterations per weight
HELD_OUT_SLICES = 16


class PixelScanModel(ScanModel):
    """A :class:`ScanModel` whose pupil phase becomes free per pupil-grid pixel at :meth:`free_pixels` (before:
    the Zernike sum). ``phase`` (N, N) rad on top of the base mask; ``weight`` the smoothness penalty's w."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_parameter("phase", None)
        self.weight = 0.0
        inside = self.psf.aperture > 0
        self.register_buffer("row_pairs", inside[1:] & inside[:-1])
        self.register_buffer("col_pairs", inside[:, 1:] & inside[:, :-1])
        self.path: list[dict] = []
        self.zernike_errors: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def pixels_freed(self) -> bool:
        """Whether the phase is free per pixel (after :meth:`free_pixels`), not the Zernike sum."""
        return self.phase is not None

    def free_pixels(self) -> None:
        """Replace the Zernike sum by a per-pixel phase started at it; the Zernike coefficients are held."""
        with torch.no_grad():
            start = (super().pupil_phase() - self.base) * self.psf.aperture
        self.phase = torch.nn.Parameter(start)
        self.coefficients.requires_grad_(False)

    def pupil_phase(self) -> torch.Tensor:
        return super().pupil_phase() if self.phase is None else self.base + self.phase * self.psf.aperture

    def pupil_parameters(self) -> list[torch.nn.Parameter]:
        """The shared parameters: Zernike coefficients, or once freed the pixel phase, and the apodisation."""
        return super().pupil_parameters() if self.phase is None else [self.phase, self.amplitude]

    def penalty(self) -> torch.Tensor:
        if self.phase is None or self.weight == 0:
            return super().penalty()
        steps = torch.cat([self.phase.diff(dim=0)[self.row_pairs], self.phase.diff(dim=1)[self.col_pairs]])
        return self.weight * 2 * (1 - torch.cos(steps)).mean()

    @torch.no_grad()
    def mask_phase(self, zernike: torch.Tensor) -> np.ndarray:
        """(N, N) float64 rad, zero outside the aperture: the mask that with the Zernike phase ``zernike`` (N, N,
        as a PSF holds it) images through the fitted pupil: the PSF's own Zernike terms + the base mask + the
        pixel phase − ``zernike`` (the PSF's focus phase, moved by the scan's, left out)."""
        own = self.psf.fixed_phase + self.psf.nfp_nm * self.focus  # the PSF's Zernike phase, its focus phase removed
        return ((own + self.pupil_phase()).double() - zernike.double()).mul(self.psf.aperture).numpy()


def split_slices(n_slices: int, slices: Sequence[int], count: int = HELD_OUT_SLICES) -> tuple[list[int], list[int]]:
    """(fitted, held out): ``slices`` and up to ``count`` of the stack's other slices, evenly chosen; when
    ``slices`` is the whole stack, every fourth of them is held out instead."""
    rest = sorted(set(range(n_slices)) - set(slices))
    if not rest:
        return [k for i, k in enumerate(slices) if i % 4 != 1], list(slices[1::4])
    step = max(len(rest) / count, 1.0)
    return list(slices), sorted({rest[int((i + 0.5) * step)] for i in range(min(count, len(rest)))})


@torch.no_grad()
def deviance(model: ScanModel, data: ScanData, slices: Sequence[int]) -> float:
    """The deviance per pixel of ``slices`` (no penalty)."""
    counts = data.counts()
    total = sum(float(data.nll(model, slices[i:i + CHUNK_SLICES], counts).sum()) for i in
                range(0, len(slices), CHUNK_SLICES))
    return total / (counts.shape[0] * len(slices) * counts.shape[-1] ** 2)


def fit_pixel_phase(model: PixelScanModel, data: ScanData, slices: Sequence[int],
                    weights: Sequence[float] = PENALTY_WEIGHTS, iterations: int = PIXEL_ITERATIONS,
                    progress: ProgressCallback | None = None) -> list[dict]:
    """Free the pupil phase per pixel and fit it over ``slices`` along the path of ``weights`` (strongest
    first), keeping the fit with the lowest held-out deviance (:func:`split_slices`); the path stops once
    a weaker penalty does worse. Returns (and keeps in ``model.path``) per weight its held-out deviance per
    pixel; ``model.weight`` is the chosen one, ``model.zernike_errors`` the :func:`slice_errors` of the
    Zernike fit it started from (computed here unless the caller set them)."""
    if model.zernike_errors is None:
        model.zernike_errors = slice_errors(model, data)
    model.free_pixels()
    slices, held = split_slices(data.photons.shape[1], slices)
    best: tuple[float, float, dict[str, torch.Tensor]] | None = None
    model.path = []
    for w in weights:
        model.weight = w
        fit_scan(model, data, slices, iterations, True, progress, f"fitting the pixel pupil (smoothness {w:g})")
        score = deviance(model, data, held)
        model.path.append({"weight": w, "held_out_deviance_per_px": round(score, 5)})
        if best is not None and score >= best[0]:
            break
        best = (score, w, {k: v.detach().clone() for k, v in model.named_parameters()})
    with torch.no_grad():
        for name, value in model.named_parameters():
            value.copy_(best[2][name])
    model.weight = best[1]
    return model.path


def with_pixel_phase(cfg: SimulationConfig, model: PixelScanModel, out_npz: str | os.PathLike) -> SimulationConfig:
    """Write ``model``'s :meth:`~PixelScanModel.mask_phase` atomically to ``out_npz`` (key ``phase``) and
    return ``cfg`` (the Zernike-calibrated config) imaging through it: ``psf.mask`` names the file by its
    name (beside the config), one mask pixel per pupil-grid pixel, ``psf.pupil_grid`` pinned to the fit's.
    The mask holds the pixel phase less ``cfg``'s own (rounded) Zernike terms, so the two add up exactly."""
    grid = model.psf.grid
    bare = updated(cfg, {"psf.mask": None, "psf.mask_oversample": None, "psf.pupil_grid": grid.n,
                         "optics.nominal_focal_plane_nm": 0.0})
    phase = model.mask_phase(build_pupil_psf(bare).fixed_phase)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{PHASE_KEY: phase})

    write_atomic(out_npz, write)
    mask = MaskConfig(file=Path(out_npz).name, key=PHASE_KEY, pixel_pitch_um=grid_mask_pitch_um(cfg, grid))
    return updated(cfg, {"psf.mask": mask, "psf.pupil_grid": grid.n})
