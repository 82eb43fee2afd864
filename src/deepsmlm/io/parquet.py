"""Parquet: the canonical table as is (nm, photons, 0-based frames, every column and dtype), with the
``Metadata`` as JSON under the key ``deepsmlm`` of the schema metadata. Round trips are exact."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import write_atomic
from deepsmlm.localizations import Localizations, Metadata, checked_localizations

META_KEY = b"deepsmlm"


def write_parquet(path: str | os.PathLike, locs: Localizations) -> Path:
    """Write the table and its metadata atomically."""
    table = pa.Table.from_pandas(locs.table, preserve_index=False)
    table = table.replace_schema_metadata({**table.schema.metadata, META_KEY: locs.meta.to_json().encode()})
    return write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def read_parquet(path: str | os.PathLike, pixel_size_nm: float | None = None) -> Localizations:
    """Read a table written by ``write_parquet`` (or any Parquet file with frame, x_nm, y_nm columns).

    ``pixel_size_nm``, when given, replaces the stored pixel size.
    """
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserInputError(f"{path}: unreadable Parquet file ({reason})") from None
    stored = (table.schema.metadata or {}).get(META_KEY)
    meta = Metadata.from_dict(json.loads(stored)) if stored else Metadata(source=str(path))
    if pixel_size_nm is not None:
        meta = replace(meta, pixel_size_nm=pixel_size_nm)
    return checked_localizations(table.to_pandas(), meta, str(path))
