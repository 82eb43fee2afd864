"""What a network needs of the frames it runs on: how far its outputs look (receptive radius), the grid its
pooling falls on (tile origins must be multiples), and the memory of its activations."""

from __future__ import annotations

import math
from dataclasses import dataclass

from deepsmlm.config import ModelConfig


@dataclass(frozen=True)
class NetworkFootprint:
    """``reach_px``: receptive radius (camera px); ``align_px``: downsampling factor (camera px);
    ``bytes_per_px``: activation memory of one pass per camera pixel of input (bytes)."""

    reach_px: int
    align_px: int
    bytes_per_px: float


def receptive_radius_px(m: ModelConfig) -> int:
    """Camera pixels around a pixel whose values its outputs can depend on, for the networks of ``models/``.

    deepstorm2d ``cpu``: 25. Two 3×3 convolutions per U-Net level (1×, 2×, 4× downsampled by 2×2 max
    pooling, back by nearest ×2 upsampling), a 3×3 convolution into the pixel shuffle and one on the fine
    grid: following the dependencies back from an output pixel reaches 22–25 px, by its place in the
    4-px pooling grid. ``paper``: ⌈29/u⌉, its 3×3 convolutions and three 2×2 poolings reaching 29 fine
    pixels after the nearest ×u upsampling. deepstorm3d: Σ dilations + 2 (``cpu``: the stem, one dilated
    3×3 convolution per block and the 3×3 lift) or + 3 (``paper``: the 3×3 convolutions of its lift and
    head on the finer grids reach at most 2 camera px). Perturbing one input pixel of random networks
    reaches these radii, or 1 px less for ``paper`` 2D (tests/unit/test_tiling.py). locnet: 19, the
    U-Net above with one 3×3 convolution fewer at full and at ½ resolution and no fine grid; 43 with its
    third level (two 3×3 convolutions at ⅛ and one on the way back at ¼).
    """
    if m.kind == "locnet":
        return 19 if m.levels == 2 else 43
    if m.kind == "deepstorm3d":
        return sum(m.dilations) + (2 if m.architecture == "cpu" else 3)
    return 25 if m.architecture == "cpu" else math.ceil(29 / m.upsampling)


def downsampling_px(m: ModelConfig) -> int:
    """Camera pixels per cell of the network's coarsest pooling grid (tile origins must be multiples)."""
    if m.kind == "deepstorm3d":
        return 1
    if m.kind == "locnet":
        return 2**m.levels
    return 4 if m.architecture == "cpu" else 8 // math.gcd(m.upsampling, 8)


def activation_bytes_per_px(m: ModelConfig) -> float:
    """Peak activation memory of one pass per camera pixel of input (bytes): channels c at camera
    resolution, head or lift channels on the u× finer grid. With the head's post-processing
    (:attr:`~deepsmlm.heads.base.OutputHead.bytes_per_px`) set above the peak RSS of one pass measured on
    CPU for every architecture, with random and shipped weights, on noise and on simulated frames (also of
    batches of small frames, where the allocator's fragmentation adds ~40 %): up to 1.5× above it in 2D and
    3× for the sparse outputs of 3D models (benchmarks/tiled_inference_memory.py)."""
    c, u, k = m.channels, m.upsampling, m.head_channels
    if m.kind == "locnet":
        floats = 6 * c  # c/2 channels at full resolution: skip, upsampled, concatenated and decoded maps
    elif m.kind == "deepstorm3d":
        floats = 4 * c + (2.5 if m.architecture == "cpu" else 4) * c * u * u
    elif m.architecture == "cpu":
        floats = 5 * c + u * u * (5 * k + 4)
    else:
        floats = 6 * c * u * u
    return 4 * floats


def network_footprint(m: ModelConfig) -> NetworkFootprint:
    """The footprint of the network of ``m``."""
    return NetworkFootprint(receptive_radius_px(m), downsampling_px(m), activation_bytes_per_px(m))
