"""napari widget: render a layer's localizations (from the reader or the localize widget) as a super-resolved
image: render pixel, Gaussian σ (or each localization's own uncertainty), colour by z or dye; the camera
pixel places tables that do not state it (a ThunderSTORM CSV) over their raw movie."""

from __future__ import annotations

from dataclasses import replace

import napari
from magicgui.widgets import ComboBox, Container, FloatSpinBox, PushButton
from napari.utils.notifications import show_error

from deepsmlm.errors import UserInputError
from deepsmlm.localizations import Localizations
from deepsmlm.napari_plugin.layers import FRAME_KEY, RENDER_PIXEL_NM, TABLE_KEY, placement, render_layer
from deepsmlm.napari_plugin.widget import replace_layer

COLORS = ("none", "z", "dye")


class RenderWidget(Container):
    """Render the localizations of a chosen layer; σ 0 draws each with its own uncertainty (a render pixel
    where unknown); camera pixel 0 keeps an unknown pixel size (world units nm)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self._viewer = viewer
        self.table = ComboBox(label="localizations", choices=self._tables)
        self.camera_pixel = FloatSpinBox(label="camera pixel (nm)", value=0.0, min=0.0, max=10_000.0)
        self.pixel = FloatSpinBox(label="render pixel (nm)", value=RENDER_PIXEL_NM, min=0.1, max=10_000.0)
        self.sigma = FloatSpinBox(label="σ (nm; 0: own)", value=0.0, min=0.0, max=10_000.0)
        self.color = ComboBox(label="colour by", choices=COLORS)
        self.render_button = PushButton(text="Render")
        self.extend([self.table, self.camera_pixel, self.pixel, self.sigma, self.color, self.render_button])
        self.table.changed.connect(self._on_table)
        self.render_button.changed.connect(self._on_render)
        viewer.layers.events.inserted.connect(self.reset_choices)
        viewer.layers.events.removed.connect(self.reset_choices)
        self._on_table(self.table.value)

    def _tables(self, _widget=None) -> list[tuple[str, napari.layers.Layer]]:
        return [(layer.name, layer) for layer in self._viewer.layers if TABLE_KEY in layer.metadata]

    def _on_table(self, layer: napari.layers.Layer | None) -> None:
        if layer is not None:
            self.camera_pixel.value = layer.metadata[TABLE_KEY].meta.pixel_size_nm or 0.0

    def placed(self, layer: napari.layers.Layer) -> Localizations:
        """The layer's localizations with the camera pixel set here; a Points layer is moved onto it."""
        locs = layer.metadata[TABLE_KEY]
        px = self.camera_pixel.value or None
        if px != locs.meta.pixel_size_nm:
            locs = replace(locs, meta=replace(locs.meta, pixel_size_nm=px))
            layer.metadata[TABLE_KEY] = locs
            if isinstance(layer, napari.layers.Points):
                where = placement(px, layer.metadata[FRAME_KEY])
                layer.scale, layer.translate = where["scale"], where["translate"]
        return locs

    def render(self) -> napari.layers.Image:
        """Render the chosen layer's localizations into the layer "<name> render" (replaced when there)."""
        layer = self.table.value
        if layer is None:
            raise UserInputError("no localizations to render: open a localization file or localize a movie")
        locs = self.placed(layer)
        return replace_layer(self._viewer, render_layer(locs, f"{layer.name} render", self.pixel.value,
                                                        self.sigma.value or None, self.color.value,
                                                        layer.metadata[FRAME_KEY]))

    def _on_render(self) -> None:
        try:
            self.render()
        except UserInputError as exc:
            show_error(str(exc))
