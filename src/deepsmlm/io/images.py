"""Lazy image-stack reading: multi-page TIFF / BigTIFF / ImageJ / OME-TIFF files, folders of single-frame TIFFs,
raw movies with a sidecar (storm-control ``.dax`` + ``.inf``, Picasso ``.raw`` + ``.yaml``), and arrays in memory.

Nothing is read at opening beyond the TIFF headers or sidecar. Uncompressed contiguous image data is memory-mapped
and each read copies its frames out, then releases the mapped file pages (``madvise(MADV_DONTNEED)``),
so streaming a stack larger than RAM keeps the resident set at about one chunk. Compressed or scattered
data is decoded page by page, only the pages asked for.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

from deepsmlm.errors import UserInputError
from deepsmlm.io.raw_movies import RAW_SUFFIXES, raw_layout

_SUFFIXES = {".tif", ".tiff"}
# nm per length unit, as written in ImageJ / tifffile-shaped / OME metadata
_UNIT_NM = {"nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "micron": 1e3, "mm": 1e6, "cm": 1e7, "m": 1e9, "Å": 0.1}
# nm per TIFF ResolutionUnit (3 cm, 4 mm, 5 µm); inch (2) is print DPI and ignored
_TAG_UNIT_NM = {3: 1e7, 4: 1e6, 5: 1e3}
ARRAY = Path("array")  # the path of a stack held in memory, as messages name it


def _reason(err: BaseException) -> str:
    """An exception as one line: its type and message."""
    return " ".join(f"{type(err).__name__}: {err}".split())


class _MappedFrames:
    """Frames of one uncompressed, contiguous block in a file, mapped read-only."""

    def __init__(self, path: Path, offset: int, n_frames: int, shape: tuple[int, int], dtype: np.dtype):
        frame_bytes = dtype.itemsize * shape[0] * shape[1]
        if offset + n_frames * frame_bytes > path.stat().st_size:
            raise UserInputError(f"{path}: file is truncated (image data runs past its end)")
        with open(path, "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self._frames = np.ndarray((n_frames, *shape), dtype, buffer=self._map, offset=offset)
        self._offset, self._frame_bytes = offset, frame_bytes

    def read(self, start: int, stop: int) -> np.ndarray:
        """Copy frames [start, stop) out (native byte order), then drop the mapped pages from the resident set."""
        out = self._frames[start:stop].astype(self._frames.dtype.newbyteorder("="))
        if stop > start and hasattr(mmap, "MADV_DONTNEED"):
            lo = (self._offset + start * self._frame_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
            self._map.madvise(mmap.MADV_DONTNEED, lo, self._offset + stop * self._frame_bytes - lo)
        return out

    def close(self) -> None:
        self._frames = None
        self._map.close()


class _TiffPages:
    """Frames decoded one TIFF page at a time (compressed, tiled or scattered data)."""

    def __init__(self, tif: tifffile.TiffFile, path: Path, shape: tuple[int, int], dtype: np.dtype):
        self._tif, self._path, self._shape, self._dtype = tif, path, shape, dtype
        self._pages = [page for series in tif.series for page in series.pages]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Decode pages [start, stop) into one (F, H, W) array."""
        out = np.empty((stop - start, *self._shape), self._dtype)
        for k in range(start, stop):
            try:
                out[k - start] = self._pages[k].asarray()
            except Exception as err:  # corrupt or truncated page
                raise UserInputError(f"{self._path}: cannot decode frame {k} ({_reason(err)})") from None
        return out

    def close(self) -> None:
        self._tif.close()


class _FolderFrames:
    """One frame per single-page TIFF file; each file's size and type are checked when it is read."""

    def __init__(self, files: list[Path], shape: tuple[int, int], dtype: np.dtype):
        self._files, self._shape, self._dtype = files, shape, dtype

    def read(self, start: int, stop: int) -> np.ndarray:
        """Read files [start, stop) into one (F, H, W) array."""
        out = np.empty((stop - start, *self._shape), self._dtype)
        for k in range(start, stop):
            file = self._files[k]
            try:
                with tifffile.TiffFile(file) as tif:
                    if len(tif.pages) != 1:
                        raise UserInputError(
                            f"{file}: holds {len(tif.pages)} pages; a folder stack needs one frame per file"
                        )
                    frame = tif.pages[0].asarray()
            except UserInputError:
                raise
            except Exception as err:
                raise UserInputError(f"{file}: not a readable TIFF ({_reason(err)})") from None
            if frame.shape != self._shape or frame.dtype != self._dtype:
                raise UserInputError(
                    f"{file}: mixed frame sizes: {frame.shape} {frame.dtype}, "
                    f"but {self._files[0].name} is {self._shape} {self._dtype}"
                )
            out[k - start] = frame
        return out

    def close(self) -> None:
        pass


class _ArrayFrames:
    """Frames of a stack held in memory; each read copies its frames out (native byte order)."""

    def __init__(self, frames: np.ndarray):
        self._frames = frames

    def read(self, start: int, stop: int) -> np.ndarray:
        return self._frames[start:stop].astype(self._frames.dtype.newbyteorder("="))

    def close(self) -> None:
        pass


class ImageStack:
    """A lazily read stack of 2D frames; open it with :func:`open_stack`.

    ``stack[i]`` gives one (H, W) frame, ``stack[a:b]`` a (F, H, W) array; both are fresh copies in
    native byte order. Frames are 0-based, in file (or natural file-name) order; ImageJ / OME
    hyperstacks are flattened in their page order.
    """

    def __init__(
        self,
        path: Path,
        reader: _MappedFrames | _TiffPages | _FolderFrames | _ArrayFrames,
        n_frames: int,
        shape: tuple[int, int],
        dtype: np.dtype,
        pixel_size_nm: float | None,
    ):
        self._path, self._reader = path, reader
        self._n, self._shape, self._dtype, self._pixel_size_nm = n_frames, shape, dtype, pixel_size_nm
        self._closed = False

    @property
    def path(self) -> Path:
        """The file or folder the stack was opened from."""
        return self._path

    @property
    def n_frames(self) -> int:
        """Number of 2D frames (all pages of all series, or all files of the folder)."""
        return self._n

    @property
    def shape(self) -> tuple[int, int]:
        """Frame size (H, W) in pixels."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """Pixel type of the frames returned (native byte order)."""
        return self._dtype

    @property
    def pixel_size_nm(self) -> float | None:
        """Pixel size in nm from TIFF resolution tags, ImageJ or OME metadata, or a raw movie's sidecar;
        None when the file has none."""
        return self._pixel_size_nm

    @property
    def memmapped(self) -> bool:
        """True when the image data is uncompressed and contiguous, read through a memory map without decoding."""
        return isinstance(self._reader, _MappedFrames)

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"ImageStack({str(self._path)!r}, n_frames={self._n}, shape={self._shape}, dtype={self._dtype})"

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._closed:
            raise ValueError(f"{self._path}: stack is closed")
        return self._reader.read(start, stop)

    def __getitem__(self, key: int | slice) -> np.ndarray:
        """One frame (H, W) for an int, frames (F, H, W) for a slice (any step)."""
        if isinstance(key, slice):
            frames = range(self._n)[key]
            if frames.step == 1:
                return self._read(frames.start, frames.stop)
            out = np.empty((len(frames), *self._shape), self._dtype)
            for k, i in enumerate(frames):
                out[k] = self._read(i, i + 1)[0]
            return out
        i = range(self._n)[key]  # IndexError when out of range, negative indices allowed
        return self._read(i, i + 1)[0]

    def iter_chunks(self, chunk_frames: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first_frame, frames (F, H, W)) with F ≤ chunk_frames; only one chunk is held at a time."""
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be ≥ 1, got {chunk_frames}")
        for start in range(0, self._n, chunk_frames):
            yield start, self._read(start, min(start + chunk_frames, self._n))

    def close(self) -> None:
        """Release the file handle and memory map; further reads raise ValueError."""
        if not self._closed:
            self._closed = True
            self._reader.close()

    def __enter__(self) -> ImageStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_stack(path: str | os.PathLike) -> ImageStack:
    """Open a TIFF stack file (classic, BigTIFF, ImageJ, OME; any compression), a folder of single-frame TIFFs,
    or, by extension, a ``.dax`` (storm-control) or ``.raw`` (Picasso) movie with its sidecar.

    Folder files (``*.tif``, ``*.tiff``) are sorted naturally (``frame2`` before ``frame10``); the first
    one sets the frame size, and every other is checked when it is read. Raises a one-line
    :class:`UserInputError` naming the file for a missing or unreadable file or sidecar, pages that are
    not 2D, mixed page sizes, an empty folder, a stack without frames, or raw data whose length is not
    what its sidecar describes.
    """
    path = Path(path)
    if path.is_dir():
        return _open_folder(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file or folder")
    if path.suffix.lower() in RAW_SUFFIXES:
        layout = raw_layout(path)
        reader = _MappedFrames(path, 0, layout.n_frames, layout.shape, layout.dtype)
        return ImageStack(path, reader, layout.n_frames, layout.shape, layout.dtype.newbyteorder("="),
                          layout.pixel_size_nm)
    try:
        tif = tifffile.TiffFile(path)
    except Exception as err:
        raise UserInputError(f"{path}: not a readable TIFF ({_reason(err)})") from None
    try:
        return _open_tiff(tif, path)
    except Exception as err:
        tif.close()
        if isinstance(err, UserInputError):
            raise
        raise UserInputError(f"{path}: not a readable TIFF ({_reason(err)})") from None


def array_stack(frames: np.ndarray) -> ImageStack:
    """An array of frames (frames, height, width) as a stack named :data:`ARRAY`, without a pixel size;
    one-line :class:`UserInputError` for another shape, a non-numeric type or no frames."""
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype.kind not in "uif" or not frames.size:
        raise UserInputError(f"{ARRAY}: give frames as a (frames, height, width) array of numbers in ADU, "
                             f"not {frames.dtype} of shape {frames.shape}")
    return ImageStack(ARRAY, _ArrayFrames(frames), len(frames), frames.shape[1:], frames.dtype.newbyteorder("="),
                      None)


def _open_tiff(tif: tifffile.TiffFile, path: Path) -> ImageStack:
    """Check the file's series hold 2D frames of one size and type; memory-map them when contiguous."""
    all_series = tif.series
    first = all_series[0].keyframe if all_series else None
    if first is None or first.size == 0:
        raise UserInputError(f"{path}: holds no image frames")
    if len(first.shape) != 2:
        raise UserInputError(f"{path}: pages are not 2D grayscale frames (page shape {first.shape}: RGB or samples)")
    odd = sorted(
        (s.pages[0].index, s.keyframe.shape, s.keyframe.dtype)
        for s in all_series[1:]
        if (s.keyframe.shape, s.keyframe.dtype) != (first.shape, first.dtype)
    )
    if odd:
        index, odd_shape, odd_dtype = odd[0]
        raise UserInputError(
            f"{path}: mixed page sizes: page {index} is {odd_shape} {odd_dtype}, page 0 is {first.shape} {first.dtype}"
        )
    shape, dtype = first.shape, np.dtype(first.dtype).newbyteorder("=")
    n_frames = sum(s.size for s in all_series) // (shape[0] * shape[1])
    kind = _short_metadata(tif, all_series)
    if kind:
        raise UserInputError(f"{path}: truncated or corrupt ({kind} metadata lists more frames than the pages found)")
    pixel_size = _pixel_size_nm(tif)
    offset = all_series[0].dataoffset if len(all_series) == 1 else None
    if offset is not None:
        reader = _MappedFrames(path, offset, n_frames, shape, dtype.newbyteorder(tif.byteorder))
        tif.close()
    else:
        reader = _TiffPages(tif, path, shape, dtype)
    return ImageStack(path, reader, n_frames, shape, dtype, pixel_size)


def _short_metadata(tif: tifffile.TiffFile, all_series: list[tifffile.TiffPageSeries]) -> str | None:
    """'imagej' or 'shaped' when that metadata promises more frames than tifffile found in the pages, else None."""
    if tif.is_imagej and all_series[0].kind != "imagej":  # tifffile fell back to scanning pages
        return "imagej"
    for series in all_series:
        if series.kind == "shaped":
            try:
                declared = math.prod(json.loads(series.keyframe.shaped_description)["shape"])
            except (TypeError, ValueError, KeyError):  # no or old-style description: nothing to compare
                continue
            if declared != series.size:
                return "shaped"
    return None


def _natural_key(name: str) -> list[int | str]:
    """Sort key putting ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _open_folder(folder: Path) -> ImageStack:
    files = sorted(
        (f for f in folder.iterdir() if f.suffix.lower() in _SUFFIXES and not f.name.startswith(".") and f.is_file()),
        key=lambda f: _natural_key(f.name),
    )
    if not files:
        raise UserInputError(f"{folder}: folder holds no .tif/.tiff files")
    with open_stack(files[0]) as first:
        if first.n_frames != 1:
            raise UserInputError(f"{files[0]}: holds {first.n_frames} frames; a folder stack needs one frame per file")
        shape, dtype, pixel_size = first.shape, first.dtype, first.pixel_size_nm
    return ImageStack(folder, _FolderFrames(files, shape, dtype), len(files), shape, dtype, pixel_size)


def _pixel_size_nm(tif: tifffile.TiffFile) -> float | None:
    """Pixel size in nm: OME PhysicalSizeX, else the X resolution tag (pixels per unit) in the unit named by
    ImageJ / tifffile metadata or by the ResolutionUnit tag."""
    try:
        if tif.is_ome:
            ome = ET.fromstring(tif.ome_metadata)
            pixels = next((el for el in ome.iter() if el.tag.split("}")[-1] == "Pixels"), None)
            if pixels is not None and "PhysicalSizeX" in pixels.attrib:
                return float(pixels.get("PhysicalSizeX")) * _UNIT_NM[pixels.get("PhysicalSizeXUnit", "µm")]
        page = tif.pages[0]
        x_per_unit = page.resolution[0]
        unit = (tif.imagej_metadata or {}).get("unit") or (tif.shaped_metadata or [{}])[0].get("unit")
        nm_per_unit = _UNIT_NM.get(unit.replace("\\u00B5", "µ")) if unit else _TAG_UNIT_NM.get(page.resolutionunit)
    except (ValueError, KeyError, SyntaxError):  # malformed metadata: no pixel size rather than no stack
        return None
    return nm_per_unit / x_per_unit if nm_per_unit and x_per_unit > 0 else None


def check_finite(array: np.ndarray, path: str | os.PathLike, first_frame: int = 0) -> None:
    """Raise a one-line :class:`UserInputError` naming ``path`` and the first frame holding NaN or ±inf.

    ``array`` is (F, H, W) frames starting at 0-based frame ``first_frame``, or one (H, W) frame.
    """
    if array.dtype.kind not in "fc":
        return
    finite = np.isfinite(array.reshape(-1, array.shape[-2] * array.shape[-1])).all(axis=1)
    if not finite.all():
        frame = first_frame + int(np.argmin(finite))
        raise UserInputError(f"{path}: frame {frame} (0-based) holds NaN or infinite values")
