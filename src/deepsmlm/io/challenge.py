"""EPFL SMLM challenge activations CSV: ``Ground-truth,frame,xnano,ynano,znano,intensity``.

One row per emitter: ``Ground-truth`` is its 1-based index (kept as column ``id``), frames are 1-based,
positions nm, intensity photons. Files without ``znano`` read as 2D (z = 0); other columns are kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from deepsmlm.io.thunderstorm import csv_writer, read_csv_columns
from deepsmlm.localizations import Localizations, Metadata, checked_localizations, normalise_table

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


@contextmanager
def challenge_writer(path: str | os.PathLike, meta: Metadata | None = None
                     ) -> Iterator[Callable[[pd.DataFrame], None]]:
    """``write(table)``: localization tables appended chunk by chunk as one activations CSV (nm and photons
    to 3 decimals; ``Ground-truth`` the table's ``id``, else running 1, 2, … across chunks); written
    atomically. ``meta`` is not stored (the format has no place for it)."""
    rows = 0
    with csv_writer(path, list(HEADERS.values()), quote_header=False) as append:

        def write(table: pd.DataFrame) -> None:
            nonlocal rows
            t = normalise_table(table)
            ids = t["id"].to_numpy() if "id" in t.columns else np.arange(rows + 1, rows + len(t) + 1)
            append([ids, t["frame"].to_numpy() + 1,
                    *(np.round(t[c].to_numpy(), 3) for c in ("x_nm", "y_nm", "z_nm", "photons"))])
            rows += len(t)

        yield write


def write_challenge(path: str | os.PathLike, locs: Localizations) -> Path:
    """Write the challenge columns (see :func:`challenge_writer`)."""
    with challenge_writer(path) as write:
        write(locs.table)
    return Path(path)
