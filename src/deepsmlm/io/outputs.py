"""Output paths checked before any work: writable, distinct from each other, never one of the inputs.

A command names its inputs and every file it will write (derived ones included, such as the float32
TIFF beside a rendered PNG) and calls :func:`check_outputs` first, so a user's data is never written
over and a bad path fails in one line before minutes of computation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import tifffile
import yaml

from deepsmlm.errors import UserInputError

SOFTWARE = "deepsmlm"  # TIFF Software tag of the images deepsmlm writes beside its outputs (renders, PSF stacks)
RENDER_SOFTWARE = f"{SOFTWARE} render"

PathLike = str | os.PathLike


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


def check_writable_file(path: Path, option: str, suffixes: Iterable[str] | None = None) -> None:
    """``path`` can be created or replaced as a regular file (with one of ``suffixes`` when given)."""
    if suffixes is not None:
        allowed = tuple(suffixes)
        if path.suffix.lower() not in allowed:
            raise UserInputError(f"{option} {path}: unknown extension {path.suffix or '(none)'!r}; "
                                 f"use {', '.join(allowed)}")
    if path.is_dir():
        raise UserInputError(f"{option} {path}: is a folder, not a file")
    _check_folder_reachable(path.parent, option, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserInputError(f"{option} {path}: file exists and is not writable")


def check_writable_folder(path: Path, option: str) -> None:
    """``path`` is a folder, or can be created as one, and files can be written into it."""
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{option} {path}: is a file, not a folder")
    _check_folder_reachable(path, option, path)


def _check_folder_reachable(folder: Path, option: str, target: Path) -> None:
    """Every existing part of ``folder`` is a folder, and the deepest existing one is writable."""
    base = _first_existing(folder)
    if not base.is_dir():
        raise UserInputError(f"{option} {target}: {base} is a file, so nothing can be written inside it")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserInputError(f"{option} {target}: folder {base} is not writable")


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file (links and relative paths included)."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_outputs(outputs: Mapping[str, PathLike | None], inputs: Mapping[str, PathLike | None] = {},
                  beside: Mapping[str, PathLike | None] = {}) -> None:
    """Refuse, in one line, an output that is one of the inputs, two outputs on one path, or an output
    written over a file it must not replace.

    ``outputs``: label (the option, e.g. ``-o``) → file path to be written; ``inputs``: label → a path the
    command reads (names that are not existing paths, such as presets, are skipped); ``beside``: label →
    a file written next to an output (a render's TIFF, a Picasso file's YAML) that may replace only an
    earlier file of its kind (:func:`replaceable`). Every
    path must also be writable (:func:`check_writable_file`).
    """
    given_out = {label: Path(p) for label, p in {**outputs, **beside}.items() if p is not None}
    given_in = {label: Path(p) for label, p in inputs.items() if p is not None and Path(p).exists()}
    for label, out in given_out.items():
        for in_label, source in given_in.items():
            if same_file(out, source):
                raise UserInputError(f"{label} {out}: is the input {in_label} {source}; it would be written over")
    labels = list(given_out)
    for i, label in enumerate(labels):
        for other in labels[i + 1:]:
            if same_file(given_out[label], given_out[other]):
                raise UserInputError(f"{label} and {other} name the same file {given_out[label]}")
    for label, path in beside.items():
        if path is not None and Path(path).exists() and not replaceable(Path(path)):
            raise UserInputError(f"{label} {path}: exists and is not an earlier output of this kind; it would be "
                                 f"written over (choose another output name)")
    for label, path in given_out.items():
        check_writable_file(path, label)


def replaceable(path: Path) -> bool:
    """Whether a file written beside an output may replace ``path``: a TIFF deepsmlm wrote, or the YAML of
    a Picasso localization file (never a raw movie's ``.yaml``/``.inf`` description or anything else)."""
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return written_by_deepsmlm(path)
    if suffix == ".yaml":
        return picasso_localization_info(path)
    return False


def picasso_localization_info(path: Path) -> bool:
    """True for the YAML of Picasso localizations: a document names its maker ("Generated by") and none
    describes raw frames ("Byte Order", as beside a Picasso ``.raw`` movie)."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return False
    return any("Generated by" in d for d in docs) and not any("Byte Order" in d for d in docs)


def written_by_deepsmlm(path: Path) -> bool:
    """True for a TIFF whose Software tag names deepsmlm (a render or PSF stack a new run may replace)."""
    try:
        with tifffile.TiffFile(path) as tif:
            return str(tif.pages[0].software).startswith(SOFTWARE)
    except Exception:  # not a readable TIFF: certainly not one of ours
        return False


def check_output_folder(folder: Path, files: Iterable[str], inputs: Mapping[str, PathLike | None] = {},
                        option: str = "-o") -> None:
    """A command writing ``files`` (names) into ``folder``: the folder is usable and none of the files
    is one of the ``inputs`` (a config kept in the output folder, say)."""
    check_writable_folder(folder, option)
    check_outputs({f"{option} {folder}'s {name}": folder / name for name in files}, inputs)
