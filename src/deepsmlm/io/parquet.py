"""Parquet: the canonical table as is (nm, photons, 0-based frames, every column and dtype), with the
``Metadata`` as JSON under the key ``deepsmlm`` of the schema metadata. Round trips are exact."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import atomic_path
from deepsmlm.io.streaming import empty_table
from deepsmlm.localizations import Localizations, Metadata, checked_localizations, normalise_table

META_KEY = b"deepsmlm"


@contextmanager
def parquet_writer(path: str | os.PathLike, meta: Metadata) -> Iterator[Callable[[pd.DataFrame], None]]:
    """``write(table)``: localization tables appended chunk by chunk (one row group or more each) to a
    Parquet file whose schema comes from the first table; written atomically."""
    with atomic_path(path) as tmp, ExitStack() as stack:
        writer: pq.ParquetWriter | None = None

        def write(table: pd.DataFrame) -> None:
            nonlocal writer
            arrow = pa.Table.from_pandas(normalise_table(table), preserve_index=False)
            arrow = arrow.replace_schema_metadata({**arrow.schema.metadata, META_KEY: meta.to_json().encode()})
            if writer is None:
                writer = stack.enter_context(pq.ParquetWriter(tmp, arrow.schema))
            writer.write_table(arrow)

        yield write
        if writer is None:
            write(empty_table())


def write_parquet(path: str | os.PathLike, locs: Localizations) -> Path:
    """Write the table and its metadata atomically."""
    with parquet_writer(path, locs.meta) as write:
        write(locs.table)
    return Path(path)


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
