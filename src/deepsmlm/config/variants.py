"""Variants of a config: configs are read-only, so a change is a new config, validated as a whole."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from deepsmlm.config.base import ConfigT, validated
from deepsmlm.errors import UserInputError


def updated(cfg: ConfigT, changes: Mapping[str, object], source: str = "config update") -> ConfigT:
    """A new config: ``cfg`` with ``changes`` applied, validated as a whole (``cfg`` stays as it is).

    ``changes`` maps dotted keys into nested sections to plain values or config objects; an invalid result
    raises UserInputError naming ``source`` and the key in one line, like a config file's errors.

    Example::

        small = updated(cfg, {"frame.height": 32, "frame.width": 32, "psf.mask": None, "model.threshold": 0.4})
    """
    data = cfg.model_dump()
    for key, value in changes.items():
        *sections, name = key.split(".")
        _section(data, sections, key, source)[name] = value.model_dump() if isinstance(value, BaseModel) else value
    return validated(type(cfg), data, source)


def _section(data: dict, sections: list[str], key: str, source: str) -> dict:
    """The nested mapping of ``data`` at the path ``sections`` (the leading part of ``key``)."""
    for depth, name in enumerate(sections, 1):
        path = ".".join(sections[:depth])
        if name not in data:
            raise UserInputError(f"{source}: unknown config key '{path}'")
        data = data[name]
        if not isinstance(data, dict):
            raise UserInputError(f"{source}: {key}: {path} is {data!r}, not a config section")
    return data
