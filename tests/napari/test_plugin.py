"""The napari plugin in napari's own test viewer: its manifest, the reader placing points on the raw frames'
spots, big tables as renders, the localize widget finding the sample's emitters, cancelling a run, and the
render widget."""

from __future__ import annotations

import napari
import numpy as np
import pytest
from scipy.special import erf

import deepsmlm
from deepsmlm.errors import UserInputError
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.napari_plugin import layers
from deepsmlm.napari_plugin.render_widget import RenderWidget
from deepsmlm.napari_plugin.sample import FRAMES, sample_simulation
from deepsmlm.napari_plugin.widget import LocalizeWidget

PX, SIGMA_PX, SIDE = 100.0, 1.2, 32
# (frame, x nm, y nm): spots at sub-pixel positions, far from each other and the edges
SPOTS = np.array([[0, 812.0, 1234.0], [0, 2290.0, 640.0], [1, 1555.0, 2470.0]])


def spot_movie() -> np.ndarray:
    """Two frames of pixel-integrated Gaussian spots at SPOTS (pixel (r, c) covers [c·PX, (c+1)·PX) in x)."""
    edges = np.arange(SIDE + 1) * PX
    movie = np.full((2, SIDE, SIDE), 10.0)
    for frame, x, y in SPOTS:
        across = [np.diff(erf((edges - v) / (np.sqrt(2) * SIGMA_PX * PX))) / 2 for v in (x, y)]
        movie[int(frame)] += 5000 * np.outer(across[1], across[0])
    return movie


def spot_centroids(movie: np.ndarray) -> np.ndarray:
    """(frame, row, col) of each spot's intensity centroid in data (pixel index) coordinates, 5 px around it."""
    found = []
    for frame, x, y in SPOTS:
        r0, c0 = int(y // PX) - 5, int(x // PX) - 5
        patch = movie[int(frame), r0:r0 + 11, c0:c0 + 11] - 10.0
        rows, cols = np.mgrid[r0:r0 + 11, c0:c0 + 11]
        found.append([frame, (rows * patch).sum() / patch.sum(), (cols * patch).sum() / patch.sum()])
    return np.array(found)


def spot_table(pixel_size_nm: float | None = PX) -> Localizations:
    meta = Metadata(pixel_size_nm=pixel_size_nm, image_shape=(SIDE, SIDE), n_frames=2)
    return Localizations.from_arrays(SPOTS[:, 0].astype(int), SPOTS[:, 1], SPOTS[:, 2], meta=meta,
                                     photons=[5000.0, 4000.0, 3000.0], sigma_x_nm=[9.0, 10.0, 11.0],
                                     sigma_y_nm=[9.0, 10.0, 11.0])


def world_in(layer, image) -> np.ndarray:
    """Each point of ``layer`` in ``image``'s data coordinates (frame, row, col)."""
    return np.array([image.world_to_data(layer.data_to_world(p)) for p in layer.data])


def world(layer) -> np.ndarray:
    """Each point of ``layer`` in world coordinates."""
    return np.array([layer.data_to_world(p) for p in layer.data])


def wait_for(widget: LocalizeWidget, qtbot) -> None:
    """Until the widget's run has ended and its results (if any) are shown."""
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=120_000)


def test_the_manifest_declares_reader_widgets_and_sample():
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("deepsmlm")
    assert manifest.contributions.readers[0].filename_patterns == ["*.csv", "*.hdf5", "*.h5", "*.parquet"]
    assert {w.display_name for w in manifest.contributions.widgets} == {"Localize", "Render localizations"}
    assert [s.key for s in manifest.contributions.sample_data] == ["simulated-movie"]


def test_the_reader_puts_points_on_the_raw_frames_spots(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    movie = viewer.add_image(spot_movie(), name="raw")
    deepsmlm.write_localizations(tmp_path / "spots.parquet", spot_table())
    [points] = viewer.open(tmp_path / "spots.parquet", plugin="deepsmlm")
    assert points.name == "spots" and points.ndim == 3
    np.testing.assert_allclose(world_in(points, movie), spot_centroids(spot_movie()), atol=0.01)
    assert points.features["photons"].tolist() == [5000.0, 4000.0, 3000.0]
    assert points.features["sigma_x_nm"].tolist() == [9.0, 10.0, 11.0]
    # a ThunderSTORM CSV does not state its camera pixel: nm until the render widget is told it
    deepsmlm.write_localizations(tmp_path / "spots.csv", spot_table())
    [csv] = viewer.open(tmp_path / "spots.csv", plugin="deepsmlm")
    np.testing.assert_allclose(world_in(csv, movie), SPOTS[:, [0, 2, 1]], atol=1e-6)
    render = RenderWidget(viewer)
    render.table.value, render.camera_pixel.value = csv, PX
    render.placed(csv)
    np.testing.assert_allclose(world_in(csv, movie), spot_centroids(spot_movie()), atol=0.01)
    # each spot's render (pixels of 0.2 camera px, σ 10 nm) is centred on the spot and holds one localization
    render.table.value, render.pixel.value, render.sigma.value = points, 20.0, 10.0
    image = render.render()
    for (frame, x, y), centre in zip(SPOTS, spot_centroids(spot_movie())):
        r0, c0 = int(y // 20) - 3, int(x // 20) - 3
        patch = image.data[r0:r0 + 7, c0:c0 + 7]
        rows, cols = np.mgrid[r0:r0 + 7, c0:c0 + 7]
        middle = [(rows * patch).sum() / patch.sum(), (cols * patch).sum() / patch.sum()]
        np.testing.assert_allclose(movie.world_to_data([frame, *image.data_to_world(middle)])[1:], centre[1:],
                                   atol=0.01)
        assert patch.sum() == pytest.approx(1.0, rel=1e-3)


def test_past_the_points_limit_a_table_opens_as_its_render(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setattr(layers, "MAX_POINTS", 2)
    viewer = make_napari_viewer()
    deepsmlm.write_localizations(tmp_path / "spots.hdf5", spot_table())
    [image] = viewer.open(tmp_path / "spots.hdf5", plugin="deepsmlm")
    assert isinstance(image, napari.layers.Image) and image.data.shape == (SIDE * PX / 10, SIDE * PX / 10)
    np.testing.assert_allclose(image.metadata["localizations"].table["x_nm"], SPOTS[:, 1], atol=1e-3)
    assert image.data.sum() == pytest.approx(len(SPOTS), rel=1e-3)  # each localization a normalised Gaussian


def test_the_widget_localizes_the_sample_with_default_2d(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample("deepsmlm", "simulated-movie")
    widget = LocalizeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.image.value.name == "simulated movie" and widget.model.value == "default-2d"
    widget.start()
    wait_for(widget, qtbot)
    assert (widget.progress.value, widget.progress.max) == (FRAMES, FRAMES)
    found = viewer.layers["simulated movie localizations"]
    assert deepsmlm.evaluate(sample_simulation().truth, found.metadata["localizations"])["jaccard"] > 0.5
    # the found points and the truth lie on one world grid: the nearest truth within 60 nm (0.6 px)
    truth = viewer.layers["ground truth"]
    truth_world = world(truth)
    same = [truth_world[truth_world[:, 0] == f] for f in range(FRAMES)]
    near = [np.min(np.hypot(*(same[int(p[0])][:, 1:] - p[1:]).T)) for p in world(found)]
    assert np.median(near) < 0.6
    assert viewer.layers["simulated movie super-resolved"].data.shape == (640, 640)
    widget.save_table(str(tmp_path / "locs.csv"))
    saved = deepsmlm.read_localizations(tmp_path / "locs.csv")
    np.testing.assert_allclose(saved.table["x_nm"], widget.localizations.table["x_nm"], atol=0.01)


def test_cancelling_stops_the_run_and_leaves_no_table(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    movie = np.tile(sample_simulation().frames, (8, 1, 1))  # 160 frames: 5 chunks of 32
    viewer.add_image(movie, name="long")
    widget = LocalizeWidget(viewer)
    widget.progress.changed.connect(lambda done: widget.cancel() if done > 0 else None)
    widget.start()
    wait_for(widget, qtbot)
    assert 0 < widget.progress.value < len(movie)  # stopped after the first chunk, before the last
    assert widget.localizations is None and [layer.name for layer in viewer.layers] == ["long"]
    with pytest.raises(UserInputError, match="nothing to save"):
        widget.save_table(str(tmp_path / "locs.csv"))
    assert not (tmp_path / "locs.csv").exists()


def test_the_render_widget_colours_by_z_and_refuses_z_of_a_2d_table(make_napari_viewer):
    viewer = make_napari_viewer()
    table = spot_table()
    table.table["z_nm"] = [-300.0, 0.0, 300.0]
    data, kwargs, _ = layers.points_layer(table, "3d")
    points = viewer.add_points(data, **kwargs)
    low, high = points.face_color[0], points.face_color[2]
    assert not np.allclose(low, high)  # turbo: blue at the lowest z, red at the highest
    assert low[2] > low[0] and high[0] > high[2]
    render = RenderWidget(viewer)
    render.table.value, render.color.value = points, "z"
    assert render.render().rgb
    data, kwargs, _ = layers.points_layer(spot_table(), "2d")
    flat = viewer.add_points(data, **kwargs)
    render.table.value = flat
    with pytest.raises(UserInputError, match="needs 3D localizations"):
        render.render()
