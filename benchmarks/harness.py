"""What the benchmarks share: their command-line conventions, seeded test sets with ground truth, localizing
through the public API, timing, scores, the machine description and the JSON report.

A benchmark is a script (``python benchmarks/NAME.py``, which puts this folder on the import path) that
prints one JSON document and, with ``--out FILE``, also writes it there atomically. Only the standard
library is imported here; torch and deepsmlm load where a helper needs them, so a benchmark that measures
memory or import cost does not carry them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from deepsmlm.api.model import Model
    from deepsmlm.localizations import Localizations
    from deepsmlm.simulation.simulator import FrameBatch, Simulator

T = TypeVar("T")

COUNTS = ("n_tp", "n_fp", "n_fn")
SCORES_3D = ("jaccard", "recall", "precision", "rmse_lateral_nm", "rmse_axial_nm", *COUNTS)
LIBRARIES = ("torch", "numpy", "scipy", "pandas", "tifffile")  # versions reported when loaded


# ---- command line ----

def parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's parser: ``--help`` shows its module docstring ``doc``; ``--out FILE`` also writes the
    JSON document to FILE (see :func:`report`)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="also write the JSON document to this file (atomically)")
    return ap


class _Threads(argparse.Action):
    def __call__(self, parser, namespace, value, option_string=None) -> None:
        import torch

        torch.set_num_threads(value)
        setattr(namespace, self.dest, value)


def add_threads(ap: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads for the run (set as the option is read; default torch's own)."""
    ap.add_argument("--threads", type=int, default=None, action=_Threads,
                    help="torch CPU threads (default: torch's own choice)")


def _labelled(text: str) -> tuple[str, str]:
    label, sep, name = text.partition("=")
    if not (sep and label and name):
        raise argparse.ArgumentTypeError(f"{text!r}: give label=MODEL (a shipped name or a model folder)")
    return label, name


def add_labelled_models(ap: argparse.ArgumentParser) -> None:
    """``--model label=NAME``, repeated (at least one): ``dict(args.model)`` maps labels to models."""
    ap.add_argument("--model", action="append", required=True, type=_labelled,
                    help="label=model folder or shipped name")


def add_data_physics(ap: argparse.ArgumentParser, note: str = "") -> None:
    """``--data-physics``: the image formation of the test frames (``with_physics``'s choices)."""
    from deepsmlm.optics.factory import PHYSICS_CHOICES

    ap.add_argument("--data-physics", choices=PHYSICS_CHOICES, default="model",
                    help="image formation of the test frames: each model's own (default), the presets' physical "
                         f"one (issue 18), or the reference{note}")


# ---- data and processes ----

def shared_data(*parts: str) -> Path:
    """A path under the shared reference data (``$DEEPSMLM_DATA`` or the nearest ``shared/data``); exits
    with a message when there is none."""
    from deepsmlm.optics.masks import shared_data_root

    root = shared_data_root()
    if root is None:
        raise SystemExit("shared reference data not found (set DEEPSMLM_DATA)")
    return root.joinpath(*parts)


@contextmanager
def scratch() -> Iterator[Path]:
    """A temporary folder under /tmp for the block's files, removed after it."""
    with tempfile.TemporaryDirectory(prefix="deepsmlm-bench-", dir="/tmp") as folder:
        yield Path(folder)


def vm_hwm_mb() -> float:
    """Peak resident set of this process (VmHWM), MB."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024


def run_child(script: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> dict:
    """Run ``script`` with ``args`` in a fresh Python process (so its peak memory is its own) and return
    the JSON document on the last line of its output."""
    done = subprocess.run([sys.executable, script, *args], check=True, capture_output=True, text=True,
                          env=None if env is None else {**os.environ, **env})
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- test sets, localizing, timing, scores ----

def test_set(sim: Simulator, n_frames: int, seed: int, pixel_nm: float) -> tuple[FrameBatch, Localizations]:
    """``n_frames`` frames of ``sim`` seeded by ``seed`` (ADU, in memory) and their ground truth: frame
    (0-based), x, y, z (nm), photons, local background (photons/px) and the dye of multicolour emitters,
    with the frames' metadata (``pixel_nm`` camera pixels)."""
    import torch

    from deepsmlm.localizations import Localizations, Metadata
    from deepsmlm.simulation.movies import ground_truth_table

    batch = sim.sample(n_frames, torch.Generator().manual_seed(seed))
    meta = Metadata(pixel_size_nm=pixel_nm, image_shape=tuple(batch.adu.shape[-2:]), n_frames=n_frames)
    return batch, Localizations(ground_truth_table(batch, pixel_nm), meta)


def localize(model: Model, adu: torch.Tensor, batch_size: int | None = None) -> pd.DataFrame:
    """``model``'s localization table of simulated frames (F, H, W) in ADU, through the public API; the
    checks meant for recorded data are skipped (``force``): test sets differ from training on purpose."""
    return model.localize(adu.cpu().numpy(), batch_size=batch_size, force=True).table


def best_seconds(fn: Callable[[], T], repeat: int = 3) -> tuple[float, T]:
    """The shortest wall time (s) of ``repeat`` calls of ``fn`` (the machine may be shared) and the last
    call's result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def scores(metrics: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The ``keys`` of an ``evaluate`` result, in that order (None for a score that did not apply, e.g.
    colour without dyes)."""
    return {k: metrics.get(k) for k in keys}


# ---- report ----

def machine() -> dict[str, Any]:
    """This machine and software: processor, CPU cores, memory (GB), Python, torch's CPU threads and the
    versions of the libraries loaded (call it when the work is done)."""
    out = {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
           "python": platform.python_version()}
    if "torch" in sys.modules:
        out["threads"] = sys.modules["torch"].get_num_threads()
    out.update({name: sys.modules[name].__version__ for name in LIBRARIES if name in sys.modules})
    return out


def report(document: Mapping[str, Any], out: str | os.PathLike | None = None, indent: int | None = 2) -> None:
    """Print ``document`` as JSON (``indent`` None: one line, for a parent process) and, with ``out``, write
    it there atomically: to a temporary file beside it, then renamed, so an interrupted run leaves the
    previous file whole."""
    text = json.dumps(document, indent=indent)
    if out is not None:
        path = Path(out)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text + "\n")
        os.replace(partial, path)
    print(text)
