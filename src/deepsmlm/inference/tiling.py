"""Frames of any size in bounded memory: tiles with a halo, and how many frames one pass holds.

A frame too large for the memory budget (or for PASS_BYTES_CAP, beyond which passes only get slower)
is cut into tiles whose cores partition it. Each tile is read
with a halo of at least the localizer's reach — how far around a pixel its decisions look (a network's
receptive radius plus the post-processing window; gaussian-mle's filter support, peak window and fit
box) — on every side where the frame goes on; at the frame's own edges the tile ends where the frame
does, and is padded as the whole frame would be. A localizer keeps only the detections whose peak lies
in the core, so each detection is made once, from the same pixels as without tiling. Tile origins fall
on multiples of the network's downsampling factor, so its pooling windows fall as in the whole frame.

Small frames are batched instead: as many per pass as the budget and the localizer allow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from deepsmlm.resources import require_memory

INPUT_BYTES_PER_PX = 12  # besides the stack's own pixel: as float32, as photons, one temporary
PASS_BYTES_CAP = 1 << 30  # larger passes are no faster on CPU (default-2d: 3.5 s/Mpx at 128², 6.8 at 1024²)
CHUNK_BYTES_CAP = 256 << 20  # frames read at once hold at most this (or one frame)
MIN_CORE_PX = 32  # smaller cores would spend most of a pass on the halo


@dataclass(frozen=True)
class Tile:
    """A rectangle of a frame processed in one pass: ``rows``, ``cols`` read (core and halo, frame px) and
    ``core_rows``, ``core_cols``, the part whose detections it reports; ``frame`` (height, width)."""

    rows: slice
    cols: slice
    core_rows: slice
    core_cols: slice
    frame: tuple[int, int]

    @classmethod
    def whole(cls, height: int, width: int) -> Tile:
        rows, cols = slice(0, height), slice(0, width)
        return cls(rows, cols, rows, cols, (height, width))

    @property
    def is_whole(self) -> bool:
        """Whether the core is the whole frame (then so is the tile)."""
        core = (self.core_rows.start, self.core_cols.start, self.core_rows.stop, self.core_cols.stop)
        return core == (0, 0, *self.frame)

    def core_in_tile(self, scale: int = 1) -> tuple[slice, slice]:
        """The core in the tile's own coordinates, on a grid ``scale`` times finer than the camera's."""
        top, left = self.rows.start, self.cols.start
        return (slice(scale * (self.core_rows.start - top), scale * (self.core_rows.stop - top)),
                slice(scale * (self.core_cols.start - left), scale * (self.core_cols.stop - left)))

    def core_in_frame(self, scale: int = 1) -> tuple[slice, slice]:
        """The core in the frame's coordinates, on a grid ``scale`` times finer than the camera's."""
        return (slice(scale * self.core_rows.start, scale * self.core_rows.stop),
                slice(scale * self.core_cols.start, scale * self.core_cols.stop))


@dataclass
class TileResult:
    """A localizer's answer for one tile and pass: canonical rows (frames absolute, positions in the whole
    frame, only detections whose peak lies in the core), a key ordering them within their frame as a run
    without tiles would (its peak's place in the frame), and the super-resolved image of the core on the
    fine grid (or None)."""

    table: pd.DataFrame
    order: np.ndarray
    image: torch.Tensor | None


@dataclass(frozen=True)
class Footprint:
    """What a localizer needs for frames of a given size: working memory per pixel of a pass (bytes), its
    reach (camera px), the multiple of which tile origins must be (its downsampling factor), the most
    whole frames it takes per pass, and memory a pass needs whatever its size (bytes)."""

    bytes_per_px: float
    reach_px: int
    align_px: int
    max_frames_per_pass: int
    fixed_bytes: int = 0


@dataclass(frozen=True)
class Plan:
    """Frames read from the stack at once, frames per localizer pass, and the tiles' core size (None:
    whole frames) and halo (camera px)."""

    frames_per_chunk: int
    frames_per_pass: int
    core_px: int | None = None
    halo_px: int = 0

    def tiles(self, height: int, width: int) -> list[Tile]:
        """The tiles covering a frame, row by row of cores."""
        if self.core_px is None:
            return [Tile.whole(height, width)]
        core, halo = self.core_px, self.halo_px
        return [Tile(slice(max(0, r - halo), min(height, r + core + halo)),
                     slice(max(0, c - halo), min(width, c + core + halo)),
                     slice(r, min(height, r + core)), slice(c, min(width, c + core)), (height, width))
                for r in range(0, height, core) for c in range(0, width, core)]


def plan_passes(shape: tuple[int, int], itemsize: int, footprint: Footprint, budget_bytes: int, batch_size: int,
                what: str, fixed_bytes: int = 0) -> Plan:
    """Whole frames, as many per pass as fit (at most the localizer's own limit, and ``batch_size`` per
    chunk read, within CHUNK_BYTES_CAP), when one frame's working memory fits ``budget_bytes`` and
    PASS_BYTES_CAP; else one frame at a time in the largest tiles that fit. ``itemsize``: bytes per pixel of the stack; ``fixed_bytes``:
    memory held throughout (a super-resolved image). One-line error naming how much ``what`` needs when
    not even a tile of MIN_CORE_PX fits."""
    height, width = shape
    frame_in = height * width * (itemsize + INPUT_BYTES_PER_PX)
    fixed_bytes += footprint.fixed_bytes
    room = budget_bytes - fixed_bytes
    work = height * width * footprint.bytes_per_px
    if frame_in + work <= room and work <= PASS_BYTES_CAP:
        per_pass = int(min(footprint.max_frames_per_pass, batch_size, PASS_BYTES_CAP // work,
                           (room - frame_in) // work))
        per_chunk = int(min(batch_size, (room - per_pass * work) // frame_in,
                            max(1, CHUNK_BYTES_CAP // frame_in)))
        return Plan(per_chunk, min(per_pass, per_chunk))
    align = footprint.align_px
    halo = math.ceil(footprint.reach_px / align) * align
    smallest = math.ceil(MIN_CORE_PX / align) * align

    def tile_bytes(core: int) -> float:
        return min(core + 2 * halo, height) * min(core + 2 * halo, width) * footprint.bytes_per_px

    require_memory(fixed_bytes + frame_in + tile_bytes(smallest), what, budget_bytes)
    limit = max(min(room - frame_in, PASS_BYTES_CAP), tile_bytes(smallest))
    core = smallest
    while core < max(height, width) and tile_bytes(core + align) <= limit:
        core += align
    return Plan(1, 1, core, halo)
