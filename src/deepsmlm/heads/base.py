"""The seam between a network and its post-processing: what every output head provides.

A head owns the meaning of a network's output on its :class:`~deepsmlm.heads.grid.OutputGrid`: the training
target built from emitters and the loss against it, and the decoding of an output batch into canonical
localization rows. Detections are boolean maps (B, D, h, w) on the fine grid (D planes, 1 in 2D), so the
tiled stream keeps those whose peak lies in a tile's core without knowing the head.
"""

from __future__ import annotations

from typing import Protocol

import pandas as pd
import torch

from deepsmlm.config import ModelConfig, TrainingConfig
from deepsmlm.heads.grid import OutputGrid


class OutputHead(Protocol):
    """A network's output type. ``grid``: where its outputs lie; ``threshold``: the default detection
    threshold; ``reach_px``: camera px around a detection's peak that its decoding reads;
    ``bytes_per_px``: post-processing memory per camera pixel of a pass (bytes)."""

    grid: OutputGrid
    threshold: float

    @classmethod
    def from_config(cls, grid: OutputGrid, model: ModelConfig, training: TrainingConfig) -> OutputHead:
        """The head of a model's settings (post-processing) and training recipe (loss)."""
        ...

    @property
    def reach_px(self) -> int: ...

    @property
    def bytes_per_px(self) -> float: ...

    def targets(self, xyz_nm: torch.Tensor, frame: torch.Tensor, color: torch.Tensor | None,
                labelled: torch.Tensor, n_frames: int, height: int, width: int, *,
                photons: torch.Tensor | None = None, background: torch.Tensor | None = None) -> torch.Tensor:
        """Training target of ``n_frames`` frames of ``height`` × ``width`` camera px from emitters (E, 3) nm,
        their 0-based frames, dyes (None: one dye), whether each is labelled and their ``photons`` (E,),
        with the true ``background`` (F, H, W) photons/px when known (heads that predict them use them)."""
        ...

    def loss(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss of the network's raw output batch against ``target``."""
        ...

    def activate(self, raw: torch.Tensor) -> torch.Tensor:
        """The network's raw output → the output decoded at inference."""
        ...

    def detect(self, output: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """Boolean detection map (B, D, h, w) of an output batch (``threshold`` None: the head's)."""
        ...

    def decode(self, output: torch.Tensor, detections: torch.Tensor, first_frame: int = 0,
               origin: tuple[int, int] = (0, 0)) -> pd.DataFrame:
        """Canonical rows (frame, x_nm, y_nm[, z_nm], prob[, color, color_prob]) of ``detections`` in the
        output batch, frames counted from ``first_frame``; ``origin``: (row, col) of the outputs' first fine
        pixel in the frame (a tile's place)."""
        ...

    def image(self, output: torch.Tensor, detections: torch.Tensor) -> torch.Tensor:
        """Super-resolved image (h, w) on the fine grid of the detections, summed over the batch."""
        ...
