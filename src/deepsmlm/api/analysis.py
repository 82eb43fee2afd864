"""`deepsmlm.evaluate` and `deepsmlm.render`: scores against ground truth and super-resolved images, from
localization tables or the files holding them (any supported format)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepsmlm.analysis import metrics
from deepsmlm.analysis.matching import check_method
from deepsmlm.analysis.render import (VIEWS, density, depth_range, depth_rgb, dye_legend, dye_rgb, field_nm,
                                      image_shape, region, save_render, side_view)
from deepsmlm.errors import UserInputError, check_positive
from deepsmlm.io.localization_files import read_localizations
from deepsmlm.localizations import Localizations

LocalizationsLike = Localizations | str | os.PathLike
"""A localization table, or a file holding one."""
Roi = tuple[float, float, float, float]

COLORS = ("none", "z", "dye")
METHODS = ("gaussian", "histogram")
MAX_SIDE_PX = 20_000


def as_localizations(locs: LocalizationsLike, pixel_size_nm: float | None = None) -> tuple[Localizations, str]:
    """(the table, what messages call it): ``locs`` itself, or read from its file (``pixel_size_nm`` for
    files in pixels that do not state it)."""
    if isinstance(locs, Localizations):
        return locs, "localizations"
    return read_localizations(locs, pixel_size_nm=pixel_size_nm), str(locs)


def evaluate(gt: LocalizationsLike, pred: LocalizationsLike, lateral_tol_nm: float = 250.0,
             axial_tol_nm: float | None = 500.0, *, match: str = "hungarian", border_nm: float = 0.0,
             pixel_size_nm: float | None = None) -> dict:
    """Match ``pred`` to ``gt`` frame by frame within ``lateral_tol_nm`` (and ``axial_tol_nm`` when both are
    3D; None: laterally only) and score: Jaccard, recall, precision, RMSE and bias (nm), SMLM-2016
    efficiency, counts. ``match``: hungarian or greedy (the challenge's closest first); ``border_nm``:
    leave out emitters this close to the field's edge; ``pixel_size_nm``: for files in pixel units.

    Example::

        scores = deepsmlm.evaluate("ground_truth.csv", locs, lateral_tol_nm=100)
        scores["jaccard"], scores["rmse_lateral_nm"]
    """
    check_method(match)
    check_positive(pixel_size_nm, "--pixel-size-nm")
    (truth, _), (found, _) = (as_localizations(x, pixel_size_nm) for x in (gt, pred))
    return metrics.evaluate(truth, found, lateral_tol_nm, axial_tol_nm, match, border_nm)


def check_render_options(color: str, view: str, method: str, sigma_nm: float | None, pixel_nm: float,
                         sigma_weighted: bool = False) -> None:
    """One-line errors for a colour, view or method not offered, a σ or pixel size that is not positive, or
    ``sigma_weighted`` with a fixed σ or a histogram."""
    if color not in COLORS:
        raise UserInputError(f"--color {color!r}: choose one of {', '.join(COLORS)}")
    if view not in VIEWS:
        raise UserInputError(f"--view {view!r}: choose one of {', '.join(VIEWS)}")
    if method not in METHODS:
        raise UserInputError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    check_positive(sigma_nm, "--sigma-nm")
    check_positive(pixel_nm, "--pixel-nm")
    if sigma_weighted and (sigma_nm is not None or method != "gaussian"):
        raise UserInputError("--sigma-weighted draws each localization with its own σ: give neither --sigma-nm "
                             "nor --method histogram with it")


def check_sigmas(locs: Localizations, name: str, view: str) -> None:
    """Every localization must have a finite, positive σ along the axes ``view`` shows (σ-weighted
    rendering); else a one-line error naming ``name``, the column and the first bad data row."""
    for axis in view:  # xy, xz or yz
        sigma = locs.table[f"sigma_{axis}_nm"].to_numpy(np.float64)
        bad = ~(np.isfinite(sigma) & (sigma > 0))
        if bad.any():
            raise UserInputError(f"{name}: {int(bad.sum())} localization(s) with an unknown (NaN) or non-positive "
                                 f"{axis} uncertainty, first in data row {int(np.argmax(bad)) + 1}; --sigma-weighted "
                                 f"draws each with its own σ")


def parse_roi(roi: str | Roi) -> Roi:
    """'x0,y0,x1,y1' or (x0, y0, x1, y1), nm, with x0 < x1 and y0 < y1."""
    text = roi if isinstance(roi, str) else ",".join(f"{v:g}" for v in roi)
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise UserInputError(f"--roi {text!r}: give x0,y0,x1,y1 in nm") from None
    if not (x1 > x0 and y1 > y0):
        raise UserInputError(f"--roi {text!r}: needs x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


@dataclass(frozen=True)
class Rendering:
    """A super-resolved image of ``n_localizations`` localizations at ``pixel_nm`` nm per pixel: (rows, cols)
    density, or (rows, cols, 3) RGB for depth or dye colour, with its colour bar or dye legend (a dye
    composite's channels are shown each scaled on its own)."""

    image: np.ndarray
    pixel_nm: float
    n_localizations: int
    colorbar: tuple[str, float, float, str] | None = None
    legend: tuple[tuple[str, np.ndarray], ...] = ()
    per_channel: bool = False

    def save(self, out_png: str | os.PathLike) -> None:
        """Write the PNG (scale bar, colour bar or legend) and the raw float32 TIFF beside it."""
        save_render(self.image, out_png, self.pixel_nm, colorbar=self.colorbar, per_channel=self.per_channel,
                    legend=self.legend)


def shown(locs: Localizations, name: str, color: str, view: str, roi: str | Roi | None) -> Localizations:
    """The localizations a rendering shows: those inside ``roi``, seen from ``view``; one-line errors when
    none are left or the colour or view needs what the table lacks."""
    if not len(locs):
        raise UserInputError(f"{name}: no localizations to render")
    if roi is not None:
        locs = region(locs, parse_roi(roi))
        if not len(locs):
            raise UserInputError(f"{name}: no localizations inside --roi {roi}")
    if color == "z" and not locs.has_z:
        raise UserInputError(f"{name}: --color z needs 3D localizations (all z are 0)")
    if view != "xy":
        if not locs.has_z:
            raise UserInputError(f"{name}: --view {view} needs 3D localizations (all z are 0)")
        locs = side_view(locs, view)
    if color == "dye" and "color" not in locs.table.columns:
        raise UserInputError(f"{name}: --color dye needs a color (dye) column")
    return locs


def rendering(locs: LocalizationsLike, pixel_nm: float = 10.0, *, color: str = "none", method: str = "gaussian",
              sigma_nm: float | None = None, view: str = "xy", roi: str | Roi | None = None,
              pixel_size_nm: float | None = None, sigma_weighted: bool = False) -> Rendering:
    """The :class:`Rendering` of :func:`render`, ready to :meth:`~Rendering.save`."""
    check_render_options(color, view, method, sigma_nm, pixel_nm, sigma_weighted)
    table, name = as_localizations(locs, pixel_size_nm)
    if sigma_weighted:
        check_sigmas(table, name, view)
    table = shown(table, name, color, view, roi)
    extent = field_nm(table, pixel_nm)
    rows, cols = image_shape(extent, pixel_nm)
    side = max(rows, cols)
    if side > MAX_SIDE_PX:
        raise UserInputError(f"image of {cols}×{rows} px exceeds {MAX_SIDE_PX} px a side; "
                             f"use a larger --pixel-nm (at least {math.ceil(pixel_nm * side / MAX_SIDE_PX)})")
    if color == "z":
        z_range = depth_range(table)
        image = depth_rgb(table, pixel_nm, z_range, method, sigma_nm, extent)
        return Rendering(image, pixel_nm, len(table), colorbar=("z (nm)", *z_range, "turbo"))
    if color == "dye":
        image = dye_rgb(table, pixel_nm, method, sigma_nm, extent)
        return Rendering(image, pixel_nm, len(table), legend=tuple(dye_legend(table)),
                         per_channel=True)
    return Rendering(density(table, pixel_nm, method, sigma_nm, extent), pixel_nm, len(table))


def render(locs: LocalizationsLike, pixel_nm: float = 10.0, *, color: str = "none", method: str = "gaussian",
           sigma_nm: float | None = None, view: str = "xy", roi: str | Roi | None = None,
           pixel_size_nm: float | None = None, sigma_weighted: bool = False,
           out: str | os.PathLike | None = None) -> np.ndarray:
    """A super-resolved image of ``locs`` at ``pixel_nm`` nm per pixel (row r covers y ∈ [r·p, (r+1)·p),
    origin top-left): (rows, cols) density, or (rows, cols, 3) RGB with ``color`` z (depth) or dye.

    ``method``: gaussian (σ = ``sigma_nm``, default each localization's uncertainty, a render pixel where
    it is unknown) or histogram; ``sigma_weighted``: each localization a Gaussian of its own σ (sigma_x_nm,
    sigma_y_nm; sigma_z_nm in side views), every one of which must be known (a one-line error otherwise);
    ``view``: xy (top), xz or yz (side: z down the image); ``roi``: (x0, y0, x1, y1) nm, only that
    rectangle; ``pixel_size_nm``: the camera pixel, for files in pixel units; ``out``: also write this PNG
    (scale bar; colour bar or legend) and the raw float32 TIFF beside it.

    Example::

        image = deepsmlm.render(locs, 10.0, out="superres.png")   # 10 nm pixels
    """
    picture = rendering(locs, pixel_nm, color=color, method=method, sigma_nm=sigma_nm, view=view, roi=roi,
                        pixel_size_nm=pixel_size_nm, sigma_weighted=sigma_weighted)
    if out is not None:
        if Path(out).suffix.lower() != ".png":
            raise UserInputError(f"{out}: give a .png path (the float32 TIFF is written beside it)")
        picture.save(out)
    return picture.image
