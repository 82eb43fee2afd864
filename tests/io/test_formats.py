"""Localization file formats: golden samples (hand-written under golden/), round trips and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from deepsmlm.errors import UserInputError
from deepsmlm.io.localization_files import read_localizations, write_localizations
from deepsmlm.io.challenge import read_challenge
from deepsmlm.io.thunderstorm import read_thunderstorm, write_thunderstorm_csv
from deepsmlm.localizations import COLUMNS, Localizations, Metadata
from deepsmlm.optics.masks import shared_data_root

GOLDEN = Path(__file__).parent / "golden"
NAN = np.nan

# Picasso Localize's /locs fields, spelled out as Picasso writes them
PICASSO_LOCALIZE_DTYPE = np.dtype([
    ("frame", "<u4"), ("x", "<f4"), ("y", "<f4"), ("photons", "<f4"), ("sx", "<f4"), ("sy", "<f4"),
    ("bg", "<f4"), ("lpx", "<f4"), ("lpy", "<f4"), ("net_gradient", "<f4"), ("likelihood", "<f4"),
    ("iterations", "<i4"),
])
PICASSO_LOCS = np.array([
    (0, 10.25, 3.0, 1500.5, 1.0, 1.25, 12.5, 0.125, 0.25, 8000.0, -120.5, 6),
    (3, 0.5, 20.75, 820.0, 0.875, 0.875, 10.0, 0.1875, 0.1875, 5200.0, -98.25, 9),
], dtype=PICASSO_LOCALIZE_DTYPE)


def assert_canonical(locs: Localizations, expected: dict) -> None:
    """Every canonical column equals ``expected`` (missing keys: the canonical default), extras included."""
    t = locs.table
    assert list(t.columns[:len(COLUMNS)]) == list(COLUMNS)
    assert t["frame"].dtype == np.int64
    n = len(expected["frame"])
    defaults = {"z_nm": 0.0, "prob": 1.0}
    for c in COLUMNS + tuple(k for k in expected if k not in COLUMNS):
        want = np.asarray(expected.get(c, np.full(n, defaults.get(c, NAN))), dtype=float)
        np.testing.assert_array_equal(t[c].to_numpy(dtype=float), want, err_msg=c)
    assert set(t.columns) == set(COLUMNS) | set(expected)


def sample_locs(meta: Metadata | None = None) -> Localizations:
    """A 3D table with every canonical and optional column and one extra."""
    return Localizations.from_arrays(
        frame=[0, 2], x_nm=[1520.25, 60.5], y_nm=[830.5, 6350.75], z_nm=[-212.75, 0.0],
        photons=[2450.5, 3120.75], bg=[48.25, 49.5], prob=[0.875, 0.5], sigma_x_nm=[8.75, 6.5],
        sigma_y_nm=[8.75, 6.5], sigma_z_nm=[21.5, NAN], color=[1, 0], color_prob=[0.75, 0.9375],
        chi2=[1.5, 0.25], meta=meta)


# --- ThunderSTORM ---------------------------------------------------------------------------------

def test_thunderstorm_3d_golden_reads_canonical():
    locs = read_localizations(GOLDEN / "thunderstorm_3d.csv")
    assert_canonical(locs, {
        "frame": [0, 0, 3], "x_nm": [1520.25, 2210.0, 60.5], "y_nm": [830.5, 4075.125, 6350.75],
        "z_nm": [-212.75, 310.0, 0.0], "photons": [2450.5, 1800.0, 3120.75], "bg": [48.25, 51.0, 49.5],
        "sigma_x_nm": [8.75, 11.25, 6.5], "sigma_y_nm": [8.75, 11.25, 6.5], "sigma_z_nm": [21.5, 30.0, 17.25],
        "id": [1, 2, 3], "sigma1 [nm]": [140.5, 152.0, 120.0], "sigma2 [nm]": [165.25, 131.5, 120.0],
        "bkgstd [photon]": [4.5, 4.25, 4.75]})
    assert locs.meta.source == str(GOLDEN / "thunderstorm_3d.csv")


def test_thunderstorm_plain_header_2d_reads_with_z_zero_and_uncertainty():
    locs = read_localizations(GOLDEN / "thunderstorm_2d_plain.csv")
    assert_canonical(locs, {
        "frame": [1, 1], "x_nm": [100.5, 3000.0], "y_nm": [200.25, 250.75], "photons": [900.0, 1200.5],
        "bg": [10.5, 11.0], "sigma_x_nm": [12.5, 9.75], "sigma_y_nm": [12.5, 9.75], "id": [1, 2],
        "sigma [nm]": [110.5, 98.25], "bkgstd [photon]": [3.25, 3.5], "chi2": [1.125, 0.875]})


def test_thunderstorm_pixel_columns_convert_with_the_pixel_size():
    with pytest.raises(UserInputError, match="x \\[px\\] is in pixels"):
        read_thunderstorm(GOLDEN / "thunderstorm_px.csv")
    locs = read_thunderstorm(GOLDEN / "thunderstorm_px.csv", pixel_size_nm=100.0)
    assert_canonical(locs, {
        "frame": [0, 4], "x_nm": [350.0, 6075.0], "y_nm": [1025.0, 50.0], "sigma_x_nm": [12.5, 6.25],
        "sigma_y_nm": [12.5, 6.25], "sigma [nm]": [125.0, 150.0]})
    assert locs.meta.pixel_size_nm == 100.0


def test_thunderstorm_writer_reproduces_golden_file(tmp_path):
    out = write_localizations(tmp_path / "locs.csv", sample_locs())
    assert out.read_text() == (GOLDEN / "thunderstorm_written.csv").read_text()


def test_thunderstorm_round_trip(tmp_path):
    locs = sample_locs()
    back = read_localizations(write_localizations(tmp_path / "locs.csv", locs))
    pd.testing.assert_frame_equal(back.table.drop(columns="id"), locs.table, check_dtype=False)
    np.testing.assert_array_equal(back.table["id"], [1, 2])


def test_thunderstorm_different_x_y_uncertainties_survive(tmp_path):
    locs = Localizations.from_arrays([0], [1.0], [2.0], sigma_x_nm=[3.0], sigma_y_nm=[4.0])
    path = write_localizations(tmp_path / "locs.csv", locs)
    header = path.read_text().splitlines()[0]
    assert '"uncertainty_xy [nm]"' in header and '"uncertainty_x [nm]","uncertainty_y [nm]"' in header
    back = read_localizations(path).table
    assert (back["sigma_x_nm"][0], back["sigma_y_nm"][0]) == (3.0, 4.0)


def test_ground_truth_writer_keeps_its_exact_header(tmp_path):
    table = pd.DataFrame({"id": [1, 2], "frame": [0, 3], "x_nm": [10.12345, 20.0], "y_nm": [1.5, 2.5],
                          "z_nm": [0.0, -100.0], "photons": [1000.0, 2000.0], "bg": [10.0, 10.0]})
    lines = write_thunderstorm_csv(tmp_path / "gt.csv", table).read_text().splitlines()
    assert lines == ['"id","frame","x [nm]","y [nm]","z [nm]","intensity [photon]","offset [photon]"',
                     "1,1,10.123,1.5,0,1000,10", "2,4,20,2.5,-100,2000,10"]


def test_shared_ground_truth_reads():
    root = shared_data_root()
    path = root / "epfl2013_bundled_tubes_hd" / "ground_truth.csv" if root else None
    if path is None or not path.is_file():
        pytest.skip("shared/data/epfl2013_bundled_tubes_hd is absent")
    locs = read_localizations(path)
    assert len(locs) == 81_178
    assert (locs.table["frame"].min(), locs.table["frame"].max()) == (0, 360)
    assert not locs.has_z and np.isfinite(locs.table[["x_nm", "y_nm"]].to_numpy()).all()


# --- EPFL challenge -------------------------------------------------------------------------------

def test_challenge_golden_reads_and_writes_back_identically(tmp_path):
    locs = read_localizations(GOLDEN / "challenge_activations.csv")
    assert_canonical(locs, {
        "frame": [0, 0, 2], "x_nm": [1234.5, 4000.125, 50.5], "y_nm": [2345.25, 100.0, 6400.0],
        "z_nm": [-150.0, 250.75, 0.0], "photons": [3000.5, 1500.0, 812.25], "id": [1, 2, 3]})
    pd.testing.assert_frame_equal(read_challenge(GOLDEN / "challenge_activations.csv").table, locs.table)
    out = write_localizations(tmp_path / "act.csv", locs, format="challenge")
    assert out.read_text() == (GOLDEN / "challenge_activations.csv").read_text()


# --- Picasso --------------------------------------------------------------------------------------

def picasso_golden(folder: Path) -> Path:
    """The golden Picasso pair: /locs from PICASSO_LOCS and the hand-written YAML."""
    path = folder / "golden.hdf5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("locs", data=PICASSO_LOCS)
    shutil.copy(GOLDEN / "picasso_locs.yaml", folder / "golden.yaml")
    return path


def test_picasso_golden_reads_canonical(tmp_path):
    path = picasso_golden(tmp_path)
    locs = read_localizations(path)
    # pixel centres at integers in Picasso: x_nm = (x + 0.5) * 130
    assert_canonical(locs, {
        "frame": [0, 3], "x_nm": [1397.5, 130.0], "y_nm": [455.0, 2762.5], "photons": [1500.5, 820.0],
        "bg": [12.5, 10.0], "sigma_x_nm": [16.25, 24.375], "sigma_y_nm": [32.5, 24.375],
        "psf_sigma_x_nm": [130.0, 113.75], "psf_sigma_y_nm": [162.5, 113.75],
        "net_gradient": [8000.0, 5200.0], "likelihood": [-120.5, -98.25], "iterations": [6, 9]})
    assert locs.meta == Metadata(pixel_size_nm=130.0, image_shape=(32, 48), n_frames=4, source=str(path))


def test_picasso_writer_fields_and_yaml(tmp_path):
    locs = sample_locs(Metadata(pixel_size_nm=130.0, image_shape=(32, 48), n_frames=4))
    path = write_localizations(tmp_path / "out.hdf5", locs)
    with h5py.File(path, "r") as fh:
        written = fh["locs"][()]
    standard = PICASSO_LOCALIZE_DTYPE.descr[:9]  # frame … lpy: every Picasso file has these
    assert written.dtype.descr == standard + [("z", "<f4"), ("lpz", "<f4"), ("prob", "<f4"),
                                              ("color", "<i4"), ("color_prob", "<f4"), ("chi2", "<f8")]
    image, export = yaml.safe_load_all((tmp_path / "out.yaml").read_text())
    assert image == {"Frames": 4, "Height": 32, "Width": 48}
    assert export["Pixelsize"] == 130.0 and export["Generated by"].startswith("deepsmlm")
    np.testing.assert_array_equal(written["sx"], [1.0, 1.0])  # PSF width unknown: placeholder
    assert written["lpz"][0] == np.float32(21.5 / 130.0)  # Picasso's lpz: px, like lpx
    assert written["lpz"][1] == 1.0  # partly unknown: placeholder in that row


def test_picasso_pixel_convention_centre_of_pixel_is_integer(tmp_path):
    # the centre of pixel (row 2, col 3) at 100 nm per pixel
    locs = Localizations.from_arrays([0], [350.0], [250.0], meta=Metadata(pixel_size_nm=100.0))
    path = write_localizations(tmp_path / "c.h5", locs)
    with h5py.File(path, "r") as fh:
        assert (fh["locs"]["x"][0], fh["locs"]["y"][0]) == (3.0, 2.0)


@pytest.mark.parametrize("full", [True, False], ids=["all columns", "frame x y only"])
def test_picasso_round_trip_keeps_values_metadata_and_unknowns(tmp_path, full):
    meta = Metadata(pixel_size_nm=130.0, image_shape=(32, 48), n_frames=4,
                    config={"name": "demo", "frame": {"pixel_size_nm": 130.0}}, source="run/locs.csv")
    if full:
        locs = sample_locs(meta)
        locs.table["sigma_z_nm"] = [21.5, 30.0]  # a value unknown in only some rows reads back as a placeholder
    else:  # photons, bg, sigmas unknown in every row: placeholders in the file, NaN again on reading
        locs = Localizations.from_arrays([0, 3], [1397.5, 130.0], [455.0, 2762.5], meta=meta)
    back = read_localizations(write_localizations(tmp_path / "rt.hdf5", locs))
    assert back.meta == meta
    t, b = locs.table, back.table
    assert list(b.columns) == list(t.columns)
    for c in t.columns:  # float32 in the file
        np.testing.assert_allclose(b[c], t[c], rtol=1e-6, atol=1e-4, err_msg=c)


def test_picasso_golden_round_trip_is_exact(tmp_path):
    locs = read_localizations(picasso_golden(tmp_path))
    path = write_localizations(tmp_path / "again.hdf5", locs)
    with h5py.File(path, "r") as fh:
        written = fh["locs"][()]
    for f in PICASSO_LOCALIZE_DTYPE.names:
        np.testing.assert_array_equal(written[f], PICASSO_LOCS[f], err_msg=f)


# --- Parquet --------------------------------------------------------------------------------------

PARQUET_SCHEMA = pa.schema([
    ("frame", pa.int64()), ("x_nm", pa.float64()), ("y_nm", pa.float64()), ("z_nm", pa.float64()),
    ("photons", pa.float64()), ("bg", pa.float64()), ("prob", pa.float64()), ("sigma_x_nm", pa.float64()),
    ("sigma_y_nm", pa.float64()), ("sigma_z_nm", pa.float64()), ("color", pa.int64()),
    ("color_prob", pa.float64()), ("chi2", pa.float64()),
])


def test_parquet_golden_reads_and_writer_matches_schema(tmp_path):
    meta = {"pixel_size_nm": 100.0, "image_shape": [64, 64], "n_frames": 3, "config": {"name": "demo"},
            "source": "sim"}
    golden = pa.table({
        "frame": [0, 2], "x_nm": [1520.25, 60.5], "y_nm": [830.5, 6350.75], "z_nm": [-212.75, 0.0],
        "photons": [2450.5, 3120.75], "bg": [48.25, 49.5], "prob": [0.875, 0.5], "sigma_x_nm": [8.75, 6.5],
        "sigma_y_nm": [8.75, 6.5], "sigma_z_nm": [21.5, None], "color": [1, 0], "color_prob": [0.75, 0.9375],
        "chi2": [1.5, 0.25]}, schema=PARQUET_SCHEMA.with_metadata({"deepsmlm": json.dumps(meta)}))
    pq.write_table(golden, tmp_path / "golden.parquet")
    locs = read_localizations(tmp_path / "golden.parquet")
    assert locs.meta == Metadata.from_dict(meta)
    pd.testing.assert_frame_equal(locs.table, sample_locs().table)
    written = pq.read_schema(write_localizations(tmp_path / "ours.parquet", locs))
    assert written.remove_metadata() == PARQUET_SCHEMA
    assert json.loads(written.metadata[b"deepsmlm"]) == meta


def test_parquet_round_trip_is_exact(tmp_path):
    locs = sample_locs(Metadata(pixel_size_nm=110.0, image_shape=(121, 121), n_frames=3,
                                config={"name": "x", "sizes": [1, 2]}, source="a.tif"))
    back = read_localizations(write_localizations(tmp_path / "rt.parquet", locs))
    pd.testing.assert_frame_equal(back.table, locs.table)
    assert back.meta == locs.meta


# --- one-line errors ------------------------------------------------------------------------------

def write_bytes(name: str, content: bytes):
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(content)
        return folder / name
    return make


def picasso_with(locs: np.ndarray | None, yaml_text: str | None, name: str = "bad.hdf5"):
    def make(folder: Path) -> Path:
        with h5py.File(folder / name, "w") as fh:
            if locs is not None:
                fh.create_dataset("locs", data=locs)
        if yaml_text is not None:
            (folder / name).with_suffix(".yaml").write_text(yaml_text)
        return folder / name
    return make


NAN_X = PICASSO_LOCS.copy()
NAN_X["x"][1] = np.nan

BAD_INPUTS = {
    "missing file": (lambda d: d / "absent.csv", "no such file"),
    "empty csv": (write_bytes("empty.csv", b""), "empty file"),
    "missing column": (write_bytes("nox.csv", b'"frame","y [nm]"\n1,2\n'), "missing column(s) x [nm]"),
    "nan position": (write_bytes("nan.csv", b"frame,x [nm],y [nm]\n1,1,2\n2,NaN,3\n"), "NaN"),
    "text position": (write_bytes("text.csv", b"frame,x [nm],y [nm]\n1,1,abc\n"), "not numeric"),
    "frame zero": (write_bytes("f0.csv", b"frame,x [nm],y [nm]\n0,1,2\n"), "invalid frame"),
    "ragged row": (write_bytes("ragged.csv", b"frame,x [nm],y [nm]\n1,2\n"), "unreadable CSV"),
    "px without size": (write_bytes("px.csv", b"frame,x [px],y [px]\n1,1,2\n"), "pixel size"),
    "challenge column": (write_bytes("act.csv", b"Ground-truth,frame,xnano,znano\n1,1,2,3\n"), "ynano"),
    "unknown extension": (write_bytes("locs.txt", b"frame,x,y\n"), "extension"),
    "picasso no pixel size": (picasso_with(PICASSO_LOCS, None), "pixel size"),
    "picasso no locs": (picasso_with(None, "Pixelsize: 100\n"), "no /locs"),
    "picasso nan x": (picasso_with(NAN_X, "Pixelsize: 100\n"), "non-finite"),
    "picasso not hdf5": (write_bytes("text.hdf5", b"frame,x,y\n"), "unreadable HDF5"),
    "picasso bad yaml": (picasso_with(PICASSO_LOCS, "a: [1\n"), "unreadable YAML"),
    "parquet garbage": (write_bytes("junk.parquet", b"not parquet at all"), "unreadable Parquet"),
    "parquet missing column": (lambda d: (pq.write_table(pa.table({"frame": [0], "x_nm": [1.0]}), d / "noy.parquet"),
                                          d / "noy.parquet")[1], "missing column(s) y_nm"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_gives_one_line_error_naming_the_file(tmp_path, one_line, case):
    make, fragment = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(UserInputError) as err:
        read_localizations(path)
    line = one_line(str(err.value))
    assert path.stem in line and fragment in line, line  # the HDF5 file or its YAML


@pytest.mark.parametrize("target, fmt, fragment", [
    ("out.hdf5", None, "pixel size"),  # sample_locs has no pixel size
    ("out.xyz", None, "extension"),
    ("out.csv", "smap", "is not a localization format"),
])
def test_bad_writes_give_one_line_errors(tmp_path, one_line, target, fmt, fragment):
    with pytest.raises(UserInputError) as err:
        write_localizations(tmp_path / target, sample_locs(), format=fmt)
    line = one_line(str(err.value))
    assert target in line and fragment in line, line
    assert not (tmp_path / target).exists()
