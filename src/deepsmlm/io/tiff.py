"""Writing image stacks (reading lives with the streaming reader)."""

from __future__ import annotations

import os

import numpy as np
import tifffile

from deepsmlm.io.atomic import write_atomic


def write_stack(path: str | os.PathLike, frames: np.ndarray, pixel_size_nm: float | None = None) -> None:
    """Write a (F, H, W) stack as one multi-page TIFF, atomically (ImageJ-compatible, BigTIFF when large)."""
    frames = np.ascontiguousarray(frames)
    big = frames.nbytes > 2**31
    kwargs: dict = {"photometric": "minisblack", **({"bigtiff": True} if big else {"imagej": frames.dtype != np.float64})}
    if pixel_size_nm and not big:
        res = 1e3 / pixel_size_nm  # pixels per µm
        kwargs.update(resolution=(res, res), metadata={"unit": "um", "axes": "TYX"})
    write_atomic(path, lambda p: tifffile.imwrite(p, frames, **kwargs))
