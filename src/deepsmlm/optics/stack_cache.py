"""On-disk cache of the fast path's z-stacks: a converged vectorial grid takes minutes to build (the
Tetrapod's 401 planes at N = 1015), a rerun reads the same stack in milliseconds.

An entry is keyed by the SHA-256 of everything the stack depends on: the base PSF's classes, their
buffers (aperture, mask, aberration and focus phases, dipole fields) and scalar settings (grid size,
sampling, pixel integration, focal plane), the z planes, and the source code of the optics modules that
compute it — so neither another config nor changed physics code can read a stale stack. Folder:
``$DEEPSMLM_CACHE``, else ``$XDG_CACHE_HOME/deepsmlm`` or ``~/.cache/deepsmlm``; ``DEEPSMLM_CACHE=off``
turns the cache off. Entries are written atomically; an unreadable one is rebuilt. Delete the folder to
reclaim the space (about 27 MB per Tetrapod preset).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deepsmlm.io.atomic import atomic_path

CACHE_ENV = "DEEPSMLM_CACHE"
# the modules whose code turns a PSF's buffers into its z-stack
SOURCES = ("psf.py", "pupil.py", "vectorial.py", "stack.py", "stack_cache.py")


def cache_dir() -> Path | None:
    """The cache folder, or None when ``DEEPSMLM_CACHE=off``."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in ("off", "0", "") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepsmlm"


def _settings(module: torch.nn.Module) -> str:
    """The scalar settings of a module and of its pupil grid, if any, as a stable string."""
    plain = (bool, int, float, str, tuple, type(None))
    items = [(k, v) for k, v in sorted(vars(module).items()) if not k.startswith("_") and isinstance(v, plain)]
    grid = getattr(module, "grid", None)
    if grid is not None:
        items += [(f"grid.{k}", v) for k, v in sorted(vars(grid).items()) if isinstance(v, plain)]
    return repr(items)


def stack_key(base: torch.nn.Module, z_nm: torch.Tensor, fft_px: int) -> str:
    """Hex SHA-256 of the base PSF, the planes and the code that builds the stack (module docstring)."""
    h = hashlib.sha256()
    folder = Path(__file__).parent
    for name in SOURCES:
        h.update((folder / name).read_bytes())
    for module in base.modules():
        h.update(f"{type(module).__module__}.{type(module).__qualname__}|{_settings(module)}".encode())
    for name, tensor in sorted(base.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    h.update(z_nm.detach().cpu().double().numpy().tobytes())
    h.update(str(fft_px).encode())
    return h.hexdigest()


def load_spectra(key: str) -> torch.Tensor | None:
    """The cached spectra of ``key``, or None (no cache, no entry, or an unreadable one)."""
    folder = cache_dir()
    path = None if folder is None else folder / "psf" / f"{key}.safetensors"
    if path is None or not path.is_file():
        return None
    try:
        return load_file(str(path))["spectra"]
    except (SafetensorError, OSError, KeyError):
        return None


def save_spectra(key: str, spectra: torch.Tensor) -> None:
    """Store ``spectra`` under ``key`` (atomic); a cache that cannot be written is skipped silently."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        (folder / "psf").mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "psf" / f"{key}.safetensors") as tmp:
            save_file({"spectra": spectra.detach().cpu().contiguous()}, str(tmp))
    except OSError:
        return
