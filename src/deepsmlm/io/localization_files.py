"""Localization files in any supported format, chosen by name or by the file's extension.

``.csv`` → ThunderSTORM (read as the EPFL challenge format when its header names ``xnano``),
``.hdf5``/``.h5`` → Picasso, ``.parquet`` → Parquet. ``format="challenge"`` writes the challenge CSV.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

from deepsmlm.errors import UserInputError
from deepsmlm.io import challenge, thunderstorm
from deepsmlm.io.parquet import parquet_writer, read_parquet, write_parquet
from deepsmlm.io.picasso import picasso_writer, read_picasso, write_picasso
from deepsmlm.io.streaming import TableWriter
from deepsmlm.localizations import Localizations, Metadata

EXTENSIONS = {".csv": "thunderstorm", ".hdf5": "picasso", ".h5": "picasso", ".parquet": "parquet"}
WRITERS = {"thunderstorm": thunderstorm.write_thunderstorm, "picasso": write_picasso,
           "challenge": challenge.write_challenge, "parquet": write_parquet}
STREAMING_WRITERS = {"thunderstorm": thunderstorm.thunderstorm_writer, "picasso": picasso_writer,
                     "challenge": challenge.challenge_writer, "parquet": parquet_writer}


def format_of(path: str | os.PathLike) -> str:
    """The format a file name implies by its extension; one-line error for an unknown one."""
    ext = Path(path).suffix.lower()
    if ext not in EXTENSIONS:
        raise UserInputError(f"{path}: unknown localization file extension {ext or '(none)'!r}; "
                             f"use {', '.join(EXTENSIONS)}")
    return EXTENSIONS[ext]


def read_localizations(path: str | os.PathLike, pixel_size_nm: float | None = None) -> Localizations:
    """Read a localization file (nm, photons, 0-based frames). ``pixel_size_nm`` is needed for files in
    pixels that do not state it (ThunderSTORM ``x [px]``, Picasso without its YAML) and, when given,
    replaces the file's own value."""
    fmt = format_of(path)
    if fmt == "thunderstorm":
        columns = thunderstorm.read_csv_columns(path)
        module = challenge if challenge.is_challenge(columns.columns) else thunderstorm
        return module.from_columns(columns, str(path), pixel_size_nm)
    reader = read_picasso if fmt == "picasso" else read_parquet
    return reader(path, pixel_size_nm)


def output_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The format ``path`` will be written in: ``format`` when given, else the one its extension implies;
    one-line error for an unknown format or extension (checked before any work)."""
    if format is None:
        return format_of(path)
    if format not in WRITERS:
        raise UserInputError(f"{path}: --format {format!r} is not a localization format; choose "
                             f"{', '.join(WRITERS)}")
    return format


def write_localizations(path: str | os.PathLike, locs: Localizations, format: str | None = None) -> Path:
    """Write ``locs`` as ``format`` (thunderstorm, picasso, challenge, parquet; default from the
    extension, ``.csv`` → thunderstorm) atomically; returns the path written."""
    return WRITERS[output_format(path, format)](path, locs)


def localization_writer(path: str | os.PathLike, meta: Metadata, format: str | None = None
                        ) -> AbstractContextManager[TableWriter]:
    """``with localization_writer(path, meta) as write: write(table)…``: tables (canonical columns, 0-based
    frames) streamed into one file as ``format`` (as :func:`write_localizations`), which appears atomically
    when the block ends without error and holds what ``write_localizations`` writes for all tables together
    (the same bytes for CSV, the same values for HDF5 and Parquet). Memory stays flat in the rows."""
    return STREAMING_WRITERS[output_format(path, format)](path, meta)
