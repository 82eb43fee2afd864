"""`deepsmlm render`: PNG + float32 TIFF of the right shape for 2D, depth and dye colour; one-line errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from deepsmlm.cli import app
from deepsmlm.io.localization_files import write_localizations
from deepsmlm.localizations import Localizations, Metadata

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIELD_PX, CAMERA_NM = 32, 100.0  # a 3.2 µm camera field


def table(tmp_path: Path, name: str, z: bool = False, color: bool = False, meta: Metadata | None = None) -> Path:
    """400 localizations on a ring (radius 1 µm about (1.6, 1.6) µm), written as ``name`` (format by extension)."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 2 * np.pi, 400)
    columns = {"sigma_x_nm": np.full(400, 15.0), "sigma_y_nm": np.full(400, 15.0)}
    if z:
        columns["z_nm"] = 400 * np.cos(a)
    if color:
        columns["color"] = (a > np.pi).astype(int)
    locs = Localizations.from_arrays(rng.integers(0, 50, 400), 1600 + 1000 * np.cos(a), 1600 + 1000 * np.sin(a),
                                     meta=meta, **columns)
    return write_localizations(tmp_path / name, locs)


def render(runner, *args):
    return runner.invoke(app, ["render", *[str(a) for a in args]])


def bounds_shape(src: Path, pixel_nm: float) -> tuple[int, int]:
    """(rows, cols) of a field from 0 to the pixel holding the largest y, x (a CSV carries no field)."""
    import pandas as pd

    t = pd.read_csv(src)
    return math.floor(t["y [nm]"].max() / pixel_nm) + 1, math.floor(t["x [nm]"].max() / pixel_nm) + 1


def check_outputs(png: Path, shape: tuple[int, ...]) -> np.ndarray:
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    tif = tifffile.imread(png.with_suffix(".tif"))
    assert tif.dtype == np.float32 and tif.shape == shape
    assert tif.sum() > 0
    return tif


@pytest.mark.parametrize("pixel_nm", [10.0, 30.0])
def test_render_field_from_metadata(runner, tmp_path, pixel_nm):
    meta = Metadata(pixel_size_nm=CAMERA_NM, image_shape=(FIELD_PX, FIELD_PX))
    src = table(tmp_path, "ring.hdf5", meta=meta)  # Picasso keeps the camera field
    png = tmp_path / "ring.png"
    res = render(runner, src, "-o", png, "--pixel-nm", pixel_nm)
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    side = math.ceil(FIELD_PX * CAMERA_NM / pixel_nm)
    tif = check_outputs(png, (side, side))
    assert tif.sum() == pytest.approx(400, rel=0.01)


def test_render_histogram_fixed_sigma_and_depth(runner, tmp_path):
    src = table(tmp_path, "ring3d.csv", z=True)
    res = render(runner, src, "-o", tmp_path / "h.png", "--method", "histogram")
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    hist = check_outputs(tmp_path / "h.png", bounds_shape(src, 10.0))
    assert hist.sum() == 400 and set(np.unique(hist)) <= set(range(401))
    res = render(runner, src, "-o", tmp_path / "s.png", "--sigma-nm", "40")
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    res = render(runner, src, "-o", tmp_path / "z.png", "--color", "z", "--pixel-nm", "20")
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    check_outputs(tmp_path / "z.png", (*bounds_shape(src, 20.0), 3))


def test_render_dye_composite(runner, tmp_path):
    src = table(tmp_path, "dyes.csv", color=True)
    res = render(runner, src, "-o", tmp_path / "d.png", "--color", "dye", "--pixel-nm", "20")
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    rgb = check_outputs(tmp_path / "d.png", (*bounds_shape(src, 20.0), 3))
    top, bottom = rgb[:75], rgb[85:]  # dye 1 (green) at y < 1600 nm, dye 0 (magenta) below
    assert top[..., [0, 2]].sum() == pytest.approx(0, abs=1e-3) and top[..., 1].sum() > 100
    assert bottom[..., 1].sum() == pytest.approx(0, abs=1e-3) and bottom[..., 0].sum() > 100
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


@pytest.mark.parametrize("args, needle", [
    (["--color", "red"], "red"),
    (["--method", "splat"], "splat"),
    (["--color", "z"], "--color z"),
    (["--color", "dye"], "color"),
    (["--pixel-nm", "0.1"], "--pixel-nm"),
    (["--sigma-nm", "-3"], "--sigma-nm"),
])
def test_render_errors_are_one_line(runner, tmp_path, one_line, args, needle):
    src = table(tmp_path, "ring.csv")
    res = render(runner, src, "-o", tmp_path / "x.png", *args)
    assert res.exit_code == 2, (res.stdout, res.stderr, res.exception)
    assert needle in one_line(res.stderr)
    assert not (tmp_path / "x.png").exists()


def test_render_needs_png_and_a_readable_file(runner, tmp_path, one_line):
    src = table(tmp_path, "ring.csv")
    res = render(runner, src, "-o", tmp_path / "x.tif")
    assert res.exit_code == 2 and ".png" in one_line(res.stderr)
    res = render(runner, tmp_path / "missing.csv", "-o", tmp_path / "x.png")
    assert res.exit_code == 2
    one_line(res.stderr)


def test_render_shared_bundled_tubes(runner, tmp_path):
    from deepsmlm.optics.masks import shared_data_root

    root = shared_data_root()
    gt = root / "epfl2013_bundled_tubes_hd" / "ground_truth.csv" if root else None
    if gt is None or not gt.is_file():
        pytest.skip("shared EPFL 2013 bundled-tubes data absent")
    res = render(runner, gt, "-o", tmp_path / "tubes.png", "--pixel-nm", "10")
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    tif = check_outputs(tmp_path / "tubes.png", (562, 590))  # no field in the CSV: the data bounds
    assert (tif > 0.01).mean() > 0.05
