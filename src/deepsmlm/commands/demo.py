"""`deepsmlm demo`: the main job on the shipped default model.

Simulates a dense filament movie at the EPFL 2013 Bundled Tubes conditions (several emitters/µm²,
300 frames of 64×64 px), reconstructs it with the shipped ``default-2d`` network and with the classic
``gaussian-mle`` fitter, and writes widefield.png, superres.png, comparison.png, localizations.csv
(default-2d), localizations_gaussian_mle.csv and metrics.json (both methods against the ground truth).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from deepsmlm.analysis.metrics import evaluate
from deepsmlm.analysis.render import gaussian_image, save_render, save_widefield, widefield_sum
from deepsmlm.commands.localize import localize_stack
from deepsmlm.commands.simulate import apply_overrides, simulate_to_folder
from deepsmlm.config import load_config
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.io.images import open_stack
from deepsmlm.io.outputs import check_output_folder
from deepsmlm.io.localization_files import read_localizations, write_localizations
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.plots import comparison_figure

PRESET, MODEL, FRAMES, SEED, RENDER_NM = "epfl2013_bundled_tubes", "default-2d", 300, 1, 10.0
DEMO_OUTPUTS = ("widefield.png", "superres.png", "superres.tif", "comparison.png", "localizations.csv",
                "localizations_gaussian_mle.csv", "metrics.json")


def run_demo(out: Path, frames: int = FRAMES) -> None:
    check_output_folder(out, DEMO_OUTPUTS)
    console = Console(stderr=True)
    cfg = apply_overrides(load_config(PRESET), frames=frames, seed=SEED, density=None, emitters=None)
    sim = simulate_to_folder(cfg, out / "simulation")
    console.print(f"simulated {sim['frames']} frames of {cfg.frame.height}×{cfg.frame.width} px with "
                  f"{sim['emitters']} emitters ({cfg.emitters.density_per_um2:g} µm⁻², filaments)")
    truth = read_localizations(out / "simulation" / "ground_truth.csv")
    shape = (cfg.frame.height, cfg.frame.width)
    truth.meta = Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=shape, n_frames=cfg.frames)
    field = (cfg.frame.width * cfg.frame.pixel_size_nm, cfg.frame.height * cfg.frame.pixel_size_nm)

    results, images = {}, {}
    with open_stack(out / "simulation" / "frames.tif") as stack:
        widefield = widefield_sum(c for _, c in stack.iter_chunks(64))
        for name, model, config in ((MODEL, MODEL, None), ("gaussian-mle", "gaussian-mle", PRESET)):
            model_cfg, res = localize_stack(stack, model, config, "cpu", 32, show_progress=True)
            meta = Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=shape, n_frames=res.n_frames,
                            source=f"{name} on the demo simulation")
            locs = Localizations(res.table, meta)
            file = "localizations.csv" if name == MODEL else f"localizations_{name.replace('-', '_')}.csv"
            write_localizations(out / file, locs)
            m = evaluate(truth, locs, 250.0, None)
            results[name] = {**m, "frames_per_s": res.fps, "file": file}
            images[name] = gaussian_image(locs, RENDER_NM, extent_nm=field)
            if name == MODEL:
                save_render(res.superres, out / "superres.png",
                            model_cfg.frame.pixel_size_nm / model_cfg.model.upsampling)

    save_widefield(widefield, out / "widefield.png", cfg.frame.pixel_size_nm, title=f"widefield, {frames} frames")
    comparison_figure(
        [("widefield (sum)", widefield, cfg.frame.pixel_size_nm, "gray"),
         (f"gaussian-mle  J={results['gaussian-mle']['jaccard']:.2f}", images["gaussian-mle"], RENDER_NM, "hot"),
         (f"{MODEL}  J={results[MODEL]['jaccard']:.2f}", images[MODEL], RENDER_NM, "hot")],
        out / "comparison.png")
    truth_summary = {"frames": frames, "emitters": len(truth), "density_per_um2": cfg.emitters.density_per_um2,
                     "preset": PRESET, "seed": SEED, "lateral_tol_nm": 250.0, "match": "hungarian"}
    write_text_atomic(out / "metrics.json", json.dumps({"simulation": truth_summary, "methods": results}, indent=2))
    table = Table(title=f"demo: {frames} dense frames vs ground truth (250 nm, Hungarian)")
    for col in ("method", "Jaccard", "recall", "precision", "RMSE (nm)", "frames/s"):
        table.add_column(col, justify="right")
    for name, m in results.items():
        table.add_row(name, f"{m['jaccard']:.3f}", f"{m['recall']:.3f}", f"{m['precision'] or 0:.3f}",
                      f"{m['rmse_lateral_nm'] or np.nan:.1f}", f"{m['frames_per_s']:.0f}")
    console.print(table)
    console.print(f"outputs in {out}: widefield.png, superres.png, comparison.png, localizations.csv, metrics.json")
