"""Streaming localization writers: chunk by chunk, the same file as the one-shot writer of the whole table."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from deepsmlm.io.localization_files import localization_writer, write_localizations
from deepsmlm.io.picasso import yaml_path
from deepsmlm.localizations import Localizations, Metadata

META = Metadata(pixel_size_nm=100.0, image_shape=(64, 80), n_frames=9, config={"model": {"threshold": 0.5}},
                source="frames.tif")


def chunk(first_frame: int, n: int, seed: int, separate: bool = False, z: bool = False) -> pd.DataFrame:
    """``n`` rows in frames first_frame, first_frame + 1 (an extra column too); sigma_x = sigma_y unless
    ``separate``; z = 0 unless ``z``."""
    rng = np.random.default_rng(seed)
    sx = rng.uniform(5, 30, n)
    return pd.DataFrame({
        "frame": first_frame + np.arange(n) % 2, "x_nm": rng.uniform(0, 8000, n), "y_nm": rng.uniform(0, 6400, n),
        "z_nm": rng.uniform(-400, 400, n) if z else np.zeros(n), "photons": rng.uniform(100, 5000, n),
        "bg": rng.uniform(5, 50, n), "prob": rng.uniform(0, 1, n), "sigma_x_nm": sx,
        "sigma_y_nm": sx * rng.uniform(0.5, 2, n) if separate else sx, "sigma_z_nm": np.full(n, np.nan),
        "psf_sigma_nm": rng.uniform(90, 140, n)})


# the layout-deciding row (x ≠ y uncertainty, z ≠ 0) comes late, never, or first; one chunk is empty
CHUNKINGS = {
    "decided late": [chunk(0, 5, 1), chunk(2, 0, 2), chunk(4, 7, 3, separate=True, z=True), chunk(6, 4, 4)],
    "never decided": [chunk(0, 6, 5), chunk(2, 0, 6), chunk(4, 3, 7)],
    "decided first": [chunk(0, 4, 8, separate=True, z=True), chunk(2, 5, 9)],
    "only empty": [chunk(0, 0, 10)],
}


def stream(path, tables, fmt=None):
    with localization_writer(path, META, fmt) as write:
        for t in tables:
            write(t)
    return path


def one_shot(path, tables, fmt=None):
    return write_localizations(path, Localizations(pd.concat(tables, ignore_index=True), META), fmt)


@pytest.mark.parametrize("case", CHUNKINGS)
@pytest.mark.parametrize("name,fmt", [("l.csv", None), ("act.csv", "challenge")])
def test_streamed_csv_is_byte_identical(tmp_path, case, name, fmt):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    streamed = stream(tmp_path / "a" / name, CHUNKINGS[case], fmt).read_bytes()
    assert streamed == one_shot(tmp_path / "b" / name, CHUNKINGS[case], fmt).read_bytes()
    if fmt is None and case != "only empty":
        separate = b'"uncertainty_x [nm]"' in streamed.splitlines()[0]
        assert separate == (case != "never decided")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [name]  # no spool or part file left


@pytest.mark.parametrize("case", CHUNKINGS)
def test_streamed_picasso_has_the_same_records_and_yaml(tmp_path, case):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a = stream(tmp_path / "a" / "l.hdf5", CHUNKINGS[case])
    b = one_shot(tmp_path / "b" / "l.hdf5", CHUNKINGS[case])
    with h5py.File(a) as fa, h5py.File(b) as fb:
        ra, rb = fa["locs"][()], fb["locs"][()]
    assert ra.dtype == rb.dtype and np.array_equal(ra, rb)
    assert ("z" in ra.dtype.names) == (case in ("decided late", "decided first"))
    assert yaml_path(a).read_text() == yaml_path(b).read_text()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["l.hdf5", "l.yaml"]


@pytest.mark.parametrize("case", CHUNKINGS)
def test_streamed_parquet_has_the_same_table_and_metadata(tmp_path, case):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a = pq.read_table(stream(tmp_path / "a" / "l.parquet", CHUNKINGS[case]))
    b = pq.read_table(one_shot(tmp_path / "b" / "l.parquet", CHUNKINGS[case]))
    assert a.equals(b) and a.schema.metadata == b.schema.metadata


@pytest.mark.parametrize("name", ["l.csv", "l.hdf5", "l.parquet"])
def test_a_failed_stream_leaves_no_file(tmp_path, name):
    (tmp_path / name).write_text("the user's old file")
    with pytest.raises(RuntimeError):
        with localization_writer(tmp_path / name, META) as write:
            write(chunk(0, 3, 1, separate=True, z=True))
            write(chunk(2, 3, 2))
            raise RuntimeError("localizer failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert (tmp_path / name).read_text() == "the user's old file"
