"""napari reader of localization files: ThunderSTORM CSV, Picasso HDF5 (with its YAML) and Parquet, each as
a Points layer (or, past :data:`~deepsmlm.napari_plugin.layers.MAX_POINTS` localizations, a rendered image)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import deepsmlm
from deepsmlm.napari_plugin.layers import LayerData, table_layer

EXTENSIONS = (".csv", ".hdf5", ".h5", ".parquet")
PathOrPaths = str | list[str]


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """:func:`read_layers` when every path names a localization file by its extension, else None."""
    paths = [path] if isinstance(path, str) else path
    if paths and all(str(p).lower().endswith(EXTENSIONS) for p in paths):
        return read_layers
    return None


def read_layers(path: PathOrPaths) -> list[LayerData]:
    """One layer per file, named by the file's stem; a file that cannot be read raises a one-line
    :class:`~deepsmlm.errors.UserInputError` naming it (napari shows it)."""
    paths = [path] if isinstance(path, str) else path
    return [table_layer(deepsmlm.read_localizations(p), Path(p).stem) for p in paths]
