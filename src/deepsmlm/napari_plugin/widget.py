"""napari widget: localize an image layer (a raw movie in ADU) with a shipped model or a model folder, in a
worker thread with a progress bar and a cancel button; show the points and the super-resolved render over
the movie, and save the table."""

from __future__ import annotations

import threading
from functools import partial

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, ProgressBar, PushButton, create_widget
from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QFileDialog

import deepsmlm
from deepsmlm.errors import UserInputError
from deepsmlm.localizations import Localizations
from deepsmlm.napari_plugin.layers import RENDER_PIXEL_NM, Frame, LayerData, points_layer, render_layer
from deepsmlm.progress import ProgressEvent

FOLDER = "model folder…"
DEFAULT_MODEL = "default-2d"
SAVE_FILTER = "ThunderSTORM CSV (*.csv);;Picasso HDF5 (*.hdf5);;Parquet (*.parquet)"


class Cancelled(Exception):
    """Raised by the progress callback of a run the user cancelled, between chunks of frames."""


class Relay(QObject):
    """Carries progress events from the worker thread to the widget (a queued Qt signal)."""

    progressed = Signal(object)


def devices() -> list[str]:
    """The devices a model can run on here: cpu, and cuda when torch sees a GPU."""
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def localize_job(model: str, device: str, frames: np.ndarray, cancelled: threading.Event,
                 relay: Relay) -> Localizations | None:
    """Localize ``frames`` (ADU, (frames, rows, cols)) with ``model`` on ``device`` (in the worker thread),
    reporting each chunk's progress through ``relay``; None when ``cancelled`` was set before a chunk ended."""

    def progress(event: ProgressEvent) -> None:
        if cancelled.is_set():
            raise Cancelled
        relay.progressed.emit(event)

    try:
        return deepsmlm.load_model(model, device).localize(frames, progress=progress)
    except Cancelled:
        return None


def replace_layer(viewer: napari.Viewer, layer_data: LayerData) -> napari.layers.Layer:
    """Add a layer from napari layer data, in place of an earlier layer of the same name."""
    data, kwargs, kind = layer_data
    if kwargs["name"] in viewer.layers:
        viewer.layers.remove(kwargs["name"])
    return getattr(viewer, f"add_{kind}")(data, **kwargs)


def show_results(viewer: napari.Viewer, locs: Localizations, name: str, frame: Frame, pixel_nm: float) -> None:
    """The localizations as points and their render (``pixel_nm``) over the movie lying at ``frame``."""
    replace_layer(viewer, points_layer(locs, f"{name} localizations", frame))
    if len(locs):
        replace_layer(viewer, render_layer(locs, f"{name} super-resolved", pixel_nm, frame=frame))


def movie_frames(layer: napari.layers.Image | None) -> np.ndarray:
    """The frames of an image layer as (frames, rows, cols); a one-line error when there is none."""
    if layer is None:
        raise UserInputError("no image layer to localize: open a movie (TIFF stack) first")
    frames = np.asarray(layer.data)
    return frames[None] if frames.ndim == 2 else frames


class LocalizeWidget(Container):
    """Pick a movie (image layer), a model (shipped name or folder) and a device; Localize runs in a worker
    thread (Cancel stops it between chunks of frames, leaving no table); the results appear as layers and
    Save writes the table (ThunderSTORM CSV, Picasso HDF5 or Parquet, by extension)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.image = create_widget(annotation=napari.layers.Image, label="movie")
        self.model = ComboBox(label="model", choices=[*deepsmlm.shipped_models(), FOLDER], value=DEFAULT_MODEL)
        self.folder = FileEdit(label="model folder", mode="d", visible=False)
        self.device = ComboBox(label="device", choices=devices())
        self.render_pixel = FloatSpinBox(label="render pixel (nm)", value=RENDER_PIXEL_NM, min=1.0, max=1000.0)
        self.run_button, self.cancel_button = PushButton(text="Localize"), PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="frames", min=0, max=1, value=0)
        self.save_button = PushButton(text="Save table…", enabled=False)
        self.extend([self.image, self.model, self.folder, self.device, self.render_pixel, self.run_button,
                     self.cancel_button, self.progress, self.save_button])
        self.localizations: Localizations | None = None
        self.worker: FunctionWorker | None = None
        self._cancelled = threading.Event()
        self._relay = Relay()
        self._relay.progressed.connect(self._on_progress)
        self.model.changed.connect(lambda value: setattr(self.folder, "visible", value == FOLDER))
        self.run_button.changed.connect(self._on_run)
        self.cancel_button.changed.connect(self.cancel)
        self.save_button.changed.connect(self._on_save)

    def model_name(self) -> str:
        """The shipped name, or the chosen folder."""
        return str(self.folder.value) if self.model.value == FOLDER else self.model.value

    def start(self) -> FunctionWorker:
        """Start localizing the chosen movie; the worker's ``finished`` signal tells when it is over."""
        layer = self.image.value
        frames = movie_frames(layer)
        self._cancelled = threading.Event()
        self.localizations = None
        self.save_button.enabled = False
        self.progress.max, self.progress.value = len(frames), 0
        worker = create_worker(localize_job, self.model_name(), self.device.value, frames, self._cancelled,
                               self._relay, _start_thread=False)
        worker.returned.connect(partial(self._on_result, layer.name, Frame.of_layer(layer)))
        worker.finished.connect(lambda: self._busy(False))
        self.worker = worker
        self._busy(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running job at its next chunk of frames; it leaves no table."""
        self._cancelled.set()
        self.cancel_button.enabled = False

    def save_table(self, path: str) -> None:
        """Write the last run's localizations to ``path`` (format by extension, atomically)."""
        if self.localizations is None:
            raise UserInputError(f"{path}: nothing to save; localize a movie first")
        deepsmlm.write_localizations(path, self.localizations)

    def _busy(self, busy: bool) -> None:
        self.run_button.enabled, self.cancel_button.enabled = not busy, busy

    def _on_progress(self, event: ProgressEvent) -> None:
        self.progress.max, self.progress.value = max(int(event.total), 1), int(event.done)

    def _on_result(self, name: str, frame: Frame, locs: Localizations | None) -> None:
        if locs is None:
            show_info("localization cancelled")
            return
        self.localizations = locs
        show_results(self._viewer, locs, name, frame, self.render_pixel.value)
        self.save_button.enabled = True

    def _on_run(self) -> None:
        try:
            self.start()
        except UserInputError as exc:
            show_error(str(exc))

    def _on_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.native, "Save localizations", "", SAVE_FILTER)
        if path:
            try:
                self.save_table(path)
            except UserInputError as exc:
                show_error(str(exc))
