"""`deepsmlm render`: a super-resolved image (PNG + float32 TIFF) from a localization file."""

from __future__ import annotations

import math
from pathlib import Path

from deepsmlm.analysis.render import (VIEWS, density, depth_range, depth_rgb, dye_legend, dye_rgb, field_nm,
                                      image_shape, region, save_render, side_view)
from deepsmlm.errors import UserInputError, check_positive
from deepsmlm.io.outputs import check_outputs

COLORS = ("none", "z", "dye")
METHODS = ("gaussian", "histogram")
MAX_SIDE_PX = 20_000


def parse_roi(text: str) -> tuple[float, float, float, float]:
    """'x0,y0,x1,y1' (nm) with x0 < x1 and y0 < y1."""
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise UserInputError(f"--roi {text!r}: give x0,y0,x1,y1 in nm") from None
    if not (x1 > x0 and y1 > y0):
        raise UserInputError(f"--roi {text!r}: needs x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def run_render(locs_path: Path, out: Path, pixel_nm: float, color: str = "none", method: str = "gaussian",
               sigma_nm: float | None = None, pixel_size_nm: float | None = None, view: str = "xy",
               roi: str | None = None) -> None:
    """Render ``locs_path`` at ``pixel_nm`` (nm per image pixel) into ``out`` (PNG) and ``out`` with .tif.

    ``color``: none ('hot' density), z (turbo depth colour with a colour bar) or dye (RGB composite);
    ``method``: gaussian (σ = ``sigma_nm`` or each localization's uncertainty) or histogram;
    ``pixel_size_nm``: the camera pixel, for files in pixel units; ``view``: xy (top), xz or yz (side);
    ``roi``: "x0,y0,x1,y1" in nm, render only that rectangle.
    """
    from deepsmlm.io.localization_files import read_localizations

    if color not in COLORS:
        raise UserInputError(f"--color {color!r}: choose one of {', '.join(COLORS)}")
    if view not in VIEWS:
        raise UserInputError(f"--view {view!r}: choose one of {', '.join(VIEWS)}")
    if method not in METHODS:
        raise UserInputError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    check_positive(sigma_nm, "--sigma-nm")
    check_positive(pixel_nm, "--pixel-nm")
    check_positive(pixel_size_nm, "--pixel-size-nm")
    if out.suffix.lower() != ".png":
        raise UserInputError(f"-o {out}: give a .png path (the float32 TIFF is written beside it)")
    check_outputs({"-o": out}, {"LOCS": locs_path}, beside={"-o's TIFF": out.with_suffix(".tif")})
    locs = read_localizations(locs_path, pixel_size_nm=pixel_size_nm)
    if not len(locs):
        raise UserInputError(f"{locs_path}: no localizations to render")
    if roi is not None:
        locs = region(locs, parse_roi(roi))
        if not len(locs):
            raise UserInputError(f"{locs_path}: no localizations inside --roi {roi}")
    if color == "z" and not locs.has_z:
        raise UserInputError(f"{locs_path}: --color z needs 3D localizations (all z are 0)")
    if view != "xy":
        if not locs.has_z:
            raise UserInputError(f"{locs_path}: --view {view} needs 3D localizations (all z are 0)")
        locs = side_view(locs, view)
    if color == "dye" and "color" not in locs.table.columns:
        raise UserInputError(f"{locs_path}: --color dye needs a color (dye) column")
    extent = field_nm(locs, pixel_nm)
    rows, cols = image_shape(extent, pixel_nm)
    side = max(rows, cols)
    if side > MAX_SIDE_PX:
        raise UserInputError(f"image of {cols}×{rows} px exceeds {MAX_SIDE_PX} px a side; "
                             f"use a larger --pixel-nm (at least {math.ceil(pixel_nm * side / MAX_SIDE_PX)})")
    if color == "z":
        z_range = depth_range(locs)
        image = depth_rgb(locs, pixel_nm, z_range, method, sigma_nm, extent)
        save_render(image, out, pixel_nm, colorbar=("z (nm)", *z_range, "turbo"))
    elif color == "dye":
        save_render(dye_rgb(locs, pixel_nm, method, sigma_nm, extent), out, pixel_nm, per_channel=True,
                    legend=dye_legend(locs))
    else:
        save_render(density(locs, pixel_nm, method, sigma_nm, extent), out, pixel_nm)
    print(f"rendered {len(locs)} localizations ({method}, color {color}, view {view}) into {cols}×{rows} px of "
          f"{pixel_nm:g} nm: {out} and {out.with_suffix('.tif')}")
