"""The seed's Fig. 4c: two DeepSTORM3D networks of the same architecture and training budget, one for the
Tetrapod and one for a learned mask, against emitter density on the same seeded test sets.

Each model folder's own config gives its optics (mask), camera and z range; the test frames for a
density are simulated with the same seed for both, so the emitters (positions, photons) are identical
and only the PSF differs. Scored like the paper (ground truth above ``--label-photons``, dimmer emitters
neutral, 100 nm lateral and axial). Also the PSFs' lateral footprint: the radius holding 90 % of a
centred emitter's energy, averaged over z, and the 50 % radius (the 90 % one is set by the faint halo
that high-NA light spreads over the whole patch), and the recall of counted emitters in each quarter
of the axial range (a mask that gives up part of the range shows there). Prints one JSON document;
``--plot`` draws Jaccard and RMSE against density.

    python benchmarks/learned_vs_tetrapod.py --tetrapod MODEL_DIR --learned MODEL_DIR
        [--counts 10 20 36 54 72 88] [--frames 100] [--plot out.png] [--psf-plot psfs.png]
        [--data-physics model|physical|reference] [--out FILE]
``--data-physics physical`` simulates the test frames (and footprints) with the presets' image formation of
issue 18 (vectorial, evanescent, pixel-integrated, converged grid) whatever the models were trained with.

The default counts per 121×121 frame of 110 nm pixels are 0.06 … 0.50 emitters/µm².
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from matplotlib.figure import Figure

import deepsmlm
import harness
from deepsmlm.analysis.metrics import evaluate, recall_by_depth
from deepsmlm.api.model import Model
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import updated
from deepsmlm.localizations import Localizations
from deepsmlm.models.registry import resolve_model_dir
from deepsmlm.optics.factory import build_psf, with_physics
from deepsmlm.optics.psf import PSF
from footprint import energy_radius_nm


@functools.cache
def data_psf(model: Model, physics: str) -> PSF:
    """The cached PSF of a model's test frames under ``physics`` (built once: the z-stack takes minutes
    for the physical Tetrapod grid)."""
    return build_psf(with_physics(model.config, physics), base_dir=resolve_model_dir(model.name))


def scores(model: Model, count: int, n_frames: int, label_photons: float, physics: str = "model") -> dict:
    """Paper-rule scores and recall by depth of ``model`` on the seeded test set of ``count`` emitters per frame."""
    cfg = updated(model.config, {"emitters.count": (count, count), "emitters.density_per_um2": None})
    sim = build_simulator(with_physics(cfg, physics), psf=data_psf(model, physics),
                          base_dir=resolve_model_dir(model.name))
    batch, truth = harness.test_set(sim, n_frames, 2000 + count, cfg.frame.pixel_size_nm)
    pred = Localizations(harness.localize(model, batch.adu), truth.meta)
    counted = truth.table["photons"].to_numpy() > label_photons
    m = evaluate(truth, pred, 100.0, 100.0, counted=counted)
    by_depth = recall_by_depth(truth, pred, cfg.emitters.z_range_nm, 100.0, 100.0, counted)
    return {**harness.scores(m, harness.SCORES_3D), "recall_by_depth_nm": by_depth}


def footprints(models: dict[str, Model], physics: str, psf_plot: str | None) -> dict[str, dict[str, float]]:
    """The 50 % and 90 % energy radii (nm) of each model's PSF, averaged over 9 planes of its z range;
    ``psf_plot``: also draw the z-stacks, one row per model."""
    out: dict[str, dict[str, float]] = {"footprint_50_nm": {}, "footprint_90_nm": {}}
    stacks = []
    for key, model in models.items():
        cfg = model.config
        z = np.linspace(*cfg.emitters.z_range_nm, 9)
        psf = build_psf(with_physics(cfg, physics), fast=False, base_dir=resolve_model_dir(model.name))
        with torch.no_grad():
            stacks.append(psf.z_stack(torch.tensor(z, dtype=torch.float32)).numpy())
        for fraction in (50, 90):
            radii = energy_radius_nm(stacks[-1], cfg.frame.pixel_size_nm, fraction / 100)
            out[f"footprint_{fraction}_nm"][key] = float(radii.mean())
    if psf_plot:
        from deepsmlm.plots import psf_montage

        psf_montage(np.concatenate(stacks), np.tile(z, 2), cfg.frame.pixel_size_nm, psf_plot,
                    row_labels=list(models), cols=len(z))
    return out


def plot(results: list[dict], path: str) -> None:
    dens = [r["density_per_um2"] for r in results]
    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    for key, style in (("tetrapod", "ko-"), ("learned", "o-")):
        for ax, metric in zip(axes, ("jaccard", "rmse_lateral_nm", "rmse_axial_nm")):
            ax.plot(dens, [r[key][metric] for r in results], style, label=key)
            ax.set_ylabel(metric.replace("_nm", " (nm)").replace("_", " "))
    for ax in axes:
        ax.set_xlabel("emitters per µm²")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--tetrapod", required=True)
    ap.add_argument("--learned", required=True)
    ap.add_argument("--counts", type=int, nargs="+", default=[10, 20, 36, 54, 72, 88])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--label-photons", type=float, default=6000.0)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--psf-plot", default=None, help="PSF z-stacks of both masks, one row each")
    harness.add_data_physics(ap)
    args = ap.parse_args()
    names = {"tetrapod": args.tetrapod, "learned": args.learned}
    models = {key: deepsmlm.load_model(name) for key, name in names.items()}
    sizes = footprints(models, args.data_physics, args.psf_plot)
    f = models["tetrapod"].config.frame
    area_um2 = f.height * f.width * (f.pixel_size_nm / 1000) ** 2
    results = []
    for count in args.counts:
        row = {"emitters_per_frame": count, "density_per_um2": count / area_um2}
        for key, model in models.items():
            row[key] = scores(model, count, args.frames, args.label_photons, args.data_physics)
        results.append(row)
    if args.plot:
        plot(results, args.plot)
    harness.report({"benchmark": "learned_vs_tetrapod", "models": names, "frames": args.frames,
                    "data_physics": args.data_physics, "machine": harness.machine(), **sizes,
                    "results": results}, args.out)


if __name__ == "__main__":
    main()
