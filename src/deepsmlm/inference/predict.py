"""Running a Deep-STORM model on frames: ADU → photons → normalised input → density → localizations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from deepsmlm.config import SimulationConfig
from deepsmlm.inference.postprocess import density_peaks, dye_masses, peak_map
from deepsmlm.physics.camera import Camera


MAX_OUTPUT_VOXELS = 1 << 25  # network outputs are made in passes of at most this many voxels (128 MB)
MAX_FRAMES_PER_PASS = 32


def input_normalisation(cfg: SimulationConfig) -> tuple[float, float]:
    """(offset, scale) in photons: the model config's values (set when training started)."""
    m = cfg.model
    if m.input_offset_photons is None or m.input_scale_photons is None:
        raise ValueError("model config lacks input normalisation (input_offset_photons / input_scale_photons)")
    return m.input_offset_photons, m.input_scale_photons


def normalised_input(camera: Camera, adu: torch.Tensor, offset: float, scale: float) -> torch.Tensor:
    """(B, H, W) ADU → (B, 1, H, W) network input: photons by the camera model, minus offset, over scale."""
    return ((camera.adu_to_photons(adu) - offset) / scale).unsqueeze(1)


class DensityPredictor:
    """A trained density network with its camera model and post-processing, batched and device-agnostic."""

    def __init__(self, cfg: SimulationConfig, net: nn.Module, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.camera = Camera(cfg.camera).to(self.device)
        self.offset, self.scale = input_normalisation(cfg)
        self.upsampling = cfg.model.upsampling
        self.pixel_nm = cfg.frame.pixel_size_nm
        self.planes = cfg.model.z_planes
        self.colors = cfg.model.colors
        self.window_planes = cfg.model.window_planes if self.planes > 1 else 0

    def to_input(self, adu: torch.Tensor) -> torch.Tensor:
        """(B, H, W) ADU → (B, 1, H, W) normalised photons (camera model, not per-image min–max)."""
        return normalised_input(self.camera, adu.to(self.device), self.offset, self.scale)

    @torch.inference_mode()
    def density(self, adu: torch.Tensor) -> torch.Tensor:
        """(B, C·D, u·H, u·W) emitter density (D axial planes, 1 in 2D; C dyes, 1 unless multicolour),
        clipped at zero."""
        return self.net(self.to_input(adu).contiguous(memory_format=torch.channels_last)).clamp_min(0)

    def frames_per_pass(self, height: int, width: int) -> int:
        """Frames of ``height`` × ``width`` px per network pass: their output volumes hold at most
        MAX_OUTPUT_VOXELS voxels together (at least one frame, at most MAX_FRAMES_PER_PASS)."""
        per_frame = self.colors * self.planes * height * width * self.upsampling ** 2
        return max(1, min(MAX_FRAMES_PER_PASS, MAX_OUTPUT_VOXELS // per_frame))

    def localize_frames(self, adu: torch.Tensor, first_frame: int = 0,
                        threshold: float | None = None) -> pd.DataFrame:
        """Localizations (as ``localize``) in a stack of frames (F, H, W) ADU, in memory-bounded passes."""
        step = self.frames_per_pass(*adu.shape[-2:])
        return pd.concat([self.localize(self.density(adu[i:i + step]), first_frame + i, threshold)
                          for i in range(0, len(adu), step)], ignore_index=True)

    def occupancy(self, density: torch.Tensor) -> torch.Tensor:
        """(B, D, u·H, u·W): the density of all dyes together."""
        return density if self.colors == 1 else density.unflatten(1, (self.colors, self.planes)).sum(1)

    def peaks(self, density: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """Boolean map (B, D, u·H, u·W) of accepted detections (window maxima of the occupancy whose
        window mass reaches the threshold)."""
        m = self.cfg.model
        thr = m.threshold if threshold is None else threshold
        return peak_map(self.occupancy(density), thr, m.window_px, self.window_planes)

    def localize(self, density: torch.Tensor, first_frame: int = 0, threshold: float | None = None,
                 peaks: torch.Tensor | None = None) -> pd.DataFrame:
        """Canonical table rows (frame, x_nm, y_nm[, z_nm], prob[, color, color_prob]) of detections in a
        batch of density volumes; z (3D models) from the plane centroid over the trained range
        ``emitters.z_range_nm``; a multicolour model's dye is the one holding most of the detection's
        window mass, ``color_prob`` its share."""
        m = self.cfg.model
        if peaks is None:
            peaks = self.peaks(density, threshold)
        found = density_peaks(self.occupancy(density), 0.0, m.window_px, peaks, self.window_planes)
        fine = self.pixel_nm / self.upsampling

        def col(t: torch.Tensor) -> np.ndarray:
            return t.cpu().numpy().astype(np.float64)

        table = {"frame": found["frame"].cpu().numpy().astype(np.int64) + first_frame,
                 "x_nm": col(found["col"]) * fine, "y_nm": col(found["row"]) * fine}
        if self.planes > 1:
            z0, z1 = self.cfg.emitters.z_range_nm
            table["z_nm"] = z0 + col(found["plane"]) * (z1 - z0) / self.planes
        table["prob"] = col(found["prob"])
        if self.colors > 1:
            masses = dye_masses(density.unflatten(1, (self.colors, self.planes)), peaks, m.window_px,
                                self.window_planes)
            share = masses / masses.sum(dim=1, keepdim=True).clamp_min(1e-12)
            best = share.max(dim=1)
            table["color"] = best.indices.cpu().numpy().astype(np.int64)
            table["color_prob"] = col(best.values)
        return pd.DataFrame(table)
