"""Which head decodes which network: one line per model kind."""

from __future__ import annotations

from deepsmlm.config import ModelConfig
from deepsmlm.heads.base import OutputHead
from deepsmlm.heads.density import DensityHead
from deepsmlm.heads.locnet import LocNetHead

HEADS: dict[str, type[OutputHead]] = {
    "deepstorm2d": DensityHead,
    "deepstorm3d": DensityHead,
    "locnet": LocNetHead,
}


def head_for(model: ModelConfig) -> type[OutputHead]:
    """The head class of ``model.kind``."""
    return HEADS[model.kind]
