"""How much of the frame a PSF occupies: the radius around the emitter that holds a fraction of its light
(the benchmarks' PSF footprint)."""

from __future__ import annotations

import numpy as np


def energy_radius_nm(stack: np.ndarray, pixel_nm: float, fraction: float = 0.9) -> np.ndarray:
    """(Z,) radii (nm) around the patch centre (the emitter) holding ``fraction`` of each (P, P) image's
    energy in the patch, for a (Z, P, P) stack of a centred emitter's PSFs."""
    stack = np.asarray(stack, dtype=np.float64)
    p = stack.shape[-1]
    r = np.hypot(*np.meshgrid(np.arange(p) - p // 2, np.arange(p) - p // 2)).ravel()
    order = np.argsort(r, kind="stable")
    cumulative = np.cumsum(stack.reshape(len(stack), -1)[:, order], axis=1)
    cumulative /= cumulative[:, -1:]
    first = np.array([np.searchsorted(c, fraction) for c in cumulative])
    return r[order][first] * pixel_nm
