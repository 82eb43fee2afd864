"""deepsmlm: deep-learning single-molecule localization microscopy and PSF design.

The Python API (:mod:`deepsmlm.api`) is reachable from here: ``deepsmlm.load_model``, ``deepsmlm.simulate``,
``deepsmlm.train``, ``deepsmlm.evaluate``, ``deepsmlm.render``, ``deepsmlm.load_config`` and the rest of
``deepsmlm.api.__all__``, each imported at its first use, so ``import deepsmlm`` stays cheap and silent.
"""

from importlib import import_module

from deepsmlm._version import __version__


def __getattr__(name: str):
    api = import_module("deepsmlm.api")
    if name not in api.__all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(api, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *import_module("deepsmlm.api").__all__})
