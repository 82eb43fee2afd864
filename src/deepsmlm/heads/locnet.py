"""The LocNet head: per camera pixel, the probability that an emitter sits in it, its sub-pixel offset
(and z), photons, the background and the σ of each; detections are pixels whose 3×3 probability mass
passes the threshold and whose probability is the 3×3 maximum; positions the pixel centre + offset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from deepsmlm.config import ModelConfig, TrainingConfig
from deepsmlm.heads.grid import OutputGrid
from deepsmlm.heads.locnet_loss import emitter_rows, locnet_loss, normalised_outputs, pack_target
from deepsmlm.models.locnet import locnet_outputs

POST_BYTES_PER_CHANNEL = 8  # per output channel and pixel: the output and its gathered copies
POST_FLOATS = 6  # per pixel: probability mass, local maxima, detection masks
NEIGHBOURS = torch.tensor([(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc])  # (8, 2) in row order


@dataclass(frozen=True)
class LocNetHead:
    """Outputs (B, C, H, W) at camera resolution (``grid.upsampling`` 1). ``axial``: z is predicted over
    ``grid.z_range_nm``; ``photon_unit``: photons per unit of the photon output; ``background_offset`` and
    ``background_unit``: photons per px of a background output of 0 and per unit of it (the network's input
    normalisation); ``background_weight``: weight of the background term of the loss; ``sigma_scale``:
    factors on the decoded σ of x, y, z (the post-hoc calibration of ``model.sigma_scale``); ``split_mass``: a
    detection whose 3×3 mass reaches it holds two emitters (None: one)."""

    grid: OutputGrid
    threshold: float = 0.5
    axial: bool = False
    photon_unit: float = 1.0
    background_offset: float = 0.0
    background_unit: float = 1.0
    background_weight: float = 1.0
    sigma_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    split_mass: float | None = None

    @classmethod
    def from_config(cls, grid: OutputGrid, model: ModelConfig, training: TrainingConfig) -> LocNetHead:
        """The head of a model's threshold, input normalisation (background unit and offset; 1 and 0 before
        training has set them), photon unit (``model.photon_unit_photons``, else the input unit) and σ
        calibration; 3D (``axial``) when the grid has an axial range
        (:func:`~deepsmlm.assembly.predictors.output_grid` gives one to 3D models only)."""
        unit = model.input_scale_photons if model.input_scale_photons is not None else 1.0
        offset = model.input_offset_photons if model.input_offset_photons is not None else 0.0
        photon_unit = model.photon_unit_photons if model.photon_unit_photons is not None else unit
        z0, z1 = grid.z_range_nm
        return cls(grid, model.threshold, z1 > z0, photon_unit, offset, unit, sigma_scale=model.sigma_scale,
                   split_mass=model.split_mass)

    @property
    def channels(self) -> int:
        """Output channels: probability, Q means, background, Q σ (Q: x, y, [z,] photons)."""
        return locnet_outputs(self.axial)

    @property
    def reach_px(self) -> int:
        """A detection's test reads its 3×3 neighbourhood (a split's runner-up, the 3×3 of a neighbour)."""
        return 1 if self.split_mass is None else 2

    @property
    def bytes_per_px(self) -> float:
        return POST_BYTES_PER_CHANNEL * self.channels + 4 * POST_FLOATS

    def targets(self, xyz_nm: torch.Tensor, frame: torch.Tensor, color: torch.Tensor | None,
                labelled: torch.Tensor, n_frames: int, height: int, width: int, *,
                photons: torch.Tensor | None = None, background: torch.Tensor | None = None) -> torch.Tensor:
        """(F, H·W + 5·K) packed target (:func:`~deepsmlm.heads.locnet_loss.pack_target`): the background
        (photons/px (F, H, W), in input units; unknown when None) and the labelled emitters of each frame
        (x, y in camera px, z scaled to ±1 over the range, ``photons`` (E,) in photon units)."""
        if photons is None:
            raise ValueError("LocNet targets need the emitters' photons")
        sel = labelled
        xyz = xyz_nm[sel]
        values = torch.stack([self.grid.fine_px(xyz[:, 0]), self.grid.fine_px(xyz[:, 1]),
                              self._z_scaled(xyz[:, 2]), photons[sel] / self.photon_unit], dim=1)
        rows = emitter_rows(values, frame[sel], n_frames)
        if background is not None:
            background = (background - self.background_offset) / self.background_unit
        return pack_target(rows, background, height, width)

    def loss(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return locnet_loss(raw, target, self.axial, self.background_weight)

    def activate(self, raw: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W): probability; offsets x, y (camera px from the pixel centre), z (nm), photons;
        background (photons/px); σ of x, y, z (nm) and photons."""
        out = normalised_outputs(raw, self.axial)
        px, unit = self.grid.pixel_nm, self.photon_unit
        (z0, z1), axial = self.grid.z_range_nm, self.axial
        mean_scale = [1.0, 1.0] + [(z1 - z0) / 2] * axial + [unit]
        mean_shift = [0.0, 0.0] + [(z0 + z1) / 2] * axial + [0.0]
        sigma_scale = [px, px] + [(z1 - z0) / 2] * axial + [unit]

        def per_channel(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=raw.dtype, device=raw.device)[None, :, None, None]

        return torch.cat([out["logp"].exp()[:, None], out["mean"] * per_channel(mean_scale) + per_channel(mean_shift),
                          (self.background_offset + self.background_unit * out["background"])[:, None],
                          out["sigma"] * per_channel(sigma_scale)], dim=1)

    def detect(self, output: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """(B, 1, H, W): pixels whose probability is the maximum of their 3×3 neighbourhood and whose 3×3
        probability mass reaches the threshold; with ``split_mass``, where the mass reaches it (two emitters
        in neighbouring pixels share one maximum), also the most probable other pixel of that 3×3."""
        thr = self.threshold if threshold is None else threshold
        p = output[:, :1]
        mass = _mass(p)
        found = (p == F.max_pool2d(p, 3, 1, 1)) & (mass >= thr) & (p > 0)
        if self.split_mass is None:
            return found
        return found | _runner_up(p, found & (mass >= self.split_mass))

    def decode(self, output: torch.Tensor, detections: torch.Tensor, first_frame: int = 0,
               origin: tuple[int, int] = (0, 0)) -> pd.DataFrame:
        """Rows of the detections (in the order of their map's nonzero entries): position the pixel centre +
        offset, prob the 3×3 probability mass (capped at 1), photons, bg and σ (× ``sigma_scale``)."""
        b, _, r, c = torch.nonzero(detections, as_tuple=True)
        values = output[b, :, r, c].double().cpu().numpy()
        prob = _mass(output[:, :1])[b, 0, r, c].clamp(max=1.0).double().cpu().numpy()
        q = 4 if self.axial else 3
        table = {"frame": b.cpu().numpy().astype(np.int64) + first_frame,
                 "x_nm": self.grid.fine_px_to_nm(c.cpu().numpy() + origin[1] + 0.5 + values[:, 1]),
                 "y_nm": self.grid.fine_px_to_nm(r.cpu().numpy() + origin[0] + 0.5 + values[:, 2])}
        if self.axial:
            table["z_nm"] = values[:, 3]
        sx, sy, sz = self.sigma_scale
        table.update(photons=values[:, q], bg=values[:, q + 1], prob=prob, sigma_x_nm=sx * values[:, q + 2],
                     sigma_y_nm=sy * values[:, q + 3])
        if self.axial:
            table["sigma_z_nm"] = sz * values[:, q + 4]
        return pd.DataFrame(table)

    def image(self, output: torch.Tensor, detections: torch.Tensor) -> torch.Tensor:
        """(H, W): each detection's probability mass at its pixel, summed over the batch."""
        return (_mass(output[:, :1]) * detections).sum(dim=(0, 1))

    def _z_scaled(self, z_nm: torch.Tensor) -> torch.Tensor:
        """z (nm) → ±1 over the axial range (0 without one)."""
        z0, z1 = self.grid.z_range_nm
        return (2 * z_nm - (z0 + z1)) / (z1 - z0) if self.axial else torch.zeros_like(z_nm)


def _runner_up(p: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W): for each of ``pixels`` the most probable other pixel of its 3×3 neighbourhood (the first in
    row order on a tie), looked at only around those pixels."""
    n, _, r, c = torch.nonzero(pixels, as_tuple=True)
    dr, dc = NEIGHBOURS.to(p.device).unbind(1)
    around = F.pad(p[:, 0], (1, 1, 1, 1), value=-1.0)[n[:, None], r[:, None] + 1 + dr, c[:, None] + 1 + dc]
    k = around.argmax(dim=1)
    out = torch.zeros_like(pixels)
    out[n, 0, r + dr[k], c + dc[k]] = True
    return out


def _mass(p: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) probability summed over each pixel's 3×3 neighbourhood (zero outside the frame)."""
    return 9 * F.avg_pool2d(p, 3, 1, 1, count_include_pad=True)
