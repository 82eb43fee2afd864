"""The canonical localization table: one pandas DataFrame in nm and photons, plus metadata.

Columns (always present, in this order): frame (int64, 0-based), x_nm, y_nm, z_nm, photons, bg
(photons per pixel), prob (detection confidence 0–1), sigma_x_nm, sigma_y_nm, sigma_z_nm (per-axis
uncertainty, NaN when unknown). Optional: color (int64 dye index), color_prob, and any extra columns
a format carries. Unit conversions between nm and camera pixels live here and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from deepsmlm.errors import UserInputError

COLUMNS = ("frame", "x_nm", "y_nm", "z_nm", "photons", "bg", "prob", "sigma_x_nm", "sigma_y_nm", "sigma_z_nm")
OPTIONAL = ("color", "color_prob")
DEFAULTS = {"z_nm": 0.0, "photons": np.nan, "bg": np.nan, "prob": 1.0,
            "sigma_x_nm": np.nan, "sigma_y_nm": np.nan, "sigma_z_nm": np.nan}
Values = TypeVar("Values")  # a float, a numpy array or a torch tensor


@dataclass
class Metadata:
    """What a table needs to be interpreted: camera pixel (nm), image shape (rows, cols), frame count."""

    pixel_size_nm: float | None = None
    image_shape: tuple[int, int] | None = None
    n_frames: int | None = None
    config: dict[str, Any] | None = None
    source: str | None = None

    @property
    def field_nm(self) -> tuple[float, float] | None:
        """(width, height) of the camera field (nm), when the image shape and pixel size are known."""
        if self.image_shape is None or self.pixel_size_nm is None:
            return None
        rows, cols = self.image_shape
        return field_size_nm(rows, cols, self.pixel_size_nm)

    def to_dict(self) -> dict[str, Any]:
        return {"pixel_size_nm": self.pixel_size_nm,
                "image_shape": list(self.image_shape) if self.image_shape else None,
                "n_frames": self.n_frames, "config": self.config, "source": self.source}

    def to_json(self) -> str:
        """``to_dict`` as JSON text (numpy scalars written as plain numbers, tuples as lists)."""
        return json.dumps(self.to_dict(), default=lambda o: o.item() if isinstance(o, np.generic) else str(o))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Metadata":
        shape = d.get("image_shape")
        return cls(pixel_size_nm=d.get("pixel_size_nm"), image_shape=tuple(shape) if shape else None,
                   n_frames=d.get("n_frames"), config=d.get("config"), source=d.get("source"))


@dataclass
class Localizations:
    """A localization table with its metadata. ``table`` always holds the canonical columns."""

    table: pd.DataFrame
    meta: Metadata = field(default_factory=Metadata)

    def __post_init__(self) -> None:
        self.table = normalise_table(self.table)

    def __len__(self) -> int:
        return len(self.table)

    @classmethod
    def from_arrays(cls, frame, x_nm, y_nm, z_nm=None, meta: Metadata | None = None, **columns) -> "Localizations":
        """Build a table from 1D arrays (nm, photons, 0-based frames)."""
        data = {"frame": np.asarray(frame), "x_nm": np.asarray(x_nm), "y_nm": np.asarray(y_nm)}
        if z_nm is not None:
            data["z_nm"] = np.asarray(z_nm)
        data.update({k: np.asarray(v) for k, v in columns.items()})
        return cls(pd.DataFrame(data), meta or Metadata())

    @property
    def has_z(self) -> bool:
        """True when any z differs from 0 (a 3D table)."""
        return bool(len(self.table)) and bool(np.any(self.table["z_nm"].to_numpy() != 0))

    @property
    def n_frames(self) -> int:
        """Frames covered: the metadata's count, else one past the last frame index."""
        if self.meta.n_frames is not None:
            return self.meta.n_frames
        return int(self.table["frame"].max()) + 1 if len(self.table) else 0

    def with_table(self, table: pd.DataFrame) -> "Localizations":
        """Same metadata, another table."""
        return replace(self, table=table)

    def shifted(self, dx_nm: float = 0.0, dy_nm: float = 0.0, dz_nm: float = 0.0) -> "Localizations":
        """A copy translated by (dx, dy, dz) nm."""
        t = self.table.copy()
        t["x_nm"] += dx_nm
        t["y_nm"] += dy_nm
        t["z_nm"] += dz_nm
        return self.with_table(t)


def nm_to_px(values_nm, pixel_size_nm: float):
    """nm → camera pixels."""
    return np.asarray(values_nm, dtype=np.float64) / pixel_size_nm


def px_to_nm(values_px, pixel_size_nm: float):
    """camera pixels → nm."""
    return np.asarray(values_px, dtype=np.float64) * pixel_size_nm


def field_size_nm(rows: int, cols: int, pixel_size_nm: float) -> tuple[float, float]:
    """(width, height) nm of a camera field of ``rows`` × ``cols`` pixels."""
    return cols * pixel_size_nm, rows * pixel_size_nm


def pixel_index(values_nm: Values, pixel_size_nm: float) -> Values:
    """nm → index of the camera pixel holding the position, ⌊nm / pixel⌋, as floats (pixel j covers
    [j, j + 1) pixels from the field's edge); numpy arrays or torch tensors, in their own dtype."""
    px = values_nm / pixel_size_nm
    return px.floor() if hasattr(px, "floor") else np.floor(px)


def pixel_centre_px(index: Values) -> Values:
    """Pixel index → the continuous pixel coordinate of its centre, j + ½."""
    return index + 0.5


def pixel_centre_nm(index: Values, pixel_size_nm: float) -> Values:
    """Pixel index → its centre (nm), (j + ½)·pixel; of index 0: half a pixel."""
    return pixel_centre_px(index) * pixel_size_nm


def lateral_sigma_nm(table: pd.DataFrame) -> np.ndarray:
    """The lateral uncertainty (nm) of each row: the RMS of sigma_x_nm and sigma_y_nm, √((σx² + σy²)/2)
    (their common value when equal; ThunderSTORM's ``uncertainty_xy``), NaN where either is unknown."""
    sx, sy = table["sigma_x_nm"].to_numpy(np.float64), table["sigma_y_nm"].to_numpy(np.float64)
    return np.sqrt((sx**2 + sy**2) / 2)


def normalise_table(table: pd.DataFrame) -> pd.DataFrame:
    """Canonical column order and dtypes; missing optional values filled with their defaults."""
    missing = [c for c in ("frame", "x_nm", "y_nm") if c not in table.columns]
    if missing:
        raise UserInputError(f"localization table lacks column(s) {', '.join(missing)}")
    out = pd.DataFrame(index=pd.RangeIndex(len(table)))
    out["frame"] = table["frame"].to_numpy().astype(np.int64)
    for c in COLUMNS[1:]:
        out[c] = table[c].to_numpy().astype(np.float64) if c in table.columns else DEFAULTS.get(c, np.nan)
    for c in table.columns:
        if c not in out.columns:
            out[c] = table[c].to_numpy()
    if "color" in out.columns:
        out["color"] = out["color"].to_numpy().astype(np.int64)
    return out


def checked_localizations(table: pd.DataFrame, meta: Metadata, source: str,
                          labels: dict[str, str] | None = None, first_frame: int = 0) -> Localizations:
    """A ``Localizations`` from a table a reader decoded from ``source``: canonical names, frames numbered
    from ``first_frame`` as in the file (1 for ThunderSTORM), shifted here to 0-based.

    Raises a one-line ``UserInputError`` naming ``source`` for a missing frame/x/y column, a non-numeric
    canonical column, a frame that is not a whole number ≥ ``first_frame``, or a non-finite x or y.
    ``labels`` maps canonical names to the file's own column names for the messages.
    """
    labels = labels or {}
    missing = [labels.get(c, c) for c in ("frame", "x_nm", "y_nm") if c not in table.columns]
    if missing:
        raise UserInputError(f"{source}: missing column(s) {', '.join(missing)}")
    for c in (*COLUMNS, *OPTIONAL):
        if c in table.columns and not pd.api.types.is_numeric_dtype(table[c]):
            raise UserInputError(f"{source}: column {labels.get(c, c)} is not numeric")
    frame = table["frame"].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(frame) | (frame != np.floor(frame)) | (frame < first_frame)
    if bad.any():
        raise UserInputError(f"{source}: invalid {labels.get('frame', 'frame')} in data row {int(np.argmax(bad)) + 1}"
                             f" (whole numbers from {first_frame} expected)")
    for c in ("x_nm", "y_nm"):
        bad = ~np.isfinite(table[c].to_numpy(dtype=np.float64))
        if bad.any():
            raise UserInputError(f"{source}: {int(bad.sum())} non-finite (NaN or inf) value(s) in "
                                 f"{labels.get(c, c)}, first in data row {int(np.argmax(bad)) + 1}")
    table = table.copy(deep=False)
    table["frame"] = frame.astype(np.int64) - first_frame
    return Localizations(table, meta)
