"""Beads in a z-stack: find them (or read their positions), check them and cut one crop per bead and slice.

A bead is addressed by the camera pixel (row, col) its crop is centred on; the crop is P×P pixels
(P odd, the base config's ``psf.patch_px``) around it in every slice. Positions from a CSV are x_nm, y_nm
in the project's convention: pixel (r, c) has its centre at ((c + ½)·Δ, (r + ½)·Δ).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from deepsmlm.errors import UserInputError

SATURATED_ADU = 65535
DETECT_FRACTION = 0.2  # a bead's smoothed mean projection reaches this share of the brightest bead's
DETECT_SNR = 10.0  # … and this many noise standard deviations of the smoothed projection


@dataclass(frozen=True)
class BeadCrops:
    """Crops (B, K, P, P) of B beads in K slices (the stack's dtype), their centre pixels (B, 2) as
    (row, col), and the sub-pixel start of each bead's x, y from its crop centre (B, 2), camera px."""

    crops: np.ndarray
    centres: np.ndarray
    start_xy_px: np.ndarray


def find_beads(stack: np.ndarray, patch_px: int, label: str) -> np.ndarray:
    """(B, 2) integer (row, col) centres of the beads of a (K, H, W) stack, sorted by row then column.

    The mean over slices, minus its median, smoothed by a Gaussian of σ = P/4 (one peak per bead, also for
    a double helix's two lobes), has its local maxima above :data:`DETECT_FRACTION` of the highest and
    :data:`DETECT_SNR` noise levels; maxima whose crop would leave the frame are dropped."""
    projection = stack.mean(axis=0, dtype=np.float64)
    projection -= np.median(projection)
    smooth = ndimage.gaussian_filter(projection, patch_px / 4)
    noise = 1.4826 * np.median(np.abs(smooth - np.median(smooth)))
    level = max(DETECT_FRACTION * smooth.max(), DETECT_SNR * noise)
    peaks = (smooth == ndimage.maximum_filter(smooth, size=3)) & (smooth > level)
    rows, cols = np.nonzero(peaks)
    h = patch_px // 2
    height, width = projection.shape
    inside = (rows >= h) & (rows < height - h) & (cols >= h) & (cols < width - h)
    if not inside.any():
        raise UserInputError(f"{label}: no beads found (no bright spot at least {h} px from the frame's edge "
                             f"in the stack's mean projection); give their positions with --beads CSV")
    return np.stack([rows[inside], cols[inside]], axis=1)


def beads_from_csv(path: str | os.PathLike, pixel_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre pixels (B, 2) as (row, col) and sub-pixel x, y offsets from them (B, 2), px, of the beads
    a CSV lists in columns x_nm, y_nm (nm, the project's pixel convention)."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise UserInputError(f"{path}: bead positions file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path}: not a readable CSV of bead positions ({type(err).__name__})") from None
    if not {"x_nm", "y_nm"} <= set(table.columns):
        raise UserInputError(f"{path}: needs columns x_nm and y_nm (bead positions in nm), has "
                             f"{', '.join(map(str, table.columns))}")
    xy = table[["x_nm", "y_nm"]].to_numpy(dtype=np.float64, na_value=np.nan) / pixel_nm - 0.5
    if len(xy) == 0 or not np.isfinite(xy).all():
        raise UserInputError(f"{path}: no bead positions, or positions that are not numbers")
    centre = np.round(xy)
    return centre[:, ::-1].astype(np.int64), xy - centre


def crop_beads(stack: np.ndarray, centres: np.ndarray, patch_px: int, label: str,
               start_xy_px: np.ndarray | None = None) -> BeadCrops:
    """Cut the P×P crops of every bead in every slice of a (K, H, W) stack, after checking that each crop
    lies inside the frame, that no two beads are closer than a crop (their crops would overlap) and that
    no crop holds a saturated pixel (:data:`SATURATED_ADU` in integer data); one-line errors name ``label``."""
    h = patch_px // 2
    height, width = stack.shape[1:]
    for r, c in centres:
        if not (h <= r < height - h and h <= c < width - h):
            raise UserInputError(f"{label}: the bead at pixel (row {r}, col {c}) is within {h} px of the frame's "
                                 f"edge; its {patch_px}×{patch_px} crop would leave the frame")
    gaps = np.abs(centres[:, None, :] - centres[None, :, :]).max(axis=-1) + np.eye(len(centres), dtype=int) * patch_px
    if (gaps < patch_px).any():
        i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
        raise UserInputError(f"{label}: beads at pixels {tuple(map(int, centres[i]))} and "
                             f"{tuple(map(int, centres[j]))} (row, col) are closer than the {patch_px}-px crop; "
                             f"give positions of separate beads with --beads CSV")
    crops = cut(stack, centres, patch_px)
    if np.issubdtype(stack.dtype, np.integer):
        hot = (crops >= SATURATED_ADU).any(axis=(1, 2, 3))
        if hot.any():
            r, c = centres[int(np.argmax(hot))]
            raise UserInputError(f"{label}: the bead at pixel (row {r}, col {c}) is saturated ({SATURATED_ADU} ADU "
                                 f"in its crop); record the beads with less light or gain")
    start = np.zeros((len(centres), 2)) if start_xy_px is None else start_xy_px
    return BeadCrops(crops, centres, start)


def centroid_offsets(crops: np.ndarray) -> np.ndarray:
    """(B, 2) x, y (px) of each bead's centroid from its crop centre, from the mean over slices above the
    crop's median."""
    mean = crops.mean(axis=1, dtype=np.float64)
    mean = np.clip(mean - np.median(mean, axis=(1, 2), keepdims=True), 0, None)
    h = crops.shape[-1] // 2
    u = np.arange(-h, h + 1, dtype=np.float64)
    total = mean.sum(axis=(1, 2)).clip(min=1e-12)
    return np.stack([(mean.sum(axis=1) * u).sum(-1) / total, (mean.sum(axis=2) * u).sum(-1) / total], axis=1)


def cut(images: np.ndarray | torch.Tensor, centres: np.ndarray, patch_px: int) -> np.ndarray | torch.Tensor:
    """The P×P crops (B, …, P, P) around each (row, col) centre of (…, H, W) images (an array or tensor)."""
    h = patch_px // 2
    crops = [images[..., r - h:r + h + 1, c - h:c + h + 1] for r, c in centres]
    return torch.stack(crops) if isinstance(images, torch.Tensor) else np.stack(crops)


def focus_width_nm(images: np.ndarray, step_nm: float, background: float = 0.0) -> float:
    """Axial extent (nm) over which a bead's sharpness, its brightest pixel over its crop's sum (both less
    ``background`` per pixel), stays above half its maximum: (K, P, P) images ``step_nm`` apart. A lower
    bound when the stack ends inside that range."""
    images = images.astype(np.float64) - background
    sharpness = images.max(axis=(1, 2)) / np.clip(images.sum(axis=(1, 2)), 1e-12, None)
    above = np.nonzero(sharpness >= 0.5 * sharpness.max())[0]
    return float((above[-1] - above[0] + 1) * step_nm)
