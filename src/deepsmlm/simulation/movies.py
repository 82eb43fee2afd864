"""Seeded movies with their ground truth, made chunk by chunk: held in memory, or streamed into a folder.

A folder gets frames.tif (uint16 ADU), ground_truth.csv (ThunderSTORM) and config.yaml. Frames and ground
truth stream to disk chunk by chunk (memory does not grow with the number of frames' pixels), into
temporary files renamed into place at the end; memory and disk space are checked before any work, and a
failed run leaves no output behind.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch

from deepsmlm.config import SimulationConfig, dump_config
from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import atomic_path, write_text_atomic
from deepsmlm.io.thunderstorm import HEADERS, csv_writer, thunderstorm_values
from deepsmlm.localizations import pixel_index
from deepsmlm.progress import ProgressCallback, ProgressEvent, ignore
from deepsmlm.resources import GIB, require_memory
from deepsmlm.simulation.emitters import mean_emitters_per_frame
from deepsmlm.simulation.requirements import movie_file_bytes, movie_memory_bytes
from deepsmlm.simulation.simulator import CHUNK, FrameBatch, Simulator, to_uint16

TRUTH_COLUMNS = ("frame", "x_nm", "y_nm", "z_nm", "photons", "bg")  # then "color" for multicolour samples
FRAMES, TRUTH, CONFIG = "frames.tif", "ground_truth.csv", "config.yaml"


def ground_truth_table(batch: FrameBatch, pixel_nm: float) -> pd.DataFrame:
    """Canonical ground-truth rows (0-based frames) of one simulated chunk, with the local background
    (and the dye index ``color`` of multicolour samples): the one conversion of emitters to table rows."""
    em = batch.emitters
    xyz = em.xyz_nm.cpu().numpy().astype(np.float64)
    frame = em.frame.cpu().numpy()
    h, w = batch.background.shape[-2:]
    rows = np.clip(pixel_index(xyz[:, 1], pixel_nm).astype(int), 0, h - 1)
    cols = np.clip(pixel_index(xyz[:, 0], pixel_nm).astype(int), 0, w - 1)
    bg = batch.background.cpu().numpy()[frame - batch.first_frame, rows, cols]
    table = pd.DataFrame({"frame": frame, "x_nm": xyz[:, 0], "y_nm": xyz[:, 1], "z_nm": xyz[:, 2],
                          "photons": em.photons.cpu().numpy().astype(np.float64), "bg": bg.astype(np.float64)})
    if em.color is not None:
        table["color"] = em.color.cpu().numpy().astype(np.int64)
    return table


def movie_chunks(cfg: SimulationConfig, sim: Simulator, chunk: int = CHUNK,
                 progress: ProgressCallback | None = None) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    """``cfg.frames`` frames of ``sim`` (the config's simulator) seeded by ``cfg.seed``: (uint16 ADU frames
    (F, H, W), their ground-truth rows) chunk by chunk; ``progress`` hears of the frames done ("simulating")."""
    gen = torch.Generator().manual_seed(cfg.seed)
    report = progress or ignore
    report(ProgressEvent("simulating", 0, cfg.frames))
    done = 0
    for batch in sim.movie(cfg.frames, gen, chunk=chunk):
        truth = ground_truth_table(batch, cfg.frame.pixel_size_nm)
        done += batch.adu.shape[0]
        report(ProgressEvent("simulating", done, cfg.frames))
        yield to_uint16(batch.adu), truth


def simulate_in_memory(cfg: SimulationConfig, sim: Simulator, chunk: int = CHUNK,
                       progress: ProgressCallback | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """The movie of :func:`movie_chunks` whole: uint16 ADU frames (frames, H, W) and the ground-truth rows
    (the same as :func:`simulate_to_folder` writes); memory is checked before any work."""
    f = cfg.frame
    require_memory(movie_memory_bytes(cfg, cfg.frames, chunk) + 2 * cfg.frames * f.height * f.width,
                   f"simulating {cfg.frames} frames of {f.height}×{f.width} px in memory")
    frames, tables = zip(*movie_chunks(cfg, sim, chunk, progress))
    return np.concatenate(frames), pd.concat(tables, ignore_index=True)


def check_room(cfg: SimulationConfig, out: Path, chunk: int = CHUNK) -> None:
    """Refuse, in one line, a simulation whose working memory or files cannot fit on this machine."""
    f = cfg.frame
    per_frame = mean_emitters_per_frame(cfg.emitters, f)
    require_memory(movie_memory_bytes(cfg, cfg.frames, chunk),
                   f"simulating {cfg.frames} frames of {f.height}×{f.width} px with ~{per_frame:.3g} emitters each")
    folder = next(p for p in (out, *out.parents) if p.exists())
    need, free = movie_file_bytes(cfg, cfg.frames), shutil.disk_usage(folder).free
    if need > free:
        raise UserInputError(f"{out}: {cfg.frames} frames of {f.height}×{f.width} px and their ground truth need "
                             f"about {need / GIB:.3g} GiB of disk, more than the {free / GIB:.3g} GiB free there")


@contextmanager
def output_folder(out: Path) -> Iterator[Path]:
    """Create ``out`` (and missing parents) for this run; on failure remove the folders this run created."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        if created:
            shutil.rmtree(created[-1], ignore_errors=True)
        raise


def write_frames(path: Path, chunks: Iterable[np.ndarray], shape: tuple[int, int, int],
                 pixel_size_nm: float) -> None:
    """Write uint16 frames arriving chunk by chunk as one multi-page TIFF with contiguous pages (memory-
    mappable; ImageJ-compatible with the pixel size, BigTIFF when over 2 GiB), as ``io.tiff.write_stack``
    writes a whole stack."""
    if math.prod(shape) * 2 > 2**31:
        kwargs: dict = {"bigtiff": True}
    else:
        res = 1e3 / pixel_size_nm  # pixels per µm
        kwargs = {"imagej": True, "resolution": (res, res), "metadata": {"unit": "um", "axes": "TYX"}}
    tifffile.imwrite(path, chunks, shape=shape, dtype=np.uint16, photometric="minisblack", **kwargs)


@contextmanager
def ground_truth_csv(path: Path, colors: bool) -> Iterator[Callable[[pd.DataFrame], int]]:
    """``append(table) -> rows so far``: ``ground_truth_table`` chunks written as one ThunderSTORM CSV (ids
    1, 2, … across chunks; a ``color`` column when ``colors``), replacing ``path`` when the block ends
    without error."""
    columns = ["id", *TRUTH_COLUMNS, *(["color"] if colors else [])]
    with csv_writer(path, [HEADERS[c] for c in columns], quote_header=True) as write:
        rows = 0

        def append(table: pd.DataFrame) -> int:
            nonlocal rows
            table.insert(0, "id", np.arange(rows + 1, rows + len(table) + 1))
            write(list(thunderstorm_values(table[columns]).values()))
            rows += len(table)
            return rows

        yield append


def simulate_to_folder(cfg: SimulationConfig, out: Path, sim: Simulator, chunk: int = CHUNK,
                       progress: ProgressCallback | None = None) -> int:
    """Simulate ``cfg.frames`` frames of ``sim`` (the config's simulator) with ``cfg.seed`` into ``out``
    (FRAMES, TRUTH, CONFIG); returns the number of emitters (ground-truth rows) written. ``progress`` hears
    of the frames done."""
    check_room(cfg, out, chunk)
    f = cfg.frame
    rows = 0
    with (output_folder(out),
          atomic_path(out / FRAMES) as tif,
          ground_truth_csv(out / TRUTH, bool(cfg.emitters.dyes)) as append):

        def frames() -> Iterator[np.ndarray]:
            nonlocal rows
            for adu, truth in movie_chunks(cfg, sim, chunk, progress):
                rows = append(truth)
                yield adu

        write_frames(tif, frames(), (cfg.frames, f.height, f.width), f.pixel_size_nm)
        write_text_atomic(out / CONFIG, dump_config(cfg))
    return rows
