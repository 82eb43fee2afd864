"""deepsmlm in napari (``pip install deepsmlm[napari]``): a reader for localization files, a widget that
localizes an image layer with a shipped or trained model, a render widget and a simulated sample movie.

The plugin is declared by ``napari.yaml`` beside this file (npe2; entry point group ``napari.manifest``) and
uses only the public API (``deepsmlm.load_model``, ``read_localizations``, ``render``, ``simulate``, …).
Coordinates: see :mod:`deepsmlm.napari_plugin.layers`.
"""
