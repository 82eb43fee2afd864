"""Images from localizations (histogram, Gaussian, depth- and dye-coloured) and the widefield sum of a stack.

Geometry follows the camera convention at the render pixel p (nm): image row r covers
y ∈ [r·p, (r+1)·p), column c covers x ∈ [c·p, (c+1)·p), origin top-left. The field is
``extent_nm`` = (width, height) in nm, else the metadata's image shape × camera pixel, else the
data bounds (from 0). Localizations outside the field, or with non-finite x/y, are left out.
matplotlib (its colormaps, and ``Figure`` objects without pyplot) is imported only when used.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import tifffile
from scipy.ndimage import gaussian_filter1d
from scipy.special import erf

from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import write_atomic
from deepsmlm.io.outputs import RENDER_SOFTWARE
from deepsmlm.localizations import Localizations
from deepsmlm.plots import add_scale_bar, new_figure, save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Extent = tuple[float, float]

DEFAULT_SIGMA_PX = 1.0
"""σ (render pixels) used for a localization whose uncertainty is NaN when no fixed σ is given."""
SIGMA_BIN_RATIO = 1.05
"""The Gaussian's x blur is quantised to a geometric grid of this ratio: off by at most √1.05 − 1 ≈ 2.5%."""
DISPLAY_PERCENTILE = 99.5
"""PNG contrast: white at this percentile of the non-zero pixels (display only; the TIFF keeps raw values)."""
DYE_COLORS = {
    2: np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),  # dye 0 magenta (R+B), dye 1 green: colour-blind safe
    3: np.eye(3),  # dye 0 red, dye 1 green, dye 2 blue
}


def field_nm(locs: Localizations, pixel_nm: float, extent_nm: Extent | None = None) -> Extent:
    """The rendered field (width, height) in nm: ``extent_nm``, the metadata's camera field, or the data bounds."""
    if extent_nm is not None:
        return float(extent_nm[0]), float(extent_nm[1])
    if locs.meta.field_nm is not None:
        return locs.meta.field_nm
    x, y = (locs.table[c].to_numpy() for c in ("x_nm", "y_nm"))
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return pixel_nm, pixel_nm
    # enough whole pixels to hold the largest coordinate
    return ((math.floor(max(x[ok].max(), 0) / pixel_nm) + 1) * pixel_nm,
            (math.floor(max(y[ok].max(), 0) / pixel_nm) + 1) * pixel_nm)


def image_shape(extent_nm: Extent, pixel_nm: float) -> tuple[int, int]:
    """(rows, cols) = ceil(height / p), ceil(width / p) (tolerant to float round-off)."""
    width, height = extent_nm
    return max(1, math.ceil(height / pixel_nm - 1e-9)), max(1, math.ceil(width / pixel_nm - 1e-9))


def _inside(locs: Localizations, pixel_nm: float, extent_nm: Extent | None) -> tuple[np.ndarray, tuple[int, int]]:
    """Mask of localizations inside the field, and the image shape."""
    extent = field_nm(locs, pixel_nm, extent_nm)
    x, y = locs.table["x_nm"].to_numpy(), locs.table["y_nm"].to_numpy()
    with np.errstate(invalid="ignore"):
        ok = (x >= 0) & (x < extent[0]) & (y >= 0) & (y < extent[1])
    return ok, image_shape(extent, pixel_nm)


def histogram_image(locs: Localizations, pixel_nm: float, extent_nm: Extent | None = None,
                    weights: np.ndarray | None = None) -> np.ndarray:
    """Counts (or summed ``weights``) per render pixel, (rows, cols) float32; (x, y) adds to [⌊y/p⌋, ⌊x/p⌋]."""
    ok, (rows, cols) = _inside(locs, pixel_nm, extent_nm)
    r = np.minimum((locs.table["y_nm"].to_numpy()[ok] / pixel_nm).astype(np.int64), rows - 1)
    c = np.minimum((locs.table["x_nm"].to_numpy()[ok] / pixel_nm).astype(np.int64), cols - 1)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[ok]
    return np.bincount(r * cols + c, weights=w, minlength=rows * cols).reshape(rows, cols).astype(np.float32)


def _sigma_px(table, axis: str, sigma_nm: float | None, pixel_nm: float) -> np.ndarray:
    """σ along ``axis`` in render pixels: the fixed ``sigma_nm``, else sigma_{axis}_nm, NaN → DEFAULT_SIGMA_PX."""
    s = np.full(len(table), sigma_nm) if sigma_nm is not None else table[f"sigma_{axis}_nm"].to_numpy()
    return np.where(np.isfinite(s), s / pixel_nm, DEFAULT_SIGMA_PX)


def _blur_grid(blur_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantise blur σ (px) to SIGMA_BIN_RATIO**k: (k, σ of k); a blur under a quarter pixel is 0 (own k)."""
    sharp = blur_px <= 0.25
    k = np.rint(np.log(np.where(sharp, 1.0, blur_px)) / math.log(SIGMA_BIN_RATIO)).astype(np.int64)
    k[sharp] = np.iinfo(np.int64).min
    return k, np.where(sharp, 0.0, SIGMA_BIN_RATIO ** k.astype(np.float64))


def _row_profiles(canvas: np.ndarray, v: np.ndarray, sy: np.ndarray, col: np.ndarray, fx: np.ndarray,
                  w: np.ndarray) -> None:
    """Add to ``canvas`` (rows, width) each localization's pixel-integrated Gaussian along rows (centre ``v``,
    σ ``sy``, px; pixel edges at integers, truncated at ±4σ), split (1−fx, fx) over columns col, col + 1."""
    rows, width = canvas.shape
    half = np.ceil(4 * sy).astype(np.int64) + 1
    n = 2 * half + 2  # pixel edges per localization
    loc = np.repeat(np.arange(len(v)), n)
    edge = np.repeat(np.floor(v).astype(np.int64) - half - np.cumsum(n) + n, n) + np.arange(n.sum())
    cdf = erf((edge - v[loc]) / (np.sqrt(2) * np.maximum(sy, 1e-6)[loc]))
    same = loc[:-1] == loc[1:]  # consecutive edges of one localization bound a pixel row
    row, mass = edge[:-1], 0.5 * np.diff(cdf)
    keep = same & (row >= 0) & (row < rows)
    loc = loc[:-1][keep]
    flat, mass, frac = row[keep] * width + col[loc], mass[keep] * w[loc], fx[loc]
    if not len(flat):
        return
    lo = int(flat.min())  # rows sorted by y keep this span short
    added = np.bincount(np.concatenate([flat, flat + 1]) - lo,
                        weights=np.concatenate([mass * (1 - frac), mass * frac]))
    out = canvas.reshape(-1)
    out[lo:lo + len(added)] += added


def gaussian_image(locs: Localizations, pixel_nm: float, sigma_nm: float | None = None,
                   extent_nm: Extent | None = None, weights: np.ndarray | None = None) -> np.ndarray:
    """Each localization as a normalised, pixel-integrated 2D Gaussian (× its weight): (rows, cols) float32.

    σ per axis is ``sigma_nm`` when given, else the localization's sigma_x_nm / sigma_y_nm, else
    DEFAULT_SIGMA_PX render pixels; each spot's variance is σ² + p²/12 (pixel integration). Along y each
    spot is integrated exactly (erf). Along x it is split over the two nearest pixel centres (centroid
    exact; the split's variance f(1−f) px² is subtracted per localization), and localizations sharing a
    blur on a 5% geometric grid are blurred together with a sampled Gaussian (scipy.ndimage, ±4σ), so
    the x width is within 2.5%. For σ ≥ 1 px a spot is within about 3% of its peak of the exact pixel
    integrals (a crowd of them within 1%); below 1 px mass, centroid and variance stay right but not
    the shape. Mass falling outside the field is lost, so the image sums to n only far from the
    edges. A few seconds per million localizations.
    """
    ok, (rows, cols) = _inside(locs, pixel_nm, extent_nm)
    t = locs.table[ok]
    w = np.ones(len(t)) if weights is None else np.asarray(weights, dtype=np.float64)[ok]
    u = t["x_nm"].to_numpy() / pixel_nm - 0.5  # pixel c's centre at u = c
    v = t["y_nm"].to_numpy() / pixel_nm  # pixel r spans v ∈ [r, r + 1)
    c0 = np.floor(u).astype(np.int64)
    fx = u - c0
    sx, sy = _sigma_px(t, "x", sigma_nm, pixel_nm), _sigma_px(t, "y", sigma_nm, pixel_nm)
    k, blur = _blur_grid(np.sqrt(np.maximum(sx * sx + 1 / 12 - fx * (1 - fx), 0.0)))
    image = np.zeros((rows, cols), dtype=np.float32)
    if not len(t):
        return image
    order = np.lexsort((v, k))  # by blur, then by y
    for idx in np.split(order, np.flatnonzero(np.diff(k[order])) + 1):
        s = float(blur[idx[0]])
        m = int(4 * s + 0.5) + 1  # the kernel's radius, plus one
        c_lo = int(c0[idx].min()) - m
        canvas = np.zeros((rows, int(c0[idx].max()) + 2 + m - c_lo), dtype=np.float32)
        for part in np.array_split(idx, math.ceil(len(idx) / 100_000)):
            _row_profiles(canvas, v[part], sy[part], c0[part] - c_lo, fx[part], w[part])
        if s:
            gaussian_filter1d(canvas, s, axis=1, mode="constant", truncate=4.0, output=canvas)
        ca, cb = max(c_lo, 0), min(c_lo + canvas.shape[1], cols)
        image[:, ca:cb] += canvas[:, ca - c_lo:cb - c_lo]
    return image


def density(locs: Localizations, pixel_nm: float, method: str = "gaussian", sigma_nm: float | None = None,
            extent_nm: Extent | None = None, weights: np.ndarray | None = None) -> np.ndarray:
    """``gaussian_image`` or ``histogram_image`` by name (``sigma_nm`` only matters for the Gaussian)."""
    if method == "histogram":
        return histogram_image(locs, pixel_nm, extent_nm, weights)
    return gaussian_image(locs, pixel_nm, sigma_nm, extent_nm, weights)


VIEWS = ("xy", "xz", "yz")


def region(locs: Localizations, roi_nm: tuple[float, float, float, float]) -> Localizations:
    """The localizations inside the rectangle x0 ≤ x < x1, y0 ≤ y < y1 (nm), shifted so (x0, y0) is the
    origin; the field becomes the rectangle."""
    x0, y0, x1, y1 = roi_nm
    t = locs.table
    keep = ((t["x_nm"] >= x0) & (t["x_nm"] < x1) & (t["y_nm"] >= y0) & (t["y_nm"] < y1)).to_numpy()
    t = t[keep].reset_index(drop=True)
    t["x_nm"] -= x0
    t["y_nm"] -= y0
    meta = dataclasses.replace(locs.meta, image_shape=None)
    return Localizations(t, meta)


def side_view(locs: Localizations, view: str) -> Localizations:
    """The localizations as seen along one axis: ``xz`` (or ``yz``) puts x (or y) across and z − min(z)
    down the image, with their uncertainties; ``xy`` is the usual top view. The side views have no
    camera field, so the image spans the data. Side views need z."""
    if view == "xy":
        return locs
    t = locs.table.copy()
    across = "x" if view == "xz" else "y"
    z = t["z_nm"].to_numpy()
    t["x_nm"], t["y_nm"] = t[f"{across}_nm"], z - np.nanmin(z)
    for src, dst in ((f"sigma_{across}_nm", "sigma_x_nm"), ("sigma_z_nm", "sigma_y_nm")):
        if src in t.columns and dst in t.columns:
            t[dst] = t[src]
    meta = dataclasses.replace(locs.meta, image_shape=None)
    return Localizations(t, meta)


def depth_range(locs: Localizations) -> Extent:
    """Default colour range of z (nm): its 1st–99th percentiles, so a few outliers do not flatten the colours."""
    z = locs.table["z_nm"].to_numpy()
    z = z[np.isfinite(z)]
    lo, hi = np.percentile(z, [1, 99]) if len(z) else (0.0, 0.0)
    return float(lo), (float(hi) if hi > lo else float(lo) + 1.0)


def depth_rgb(locs: Localizations, pixel_nm: float, z_range: Extent | None = None, method: str = "gaussian",
              sigma_nm: float | None = None, extent_nm: Extent | None = None) -> np.ndarray:
    """Depth colour-coded image (rows, cols, 3) float32: turbo(mean z in the pixel) × density.

    z_range (nm) maps to turbo(0)…turbo(1), values outside are clipped; default ``depth_range``.
    The values are raw (a pixel's channel sum scales with its density); display scaling is ``save_render``'s.
    """
    from matplotlib import colormaps

    z0, z1 = depth_range(locs) if z_range is None else z_range
    if not z1 > z0:
        raise UserInputError(f"z range ({z0:g}, {z1:g}) nm is empty")
    extent = field_nm(locs, pixel_nm, extent_nm)
    z = np.nan_to_num(locs.table["z_nm"].to_numpy())
    d = density(locs, pixel_nm, method, sigma_nm, extent).astype(np.float64)
    zsum = density(locs, pixel_nm, method, sigma_nm, extent, weights=z)
    mean_z = np.divide(zsum, d, out=np.full(d.shape, z0), where=d > 0)
    colors = colormaps["turbo"](np.clip((mean_z - z0) / (z1 - z0), 0, 1))[..., :3]
    return (colors * d[..., None]).astype(np.float32)


def dye_palette(locs: Localizations) -> np.ndarray:
    """The (n_dyes, 3) RGB colour of each dye 0 … max(color) in a dye composite (see ``dye_rgb``)."""
    if "color" not in locs.table.columns:
        raise UserInputError("localizations have no color column; cannot colour by dye")
    color = locs.table["color"].to_numpy()
    n_dyes = max(int(color.max()) + 1, 1) if len(color) else 1
    if n_dyes > 3:
        raise UserInputError(f"{n_dyes} dyes; a dye composite shows at most 3")
    return DYE_COLORS[max(n_dyes, 2)][:n_dyes]


def dye_legend(locs: Localizations) -> list[tuple[str, np.ndarray]]:
    """(label, RGB colour) of each dye of a dye composite: "dye k", with its emission wavelength when the
    file's metadata carries the simulation config (``emitters.dyes[k].wavelength_nm``)."""
    palette = dye_palette(locs)
    dyes = ((locs.meta.config or {}).get("emitters") or {}).get("dyes") or []
    entries = []
    for k, color in enumerate(palette):
        wavelength = dyes[k].get("wavelength_nm") if k < len(dyes) and isinstance(dyes[k], dict) else None
        known = isinstance(wavelength, (int, float)) and not isinstance(wavelength, bool)
        entries.append((f"dye {k} ({wavelength:g} nm)" if known else f"dye {k}", color))
    return entries


def dye_rgb(locs: Localizations, pixel_nm: float, method: str = "gaussian", sigma_nm: float | None = None,
            extent_nm: Extent | None = None) -> np.ndarray:
    """Multicolour composite (rows, cols, 3) float32, each dye's raw density in its own colour.

    One or two dyes: dye 0 magenta (red + blue channels), dye 1 green (colour-blind safe).
    Three dyes: dye 0 red, 1 green, 2 blue. Localizations with a negative ``color`` (unassigned) are left out.
    """
    palette = dye_palette(locs)
    color = locs.table["color"].to_numpy()
    extent = field_nm(locs, pixel_nm, extent_nm)
    rows, cols = image_shape(extent, pixel_nm)
    rgb = np.zeros((rows, cols, 3), dtype=np.float32)
    for dye in range(len(palette)):
        sub = locs.with_table(locs.table[color == dye].reset_index(drop=True))
        rgb += density(sub, pixel_nm, method, sigma_nm, extent)[..., None] * palette[dye].astype(np.float32)
    return rgb


def widefield_sum(stack: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """The diffraction-limited view: sum over frames of a (F, H, W) stack, or of an iterable of (f, H, W)
    or (H, W) chunks; (H, W) float64 in the stack's units."""
    if isinstance(stack, np.ndarray):
        return stack.sum(axis=0, dtype=np.float64)
    total = None
    for chunk in stack:
        part = np.asarray(chunk, dtype=np.float64)
        part = part.sum(axis=0) if part.ndim == 3 else part
        total = part if total is None else total + part
    if total is None:
        raise UserInputError("empty stack: nothing to sum")
    return total


def _display_max(values: np.ndarray) -> float:
    """The display white level: DISPLAY_PERCENTILE of the positive values (1 when there are none)."""
    pos = values[values > 0]
    return float(np.percentile(pos, DISPLAY_PERCENTILE)) if len(pos) else 1.0


def _image_figure(shown: np.ndarray, pixel_nm: float, cmap: str | None, vmin: float | None, vmax: float | None,
                  title: str | None = None) -> tuple[Figure, Axes]:
    """A borderless image figure, one PNG pixel per image pixel at 150 dpi within 4–12 in, with a scale bar."""
    rows, cols = shown.shape[:2]
    width = min(max(cols / 150, 4.0), 12.0)
    fig = new_figure((width, width * rows / cols))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.axis("off")
    add_scale_bar(ax, pixel_nm, cols, n_rows=rows)
    if title:
        ax.set_title(title, fontsize=9)
    return fig, ax


def save_render(image: np.ndarray, out_png: str | os.PathLike, pixel_nm: float,
                colorbar: tuple[str, float, float, str] | None = None, cmap: str = "hot",
                per_channel: bool = False, legend: Sequence[tuple[str, np.ndarray]] = ()) -> None:
    """Write ``out_png`` (:func:`render_figure`) and the raw image as a float32 TIFF beside it (same stem,
    .tif; (rows, cols) or (rows, cols, 3) RGB), both atomically."""
    image = np.asarray(image, dtype=np.float32)
    res = 1e7 / pixel_nm  # pixels per cm
    tif = os.path.splitext(os.fspath(out_png))[0] + ".tif"
    write_atomic(tif, lambda p: tifffile.imwrite(
        p, image, photometric="rgb" if image.ndim == 3 else "minisblack",
        resolution=(res, res), resolutionunit="CENTIMETER", software=RENDER_SOFTWARE))
    save_figure(render_figure(image, pixel_nm, colorbar, cmap, per_channel, legend), out_png, dpi=150)


def render_figure(image: np.ndarray, pixel_nm: float, colorbar: tuple[str, float, float, str] | None = None,
                  cmap: str = "hot", per_channel: bool = False,
                  legend: Sequence[tuple[str, np.ndarray]] = ()) -> Figure:
    """The figure of a rendered image of ``pixel_nm`` pixels: scale bar; colour bar when ``colorbar`` =
    (label, vmin, vmax, cmap); a legend of ``legend`` = (label, RGB colour) entries, e.g. ``dye_legend``, top
    right (save it at 150 dpi for one PNG pixel per image pixel).

    Display contrast: a 2D image uses ``cmap`` from 0 to its DISPLAY_PERCENTILE; an RGB image is divided by
    the DISPLAY_PERCENTILE of its brightest channel and over-bright pixels are scaled back to keep their hue,
    or, with ``per_channel`` (dye composites), each channel is scaled and clipped on its own.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    if image.ndim == 2:
        fig, ax = _image_figure(image, pixel_nm, cmap, 0.0, _display_max(image))
    else:
        if per_channel:
            shown = np.stack([np.clip(ch / _display_max(ch), 0, 1) for ch in np.moveaxis(image, -1, 0)], axis=-1)
        else:
            shown = image / _display_max(image.max(axis=-1))
            shown = shown / np.maximum(shown.max(axis=-1, keepdims=True), 1)
        fig, ax = _image_figure(shown, pixel_nm, None, None, None)
    if colorbar is not None:
        label, vmin, vmax, bar_cmap = colorbar
        mappable = ScalarMappable(norm=Normalize(vmin, vmax), cmap=bar_cmap)
        fig.colorbar(mappable, ax=ax, label=label, fraction=0.046, pad=0.02)
    if legend:
        handles = [Patch(facecolor=tuple(color), edgecolor="none", label=label) for label, color in legend]
        ax.legend(handles=handles, loc="upper right", fontsize=8, facecolor="black", edgecolor="white",
                  labelcolor="white", framealpha=0.7)
    return fig


def save_widefield(total: np.ndarray, out_png: str | os.PathLike, pixel_nm: float, title: str | None = None) -> None:
    """PNG of a widefield sum (grey, full range) with a scale bar; ``pixel_nm`` is the camera pixel."""
    fig, _ = _image_figure(total, pixel_nm, "gray", None, None, title)
    save_figure(fig, out_png, dpi=150)
