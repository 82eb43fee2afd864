"""Progress of long library tasks (training, localizing a stack), reported to the caller.

Library code never prints: a task hands each report to an optional ``progress`` callback and the caller
shows it as it likes (the CLI draws rich bars; a notebook or a napari widget its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """One report of a running task.

    ``task`` names it ("training", "localizing"); ``done`` of ``total`` is the work done, in the task's
    units (training: the fraction of its step or time budget, of 1; localizing: frames); ``status`` and
    ``detail`` describe where it stands ("step 40/200, 0:00:12 elapsed", "loss 0.0123", "35 frames/s");
    ``message`` is a line worth keeping (a validation result), None in a plain update.
    """

    task: str
    done: float
    total: float
    status: str = ""
    detail: str = ""
    message: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def ignore(event: ProgressEvent) -> None:
    """The callback of a caller that shows no progress."""
