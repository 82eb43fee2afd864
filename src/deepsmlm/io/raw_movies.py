"""Headerless raw movies described by a sidecar text file: Zhuang-lab / storm-control ``.dax`` + ``.inf``
and Picasso ``.raw`` + ``.yaml``.

Both store frames back to back from byte 0, each frame row-major (H rows of W pixels, x fastest).
Only the sidecar is read here; :func:`deepsmlm.io.images.open_stack` maps the frames.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from deepsmlm.errors import UserInputError

RAW_SUFFIXES = {".dax", ".raw"}


@dataclass(frozen=True)
class RawLayout:
    """Where the frames of a raw movie are: all from byte 0, ``dtype`` in the file's byte order."""

    n_frames: int
    shape: tuple[int, int]  # (H, W) pixels
    dtype: np.dtype
    pixel_size_nm: float | None


def raw_layout(path: Path) -> RawLayout:
    """The layout of a ``.dax`` or ``.raw`` movie from its sidecar (same stem), checked against the file length.

    Raises a one-line :class:`UserInputError` for a missing or unreadable sidecar, a missing or bad key,
    an unknown data type, or a file whose length is not the frames the sidecar describes.
    """
    dax = path.suffix.lower() == ".dax"
    sidecar = path.with_suffix(".inf" if dax else ".yaml")
    if not sidecar.is_file():
        kind = ".inf" if dax else ".yaml"
        raise UserInputError(f"{path}: its {kind} sidecar {sidecar} is missing (it holds the frame size and type)")
    try:
        text = sidecar.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise UserInputError(f"{sidecar}: cannot read the sidecar ({err.strerror or err})") from None
    layout = _dax_layout(sidecar, text) if dax else _picasso_layout(sidecar, text)
    h, w = layout.shape
    expected = layout.n_frames * h * w * layout.dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        problem = "truncated" if size < expected else "longer than described"
        raise UserInputError(
            f"{path}: {size} bytes, but {sidecar.name} describes {layout.n_frames} frames of {w}×{h} "
            f"{layout.dtype.name} = {expected} bytes ({problem}, or a wrong sidecar)"
        )
    return layout


def _dax_layout(inf: Path, text: str) -> RawLayout:
    """``frame dimensions = W x H`` (width first, as storm-control writes it), ``number of frames = N``,
    ``data type = 16 bit integers (binary, big|little endian)``."""
    keys = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            keys[" ".join(key.split()).lower()] = value.strip()
    for key in ("frame dimensions", "number of frames", "data type"):
        if key not in keys:
            raise UserInputError(f"{inf}: no '{key} = …' line")
    dims = re.fullmatch(r"(\d+)\s*x\s*(\d+)", keys["frame dimensions"])
    n = re.fullmatch(r"\d+", keys["number of frames"])
    if not dims or int(dims[1]) == 0 or int(dims[2]) == 0:
        raise UserInputError(f"{inf}: frame dimensions {keys['frame dimensions']!r} is not 'W x H' in pixels")
    if not n or int(n[0]) == 0:
        raise UserInputError(f"{inf}: number of frames {keys['number of frames']!r} is not a positive integer")
    kind = re.fullmatch(r"16 bit integers \(binary, (big|little) endian\)", " ".join(keys["data type"].split()).lower())
    if not kind:
        raise UserInputError(f"{inf}: unknown data type {keys['data type']!r} "
                             "(expected '16 bit integers (binary, big endian)' or little endian)")
    width, height = int(dims[1]), int(dims[2])
    _check_dax_roi(inf, keys, width, height)
    dtype = np.dtype(">u2" if kind[1] == "big" else "<u2")
    return RawLayout(int(n[0]), (height, width), dtype, None)


def _check_dax_roi(inf: Path, keys: dict[str, str], width: int, height: int) -> None:
    """Refuse a sidecar whose camera ROI (x/y_start…end, unbinned pixels, with ``binning = bx x by``) spans
    the frame dimensions the other way round: width and height would be swapped."""
    try:
        span_x = int(keys["x_end"]) - int(keys["x_start"]) + 1
        span_y = int(keys["y_end"]) - int(keys["y_start"]) + 1
        bx, by = (int(v) for v in re.fullmatch(r"(\d+)\s*x\s*(\d+)", keys.get("binning", "1 x 1")).groups())
    except (KeyError, ValueError, AttributeError):  # no ROI or binning given: nothing to compare
        return
    if width != height and (span_x, span_y) == (height * bx, width * by) != (width * bx, height * by):
        raise UserInputError(f"{inf}: frame dimensions {width} x {height} (W x H) contradict the ROI "
                             f"x {keys['x_start']}–{keys['x_end']}, y {keys['y_start']}–{keys['y_end']}")


class PlainYamlLoader(yaml.SafeLoader):
    """Safe YAML that reads application tags (``!!python/tuple``, ``!foo``) as their plain value."""


def _plain(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


PlainYamlLoader.add_multi_constructor("", _plain)


def _picasso_layout(sidecar: Path, text: str) -> RawLayout:
    """The first YAML document's ``Byte Order`` (< or >), ``Data Type``, ``Frames``, ``Height``, ``Width``
    and, when present, ``Pixelsize`` (nm)."""
    try:
        info = next(iter(yaml.load_all(text, Loader=PlainYamlLoader)), None)
    except yaml.YAMLError as err:
        raise UserInputError(f"{sidecar}: not readable YAML ({' '.join(str(err).split())})") from None
    if not isinstance(info, dict):
        raise UserInputError(f"{sidecar}: holds no 'key: value' movie description")
    missing = [k for k in ("Byte Order", "Data Type", "Frames", "Height", "Width") if k not in info]
    if missing:
        raise UserInputError(f"{sidecar}: no {', '.join(repr(k) for k in missing)} entry")
    sizes = {}
    for key in ("Frames", "Height", "Width"):
        value = info[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"{sidecar}: {key} {value!r} is not a positive integer")
        sizes[key] = value
    try:
        dtype = np.dtype(str(info["Data Type"]))
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "uif":
        raise UserInputError(f"{sidecar}: unknown data type {info['Data Type']!r} (e.g. uint16, float32)")
    order = info["Byte Order"]
    if order not in ("<", ">") and not (dtype.itemsize == 1 and order in ("|", "=")):
        raise UserInputError(f"{sidecar}: Byte Order {order!r} is not '<' (little endian) or '>' (big endian)")
    pixel = info.get("Pixelsize")
    numeric = isinstance(pixel, (int, float)) and not isinstance(pixel, bool)
    pixel_nm = float(pixel) if numeric and math.isfinite(pixel) and pixel > 0 else None
    return RawLayout(sizes["Frames"], (sizes["Height"], sizes["Width"]),
                     dtype.newbyteorder(order if order in "<>" else "="), pixel_nm)
