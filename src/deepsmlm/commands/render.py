"""`deepsmlm render`: a super-resolved image (PNG + float32 TIFF) from a localization file."""

from __future__ import annotations

from pathlib import Path

from deepsmlm.api.analysis import check_render_options, rendering
from deepsmlm.errors import UserInputError, check_positive
from deepsmlm.io.outputs import check_outputs


def run_render(locs_path: Path, out: Path, pixel_nm: float, color: str = "none", method: str = "gaussian",
               sigma_nm: float | None = None, pixel_size_nm: float | None = None, view: str = "xy",
               roi: str | None = None, sigma_weighted: bool = False) -> None:
    """Render ``locs_path`` at ``pixel_nm`` (nm per image pixel) into ``out`` (PNG) and ``out`` with .tif.

    ``color``: none ('hot' density), z (turbo depth colour with a colour bar) or dye (RGB composite);
    ``method``: gaussian (σ = ``sigma_nm`` or each localization's uncertainty) or histogram;
    ``sigma_weighted``: each localization a Gaussian of its own σ, all of which must be known;
    ``pixel_size_nm``: the camera pixel, for files in pixel units; ``view``: xy (top), xz or yz (side);
    ``roi``: "x0,y0,x1,y1" in nm, render only that rectangle.
    """
    check_render_options(color, view, method, sigma_nm, pixel_nm, sigma_weighted)
    check_positive(pixel_size_nm, "--pixel-size-nm")
    if out.suffix.lower() != ".png":
        raise UserInputError(f"-o {out}: give a .png path (the float32 TIFF is written beside it)")
    check_outputs({"-o": out}, {"LOCS": locs_path}, beside={"-o's TIFF": out.with_suffix(".tif")})
    picture = rendering(locs_path, pixel_nm, color=color, method=method, sigma_nm=sigma_nm, view=view, roi=roi,
                        pixel_size_nm=pixel_size_nm, sigma_weighted=sigma_weighted)
    picture.save(out)
    rows, cols = picture.image.shape[:2]
    drawn = "σ-weighted gaussian" if sigma_weighted else method
    print(f"rendered {picture.n_localizations} localizations ({drawn}, color {color}, view {view}) into "
          f"{cols}×{rows} px of {pixel_nm:g} nm: {out} and {out.with_suffix('.tif')}")
