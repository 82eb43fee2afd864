"""DeepSTORM3D with the printed Tetrapod on seeded simulated test sets, against emitter density.

At the `tetrapod_paper` conditions (121×121 frames, 110 nm pixels, printed Tetrapod mask, z −1.5 …
+2.5 µm, photons ~ Gamma(3, 3000), extra blur 0.75–1.25 px, the paper's noise model: a baseline of
20–40 counts per frame and read noise of 8–12 counts varying over the field, no photon background) with exactly
N emitters per frame for N in 5, 10, …, 35, 100 frames each (seed 1000 + N; training and validation
use other seeds). Emitters are placed as the paper's simulator places them, at least 20 px from the
frame edge (its ``clear_dist``: the N emitters share the central 81×81 px), the conditions of the
paper network's figures; ``model_full_field`` repeats the model on the same seeds with emitters
anywhere in the frame (fewer per µm², but edge emitters with truncated PSFs). ``--model`` (default:
the shipped tetrapod-3d) and gaussian-mle (lateral only) are scored four ways:

- ``paper``: the DeepSTORM3D rule: ground truth = emitters above 6,000 photons, matched within 100 nm
  laterally and 100 nm axially; localizations that land on a dimmer emitter count neither way;
- ``all_100``: every emitter, the same radii;
- ``challenge``: every emitter, 250 nm laterally and 500 nm axially (SMLM 2016);
- frames/s of the whole localization (network + post-processing), best of three passes over 16 frames.

``--data-config`` picks the frames' config, hence their image formation: the preset (default) is issue 18's
physical one; a model's ``config.yaml`` gives the physics that model was trained with (results measured
before the presets switched, e.g. ``benchmarks/results/deepstorm3d_tetrapod.json``, used the reference one).
Prints one JSON document; ``--plot`` writes Jaccard and RMSE against density with the paper's own
network's figures at 5, 15 and 30 emitters (issue 5: measured on CPU on the paper's simulator).

    python benchmarks/deepstorm3d_tetrapod.py [--model tetrapod-3d] [--frames 100] [--plot out.png] [--out FILE]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

import deepsmlm
import harness
from deepsmlm.analysis.metrics import evaluate
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import load_config, updated
from deepsmlm.localizations import Localizations
from deepsmlm.optics.factory import build_psf
from deepsmlm.optics.psf import PSF

COUNTS = (5, 10, 15, 20, 25, 30, 35)
LABEL_PHOTONS = 6000.0
PAPER = {5: (0.897, 28.8, 34.3), 15: (0.782, 30.4, 36.7), 30: (0.664, 33.9, 39.5)}  # Jaccard, lateral, axial nm


def test_set(cfg, psf: PSF, count: int, n_frames: int, margin_px: float | None = None
             ) -> tuple[torch.Tensor, Localizations, np.ndarray]:
    """Seeded frames (ADU) through ``psf`` (the config's, built once) with exactly ``count`` emitters each
    (``margin_px`` from the edge; default: the config's), their ground truth, and which emitters count
    (above LABEL_PHOTONS)."""
    changes = {"emitters.count": (count, count), "emitters.density_per_um2": None}
    if margin_px is not None:
        changes["emitters.margin_px"] = margin_px
    cfg = updated(cfg, changes)
    batch, truth = harness.test_set(build_simulator(cfg, psf=psf), n_frames, 1000 + count, cfg.frame.pixel_size_nm)
    return batch.adu, truth, truth.table["photons"].to_numpy() > LABEL_PHOTONS


def timed(localize, adu: torch.Tensor, timing_frames: int = 16) -> tuple[pd.DataFrame, float]:
    """Localizations of all frames, and frames/s: the best of three passes over the first frames."""
    table = localize(adu)
    part = adu[:timing_frames]
    seconds, _ = harness.best_seconds(lambda: localize(part))
    return table, len(part) / seconds


def scores(truth: Localizations, table: pd.DataFrame, counted: np.ndarray) -> dict:
    pred = Localizations(table, truth.meta)
    runs = {"paper": evaluate(truth, pred, 100.0, 100.0, counted=counted),
            "all_100": evaluate(truth, pred, 100.0, 100.0),
            "challenge": evaluate(truth, pred, 250.0, 500.0)}
    return {name: harness.scores(m, harness.SCORES_3D) for name, m in runs.items()}


def plot(results: list[dict], path: str) -> None:
    counts = [r["emitters_per_frame"] for r in results]
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    for method, style in (("model", "o-"), ("gaussian-mle", "s--")):
        j = [r[method]["paper"]["jaccard"] for r in results]
        axes[0].plot(counts, j, style, label=f"{results[0][method]['name']} (≥6k photons, 100 nm)")
    axes[0].plot(counts, [r["model"]["challenge"]["jaccard"] for r in results], "o:",
                 label="model, all emitters, 250/500 nm")
    axes[0].plot(counts, [r["model_full_field"]["paper"]["jaccard"] for r in results], "^-.",
                 label="model, emitters up to the frame edge")
    axes[1].plot(counts, [r["model"]["paper"]["rmse_lateral_nm"] for r in results], "o-", label="model")
    axes[2].plot(counts, [r["model"]["paper"]["rmse_axial_nm"] for r in results], "o-", label="model")
    for i, ax in enumerate(axes):
        ax.plot(list(PAPER), [v[i] for v in PAPER.values()], "k*", ms=11, label="DeepSTORM3D paper net (CPU)")
        ax.set_xlabel("emitters per 121×121 frame")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Jaccard")
    axes[1].set_ylabel("lateral RMSE (nm)")
    axes[2].set_ylabel("axial RMSE (nm)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--model", default="tetrapod-3d")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8, help="frames the model localizes at once")
    ap.add_argument("--plot", default=None)
    ap.add_argument("--data-config", default="tetrapod_paper",
                    help="the config the test frames are simulated with (default the preset, whose image formation "
                         "is issue 18's physical one; a model's config.yaml gives the physics it was trained with)")
    ap.add_argument("--counts", default=",".join(map(str, COUNTS)), help="emitters per frame, comma-separated")
    args = ap.parse_args()
    model = deepsmlm.load_model(args.model)
    sim_cfg = load_config(args.data_config)
    psf = build_psf(sim_cfg)
    fitter = deepsmlm.load_model("gaussian-mle", config=sim_cfg)

    def deep(adu: torch.Tensor) -> pd.DataFrame:
        return harness.localize(model, adu, args.batch)

    def classic(adu: torch.Tensor) -> pd.DataFrame:
        return harness.localize(fitter, adu, len(adu))

    results = []
    with torch.inference_mode():
        for count in (int(c) for c in args.counts.split(",")):
            adu, truth, counted = test_set(sim_cfg, psf, count, args.frames)
            row = {"emitters_per_frame": count, "n_emitters": len(truth), "n_above_6000": int(counted.sum())}
            for key, name, localize in (("model", args.model, deep), ("gaussian-mle", "gaussian-mle", classic)):
                table, fps = timed(localize, adu)
                row[key] = {"name": name, "frames_per_s": fps, **scores(truth, table, counted)}
            adu, truth, counted = test_set(sim_cfg, psf, count, args.frames, margin_px=0.0)
            row["model_full_field"] = {"name": args.model, **scores(truth, deep(adu), counted)}
            results.append(row)
    if args.plot:
        plot(results, args.plot)
    harness.report({
        "benchmark": "deepstorm3d_tetrapod",
        "setup": f"{args.data_config}, 121x121 frames, {args.frames} frames per density, seeds 1000+N, emitters "
                 f"{sim_cfg.emitters.margin_px:g} px from the edge (model_full_field: anywhere); "
                 "paper rule: GT above 6000 photons, 100 nm lateral and axial, dimmer emitters neutral",
        "paper_network_cpu": {str(k): {"jaccard": v[0], "rmse_lateral_nm": v[1], "rmse_axial_nm": v[2]}
                              for k, v in PAPER.items()},
        "machine": harness.machine(),
        "results": results,
    }, args.out)


if __name__ == "__main__":
    main()
