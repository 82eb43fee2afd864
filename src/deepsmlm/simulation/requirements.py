"""What a simulation needs, estimated before any work: memory and disk space (bytes).

The figures are generous upper estimates of the tensors alive at once (see ``Simulator.movie``): the
emitter tables of the whole movie, one chunk's pixels through background, rendering and camera, each
rendered emitter's patch spectra, and the cached PSF z-stack. They exist to refuse, in one line, a job
that cannot fit (a density of 10⁶ µm⁻², a 200000 × 200000 px frame) instead of failing hours later.
"""

from __future__ import annotations

import math

from deepsmlm.config import PUPIL_MODELS, SimulationConfig
from deepsmlm.optics.masks import resolve_data_path
from deepsmlm.optics.measured import read_measured_stack
from deepsmlm.optics.stack import fft_size
from deepsmlm.simulation.emitters import mean_emitters_per_frame, stationary_on_fraction

BYTES_PER_EMITTER = 160  # tables of the whole movie: float64 draws while sampling, float32 / int64 kept
BYTES_PER_FRAME = 16  # per-frame emitter counts and background levels
BYTES_PER_PIXEL = 64  # a chunk's pixels: background, expected photons, camera noise (float64), ADU
BYTES_PER_FIELD_PIXEL = 32  # smooth background field: float64 noise on its padded grid and its spectrum
BYTES_PER_PATCH_PIXEL = 24  # per rendered emitter and patch pixel: interpolated spectrum, shift factor, patch
TIFF_BYTES_PER_PAGE = 256  # directory entries of one frame in the TIFF
CSV_BYTES_PER_ROW = 60  # one ground-truth row (measured ~42 bytes; ids and frames grow with the movie)


def psf_cache_bytes(cfg: SimulationConfig) -> float:
    """The fast path's z-stack of patch spectra (a pupil PSF's cache, per dye of a multicolour sample; a
    measured PSF's planes, also kept as they are for cubic interpolation)."""
    p = cfg.psf
    q = fft_size(p.patch_px)
    spectrum = q * (q // 2 + 1) * 8  # complex64
    if p.measured is not None:
        planes = len(read_measured_stack(resolve_data_path(p.measured.file)).z_nm)
        return planes * (3 * spectrum + p.patch_px**2 * 4)
    if p.model not in PUPIL_MODELS:
        return 0.0
    z0, z1 = cfg.emitters.z_range_nm
    planes = max(2, round(max(z1 - z0, p.cache_z_step_nm) / p.cache_z_step_nm) + 1)
    per_plane = 2 * spectrum + p.patch_px**2 * 4  # spectra and increments, the patch
    return planes * per_plane * max(1, len(cfg.emitters.dyes or []))


def chunk_bytes(cfg: SimulationConfig, frames: int, per_frame: float) -> float:
    """One chunk of ``frames`` frames with ``per_frame`` emitters each, from emitters to ADU."""
    f, p = cfg.frame, cfg.psf.patch_px
    canvas = frames * (f.height + 2 * p) * (f.width + 2 * p)  # frames padded by a patch on every side
    total = canvas * BYTES_PER_PIXEL + frames * per_frame * fft_size(p) ** 2 * BYTES_PER_PATCH_PIXEL
    if cfg.background.nonuniform_amplitude:
        pad = 2 * math.ceil(2 * cfg.background.nonuniform_length_nm / f.pixel_size_nm)
        total += frames * (f.height + pad) * (f.width + pad) * BYTES_PER_FIELD_PIXEL
    return total


def movie_memory_bytes(cfg: SimulationConfig, n_frames: int, chunk: int) -> float:
    """Memory to simulate ``n_frames`` frames in chunks of ``chunk``: emitter tables of the whole movie,
    one chunk's pixels and the PSF cache."""
    per_frame = mean_emitters_per_frame(cfg.emitters, cfg.frame)  # molecules on, when blinking
    whole = n_frames * (BYTES_PER_FRAME + per_frame * BYTES_PER_EMITTER)
    blinking = cfg.emitters.blinking
    if blinking.enabled and stationary_on_fraction(blinking) > 0:
        whole += per_frame / stationary_on_fraction(blinking) * BYTES_PER_EMITTER  # the molecule pool
    return whole + chunk_bytes(cfg, min(chunk, n_frames), per_frame) + psf_cache_bytes(cfg)


def movie_file_bytes(cfg: SimulationConfig, n_frames: int) -> float:
    """Disk space of a simulated movie: the uint16 TIFF and the ground-truth CSV."""
    f = cfg.frame
    rows = mean_emitters_per_frame(cfg.emitters, cfg.frame)
    return n_frames * (f.height * f.width * 2 + TIFF_BYTES_PER_PAGE + rows * CSV_BYTES_PER_ROW)
