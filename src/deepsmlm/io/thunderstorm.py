"""ThunderSTORM CSV: quoted headers with units, 1-based frames, nm and photons."""

from __future__ import annotations

import csv
import os

import pandas as pd

from deepsmlm.io.atomic import write_atomic

# canonical column -> ThunderSTORM header
HEADERS = {
    "id": "id",
    "frame": "frame",
    "x_nm": "x [nm]",
    "y_nm": "y [nm]",
    "z_nm": "z [nm]",
    "photons": "intensity [photon]",
    "bg": "offset [photon]",
}


def write_thunderstorm_csv(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write a table with 0-based ``frame`` and canonical columns as ThunderSTORM CSV (frames 1-based)."""
    out = pd.DataFrame({HEADERS.get(c, c): table[c] for c in table.columns})
    out["frame"] = table["frame"].astype("int64") + 1
    write_atomic(path, lambda p: out.to_csv(p, index=False, quoting=csv.QUOTE_NONNUMERIC, float_format="%.3f"))
