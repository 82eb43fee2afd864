"""The density / occupancy head of Deep-STORM and DeepSTORM3D: per dye, a volume of D planes on the fine
grid summing to about one per emitter; detections are window maxima, positions window centroids."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from deepsmlm.config import ModelConfig, TrainingConfig
from deepsmlm.heads.density_loss import deepstorm_loss
from deepsmlm.heads.density_peaks import density_peaks, detected_density, dye_masses, peak_map
from deepsmlm.heads.density_targets import spike_volume
from deepsmlm.heads.grid import OutputGrid

POST_BYTES_PER_VOXEL = 20  # per output voxel: clipped copy, window gathers, peak maps, detected-density image


@dataclass(frozen=True)
class DensityLoss:
    """Settings of :func:`~deepsmlm.heads.density_loss.deepstorm_loss`: Gaussian σ in fine pixels and in
    planes, and the weights of its L1 and Dice terms."""

    sigma_px: float = 1.0
    sigma_planes: float = 1.0
    l1_weight: float = 0.0
    dice_weight: float = 0.0


@dataclass(frozen=True)
class DensityHead:
    """Outputs (B, C·D, h, w): C dye volumes (``grid.colors``) of D planes (``grid.planes``). A detection is
    a voxel of the dyes' summed occupancy that is the maximum of its window of (2·``window_planes`` + 1)
    planes × (2·``window_px`` + 1)² fine pixels and whose window mass reaches ``threshold``."""

    grid: OutputGrid
    threshold: float = 0.3
    window_px: int = 2
    window_planes: int = 0
    loss_settings: DensityLoss = DensityLoss()

    @classmethod
    def from_config(cls, grid: OutputGrid, model: ModelConfig, training: TrainingConfig) -> DensityHead:
        """The head of a model's post-processing settings (no axial window in 2D) and training recipe."""
        loss = DensityLoss(training.target_sigma_px, training.target_sigma_planes, training.l1_weight,
                           training.dice_weight)
        return cls(grid, model.threshold, model.window_px, model.window_planes if grid.planes > 1 else 0, loss)

    @property
    def reach_px(self) -> int:
        """Two centroid windows (camera px): a detection's test reads its window, and the image of a pixel
        depends on detections up to a window away."""
        return math.ceil(2 * self.window_px / self.grid.upsampling)

    @property
    def bytes_per_px(self) -> float:
        return POST_BYTES_PER_VOXEL * self.grid.voxels(1, 1)

    def targets(self, xyz_nm: torch.Tensor, frame: torch.Tensor, color: torch.Tensor | None,
                labelled: torch.Tensor, n_frames: int, height: int, width: int, *,
                photons: torch.Tensor | None = None, background: torch.Tensor | None = None) -> torch.Tensor:
        """(F, C·D, u·H, u·W) occupancy of the labelled emitters: one volume per dye, each emitter a unit
        mass in its own dye's volume (:func:`~deepsmlm.heads.density_targets.spike_volume`); photons and
        background are not predicted."""
        def occupancy(sel: torch.Tensor) -> torch.Tensor:
            return spike_volume(xyz_nm[sel], frame[sel], n_frames, height, width, self.grid)

        if self.grid.colors == 1:
            return occupancy(labelled)
        return torch.cat([occupancy(labelled & (color == dye)) for dye in range(self.grid.colors)], dim=1)

    def loss(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        s = self.loss_settings
        return deepstorm_loss(raw, target, s.sigma_px, s.l1_weight, s.sigma_planes, s.dice_weight, self.grid.colors)

    def activate(self, raw: torch.Tensor) -> torch.Tensor:
        """The density: the raw output clipped at zero."""
        return raw.clamp_min(0)

    def occupancy(self, output: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w): the density of all dyes together."""
        g = self.grid
        return output if g.colors == 1 else output.unflatten(1, (g.colors, g.planes)).sum(1)

    def detect(self, output: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        thr = self.threshold if threshold is None else threshold
        return peak_map(self.occupancy(output), thr, self.window_px, self.window_planes)

    def decode(self, output: torch.Tensor, detections: torch.Tensor, first_frame: int = 0,
               origin: tuple[int, int] = (0, 0)) -> pd.DataFrame:
        """Rows of the detections: position the occupancy's window centroid (z of 3D outputs from the plane
        centroid), prob its window mass; a multicolour output's dye is the one holding most of the window
        mass, ``color_prob`` its share."""
        g = self.grid
        found = density_peaks(self.occupancy(output), 0.0, self.window_px, detections, self.window_planes, origin)

        def col(t: torch.Tensor) -> np.ndarray:
            return t.cpu().numpy().astype(np.float64)

        table = {"frame": found["frame"].cpu().numpy().astype(np.int64) + first_frame,
                 "x_nm": g.fine_px_to_nm(col(found["col"])), "y_nm": g.fine_px_to_nm(col(found["row"]))}
        if g.planes > 1:
            table["z_nm"] = g.plane_to_z(col(found["plane"]))
        table["prob"] = col(found["prob"])
        if g.colors > 1:
            masses = dye_masses(output.unflatten(1, (g.colors, g.planes)), detections, self.window_px,
                                self.window_planes)
            share = masses / masses.sum(dim=1, keepdim=True).clamp_min(1e-12)
            best = share.max(dim=1)
            table["color"] = best.indices.cpu().numpy().astype(np.int64)
            table["color_prob"] = col(best.values)
        return pd.DataFrame(table)

    def image(self, output: torch.Tensor, detections: torch.Tensor) -> torch.Tensor:
        """The occupancy within the windows of the detections, summed over frames and planes."""
        near = detected_density(self.occupancy(output), detections, self.window_px, self.window_planes)
        return near.sum(dim=(0, 1))
