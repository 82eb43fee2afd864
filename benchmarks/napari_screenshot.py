"""The napari plugin in a real napari window: the sample movie localized by default-2d through the Localize
widget, the render widget docked beside it, the super-resolved image over the movie; writes a screenshot of
the whole window (docs/images/napari_plugin.png) and prints the run's time and Jaccard.

Needs a display: ``xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/napari_screenshot.py``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
from napari.qt import get_qapp

import deepsmlm
from deepsmlm.napari_plugin.sample import sample_simulation

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "napari_plugin.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=OUT)
    args = parser.parse_args()
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    viewer.open_sample("deepsmlm", "simulated-movie")
    viewer.layers["ground truth"].visible = False
    _, localize = viewer.window.add_plugin_dock_widget("deepsmlm", "Localize")
    viewer.window.add_plugin_dock_widget("deepsmlm", "Render localizations", tabify=False)
    t0 = time.perf_counter()
    localize.start()
    app = get_qapp()
    while not localize.run_button.enabled:
        app.processEvents()
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    scores = deepsmlm.evaluate(sample_simulation().truth, localize.localizations)
    viewer.layers["simulated movie"].opacity = 0.6
    viewer.layers["simulated movie localizations"].visible = False
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.05)
    viewer.screenshot(str(args.out), canvas_only=False)
    print(f"{len(localize.localizations)} localizations in {seconds:.1f} s (20 frames of 64×64 px, cpu), "
          f"Jaccard {scores['jaccard']:.3f}, RMSE {scores['rmse_lateral_nm']:.1f} nm → {args.out}")
    viewer.close()


if __name__ == "__main__":
    main()
