"""Localization tables as napari layer data: Points over the raw frames, or a rendered super-resolved image.

Placement (DESIGN.md's convention, napari's pixel centres): camera pixel (r, c) covers x ∈ [c·px, (c+1)·px)
and y ∈ [r·px, (r+1)·px); napari draws data index (r, c) of an image layer centred on world (r, c). A
localization at (x, y) nm therefore lies at world (row, col) = (y / px − ½, x / px − ½) over a raw stack
opened in napari (scale 1), and at frame ``frame`` along the first axis. Points keep their data in nm
(frame, y_nm, x_nm) and carry this mapping as their layer ``scale`` (1, 1/px, 1/px) and ``translate``
(0, −½, −½), composed with the raw stack layer's own scale and translate when it has one. Without a known
camera pixel (a ThunderSTORM CSV) the world unit is the nm (scale 1, no shift) until :func:`placement` is
given the pixel size. A render of pixel p nm (row r covering [r·p, (r+1)·p)) is placed so that its pixel
centres land on the same world coordinates: scale p/px, translate p/(2·px) − ½.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import deepsmlm
from deepsmlm.localizations import Localizations

MAX_POINTS = 1_000_000  # past this a table is shown as a rendered image (Points layers slow down)
POINT_SIZE_NM = 80.0  # marker diameter
RENDER_PIXEL_NM = 10.0  # pixel of a render made without being asked for one
MAX_RENDER_SIDE_PX = 8192  # a larger field gets a coarser default render pixel
DISPLAY_PERCENTILE = 99.5  # white level of a render: this percentile of its positive values
LayerData = tuple[np.ndarray, dict, str]  # napari's LayerDataTuple: (data, layer keyword arguments, layer type)
TABLE_KEY = "localizations"  # layer.metadata key of the Localizations a layer shows
FRAME_KEY = "frame"  # layer.metadata key of the Frame of the raw stack it lies on


@dataclass(frozen=True)
class Frame:
    """Where the raw stack lies in napari's world: its layer's (frame, row, col) scale and translate."""

    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    translate: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def of_layer(cls, layer) -> Frame:
        """The frame of a napari image layer of a stack (frames, rows, cols) or of one frame (rows, cols)."""
        scale, translate = (tuple(float(v) for v in values) for values in (layer.scale, layer.translate))
        return cls((1.0, *scale[-2:]) if len(scale) == 2 else scale[-3:],
                   (0.0, *translate[-2:]) if len(translate) == 2 else translate[-3:])


def placement(pixel_size_nm: float | None, frame: Frame = Frame()) -> dict:
    """``scale`` and ``translate`` of a Points layer holding (frame, y_nm, x_nm): camera pixels of
    ``pixel_size_nm`` centred as napari centres the raw stack's pixels; nm when the pixel size is unknown."""
    if pixel_size_nm is None:
        return {"scale": frame.scale, "translate": frame.translate}
    (sf, sr, sc), (tf, tr, tc) = frame.scale, frame.translate
    return {"scale": (sf, sr / pixel_size_nm, sc / pixel_size_nm), "translate": (tf, tr - sr / 2, tc - sc / 2)}


def render_placement(pixel_nm: float, pixel_size_nm: float | None, frame: Frame = Frame()) -> dict:
    """``scale`` and ``translate`` of a 2D render of ``pixel_nm`` pixels, lying on the Points of
    :func:`placement` (its pixel centres at (r + ½)·p nm)."""
    px = 1.0 if pixel_size_nm is None else pixel_size_nm
    shift = 0.0 if pixel_size_nm is None else 0.5
    (_, sr, sc), (_, tr, tc) = frame.scale, frame.translate
    s = pixel_nm / px
    return {"scale": (sr * s, sc * s), "translate": (tr + sr * (s / 2 - shift), tc + sc * (s / 2 - shift))}


def point_colors(locs: Localizations) -> dict:
    """Points coloured by dye (a ``color`` column), else by z (3D), else one colour."""
    if "color" in locs.table.columns:
        return {"face_color": "dye"}
    if locs.has_z:
        return {"face_color": "z_nm", "face_colormap": "turbo"}
    return {"face_color": "yellow"}


def features(locs: Localizations) -> pd.DataFrame:
    """The table's columns as point features (photons, bg, σ, prob, …), dyes as named categories."""
    table = locs.table.reset_index(drop=True)
    if "color" in table.columns:
        table = table.assign(dye=table["color"].map(lambda k: f"dye {k}").astype("category"))
    return table


def points_layer(locs: Localizations, name: str, frame: Frame = Frame()) -> LayerData:
    """A Points layer of ``locs`` at (frame, y, x) over the raw stack lying at ``frame``."""
    t = locs.table
    data = np.column_stack([t["frame"].to_numpy(np.float64), t["y_nm"].to_numpy(np.float64),
                            t["x_nm"].to_numpy(np.float64)])
    kwargs = {"name": name, "features": features(locs), "size": POINT_SIZE_NM, "border_width": 0.0,
              "metadata": {TABLE_KEY: locs, FRAME_KEY: frame}, **point_colors(locs),
              **placement(locs.meta.pixel_size_nm, frame)}
    return data, kwargs, "points"


def display_scaled(image: np.ndarray, per_channel: bool) -> np.ndarray:
    """An RGB render in 0–1: each channel (``per_channel``, a dye composite) or the whole image divided by
    the DISPLAY_PERCENTILE of its positive values, clipped."""
    planes = [image[..., k] for k in range(image.shape[-1])] if per_channel else [image]
    scaled = [np.clip(p / white_level(p), 0.0, 1.0) for p in planes]
    return np.stack(scaled, axis=-1) if per_channel else scaled[0]


def white_level(values: np.ndarray) -> float:
    """DISPLAY_PERCENTILE of the positive values (1 when there are none)."""
    positive = values[values > 0]
    return float(np.percentile(positive, DISPLAY_PERCENTILE)) if len(positive) else 1.0


def default_render_pixel_nm(locs: Localizations) -> float:
    """RENDER_PIXEL_NM, or coarser for a field over MAX_RENDER_SIDE_PX of those pixels."""
    reach = float(np.nanmax(locs.table[["x_nm", "y_nm"]].to_numpy())) if len(locs) else 0.0
    return max(RENDER_PIXEL_NM, float(np.ceil(reach / MAX_RENDER_SIDE_PX)))


def render_layer(locs: Localizations, name: str, pixel_nm: float | None = None, sigma_nm: float | None = None,
                 color: str = "none", frame: Frame = Frame()) -> LayerData:
    """A rendered super-resolved Image layer of ``locs`` (``deepsmlm.render``: pixel ``pixel_nm``, default
    :func:`default_render_pixel_nm`; Gaussian σ ``sigma_nm``, default each localization's own; ``color``
    none, z or dye), lying on the Points of :func:`points_layer`."""
    pixel_nm = default_render_pixel_nm(locs) if pixel_nm is None else pixel_nm
    image = deepsmlm.render(locs, pixel_nm, color=color, sigma_nm=sigma_nm)
    kwargs = {"name": name, "metadata": {TABLE_KEY: locs, FRAME_KEY: frame, "pixel_nm": pixel_nm},
              "blending": "additive", **render_placement(pixel_nm, locs.meta.pixel_size_nm, frame)}
    if image.ndim == 3:
        return display_scaled(image, per_channel=color == "dye"), {**kwargs, "rgb": True}, "image"
    return image, {**kwargs, "colormap": "magma", "contrast_limits": (0.0, white_level(image))}, "image"


def table_layer(locs: Localizations, name: str, frame: Frame = Frame()) -> LayerData:
    """A Points layer of ``locs``, or past MAX_POINTS localizations its render."""
    if len(locs) > MAX_POINTS:
        return render_layer(locs, name, frame=frame)
    return points_layer(locs, name, frame)
