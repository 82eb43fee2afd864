"""Streaming a stack through a localizer chunk by chunk, with progress and a frame rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from deepsmlm.errors import UserInputError
from deepsmlm.io.images import ImageStack, check_finite

# (ADU frames (B, H, W), index of the first frame) -> (canonical rows, super-resolved sum (h, w) or None)
Localizer = Callable[[torch.Tensor, int], tuple[pd.DataFrame, torch.Tensor | None]]


@dataclass
class StackResult:
    table: pd.DataFrame
    superres: np.ndarray | None
    seconds: float
    n_frames: int

    @property
    def fps(self) -> float:
        return self.n_frames / self.seconds if self.seconds > 0 else float("inf")


def check_frames(chunk: np.ndarray, path, first_frame: int) -> None:
    """Reject NaN/inf and negative pixels with one line naming the file and frame."""
    check_finite(chunk, path, first_frame)
    if np.issubdtype(chunk.dtype, np.signedinteger) or np.issubdtype(chunk.dtype, np.floating):
        bad = np.nonzero((chunk < 0).reshape(len(chunk), -1).any(axis=1))[0]
        if len(bad):
            raise UserInputError(f"{path}: frame {first_frame + int(bad[0])} (0-based) has negative pixels")


def run_stack(stack: ImageStack, localizer: Localizer, batch_size: int, show_progress: bool = True) -> StackResult:
    """Localize every frame of ``stack``; rows come back sorted by frame with 0-based frame indices."""
    tables, total = [], None
    t0 = time.perf_counter()
    cols = (TextColumn("localizing"), BarColumn(), TextColumn("{task.completed}/{task.total} frames"),
            TextColumn("{task.fields[fps]}"), TimeRemainingColumn())
    with Progress(*cols, disable=not show_progress, transient=True) as progress:
        task = progress.add_task("", total=len(stack), fps="")
        for first, chunk in stack.iter_chunks(batch_size):
            check_frames(chunk, stack.path, first)
            rows, image = localizer(torch.from_numpy(chunk.astype(np.float32)), first)
            tables.append(rows)
            if image is not None:
                total = image if total is None else total + image
            done = first + len(chunk)
            progress.update(task, completed=done, fps=f"{done / (time.perf_counter() - t0):.0f} frames/s")
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    superres = None if total is None else total.cpu().numpy().astype(np.float32)
    return StackResult(table, superres, time.perf_counter() - t0, len(stack))
