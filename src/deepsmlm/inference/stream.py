"""Streaming a stack through a localizer chunk by chunk, tile by tile, reporting progress and a frame rate.

Rows go to a writer as each chunk is done (or are kept, when no writer is given); the super-resolved
image is summed only when asked for. Memory is flat in the number of frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from deepsmlm.errors import UserInputError
from deepsmlm.inference.tiling import Footprint, Plan, Tile, TileResult
from deepsmlm.io.images import ImageStack, check_finite
from deepsmlm.progress import ProgressCallback, ProgressEvent, ignore


class Localizer(Protocol):
    """A network predictor or the classic fitter, as the stream drives it."""

    upsampling: int  # super-resolved pixels per camera pixel, per axis
    context_frames: int  # frames it needs on each side of a frame it localizes

    def footprint(self, height: int, width: int) -> Footprint: ...

    def photons(self, adu: torch.Tensor) -> torch.Tensor: ...

    def localize_tile(self, photons: torch.Tensor, first_frame: int, tile: Tile, superres: bool) -> TileResult: ...


@dataclass
class StackResult:
    table: pd.DataFrame | None  # None when the rows went only to a writer
    superres: np.ndarray | None
    seconds: float
    n_frames: int
    n_localizations: int

    @property
    def fps(self) -> float:
        return self.n_frames / self.seconds if self.seconds > 0 else float("inf")


def rate_text(frames: int, seconds: float) -> str:
    """A frame rate with sensible precision: '120 frames/s', '2.4 frames/s', '0.35 frames/s', '12 s/frame'."""
    if seconds <= 0 or frames <= 0:
        return ""
    fps = frames / seconds
    if fps >= 10:
        return f"{fps:.0f} frames/s"
    return f"{fps:.2g} frames/s" if fps >= 0.1 else f"{1 / fps:.0f} s/frame"


def check_frames(chunk: np.ndarray, path, first_frame: int) -> None:
    """Reject NaN/inf and negative pixels with one line naming the file and frame."""
    check_finite(chunk, path, first_frame)
    if np.issubdtype(chunk.dtype, np.signedinteger) or np.issubdtype(chunk.dtype, np.floating):
        bad = np.nonzero((chunk < 0).reshape(len(chunk), -1).any(axis=1))[0]
        if len(bad):
            raise UserInputError(f"{path}: frame {first_frame + int(bad[0])} (0-based) has negative pixels")


def run_stack(stack: ImageStack, localizer: Localizer, plan: Plan, progress: ProgressCallback | None = None,
              write: Callable[[pd.DataFrame], None] | None = None, superres: bool = False,
              keep_rows: bool = False, select: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
              frames: range | None = None) -> StackResult:
    """Localize every frame of ``stack`` (or those of ``frames``, a step-1 range of it, with their
    neighbouring frames as context) by ``plan``; rows, sorted by frame (0-based), go chunk by chunk to
    ``write`` and, without one or with ``keep_rows``, into the result's table; with ``select``, only the
    rows it keeps of each chunk are written, kept and counted. ``superres``: also sum the super-resolved
    image (of every detection). ``progress`` hears of the frames done (and the frame rate) after each chunk."""
    tables, n_locs, image = [], 0, None
    tiles = plan.tiles(*stack.shape)
    span = range(len(stack)) if frames is None else frames
    t0 = time.perf_counter()
    report = progress or ignore
    report(ProgressEvent("localizing", 0, len(span)))
    for first in range(span.start, span.stop, plan.frames_per_chunk):
        stop = min(first + plan.frames_per_chunk, span.stop)
        chunk = stack[first:stop]
        check_frames(chunk, stack.path, first)
        chunk = with_context(stack, first, chunk, localizer.context_frames)
        photons = localizer.photons(torch.from_numpy(chunk.astype(np.float32)))
        rows, image = localize_chunk(localizer, photons, first, tiles, plan.frames_per_pass, superres, image)
        del photons
        if select is not None:
            rows = select(rows)
        n_locs += len(rows)
        if write is not None:
            write(rows)
        if write is None or keep_rows:
            tables.append(rows)
        done = stop - span.start
        report(ProgressEvent("localizing", done, len(span), rate_text(done, time.perf_counter() - t0)))
    kept = write is None or keep_rows
    table = (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()) if kept else None
    picture = None if image is None else image.cpu().numpy().astype(np.float32)
    return StackResult(table, picture, time.perf_counter() - t0, len(span), n_locs)


def with_context(stack: ImageStack, first: int, chunk: np.ndarray, context: int) -> np.ndarray:
    """``chunk`` (frames ``first`` … of ``stack``) with ``context`` frames more on each side: the stack's
    neighbouring frames, its first or last frame repeated beyond its ends."""
    if context == 0:
        return chunk
    n = len(stack)
    before = stack[max(first - context, 0):first]
    after = stack[first + len(chunk):min(first + len(chunk) + context, n)]
    return np.concatenate([np.repeat(stack[0:1], context - len(before), axis=0), before, chunk, after,
                           np.repeat(stack[n - 1:n], context - len(after), axis=0)])


def localize_chunk(localizer: Localizer, photons: torch.Tensor, first: int, tiles: list[Tile], per_pass: int,
                   superres: bool, image: torch.Tensor | None) -> tuple[pd.DataFrame, torch.Tensor | None]:
    """Rows of frames (F, H, W) in photons (with the localizer's context frames more on each side), tile by
    tile in passes of ``per_pass`` frames, in the order a run without tiles gives; the tiles' images are
    added to ``image`` (the whole frame's fine grid, made at the first image), which is returned."""
    results, context = [], localizer.context_frames
    for tile in tiles:
        part = None
        for i in range(0, len(photons) - 2 * context, per_pass):
            result = localizer.localize_tile(photons[i:i + per_pass + 2 * context], first + i, tile, superres)
            results.append(result)
            if result.image is not None:
                part = result.image if part is None else part + result.image
        if part is not None:
            if image is None:
                u = localizer.upsampling
                image = part.new_zeros(u * tile.frame[0], u * tile.frame[1])
            image[tile.core_in_frame(localizer.upsampling)] += part
    table = pd.concat([r.table for r in results], ignore_index=True)
    if len(tiles) > 1:
        order = np.lexsort((np.concatenate([r.order for r in results]), table["frame"].to_numpy()))
        table = table.iloc[order].reset_index(drop=True)
    return table, image
