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
    header = ",".join(f'"{c}"' for c in out.columns)

    def write(tmp) -> None:
        with open(tmp, "w", newline="") as fh:
            fh.write(header + "\n")
            out.to_csv(fh, index=False, header=False, quoting=csv.QUOTE_MINIMAL, float_format="%.3f")

    write_atomic(path, write)
