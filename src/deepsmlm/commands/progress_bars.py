"""The rich progress bars the CLI shows for the library's progress reports (``deepsmlm.progress``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (BarColumn, Progress, ProgressColumn, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from deepsmlm.progress import ProgressCallback, ProgressEvent, ignore

TRAINING = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
            TextColumn("{task.fields[detail]}"))
"""Training: the fraction of the budget spent, the step and times, the last loss."""
LOCALIZING = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} frames"),
              TextColumn("{task.fields[status]}"), TimeRemainingColumn())
"""Localizing: frames done of the stack, the frame rate, the time left."""
SIMULATING = Progress.get_default_columns()
"""Simulating: frames done, as a percentage, and the time left."""
DESIGNING = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
             TimeElapsedColumn(), TextColumn("{task.fields[detail]}"))
"""Designing a mask: optimisation steps done of all, the time elapsed, the objective."""


@contextmanager
def progress_bar(columns: tuple[ProgressColumn, ...], transient: bool = False,
                 show: bool = True) -> Iterator[ProgressCallback]:
    """A callback drawing each event's task as a bar of ``columns``, printing its messages above the bars;
    ``transient``: the bars vanish when done; ``show`` False: shows nothing. The bars appear at the first
    event, so checks failing before any work leave the terminal as it was."""
    if not show:
        yield ignore
        return
    bars = Progress(*columns, transient=transient)
    tasks: dict[str, TaskID] = {}

    def draw(event: ProgressEvent) -> None:
        if not tasks:
            bars.start()
        if event.task not in tasks:
            tasks[event.task] = bars.add_task(event.task, total=event.total, completed=event.done,
                                              status=event.status, detail=event.detail)
        else:
            bars.update(tasks[event.task], total=event.total, completed=event.done, status=event.status,
                        detail=event.detail)
        if event.message is not None:
            bars.console.print(event.message)

    try:
        yield draw
    finally:
        if tasks:
            bars.stop()
