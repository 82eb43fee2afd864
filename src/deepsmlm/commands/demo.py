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

from deepsmlm.analysis.render import gaussian_image, save_render, save_widefield, widefield_sum
from deepsmlm.api import evaluate, load_model, simulate, write_localizations
from deepsmlm.commands.progress_bars import LOCALIZING, SIMULATING, progress_bar
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.io.images import open_stack
from deepsmlm.io.outputs import check_output_folder
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.plots import comparison_figure

PRESET, MODEL, FRAMES, SEED, RENDER_NM = "epfl2013_bundled_tubes", "default-2d", 300, 1, 10.0
DEMO_OUTPUTS = ("widefield.png", "superres.png", "superres.tif", "comparison.png", "localizations.csv",
                "localizations_gaussian_mle.csv", "metrics.json")


def run_demo(out: Path, frames: int = FRAMES) -> None:
    check_output_folder(out, DEMO_OUTPUTS)
    console = Console(stderr=True)
    with progress_bar(SIMULATING, transient=True) as progress:
        sim = simulate(PRESET, frames=frames, seed=SEED, out_dir=out / "simulation", progress=progress)
    cfg, truth = sim.config, sim.truth
    console.print(f"simulated {cfg.frames} frames of {cfg.frame.height}×{cfg.frame.width} px with "
                  f"{sim.n_emitters} emitters ({cfg.emitters.density_per_um2:g} µm⁻², filaments)")
    shape = (cfg.frame.height, cfg.frame.width)
    field = Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=shape).field_nm

    results, images = {}, {}
    with open_stack(sim.frames) as stack:
        widefield = widefield_sum(c for _, c in stack.iter_chunks(64))
        for name, config in ((MODEL, None), ("gaussian-mle", PRESET)):
            model = load_model(name, config=config)
            with progress_bar(LOCALIZING, transient=True) as progress:
                run = model.stream(stack, progress=progress, superres=True)
            res = run.result
            meta = Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=shape, n_frames=res.n_frames,
                            source=f"{name} on the demo simulation")
            locs = Localizations(res.table, meta)
            file = "localizations.csv" if name == MODEL else f"localizations_{name.replace('-', '_')}.csv"
            write_localizations(out / file, locs)
            m = evaluate(truth, locs, 250.0, None)
            results[name] = {**m, "frames_per_s": res.fps, "file": file}
            images[name] = gaussian_image(locs, RENDER_NM, extent_nm=field)
            if name == MODEL:
                save_render(res.superres, out / "superres.png", run.superres_pixel_nm)

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
