"""What the API takes: a config (loaded, a preset name or a YAML file) and frames (a stack file or folder, an
open :class:`ImageStack`, or an array of frames)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from deepsmlm.config import SimulationConfig, load_config
from deepsmlm.errors import UserInputError
from deepsmlm.io.images import ImageStack, open_stack

ConfigLike = SimulationConfig | str | os.PathLike
"""A config: loaded, a preset name (``epfl2016_2d``) or a YAML file."""

ARRAY = Path("array")  # what messages call an array of frames

Frames = str | os.PathLike | ImageStack | np.ndarray
"""Frames in ADU: a path ``open_stack`` reads (TIFF, folder of TIFFs, .dax, .raw), an open stack, or an
array (frames, height, width)."""


def as_config(config: ConfigLike) -> SimulationConfig:
    """``config`` loaded (see :data:`ConfigLike`)."""
    return config if isinstance(config, SimulationConfig) else load_config(config)


def config_label(config: ConfigLike) -> str:
    """How messages name a config: its path or preset name, or a loaded config's name."""
    return config.name if isinstance(config, SimulationConfig) else str(config)


class _ArrayFrames:
    """The reader of a stack held in memory: each read copies its frames out (native byte order)."""

    def __init__(self, frames: np.ndarray):
        self._frames = frames

    def read(self, start: int, stop: int) -> np.ndarray:
        return self._frames[start:stop].astype(self._frames.dtype.newbyteorder("="))

    def close(self) -> None:
        pass


def array_stack(frames: np.ndarray) -> ImageStack:
    """An array of frames (frames, height, width) in ADU as a stack without a pixel size; one-line error
    for another shape, a non-numeric type or no frames."""
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype.kind not in "uif" or not frames.size:
        raise UserInputError(f"{ARRAY}: give frames as a (frames, height, width) array of numbers in ADU, "
                             f"not {frames.dtype} of shape {frames.shape}")
    return ImageStack(ARRAY, _ArrayFrames(frames), len(frames), frames.shape[1:], frames.dtype.newbyteorder("="),
                      None)


@contextmanager
def opened(frames: Frames) -> Iterator[ImageStack]:
    """``frames`` as a stack for the block; a file opened here is closed after it, a given stack is not."""
    if isinstance(frames, ImageStack):
        yield frames
    elif isinstance(frames, np.ndarray):
        yield array_stack(frames)
    else:
        with open_stack(frames) as stack:
            yield stack
