"""ThunderSTORM CSV: quoted headers with units, 1-based frames, nm and photons.

Reading takes what ThunderSTORM and its users write: quoted or plain headers; lengths in nm, µm or px
(px needs the pixel size); 2D files without z (z = 0); ``uncertainty [nm]`` or ``uncertainty_xy [nm]``
(→ sigma_x_nm = sigma_y_nm), ``uncertainty_z [nm]`` (→ sigma_z_nm). Columns it does not know stay in
the table under their header, a length converted to nm and renamed ``name [nm]``. Writing gives
``"id","frame","x [nm]","y [nm]","z [nm]","intensity [photon]","offset [photon]","uncertainty_xy [nm]",
"uncertainty_z [nm]"`` (plus ``"uncertainty_x [nm]","uncertainty_y [nm]"`` when they differ), ``"prob"``,
``"color"``, ``"color_prob"`` when present and the extra columns; values unquoted, unknown ones ``NaN``.

The CSV reader and writer here are shared with the EPFL challenge format (``io/challenge.py``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import atomic_path
from deepsmlm.io.streaming import deferred_writer, empty_table
from deepsmlm.localizations import (Localizations, Metadata, checked_localizations, lateral_sigma_nm, normalise_table,
                                    px_to_nm)

# canonical column -> ThunderSTORM header, in the order written
HEADERS = {
    "id": "id",
    "frame": "frame",
    "x_nm": "x [nm]",
    "y_nm": "y [nm]",
    "z_nm": "z [nm]",
    "photons": "intensity [photon]",
    "bg": "offset [photon]",
    "sigma_xy_nm": "uncertainty_xy [nm]",
    "sigma_z_nm": "uncertainty_z [nm]",
    "sigma_x_nm": "uncertainty_x [nm]",
    "sigma_y_nm": "uncertainty_y [nm]",
    "prob": "prob",
    "color": "color",
    "color_prob": "color_prob",
}
READ = {**{h: c for c, h in HEADERS.items()}, "uncertainty [nm]": "sigma_xy_nm"}
PROBABILITIES = ("prob", "color_prob")  # written to 6 decimals; other known floats (nm, photons) to 3
NM_PER = {"nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3}  # length units besides px
UNIT = re.compile(r"^(?P<name>.*?)\s*\[(?P<unit>[^\]]+)\]$")


def read_csv_columns(path: str | os.PathLike) -> pd.DataFrame:
    """Every column of a CSV file with a header line (quoted or plain); all-empty columns as float NaN.

    One-line ``UserInputError`` for a missing, empty or malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    with open(path, "rb") as fh:
        if not fh.read(4096).strip():
            raise UserInputError(f"{path}: empty file (no header line)")
    try:
        table = pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserInputError(f"{path}: unreadable CSV ({reason})") from None
    schema = pa.schema([pa.field(f.name, pa.float64()) if pa.types.is_null(f.type) else f for f in table.schema])
    return table.cast(schema).to_pandas()


@contextmanager
def csv_writer(path: str | os.PathLike, headers: list[str], quote_header: bool
               ) -> Iterator[Callable[[list[np.ndarray]], None]]:
    """``append(values)``: rows (one array per header) appended chunk by chunk to a CSV file whose header
    line is ``headers``; numbers unquoted, NaN as ``NaN``, shortest exact floats. The file is written into
    a temporary sibling that replaces ``path`` when the block ends without error."""
    header = ",".join(f'"{h}"' if quote_header else h for h in headers)
    names = [str(i) for i in range(len(headers))]
    options = pacsv.WriteOptions(include_header=False, null_string="NaN")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write((header + "\n").encode())

        def append(values: list[np.ndarray]) -> None:
            table = pa.table([pa.array(np.asarray(v), from_pandas=True) for v in values], names=names)
            pacsv.write_csv(table, fh, options)

        yield append


def write_csv(path: str | os.PathLike, columns: dict[str, np.ndarray], quote_header: bool) -> Path:
    """Write columns (header → values) atomically, as :func:`csv_writer` does."""
    with csv_writer(path, list(columns), quote_header) as append:
        append(list(columns.values()))
    return Path(path)


def thunderstorm_values(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """ThunderSTORM header → values of a table's columns, in its order: canonical names become
    ThunderSTORM headers (``HEADERS``), other columns keep their names; frames 0-based in ``table``, 1-based
    in the result; known floats rounded to 3 decimals (nm, photons) or 6 (probabilities), others exact."""
    out = {}
    for c in table.columns:
        values = table[c].to_numpy()
        if c == "frame":
            values = values.astype(np.int64) + 1
        elif c in HEADERS and values.dtype.kind == "f":
            values = np.round(values, 6 if c in PROBABILITIES else 3)
        out[HEADERS.get(c, c)] = values
    return out


def write_thunderstorm_csv(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    """Write a table's columns, in its order, as ThunderSTORM CSV (see :func:`thunderstorm_values`)."""
    return write_csv(path, thunderstorm_values(table), quote_header=True)


def separate_xy(table: pd.DataFrame) -> bool:
    """Whether sigma_x_nm and sigma_y_nm differ in any row (then both are written besides their RMS)."""
    return not np.array_equal(table["sigma_x_nm"].to_numpy(), table["sigma_y_nm"].to_numpy(), equal_nan=True)


def locs_columns(table: pd.DataFrame, separate: bool, first_id: int = 1) -> pd.DataFrame:
    """The columns ``write_thunderstorm`` writes for a canonical table: ``id`` (the table's, else running
    from ``first_id``), frame … bg, ``sigma_xy_nm`` (RMS of sigma_x_nm and sigma_y_nm), sigma_z_nm, both
    sigmas when ``separate``, then the other columns."""
    t = table
    sx, sy = t["sigma_x_nm"].to_numpy(), t["sigma_y_nm"].to_numpy()
    cols = {"id": t["id"].to_numpy() if "id" in t.columns else np.arange(first_id, first_id + len(t))}
    cols.update({c: t[c].to_numpy() for c in ("frame", "x_nm", "y_nm", "z_nm", "photons", "bg")})
    cols["sigma_xy_nm"] = lateral_sigma_nm(t)
    cols["sigma_z_nm"] = t["sigma_z_nm"].to_numpy()
    if separate:
        cols.update(sigma_x_nm=sx, sigma_y_nm=sy)
    cols.update({c: t[c].to_numpy() for c in t.columns if c not in cols and c not in ("sigma_x_nm", "sigma_y_nm")})
    return pd.DataFrame(cols)


@contextmanager
def thunderstorm_rows(path: str | os.PathLike, separate: bool) -> Iterator[Callable[[pd.DataFrame], None]]:
    """``write(table)``: localization tables appended chunk by chunk as one ThunderSTORM CSV (ids running
    on across chunks), ``separate`` deciding the ``uncertainty_x/y`` columns; the header comes from the
    first table (an empty canonical table when none came). Atomic, as :func:`csv_writer`."""
    with ExitStack() as stack:
        append, rows = None, 0

        def write(table: pd.DataFrame) -> None:
            nonlocal append, rows
            t = normalise_table(table)
            values = thunderstorm_values(locs_columns(t, separate, rows + 1))
            if append is None:
                append = stack.enter_context(csv_writer(path, list(values), quote_header=True))
            append(list(values.values()))
            rows += len(t)

        yield write
        if append is None:
            write(empty_table())


def write_thunderstorm(path: str | os.PathLike, locs: Localizations) -> Path:
    """Write localizations as ThunderSTORM CSV (see the module docstring for the columns).

    ``uncertainty_xy`` is the RMS of sigma_x_nm and sigma_y_nm (their common value when equal); when they
    differ anywhere, both are also written as ``uncertainty_x [nm]`` and ``uncertainty_y [nm]``.
    """
    with thunderstorm_rows(path, separate_xy(locs.table)) as write:
        write(locs.table)
    return Path(path)


def thunderstorm_writer(path: str | os.PathLike, meta: Metadata | None = None
                        ) -> AbstractContextManager[Callable[[pd.DataFrame], None]]:
    """``write(table)`` streaming into a ThunderSTORM CSV, the same bytes as ``write_thunderstorm`` of all
    tables together: rows wait in a spool until one has sigma_x_nm ≠ sigma_y_nm (or the stream ends), which
    decides the header. ``meta`` is not stored (the format has no place for it)."""
    return deferred_writer(lambda separate: thunderstorm_rows(path, separate), separate_xy, Path(path))


def read_thunderstorm(path: str | os.PathLike, pixel_size_nm: float | None = None) -> Localizations:
    """Read a ThunderSTORM CSV (frames 1-based in the file, 0-based in the table; px columns need the pixel size)."""
    return from_columns(read_csv_columns(path), str(path), pixel_size_nm)


def from_columns(raw: pd.DataFrame, source: str, pixel_size_nm: float | None = None) -> Localizations:
    """The localizations held by the columns of a ThunderSTORM CSV read from ``source``."""
    table: dict[str, object] = {}
    labels = dict(HEADERS)
    for header in raw.columns:
        name, values = _in_nm(header, raw[header], source, pixel_size_nm)
        target = READ.get(name, name)
        if target in table:  # a second spelling of a known quantity stays as an extra column
            target = name
        table[target], labels[target] = values, header
    if "sigma_xy_nm" in table:
        xy = table.pop("sigma_xy_nm")
        table.setdefault("sigma_x_nm", xy)
        table.setdefault("sigma_y_nm", xy)
    meta = Metadata(pixel_size_nm=pixel_size_nm, source=source)
    return checked_localizations(pd.DataFrame(table, index=raw.index), meta, source, labels, first_frame=1)


def _in_nm(header: str, values: pd.Series, source: str, pixel_size_nm: float | None) -> tuple[str, pd.Series]:
    """``(header, values)`` with a length in px or µm converted to nm and its header renamed ``name [nm]``."""
    m = UNIT.match(header)
    if m is None or m["unit"] == "nm" or (m["unit"] != "px" and m["unit"] not in NM_PER):
        return header, values
    if not pd.api.types.is_numeric_dtype(values):
        raise UserInputError(f"{source}: column {header} is not numeric")
    if m["unit"] == "px":
        if pixel_size_nm is None:
            raise UserInputError(f"{source}: column {header} is in pixels but the pixel size is unknown; "
                                 f"give --pixel-size-nm")
        nm = px_to_nm(values.to_numpy(), pixel_size_nm)
    else:
        nm = values.to_numpy(dtype=np.float64) * NM_PER[m["unit"]]
    return f"{m['name']} [nm]", pd.Series(nm, index=values.index)
