"""Configs in and out: presets shipped in the package, YAML files, plain dicts, and YAML text back."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import yaml

from deepsmlm.config.base import validated
from deepsmlm.config.simulation import SimulationConfig
from deepsmlm.config.variants import updated
from deepsmlm.errors import UserInputError

PRESET_PACKAGE = "deepsmlm.configs"


def preset_names() -> list[str]:
    """Names of the presets shipped inside the package."""
    return sorted(p.name[:-5] for p in resources.files(PRESET_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def config_from_dict(data: dict, source: str = "<config>") -> SimulationConfig:
    """Validate a plain dict; raise UserInputError naming ``source`` and the key on failure."""
    if not isinstance(data, dict):
        raise UserInputError(f"{source}: top level must be a mapping of config keys")
    return validated(SimulationConfig, data, source)


def load_config(name_or_path: str | os.PathLike) -> SimulationConfig:
    """Load a preset by name (e.g. ``tetrapod_paper``) or a YAML file by path; the files a YAML file names
    relative to itself (a model folder's mask.npy, sCMOS maps) are resolved against its folder."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserInputError(f"{path}: config file not found")
        try:
            source, text = str(path), path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserInputError(f"{path}: not a YAML text file") from None
    else:
        res = resources.files(PRESET_PACKAGE) / f"{name_or_path}.yaml"
        if not res.is_file():
            raise UserInputError(
                f"{name_or_path}: neither a config file nor a preset (presets: {', '.join(preset_names())})"
            )
        source, text = f"preset {name_or_path}", res.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserInputError(f"{source}: invalid YAML{where} ({problem})") from None
    cfg = config_from_dict(data, source)
    return with_files_in(cfg, path.parent.resolve(), source) if path.is_file() else cfg


def with_files_in(cfg: SimulationConfig, folder: Path, source: str) -> SimulationConfig:
    """``cfg`` with its relative file names (mask, measured PSF, sCMOS maps) made paths inside ``folder``, so
    a model folder's files are found from anywhere."""
    changes = {}
    for key, section in (("psf.mask.file", cfg.psf.mask), ("psf.measured.file", cfg.psf.measured)):
        if section is not None and not section.file.startswith(("pkg:", "data:")):
            changes[key] = str(folder / Path(section.file).expanduser())
    if cfg.camera.scmos_maps is not None:
        changes["camera.scmos_maps"] = str(folder / Path(cfg.camera.scmos_maps).expanduser())
    return updated(cfg, changes, source) if changes else cfg


def dump_config(cfg: SimulationConfig) -> str:
    """The resolved config as YAML text (loads back to an equal config)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
