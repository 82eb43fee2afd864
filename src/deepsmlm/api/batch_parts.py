"""One chunk of a batch, as a Dask worker runs it: frames [first, stop) of a stack localized by a model that
each worker process loads once, the rows written atomically as one Parquet part.

A part holds the canonical table of its frames (0-based frame numbers of the whole stack) and the run's
metadata (pixel size, frame shape, the stack's frame count, source, config), as ``localize`` writes them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache, partial

from deepsmlm.api.model import Model, load_model
from deepsmlm.io.images import open_stack
from deepsmlm.io.parquet import parquet_writer

GIB = 1 << 30
WORKER_MEMORY_SHARE = 0.5  # of a Dask worker's memory limit, the working-memory budget unless told
MODELS_KEPT = 2  # models a worker process keeps loaded (one batch uses one)


@dataclass(frozen=True)
class Settings:
    """How every chunk of a batch runs, as sent to the workers: ``model`` (a shipped name, a model folder or
    .onnx file as an absolute path, or a classic fitter), ``config`` (a preset name or absolute YAML path),
    ``device``, ``backend`` and the options of :meth:`~deepsmlm.api.model.Model.stream` (``max_memory_gb``:
    each worker's working-memory budget, GiB; default half the worker's Dask memory limit)."""

    model: str
    config: str | None = None
    device: str = "cpu"
    backend: str = "torch"
    batch_size: int | None = None
    threshold: float | None = None
    pixel_size_nm: float | None = None
    baseline_subtracted: bool = False
    force: bool = False
    max_memory_gb: float | None = None
    max_uncertainty_nm: float | None = None

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Part:
    """Frames ``first`` … ``stop`` − 1 (0-based) of the stack file ``stack``, written to the part ``path``
    (absolute paths, seen alike by every worker)."""

    stack: str
    first: int
    stop: int
    path: str


@lru_cache(maxsize=MODELS_KEPT)
def worker_model(model: str, device: str, config: str | None, backend: str) -> Model:
    """The model, loaded at a worker process's first chunk and kept for the next ones."""
    return load_model(model, device, config=config, backend=backend)


def worker_budget_gb(max_memory_gb: float | None) -> float | None:
    """``max_memory_gb`` when given; else, on a Dask worker with a memory limit, WORKER_MEMORY_SHARE of it
    (GiB); else None (the default share of the machine's available memory)."""
    if max_memory_gb is not None:
        return max_memory_gb
    try:
        from distributed import get_worker

        limit = get_worker().memory_manager.memory_limit
    except (ImportError, ValueError):  # not on a Dask worker
        return None
    return WORKER_MEMORY_SHARE * limit / GIB if limit else None


def localize_part(settings: Settings, part: Part) -> int:
    """Localize ``part``'s frames (their neighbours read as temporal context, large frames tiled within the
    worker's budget) of a stack the client checked, and write the rows to ``part.path`` atomically, so a
    part exists only once complete. Returns the number of localizations."""
    model = worker_model(settings.model, settings.device, settings.config, settings.backend)
    with open_stack(part.stack) as stack:
        run = model.stream(stack, batch_size=settings.batch_size, threshold=settings.threshold,
                           baseline_subtracted=settings.baseline_subtracted,
                           max_memory_gb=worker_budget_gb(settings.max_memory_gb),
                           max_uncertainty_nm=settings.max_uncertainty_nm,
                           open_writer=partial(parquet_writer, part.path),
                           frames=range(part.first, part.stop), checked=True)
    return run.result.n_localizations
