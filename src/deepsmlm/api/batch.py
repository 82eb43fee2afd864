"""`deepsmlm.localize_batch`: many stacks, and whole-chip stacks, localized on a Dask distributed cluster.

Each stack is cut into chunks of frames; each chunk runs on a worker (:mod:`deepsmlm.api.batch_parts`: the
model loaded once per worker process, frames tiled within the worker's memory budget, neighbouring frames
read as temporal context) and is written atomically as a Parquet part in ``OUT/<stack>.parts/``. When all
parts of a stack exist they are joined in frame order into ``OUT/<stack>.<ext>`` by the streaming writers
of :mod:`deepsmlm.io`. A run that is interrupted (a worker lost, the client killed) and started again with
the same options runs only the chunks whose part is missing; parts of other options are discarded. The
parts go once the whole batch has succeeded. Stacks, model and config must be readable, and ``OUT``
writable, at the same paths on every worker (a shared file system).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from deepsmlm.api.batch_parts import Part, Settings, localize_part
from deepsmlm.api.model import Model, load_model, run_config
from deepsmlm.errors import UserInputError, check_positive
from deepsmlm.inference.stream import rate_text
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.io.images import open_stack
from deepsmlm.io.localization_files import localization_writer
from deepsmlm.io.outputs import check_output_folder
from deepsmlm.io.parquet import read_parquet
from deepsmlm.progress import ProgressCallback, ProgressEvent, ignore

if TYPE_CHECKING:
    from distributed import Client

FORMATS = {"parquet": ".parquet", "csv": ".csv", "hdf5": ".hdf5"}  # --format → the joined file's extension
CONNECT_TIMEOUT_S = 5.0  # a scheduler address that does not answer within this fails
MANIFEST = "run.json"  # in each parts folder: the stack, chunking and settings its parts were made with


@dataclass(frozen=True)
class StackJob:
    """One stack of a batch: its file, frame count, joined output, parts folder and chunks (first, stop)."""

    stack: Path
    n_frames: int
    out: Path
    parts: Path
    chunks: tuple[tuple[int, int], ...]

    def part(self, first: int, stop: int) -> Part:
        return Part(str(self.stack), first, stop, str(self.parts / f"{first:010d}-{stop:010d}.parquet"))

    def missing(self) -> list[Part]:
        """The chunks whose part is not written yet."""
        return [p for p in (self.part(a, b) for a, b in self.chunks) if not Path(p.path).exists()]


@dataclass
class BatchResult:
    """What a batch did: localizations per joined output file, the stacks refused with their one-line reason,
    frames localized in this run and skipped (parts of an earlier run), the seconds from submitting the
    chunks to the last file joined, and the cluster's workers."""

    outputs: dict[Path, int] = field(default_factory=dict)
    refused: dict[Path, str] = field(default_factory=dict)
    frames_run: int = 0
    frames_skipped: int = 0
    seconds: float = 0.0
    workers: int = 0

    @property
    def fps(self) -> float:
        """Frames localized in this run per second."""
        return self.frames_run / self.seconds if self.seconds > 0 else float("inf")


def stack_paths(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The stacks named by ``inputs``: glob patterns or paths (each sorted, in the order given); one line when
    a pattern or path matches nothing."""
    found: list[Path] = []
    for item in [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs:
        matches = sorted(glob.glob(os.fspath(item))) or ([item] if Path(item).exists() else [])
        if not matches:
            raise UserInputError(f"{os.fspath(item)}: no stack matches")
        found += [Path(m).resolve() for m in matches]
    return found


@contextmanager
def connect(scheduler: str, workers: int | None) -> Iterator[Client]:
    """A Dask ``distributed.Client``: of a new LocalCluster of ``workers`` processes of one thread each for
    ``local``, else of the scheduler at ``scheduler`` (host:port or tcp://…), which must answer within
    CONNECT_TIMEOUT_S."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UserInputError("--scheduler: Dask distributed is not installed (pip install 'deepsmlm[dask]')") from None
    check_positive(workers, "--workers")
    if scheduler == "local":
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            yield client
        return
    if workers is not None:
        raise UserInputError(f"--workers {workers}: applies to --scheduler local (a cluster's workers are its own)")
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except Exception as err:  # refused, timed out, or another service answered in its own protocol
        reason = ((str(err).strip().splitlines() or [type(err).__name__])[0] if isinstance(err, OSError)
                  else f"no Dask reply: {type(err).__name__}")
        raise UserInputError(f"--scheduler {scheduler}: no Dask scheduler answered within {CONNECT_TIMEOUT_S:g} s "
                             f"({reason})") from None
    with client:
        yield client


def absolute_name(name: str | None) -> str | None:
    """A model or config as every worker sees it: an existing path made absolute, a name as it is."""
    return str(Path(name).resolve()) if name is not None and Path(name).exists() else name


def plan_jobs(paths: list[Path], model: Model, settings: Settings, out_dir: Path, ext: str,
              chunk_frames: int) -> tuple[list[StackJob], dict[Path, str]]:
    """The stacks that fit the model (:meth:`Model.check_stack`), as jobs with their chunks, and those that do
    not (an unreadable file, another pixel size, data unlike the model's) with their one-line reason."""
    cfg = run_config(model.config, settings.threshold, settings.baseline_subtracted, model.classic)
    jobs, refused = [], {}
    for path in paths:
        try:
            with open_stack(path) as stack:
                model.check_stack(stack, cfg, settings.pixel_size_nm, settings.force)
                n_frames = len(stack)
        except UserInputError as err:
            refused[path] = str(err)
            continue
        chunks = tuple((a, min(a + chunk_frames, n_frames)) for a in range(0, n_frames, chunk_frames))
        jobs.append(StackJob(path, n_frames, out_dir / f"{path.stem}{ext}", out_dir / f"{path.stem}.parts", chunks))
    return jobs, refused


def prepare_parts(job: StackJob, settings: Settings, chunk_frames: int) -> None:
    """The parts folder of ``job`` with its manifest; parts an earlier run made with other options or
    chunks (another manifest) are removed first."""
    manifest = json.dumps({"stack": str(job.stack), "n_frames": job.n_frames, "chunk_frames": chunk_frames,
                           "settings": settings.as_dict()}, indent=1, sort_keys=True)
    path = job.parts / MANIFEST
    if path.exists() and path.read_text(encoding="utf-8") == manifest:
        return
    remove_parts(job, keep_folder=True)
    job.parts.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, manifest)


def remove_parts(job: StackJob, keep_folder: bool = False) -> None:
    """Remove the parts folder's own files (parts, temporary parts of killed workers, the manifest) and,
    unless ``keep_folder``, the folder when nothing else is in it."""
    if not job.parts.is_dir():
        return
    for path in [*job.parts.glob("*.parquet"), *job.parts.glob(".*.parquet.*.part"), job.parts / MANIFEST]:
        path.unlink(missing_ok=True)
    if not keep_folder and not any(job.parts.iterdir()):
        job.parts.rmdir()


def join_parts(job: StackJob) -> int:
    """Write ``job``'s parts, in frame order, into its output file (its format by its extension; atomically,
    with the parts' metadata); returns the number of localizations."""
    parts = [read_parquet(job.part(a, b).path) for a, b in job.chunks]
    with localization_writer(job.out, parts[0].meta) as write:
        for part in parts:
            write(part.table)
    return sum(len(part) for part in parts)


def run_jobs(client: Client, jobs: list[StackJob], settings: Settings, result: BatchResult,
             report: ProgressCallback) -> None:
    """Submit every missing part, report frames done as parts arrive, and join each stack once all its parts
    exist. A stack whose chunk fails with bad data is refused by name; other errors (a worker lost too
    often) end the batch, keeping the parts done."""
    from distributed import as_completed

    total = sum(job.n_frames for job in jobs)
    futures, waiting, t0 = {}, {}, time.perf_counter()
    for job in jobs:
        missing = job.missing()
        waiting[job] = len(missing)
        result.frames_skipped += job.n_frames - sum(p.stop - p.first for p in missing)
        for part in missing:
            futures[client.submit(localize_part, settings, part, pure=False)] = (job, part)
    report(ProgressEvent("localizing", result.frames_skipped, total))
    ready = [job for job in jobs if waiting[job] == 0]
    for future in as_completed(futures):
        job, part = futures[future]
        if future.status == "error" and isinstance(future.exception(), UserInputError):
            result.refused.setdefault(job.stack, str(future.exception()))
            continue
        future.result()  # raises what ended the chunk otherwise
        result.frames_run += part.stop - part.first
        waiting[job] -= 1
        if waiting[job] == 0 and job.stack not in result.refused:
            ready.append(job)
        done = result.frames_skipped + result.frames_run
        report(ProgressEvent("localizing", done, total, rate_text(result.frames_run, time.perf_counter() - t0)))
        for joined in ready:
            result.outputs[joined.out] = join_parts(joined)
        ready.clear()
    for job in ready:
        result.outputs[job.out] = join_parts(job)
    result.seconds = time.perf_counter() - t0


def localize_batch(stacks: str | os.PathLike | Sequence[str | os.PathLike], model: str | os.PathLike,
                   out: str | os.PathLike, *, scheduler: str = "local", workers: int | None = None,
                   chunk_frames: int = 256, format: str = "parquet", config: str | os.PathLike | None = None,
                   device: str = "cpu", backend: str = "torch", batch_size: int | None = None,
                   threshold: float | None = None, pixel_size_nm: float | None = None,
                   baseline_subtracted: bool = False, force: bool = False, max_memory_gb: float | None = None,
                   max_uncertainty_nm: float | None = None, progress: ProgressCallback | None = None) -> BatchResult:
    """Localize every stack ``stacks`` names (glob patterns or paths) with ``model`` on a Dask cluster into
    ``out/<stack>.<format>`` (parquet, csv: ThunderSTORM, hdf5: Picasso), as ``load_model(model, device,
    config=config, backend=backend).localize`` would, row for row.

    ``scheduler``: ``local`` (a LocalCluster of ``workers`` processes of one thread; default Dask's count)
    or a scheduler address (``tcp://host:8786``); ``chunk_frames``: frames per task; ``max_memory_gb``:
    each worker's working-memory budget (GiB; large frames are tiled to fit; default half the worker's Dask
    memory limit); the other options as :meth:`~deepsmlm.api.model.Model.localize`. Stacks that do not fit
    the model (another pixel size, …) are refused by name in the result, the others localized.
    ``progress`` hears of the frames done of all stacks. Example::

        deepsmlm.localize_batch("data/*.tif", "default-2d", "out/", workers=4)
    """
    check_positive(chunk_frames, "--chunk-frames")
    if format not in FORMATS:
        raise UserInputError(f"--format {format}: choose {', '.join(FORMATS)}")
    ext = FORMATS[format]
    paths = stack_paths(stacks)
    out_dir = Path(out).resolve()
    check_output_folder(out_dir, [f"{p.stem}{ext}" for p in paths], {str(p): p for p in paths})
    settings = Settings(absolute_name(str(model)), absolute_name(None if config is None else str(config)), device,
                        backend, batch_size, threshold, pixel_size_nm, baseline_subtracted, force, max_memory_gb,
                        max_uncertainty_nm)
    local = load_model(settings.model, "cpu", config=settings.config, backend=backend)
    local.check_max_uncertainty(max_uncertainty_nm)
    with connect(scheduler, workers) as client:
        jobs, refused = plan_jobs(paths, local, settings, out_dir, ext, chunk_frames)
        result = BatchResult(refused=refused, workers=len(client.scheduler_info()["workers"]))
        for job in jobs:
            prepare_parts(job, settings, chunk_frames)
        run_jobs(client, jobs, settings, result, progress or ignore)
    for job in jobs:
        if job.out in result.outputs:
            remove_parts(job)
    return result
