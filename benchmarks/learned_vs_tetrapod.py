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
        [--data-physics model|physical|reference]
``--data-physics physical`` simulates the test frames (and footprints) with the presets' image formation of
issue 18 (vectorial, evanescent, pixel-integrated, converged grid) whatever the models were trained with.

The default counts per 121×121 frame of 110 nm pixels are 0.06 … 0.50 emitters/µm².
"""

from __future__ import annotations

import argparse
import functools
import json
import platform

import numpy as np
import torch

from deepsmlm.analysis.metrics import evaluate, recall_by_depth
from deepsmlm.inference.predict import DensityPredictor
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.models.registry import fold_batchnorm, load_model, resolve_model_dir
from deepsmlm.optics.factory import PHYSICS_CHOICES, build_psf, with_physics
from deepsmlm.optics.footprint import energy_radius_nm
from deepsmlm.optics.psf import PSF
from deepsmlm.simulation.simulator import Simulator

KEYS = ("jaccard", "recall", "precision", "rmse_lateral_nm", "rmse_axial_nm", "n_tp", "n_fp", "n_fn")


@functools.cache
def data_psf(name: str, physics: str) -> PSF:
    """The cached PSF of a model's test frames under ``physics`` (built once: the z-stack takes minutes
    for the physical Tetrapod grid)."""
    return build_psf(with_physics(load_model(name)[0], physics), base_dir=resolve_model_dir(name))


def scores(name: str, count: int, n_frames: int, label_photons: float, physics: str = "model") -> dict:
    cfg, net = load_model(name)
    cfg.emitters.count, cfg.emitters.density_per_um2 = (count, count), None
    sim = Simulator(with_physics(cfg, physics), psf=data_psf(name, physics), base_dir=resolve_model_dir(name))
    batch = sim.sample(n_frames, torch.Generator().manual_seed(2000 + count))
    em = batch.emitters
    xyz = em.xyz_nm.double().numpy()
    meta = Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=sim.shape, n_frames=n_frames)
    truth = Localizations.from_arrays(em.frame.numpy(), xyz[:, 0], xyz[:, 1], xyz[:, 2], meta=meta)
    predictor = DensityPredictor(cfg, fold_batchnorm(net))
    with torch.inference_mode():
        table = predictor.localize_frames(batch.adu)
    pred = Localizations(table, meta)
    counted = em.photons.numpy() > label_photons
    m = evaluate(truth, pred, 100.0, 100.0, counted=counted)
    by_depth = recall_by_depth(truth, pred, cfg.emitters.z_range_nm, 100.0, 100.0, counted)
    return {**{k: m[k] for k in KEYS}, "recall_by_depth_nm": by_depth}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tetrapod", required=True)
    ap.add_argument("--learned", required=True)
    ap.add_argument("--counts", type=int, nargs="+", default=[10, 20, 36, 54, 72, 88])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--label-photons", type=float, default=6000.0)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--psf-plot", default=None, help="PSF z-stacks of both masks, one row each")
    ap.add_argument("--data-physics", choices=PHYSICS_CHOICES, default="model",
                    help="image formation of the test frames: each model's own (default), the presets' physical "
                         "one (issue 18), or the reference")
    args = ap.parse_args()
    models = {"tetrapod": args.tetrapod, "learned": args.learned}
    out = {"benchmark": "learned_vs_tetrapod", "models": models, "frames": args.frames,
           "data_physics": args.data_physics,
           "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__,
                       "python": platform.python_version()},
           "footprint_50_nm": {}, "footprint_90_nm": {}, "results": []}
    stacks = []
    for key, name in models.items():
        cfg, _ = load_model(name)
        z = np.linspace(*cfg.emitters.z_range_nm, 9)
        psf = build_psf(with_physics(cfg, args.data_physics), fast=False, base_dir=resolve_model_dir(name))
        with torch.no_grad():
            stacks.append(psf.z_stack(torch.tensor(z, dtype=torch.float32)).numpy())
        for fraction in (50, 90):
            radii = energy_radius_nm(stacks[-1], cfg.frame.pixel_size_nm, fraction / 100)
            out[f"footprint_{fraction}_nm"][key] = float(radii.mean())
    if args.psf_plot:
        from deepsmlm.plots import psf_montage

        psf_montage(np.concatenate(stacks), np.tile(z, 2), cfg.frame.pixel_size_nm, args.psf_plot,
                    row_labels=list(models), cols=len(z))
    cfg, _ = load_model(args.tetrapod)
    area_um2 = cfg.frame.height * cfg.frame.width * (cfg.frame.pixel_size_nm / 1000) ** 2
    for count in args.counts:
        row = {"emitters_per_frame": count, "density_per_um2": count / area_um2}
        for key, name in models.items():
            row[key] = scores(name, count, args.frames, args.label_photons, args.data_physics)
        out["results"].append(row)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        dens = [r["density_per_um2"] for r in out["results"]]
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
        for key, style in (("tetrapod", "ko-"), ("learned", "o-")):
            for ax, metric in zip(axes, ("jaccard", "rmse_lateral_nm", "rmse_axial_nm")):
                ax.plot(dens, [r[key][metric] for r in out["results"]], style, label=key)
                ax.set_ylabel(metric.replace("_nm", " (nm)").replace("_", " "))
        for ax in axes:
            ax.set_xlabel("emitters per µm²")
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
