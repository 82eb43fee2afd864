"""What the API takes: a config (loaded, a preset name or a YAML file) and frames (a stack file or folder, an
open :class:`ImageStack`, or an array of frames)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from deepsmlm.config import SimulationConfig, load_config
from deepsmlm.io.images import ImageStack, array_stack, open_stack

ConfigLike = SimulationConfig | str | os.PathLike
"""A config: loaded, a preset name (``epfl2016_2d``) or a YAML file."""

Frames = str | os.PathLike | ImageStack | np.ndarray
"""Frames in ADU: a path ``open_stack`` reads (TIFF, folder of TIFFs, .dax, .raw), an open stack, or an
array (frames, height, width)."""


def as_config(config: ConfigLike) -> SimulationConfig:
    """``config`` loaded (see :data:`ConfigLike`)."""
    return config if isinstance(config, SimulationConfig) else load_config(config)


def config_label(config: ConfigLike) -> str:
    """How messages name a config: its path or preset name, or a loaded config's name."""
    return config.name if isinstance(config, SimulationConfig) else str(config)


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
