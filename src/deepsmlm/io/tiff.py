"""Writing image stacks (reading lives with the streaming reader)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np
import tifffile

from deepsmlm.io.atomic import write_atomic
from deepsmlm.io.outputs import SOFTWARE


def write_stack(path: str | os.PathLike, frames: np.ndarray, pixel_size_nm: float | None = None) -> None:
    """Write a (F, H, W) stack as one multi-page TIFF, atomically (ImageJ-compatible, BigTIFF when large)."""
    frames = np.ascontiguousarray(frames)
    big = frames.nbytes > 2**31
    kwargs: dict = {"photometric": "minisblack", **({"bigtiff": True} if big else {"imagej": frames.dtype != np.float64})}
    if pixel_size_nm and not big:
        res = 1e3 / pixel_size_nm  # pixels per µm
        kwargs.update(resolution=(res, res), metadata={"unit": "um", "axes": "TYX"})
    write_atomic(path, lambda p: tifffile.imwrite(p, frames, **kwargs))


def write_z_stack(path: str | os.PathLike, planes: np.ndarray, z_nm: Sequence[float], pixel_size_nm: float,
                  info: Mapping[str, object] | None = None) -> None:
    """Write (Z, H, W) planes as a float32 ImageJ hyperstack, one slice per z, atomically.

    Metadata: pixel size as the resolution (µm), the z step as ImageJ ``spacing`` (µm), each slice labelled
    ``z = … nm``, the ImageJ ``Info`` field holding JSON with ``z_nm`` (every plane's z, nm),
    ``pixel_size_nm`` and the entries of ``info``, and Software "deepsmlm psf" (a later run may replace it).
    """
    z = [float(v) for v in z_nm]
    res = 1e3 / pixel_size_nm  # pixels per µm
    metadata: dict = {"axes": "ZYX", "unit": "um", "Labels": [f"z = {v:+.1f} nm" for v in z],
                      "Info": json.dumps({"z_nm": z, "pixel_size_nm": pixel_size_nm, **(info or {})})}
    if len(z) > 1:
        metadata["spacing"] = (z[1] - z[0]) / 1e3
    data = np.ascontiguousarray(planes, dtype=np.float32)
    write_atomic(path, lambda p: tifffile.imwrite(p, data, imagej=True, resolution=(res, res), metadata=metadata,
                                                      software=f"{SOFTWARE} psf"))
