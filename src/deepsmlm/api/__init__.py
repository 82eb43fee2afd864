"""The Python API: what the command line, the demo, the benchmarks and a notebook call.

Units are the project's throughout: positions in nm, signals in photons, frames in camera ADU, 0-based
frame indices. Bad input raises a one-line :class:`deepsmlm.errors.UserInputError`; progress goes only to
an optional ``progress`` callback (:mod:`deepsmlm.progress`). A session::

    import deepsmlm

    model = deepsmlm.load_model("default-2d")                    # or a folder written by deepsmlm.train
    locs = model.localize("frames.tif")                          # a Localizations table (nm, photons)
    scores = deepsmlm.evaluate("ground_truth.csv", locs)         # Jaccard, RMSE (nm), efficiency, ...
    image = deepsmlm.render(locs, 10.0, out="superres.png")      # 10 nm pixels; PNG + float32 TIFF
    deepsmlm.write_localizations("locs.csv", locs)               # ThunderSTORM CSV (.hdf5, .parquet too)

Each name is imported at its first use (``deepsmlm.render`` does not load torch).
"""

from __future__ import annotations

from importlib import import_module

_HOMES = {
    "load_model": "deepsmlm.api.model", "Model": "deepsmlm.api.model",
    "localize_batch": "deepsmlm.api.batch",
    "shipped_models": "deepsmlm.models.registry",
    "simulate": "deepsmlm.api.simulation", "Simulation": "deepsmlm.api.simulation",
    "train": "deepsmlm.api.training",
    "export_onnx": "deepsmlm.api.onnx",
    "estimate": "deepsmlm.api.estimation",
    "psf_stack": "deepsmlm.api.optics", "PSFStack": "deepsmlm.api.optics", "crlb": "deepsmlm.api.optics",
    "design_tetrapod": "deepsmlm.api.design", "design_learn": "deepsmlm.api.design",
    "design_multicolor": "deepsmlm.api.design",
    "evaluate": "deepsmlm.api.analysis", "render": "deepsmlm.api.analysis",
    "correct_drift": "deepsmlm.api.drift", "frc": "deepsmlm.api.resolution",
    "write_run_report": "deepsmlm.api.report",
    "calibrate_camera": "deepsmlm.api.camera_calibration", "calibrate_psf": "deepsmlm.api.calibration",
    "measured_psf": "deepsmlm.api.measured_stack",
    "import_calibration": "deepsmlm.api.calibration_import",
    "load_config": "deepsmlm.config", "SimulationConfig": "deepsmlm.config",
    "Localizations": "deepsmlm.localizations",
    "read_localizations": "deepsmlm.io.localization_files", "write_localizations": "deepsmlm.io.localization_files",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(import_module(_HOMES[name]), name)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
