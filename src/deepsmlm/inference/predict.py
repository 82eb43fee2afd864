"""Running a Deep-STORM model on frames: ADU → photons → normalised input → density → localizations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from deepsmlm.config import ModelConfig, SimulationConfig
from deepsmlm.inference.postprocess import density_peaks, detected_density, dye_masses, peak_map
from deepsmlm.inference.tiling import Footprint, Tile, TileResult
from deepsmlm.physics.camera import Camera


MAX_OUTPUT_VOXELS = 1 << 25  # network outputs are made in passes of at most this many voxels (128 MB)
MAX_FRAMES_PER_PASS = 32
POST_BYTES_PER_VOXEL = 20  # per output voxel: clipped copy, window gathers, peak maps, detected-density image


def receptive_radius_px(m: ModelConfig) -> int:
    """Camera pixels around a pixel whose values its outputs can depend on, for the networks of ``models/``.

    deepstorm2d ``cpu``: 25. Two 3×3 convolutions per U-Net level (1×, 2×, 4× downsampled by 2×2 max
    pooling, back by nearest ×2 upsampling), a 3×3 convolution into the pixel shuffle and one on the fine
    grid: following the dependencies back from an output pixel reaches 22–25 px, by its place in the
    4-px pooling grid. ``paper``: ⌈29/u⌉, its 3×3 convolutions and three 2×2 poolings reaching 29 fine
    pixels after the nearest ×u upsampling. deepstorm3d: Σ dilations + 2 (``cpu``: the stem, one dilated
    3×3 convolution per block and the 3×3 lift) or + 3 (``paper``: the 3×3 convolutions of its lift and
    head on the finer grids reach at most 2 camera px). Perturbing one input pixel of random networks
    reaches these radii, or 1 px less for ``paper`` 2D (tests/unit/test_tiling.py).
    """
    if m.kind == "deepstorm3d":
        return sum(m.dilations) + (2 if m.architecture == "cpu" else 3)
    return 25 if m.architecture == "cpu" else math.ceil(29 / m.upsampling)


def downsampling_px(m: ModelConfig) -> int:
    """Camera pixels per cell of the network's coarsest pooling grid (tile origins must be multiples)."""
    if m.kind == "deepstorm3d":
        return 1
    return 4 if m.architecture == "cpu" else 8 // math.gcd(m.upsampling, 8)


def working_bytes_per_px(m: ModelConfig) -> float:
    """Peak memory of one pass per camera pixel of input (bytes): the network's activations (channels c
    at camera resolution, head or lift channels on the u× finer grid) and the output volume with its
    post-processing (V = colors · planes · u² voxels per pixel). Set above the peak RSS of one pass
    measured on CPU for every architecture, with random and shipped weights, on noise and on simulated
    frames (also of batches of small frames, where the allocator's fragmentation adds ~40 %): up to 1.5×
    above it in 2D and 3× for the sparse outputs of 3D models (benchmarks/tiled_inference_memory.py)."""
    c, u, k = m.channels, m.upsampling, m.head_channels
    voxels = m.colors * m.z_planes * u * u
    if m.kind == "deepstorm3d":
        floats = 4 * c + (2.5 if m.architecture == "cpu" else 4) * c * u * u
    elif m.architecture == "cpu":
        floats = 5 * c + u * u * (5 * k + 4)
    else:
        floats = 6 * c * u * u
    return 4 * floats + POST_BYTES_PER_VOXEL * voxels


def input_normalisation(cfg: SimulationConfig) -> tuple[float, float]:
    """(offset, scale) in photons: the model config's values (set when training started)."""
    m = cfg.model
    if m.input_offset_photons is None or m.input_scale_photons is None:
        raise ValueError("model config lacks input normalisation (input_offset_photons / input_scale_photons)")
    return m.input_offset_photons, m.input_scale_photons


def normalised_input(camera: Camera, adu: torch.Tensor, offset: float, scale: float) -> torch.Tensor:
    """(B, H, W) ADU → (B, 1, H, W) network input: photons by the camera model, minus offset, over scale."""
    return normalised(camera.adu_to_photons(adu), offset, scale)


def normalised(photons: torch.Tensor, offset: float, scale: float) -> torch.Tensor:
    """(B, H, W) photons → (B, 1, H, W) network input: minus offset, over scale."""
    return ((photons - offset) / scale).unsqueeze(1)


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

    def photons(self, adu: torch.Tensor) -> torch.Tensor:
        """(B, H, W) ADU → photons on the predictor's device, by the camera model."""
        return self.camera.adu_to_photons(adu.to(self.device))

    @torch.inference_mode()
    def density(self, adu: torch.Tensor) -> torch.Tensor:
        """(B, C·D, u·H, u·W) emitter density (D axial planes, 1 in 2D; C dyes, 1 unless multicolour),
        clipped at zero."""
        return self.density_of_photons(self.photons(adu))

    @torch.inference_mode()
    def density_of_photons(self, photons: torch.Tensor) -> torch.Tensor:
        """``density`` of frames already in photons (B, H, W); the input is normalised by the model's
        offset and scale (not per image)."""
        x = normalised(photons, self.offset, self.scale)
        return self.net(x.contiguous(memory_format=torch.channels_last)).clamp_min(0)

    def footprint(self, height: int, width: int) -> Footprint:
        """Working memory per pixel, reach, tile alignment and frames per pass of height × width px, for
        planning passes. The reach is the receptive radius plus two centroid windows: a detection's test
        reads its window, and the image of a pixel depends on detections up to a window away."""
        m = self.cfg.model
        reach = receptive_radius_px(m) + math.ceil(2 * m.window_px / self.upsampling)
        return Footprint(working_bytes_per_px(m), reach, downsampling_px(m), self.frames_per_pass(height, width))

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
                 peaks: torch.Tensor | None = None, origin: tuple[int, int] = (0, 0)) -> pd.DataFrame:
        """Canonical table rows (frame, x_nm, y_nm[, z_nm], prob[, color, color_prob]) of detections in a
        batch of density volumes; z (3D models) from the plane centroid over the trained range
        ``emitters.z_range_nm``; a multicolour model's dye is the one holding most of the detection's
        window mass, ``color_prob`` its share. ``origin``: (row, col) of the volumes' first fine pixel in
        the frame (a tile's place)."""
        m = self.cfg.model
        if peaks is None:
            peaks = self.peaks(density, threshold)
        found = density_peaks(self.occupancy(density), 0.0, m.window_px, peaks, self.window_planes, origin)
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

    @torch.inference_mode()
    def localize_tile(self, photons: torch.Tensor, first_frame: int, tile: Tile, superres: bool) -> TileResult:
        """Detections whose peak lies in the core of ``tile`` of frames (B, H, W) in photons, and with
        ``superres`` the core's image: the density within the windows of all detections (also those in
        the halo, whose windows reach into the core), summed over frames and planes."""
        u, m = self.upsampling, self.cfg.model
        density = self.density_of_photons(photons[:, tile.rows, tile.cols])
        peaks = self.peaks(density)
        rows, cols = tile.core_in_tile(u)
        owned = peaks
        if not tile.is_whole:
            owned = torch.zeros_like(peaks)
            owned[..., rows, cols] = peaks[..., rows, cols]
        origin = (u * tile.rows.start, u * tile.cols.start)
        table = self.localize(density, first_frame, peaks=owned, origin=origin)
        _, plane, row, col = (i.cpu().numpy() for i in torch.nonzero(owned, as_tuple=True))
        height, width = (u * n for n in tile.frame)
        order = (plane * height + row + origin[0]) * width + col + origin[1]
        image = None
        if superres:
            image = detected_density(self.occupancy(density), peaks, m.window_px, self.window_planes)
            image = image.sum(dim=(0, 1))[rows, cols]
        return TileResult(table, order, image)
