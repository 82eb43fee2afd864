"""Pupil phase masks: load pixel arrays (.mat/.npy/.npz/.tif) and resample them onto the pupil grid.

A mask pixel of pitch p in the Fourier plane of a 4f relay (focal length f) behind magnification M
covers M·p/(λ·f) of sample-plane spatial frequency (PHYSICS.md, "mask scaling").
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepsmlm.errors import UserInputError

DATA_ENV = "DEEPSMLM_DATA"


def shared_data_root() -> Path | None:
    """The reference-data folder: $DEEPSMLM_DATA, else the nearest ``shared/data`` above cwd or this package."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    for start in (Path.cwd(), Path(__file__).resolve()):
        for parent in [start, *start.parents]:
            cand = parent / "shared" / "data"
            if cand.is_dir():
                return cand
    return None


def resolve_data_path(name: str, base: Path | None = None) -> Path:
    """Turn ``data:rel/path`` into a path under the shared data root, ``pkg:name`` into a mask shipped in
    the package (``deepsmlm/masks``); other paths relative to ``base``."""
    if name.startswith("pkg:"):
        return Path(str(resources.files("deepsmlm.masks") / name[4:]))
    if name.startswith("data:"):
        root = shared_data_root()
        if root is None:
            raise UserInputError(f"{name}: reference data folder not found; set {DATA_ENV} to the folder holding it")
        return root / name[5:]
    path = Path(name).expanduser()
    return path if path.is_absolute() or base is None else base / path


def load_mask_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Read a 2D phase array (radians) from .mat, .npy, .npz or .tif; one-line errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: mask file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".mat":
            from scipy.io import loadmat

            data = {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
            arr = _pick(data, key, path)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arr = _pick(dict(z), key, path)
        elif suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            raise UserInputError(f"{path}: unsupported mask format '{suffix}' (use .mat, .npy, .npz or .tif)")
    except UserInputError:
        raise
    except Exception as err:  # unreadable or corrupt file
        raise UserInputError(f"{path}: cannot read mask ({type(err).__name__}: {err})") from None
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise UserInputError(f"{path}: mask must be a 2D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise UserInputError(f"{path}: mask must hold real phase values in radians, got {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise UserInputError(f"{path}: mask contains NaN or infinite values")
    return arr.astype(np.float64)


def _pick(data: dict, key: str | None, path: Path) -> np.ndarray:
    if key is not None:
        if key not in data:
            raise UserInputError(f"{path}: no variable '{key}' (has: {', '.join(data)})")
        return data[key]
    arrays = [k for k, v in data.items() if np.ndim(v) == 2]
    if len(arrays) != 1:
        raise UserInputError(f"{path}: give the mask variable name (2D variables: {', '.join(arrays) or 'none'})")
    return data[arrays[0]]


def mask_frequency_step(pixel_pitch_um: float, magnification: float, focal_length_mm: float,
                        wavelength_nm: float) -> float:
    """Sample-plane spatial frequency covered by one mask pixel, in 1/nm: M·p/(λ·f)."""
    return magnification * pixel_pitch_um * 1e3 / (wavelength_nm * focal_length_mm * 1e6)


def resample_mask(mask: np.ndarray | torch.Tensor, mask_step: float, grid_n: int, grid_step: float) -> torch.Tensor:
    """Place a mask (radians, centre at its middle) onto an N×N pupil grid of ``grid_step`` 1/nm per pixel
    (float64; differentiable in a tensor ``mask``).

    The mask's own pixel scale ``mask_step`` (1/nm) is honoured, not stretched to fit. Where a mask pixel
    is q grid pixels (q = 1, 3, 5 …, to within 0.05 px at the mask edge) each becomes a q×q block,
    exact for a pixelated SLM or plate (centred, cropped or zero-padded); otherwise exp(iφ) is
    bilinearly resampled and its angle taken, so phase wraps do not smear.
    """
    h, w = mask.shape
    ratio = grid_step / mask_step  # mask pixels per grid pixel
    q = max(1, round(1 / ratio))
    if q % 2 and abs(ratio * q - 1.0) * max(h, w) / 2 < 0.05:
        block = torch.as_tensor(mask, dtype=torch.float64)
        return _centre_copy(block.repeat_interleave(q, 0).repeat_interleave(q, 1), grid_n)
    field = torch.polar(torch.ones(h, w, dtype=torch.float64), torch.as_tensor(mask, dtype=torch.float64))
    k = torch.arange(grid_n, dtype=torch.float64) - grid_n // 2
    # mask pixel coordinates of each grid pixel, then normalised to [-1, 1] (align_corners=True)
    cols = (k * ratio + (w - 1) / 2) / (w - 1) * 2 - 1
    rows = (k * ratio + (h - 1) / 2) / (h - 1) * 2 - 1
    gy, gx = torch.meshgrid(rows, cols, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1)[None]
    ri = torch.stack([field.real, field.imag])[None]
    out = F.grid_sample(ri, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    return torch.atan2(out[1], out[0])


def _centre_copy(mask: torch.Tensor, n: int) -> torch.Tensor:
    """Centre a mask on an n×n grid (grid centre n//2 receives mask pixel h//2), cropping or zero-padding."""
    out = torch.zeros(n, n, dtype=mask.dtype)
    h, w = mask.shape
    r0, c0 = n // 2 - h // 2, n // 2 - w // 2
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + h, n), min(c0 + w, n)
    out[rs:re, cs:ce] = mask[rs - r0:re - r0, cs - c0:ce - c0]
    return out
