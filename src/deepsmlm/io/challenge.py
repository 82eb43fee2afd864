"""EPFL SMLM challenge activations CSV: ``Ground-truth,frame,xnano,ynano,znano,intensity``.

One row per emitter: ``Ground-truth`` is its 1-based index (kept as column ``id``), frames are 1-based,
positions nm, intensity photons. Files without ``znano`` read as 2D (z = 0); other columns are kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from deepsmlm.io.thunderstorm import read_csv_columns, write_csv
from deepsmlm.localizations import Localizations, Metadata, checked_localizations

# canonical column -> challenge header, in the order written
HEADERS = {"id": "Ground-truth", "frame": "frame", "x_nm": "xnano", "y_nm": "ynano", "z_nm": "znano",
           "photons": "intensity"}
READ = {h: c for c, h in HEADERS.items()}


def is_challenge(headers: Iterable[str]) -> bool:
    """True for the header of a challenge activations file (it names ``xnano``)."""
    return "xnano" in headers


def read_challenge(path: str | os.PathLike, pixel_size_nm: float | None = None) -> Localizations:
    """Read an activations CSV (frames 1-based in the file, 0-based in the table)."""
    return from_columns(read_csv_columns(path), str(path), pixel_size_nm)


def from_columns(raw: pd.DataFrame, source: str, pixel_size_nm: float | None = None) -> Localizations:
    """The localizations held by the columns of an activations CSV read from ``source``."""
    table = raw.rename(columns=READ)
    labels = {**HEADERS, **{READ.get(h, h): h for h in raw.columns}}
    meta = Metadata(pixel_size_nm=pixel_size_nm, source=source)
    return checked_localizations(table, meta, source, labels, first_frame=1)


def write_challenge(path: str | os.PathLike, locs: Localizations) -> Path:
    """Write the challenge columns (nm and photons to 3 decimals); ``Ground-truth`` is ``id`` or 1..N."""
    t = locs.table
    out = {"Ground-truth": t["id"].to_numpy() if "id" in t.columns else np.arange(1, len(t) + 1),
           "frame": t["frame"].to_numpy() + 1}
    out.update({HEADERS[c]: np.round(t[c].to_numpy(), 3) for c in ("x_nm", "y_nm", "z_nm", "photons")})
    return write_csv(path, out, quote_header=False)
