"""Super-resolved rendering: exact histograms, normalised Gaussians (centroid, width), depth and dye colour,
the widefield sum, and the files written (float32 TIFF beside the PNG)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import tifffile

from deepsmlm.analysis.render import (DEFAULT_SIGMA_PX, depth_rgb, dye_legend, dye_rgb, gaussian_image,
                                      histogram_image, region, save_render, side_view, widefield_sum)
from deepsmlm.errors import UserInputError
from deepsmlm.localizations import Localizations, Metadata

P = 10.0  # render pixel (nm)
FIELD = (640.0, 480.0)  # (width, height) nm → 48 × 64 px


def locs_at(x, y, **columns) -> Localizations:
    x = np.atleast_1d(np.asarray(x, dtype=float))
    return Localizations.from_arrays(np.zeros(len(x), int), x, np.atleast_1d(np.asarray(y, dtype=float)),
                                     **columns)


def moments(img: np.ndarray) -> tuple[float, float, float, float, float]:
    """Sum, centroid (x, y) and standard deviations (x, y), in pixels of pixel-centre coordinates + ½."""
    r, c = np.indices(img.shape) + 0.5
    total = img.sum()
    mx, my = (img * c).sum() / total, (img * r).sum() / total
    return (total, mx, my, np.sqrt((img * (c - mx) ** 2).sum() / total),
            np.sqrt((img * (r - my) ** 2).sum() / total))


def test_histogram_counts_are_exact():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, FIELD[0], 5000), rng.uniform(0, FIELD[1], 5000)
    img = histogram_image(locs_at(x, y), P, extent_nm=FIELD)
    expected = np.zeros((48, 64))
    np.add.at(expected, (np.floor(y / P).astype(int), np.floor(x / P).astype(int)), 1)
    assert img.dtype == np.float32 and img.shape == (48, 64)
    np.testing.assert_array_equal(img, expected)
    assert img.sum() == 5000
    one = histogram_image(locs_at(25.0, 39.9), P, extent_nm=FIELD)
    assert one[3, 2] == 1 and one.sum() == 1


def test_histogram_weights_and_data_bound_field():
    img = histogram_image(locs_at([5.0, 5.0, 95.0], [5.0, 5.0, 30.0]), P, weights=np.array([1.0, 2.0, 4.0]))
    assert img.shape == (4, 10)  # from 0 to the largest coordinate's pixel, inclusive
    assert img[0, 0] == 3 and img[3, 9] == 4


def test_field_from_metadata_and_outside_left_out():
    meta = Metadata(pixel_size_nm=100.0, image_shape=(3, 5))
    locs = Localizations.from_arrays([0, 0, 0], [10.0, 499.0, 700.0], [10.0, 299.0, 10.0], meta=meta)
    img = histogram_image(locs, 25.0)
    assert img.shape == (12, 20) and img.sum() == 2


@pytest.mark.parametrize("x, y, sigma", [(320.0, 240.0, 20.0), (333.3, 251.7, 25.0), (317.0, 228.0, 8.0)])
def test_gaussian_is_normalised_centred_and_sigma_wide(x, y, sigma):
    img = gaussian_image(locs_at(x, y, sigma_x_nm=[sigma], sigma_y_nm=[sigma]), P, extent_nm=FIELD)
    total, mx, my, sx, sy = moments(img.astype(np.float64))
    assert img.dtype == np.float32 and total == pytest.approx(1.0, rel=1e-3)
    assert abs(mx - x / P) < 0.1 and abs(my - y / P) < 0.1
    expected = np.sqrt((sigma / P) ** 2 + 1 / 12)  # pixel-integrated: σ² + p²/12
    assert sy == pytest.approx(expected, rel=0.01)
    assert sx == pytest.approx(expected, rel=0.05)  # x blur quantised to a 10% grid


def test_gaussian_sums_to_n_and_matches_exact_pixel_integrals():
    from scipy.special import erf

    rng = np.random.default_rng(2)
    n = 300
    x, y = rng.uniform(100, 540, n), rng.uniform(100, 380, n)
    sx, sy = rng.uniform(10, 30, n), rng.uniform(10, 30, n)  # ≥ 1 render pixel
    img = gaussian_image(locs_at(x, y, sigma_x_nm=sx, sigma_y_nm=sy), P, extent_nm=FIELD)
    assert img.sum() == pytest.approx(n, rel=0.01)

    def integrated(centre, sigma, n_px):  # (n, n_px) pixel integrals of 1D Gaussians, nm
        edges = np.arange(n_px + 1) * P
        cdf = 0.5 * erf((edges[None, :] - centre[:, None]) / (np.sqrt(2) * sigma[:, None]))
        return np.diff(cdf, axis=1)

    exact = np.einsum("nr,nc->rc", integrated(y, sy, 48), integrated(x, sx, 64))
    assert np.abs(img - exact).max() < 0.02 * exact.max()
    assert np.abs(img - exact).sum() < 0.01 * n


def test_fixed_sigma_overrides_and_default_sigma():
    locs = locs_at(320.0, 240.0, sigma_x_nm=[5.0], sigma_y_nm=[5.0])
    _, _, _, sx, sy = moments(gaussian_image(locs, P, sigma_nm=40.0, extent_nm=FIELD).astype(np.float64))
    assert sy == pytest.approx(np.sqrt(16 + 1 / 12), rel=0.01) and sx == pytest.approx(sy, rel=0.05)
    nan = locs_at(320.0, 240.0)  # no uncertainty → DEFAULT_SIGMA_PX
    _, _, _, sx, sy = moments(gaussian_image(nan, P, extent_nm=FIELD).astype(np.float64))
    assert sy == pytest.approx(np.sqrt(DEFAULT_SIGMA_PX ** 2 + 1 / 12), rel=0.01)


def test_anisotropic_sigma():
    locs = locs_at(320.0, 240.0, sigma_x_nm=[15.0], sigma_y_nm=[40.0])
    _, _, _, sx, sy = moments(gaussian_image(locs, P, extent_nm=FIELD).astype(np.float64))
    assert sx == pytest.approx(np.sqrt(1.5**2 + 1 / 12), rel=0.05)
    assert sy == pytest.approx(np.sqrt(4.0**2 + 1 / 12), rel=0.01)


@pytest.mark.parametrize("method", ["histogram", "gaussian"])
def test_depth_colour_maps_range_ends_to_turbo_ends(method):
    locs = locs_at([105.0, 505.0, 305.0], [105.0, 305.0, 205.0], z_nm=[-400.0, 600.0, 110.0],
                   sigma_x_nm=[10.0] * 3, sigma_y_nm=[10.0] * 3)
    rgb = depth_rgb(locs, P, z_range=(-400.0, 600.0), method=method, extent_nm=FIELD)
    turbo = matplotlib.colormaps["turbo"]
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.float32
    for (r, c), t in (((10, 10), 0.0), ((30, 50), 1.0), ((20, 30), 0.51)):
        px = rgb[r, c]
        np.testing.assert_allclose(px / px.sum(), np.array(turbo(t)[:3]) / sum(turbo(t)[:3]), atol=1e-5)
    assert rgb.sum(axis=-1)[0, :5].max() == 0


def test_depth_range_must_not_be_empty():
    with pytest.raises(UserInputError):
        depth_rgb(locs_at([5.0], [5.0], z_nm=[1.0]), P, z_range=(1.0, 1.0))


@pytest.mark.parametrize("method", ["histogram", "gaussian"])
def test_two_dyes_magenta_and_green(method):
    locs = locs_at([105.0, 505.0], [105.0, 305.0], color=[0, 1], sigma_x_nm=[10.0] * 2, sigma_y_nm=[10.0] * 2)
    rgb = dye_rgb(locs, P, method=method, extent_nm=FIELD)
    red, green, blue = np.moveaxis(rgb, -1, 0)
    np.testing.assert_array_equal(red, blue)  # dye 0: magenta
    d0 = histogram_image(locs.with_table(locs.table.iloc[:1]), P, extent_nm=FIELD) if method == "histogram" \
        else gaussian_image(locs.with_table(locs.table.iloc[:1]), P, extent_nm=FIELD)
    np.testing.assert_allclose(red, d0)
    assert red[30, 50] == 0 and green[10, 10] == 0
    assert green.sum() == pytest.approx(1.0, rel=1e-3) and green[30, 50] > 0


def test_three_dyes_rgb_and_errors():
    locs = locs_at([105.0, 305.0, 505.0, 5.0], [105.0, 205.0, 305.0, 5.0], color=[0, 1, 2, -1])
    rgb = dye_rgb(locs, P, method="histogram", extent_nm=FIELD)
    np.testing.assert_array_equal(rgb[10, 10], [1, 0, 0])
    np.testing.assert_array_equal(rgb[20, 30], [0, 1, 0])
    np.testing.assert_array_equal(rgb[30, 50], [0, 0, 1])
    assert rgb.sum() == 3  # the unassigned one (-1) is left out
    with pytest.raises(UserInputError):
        dye_rgb(locs_at([5.0], [5.0]), P)
    with pytest.raises(UserInputError):
        dye_rgb(locs_at([5.0], [5.0], color=[3]), P)


def test_widefield_sum_equals_stack_sum():
    stack = np.random.default_rng(3).integers(90, 4000, size=(7, 5, 6), dtype=np.uint16)
    total = widefield_sum(stack)
    assert total.dtype == np.float64
    np.testing.assert_array_equal(total, stack.astype(np.float64).sum(axis=0))
    np.testing.assert_array_equal(widefield_sum(iter([stack[:3], stack[3:6], stack[6]])), total)
    with pytest.raises(UserInputError):
        widefield_sum(iter([]))


def test_save_render_writes_png_and_raw_float32_tiff(tmp_path):
    img = np.zeros((30, 40), np.float32)
    img[10, 12] = 1000.0
    img[5:8, 5:8] = 1.5
    save_render(img, tmp_path / "r.png", 10.0)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    back = tifffile.imread(tmp_path / "r.tif")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, img)  # display clipping does not touch the TIFF
    rgb = np.random.default_rng(4).random((20, 25, 3)).astype(np.float32)
    save_render(rgb, tmp_path / "c.png", 10.0, colorbar=("z (nm)", -500.0, 500.0, "turbo"))
    back = tifffile.imread(tmp_path / "c.tif")
    assert back.shape == (20, 25, 3) and back.dtype == np.float32
    np.testing.assert_array_equal(back, rgb)
    assert not list(tmp_path.glob(".*part"))


def test_shared_bundled_tubes_ground_truth_renders(tmp_path):
    from deepsmlm.io.localization_files import read_localizations
    from deepsmlm.optics.masks import shared_data_root

    root = shared_data_root()
    folder = root / "epfl2013_bundled_tubes_hd" if root else None
    if folder is None or not (folder / "ground_truth.csv").is_file() or not (folder / "frames.tif").is_file():
        pytest.skip("shared EPFL 2013 bundled-tubes data absent")
    locs = read_localizations(folder / "ground_truth.csv")
    rows, cols = tifffile.TiffFile(folder / "frames.tif").pages[0].shape
    field = (cols * 100.0, rows * 100.0)  # 64 × 64 camera pixels of 100 nm (shared/data/README.md)
    img = gaussian_image(locs, 10.0, extent_nm=field)
    assert img.shape == (640, 640)
    assert img.sum() == pytest.approx(len(locs), rel=0.01)
    assert (img > 0.01).mean() > 0.05  # filaments, not a few dots
    assert img.max() < 0.01 * img.sum()


def test_side_view_puts_z_down_the_image():
    """A tilted line in x–z: the xz view's histogram has each point at (row ⌊(z − z_min)/p⌋, col ⌊x/p⌋)."""
    x = np.array([105.0, 305.0, 505.0])
    z = np.array([-400.0, 0.0, 405.0])
    locs = Localizations.from_arrays([0, 0, 0], x, [50.0, 60.0, 70.0], z,
                                     meta=Metadata(pixel_size_nm=100.0, image_shape=(8, 8)))
    side = side_view(locs, "xz")
    img = histogram_image(side, 100.0)
    assert img.shape == (9, 6) and img.sum() == 3
    assert img[0, 1] == img[4, 3] == img[8, 5] == 1
    assert side_view(locs, "xy") is locs


def test_region_keeps_and_shifts_the_rectangle():
    locs = Localizations.from_arrays([0, 0, 0], [100.0, 550.0, 900.0], [100.0, 250.0, 900.0])
    part = region(locs, (500.0, 200.0, 800.0, 300.0))
    assert len(part) == 1 and part.table.x_nm[0] == 50.0 and part.table.y_nm[0] == 50.0


def test_dye_legend_names_dyes_with_wavelengths_from_the_config():
    two = locs_at([105.0, 505.0], [105.0, 305.0], color=[0, 1])
    assert [label for label, _ in dye_legend(two)] == ["dye 0", "dye 1"]
    np.testing.assert_array_equal([color for _, color in dye_legend(two)], [[1, 0, 1], [0, 1, 0]])
    config = {"emitters": {"dyes": [{"wavelength_nm": 600.0, "fraction": 1.0}, {"wavelength_nm": 680.0}]}}
    three = Localizations.from_arrays([0, 0, 0], [5.0, 15.0, 25.0], [5.0, 5.0, 5.0], color=[0, 1, 2],
                                      meta=Metadata(config=config))
    legend = dye_legend(three)
    assert [label for label, _ in legend] == ["dye 0 (600 nm)", "dye 1 (680 nm)", "dye 2"]
    np.testing.assert_array_equal([color for _, color in legend], np.eye(3))  # the colours dye_rgb uses


def test_save_render_draws_the_dye_legend(tmp_path, monkeypatch):
    """The legend holds one swatch per dye in its composite colour with its label, top right of the PNG."""
    import matplotlib.image

    import deepsmlm.analysis.render as render

    figures = []
    original = render.save_figure
    monkeypatch.setattr(render, "save_figure", lambda fig, *a, **k: figures.append(fig) or original(fig, *a, **k))
    locs = locs_at([55.0, 105.0], [405.0, 455.0], color=[0, 1], sigma_x_nm=[10.0] * 2, sigma_y_nm=[10.0] * 2)
    rgb = dye_rgb(locs, P, method="histogram", extent_nm=FIELD)  # data in the bottom-left corner only
    legend = [("dye 0 (600 nm)", np.array([1.0, 0.0, 1.0])), ("dye 1 (680 nm)", np.array([0.0, 1.0, 0.0]))]
    save_render(rgb, tmp_path / "with.png", P, per_channel=True, legend=legend)
    save_render(rgb, tmp_path / "without.png", P, per_channel=True)

    drawn = figures[0].axes[0].get_legend()
    assert [t.get_text() for t in drawn.get_texts()] == ["dye 0 (600 nm)", "dye 1 (680 nm)"]
    np.testing.assert_allclose([h.get_facecolor()[:3] for h in drawn.legend_handles], [[1, 0, 1], [0, 1, 0]])
    assert figures[1].axes[0].get_legend() is None

    def corner_pixels(name: str) -> dict[str, int]:
        png = matplotlib.image.imread(tmp_path / name)[..., :3]
        corner = png[: png.shape[0] // 2, png.shape[1] // 2:]
        return {c: int(np.all(np.isclose(corner, rgb_), axis=-1).sum())
                for c, rgb_ in (("magenta", (1, 0, 1)), ("green", (0, 1, 0)))}

    with_legend, without = corner_pixels("with.png"), corner_pixels("without.png")
    assert min(with_legend.values()) > 20 and max(without.values()) == 0
