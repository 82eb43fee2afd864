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
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import write_atomic
from deepsmlm.localizations import Localizations, Metadata, checked_localizations, px_to_nm

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


def write_csv(path: str | os.PathLike, columns: dict[str, np.ndarray], quote_header: bool) -> Path:
    """Write columns (header → values) atomically: numbers unquoted, NaN as ``NaN``, shortest exact floats."""
    header = ",".join(f'"{h}"' if quote_header else h for h in columns)
    table = pa.table([pa.array(np.asarray(v), from_pandas=True) for v in columns.values()],
                     names=[str(i) for i in range(len(columns))])

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write((header + "\n").encode())
            pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, null_string="NaN"))

    return write_atomic(path, write)


def write_thunderstorm_csv(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    """Write a table's columns, in its order, as ThunderSTORM CSV: canonical names become ThunderSTORM
    headers (``HEADERS``), other columns keep their names; frames 0-based in ``table``, 1-based in the
    file; known floats rounded to 3 decimals (nm, photons) or 6 (probabilities), others written exactly."""
    out = {}
    for c in table.columns:
        values = table[c].to_numpy()
        if c == "frame":
            values = values.astype(np.int64) + 1
        elif c in HEADERS and values.dtype.kind == "f":
            values = np.round(values, 6 if c in PROBABILITIES else 3)
        out[HEADERS.get(c, c)] = values
    return write_csv(path, out, quote_header=True)


def write_thunderstorm(path: str | os.PathLike, locs: Localizations) -> Path:
    """Write localizations as ThunderSTORM CSV (see the module docstring for the columns).

    ``uncertainty_xy`` is the RMS of sigma_x_nm and sigma_y_nm (their common value when equal); when they
    differ anywhere, both are also written as ``uncertainty_x [nm]`` and ``uncertainty_y [nm]``.
    """
    t = locs.table
    sx, sy = t["sigma_x_nm"].to_numpy(), t["sigma_y_nm"].to_numpy()
    cols = {"id": t["id"].to_numpy() if "id" in t.columns else np.arange(1, len(t) + 1)}
    cols.update({c: t[c].to_numpy() for c in ("frame", "x_nm", "y_nm", "z_nm", "photons", "bg")})
    cols["sigma_xy_nm"] = np.sqrt((sx**2 + sy**2) / 2)
    cols["sigma_z_nm"] = t["sigma_z_nm"].to_numpy()
    if not np.array_equal(sx, sy, equal_nan=True):
        cols.update(sigma_x_nm=sx, sigma_y_nm=sy)
    cols.update({c: t[c].to_numpy() for c in t.columns if c not in cols and c not in ("sigma_x_nm", "sigma_y_nm")})
    return write_thunderstorm_csv(path, pd.DataFrame(cols))


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
