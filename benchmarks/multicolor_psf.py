"""Telling dyes apart by PSF shape: the standard PSF, the Tetrapod and a learned mask, each with a network
of the same architecture and training budget, on the same seeded test sets.

For every model folder (its own config gives the optics, mask, camera and dyes): single emitters, one
per ``--field``-px frame anywhere in it, equal dye fractions, a fixed signal (``--photons``) on a
uniform background of ``--background`` photons/px; the test frames for a photon level use the same
seed for every model, so emitters and dyes are identical and only the PSF differs. Scored by Hungarian
matching within 250 nm; colour accuracy and the confusion matrix (rows: true dye, columns: assigned)
over the matched emitters. Prints one JSON document; ``--plot`` draws accuracy against photons;
``--separation-plot`` draws accuracy at the first ``--photons`` level against each model's dye
separation (its config's smallest gap between dye wavelengths), one line per label prefix (the label
before "-": ``--model standard-25nm=DIR --model learned-25nm=DIR …``).

    python benchmarks/multicolor_psf.py --model standard=DIR --model tetrapod=DIR --model learned=DIR
        [--photons 500 1000 2000 5000 10000] [--frames 400] [--plot out.png] [--separation-plot sep.png]
"""

from __future__ import annotations

import argparse
import json
import platform

import pandas as pd
import torch

from deepsmlm.analysis.metrics import evaluate
from deepsmlm.inference.predict import DensityPredictor
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.models.registry import fold_batchnorm, load_model
from deepsmlm.simulation.emitters import Emitters
from deepsmlm.simulation.simulator import FrameBatch, Simulator

KEYS = ("jaccard", "rmse_lateral_nm", "n_tp", "n_fp", "n_fn", "color_accuracy", "color_confusion")


def test_config(name: str, photons: float, background: float, field: int):
    """A model's config and network, set to single emitters of ``photons`` on a flat ``background``,
    every dye equally often, in ``field``-px frames."""
    cfg, net = load_model(name)
    cfg.frame.height = cfg.frame.width = field
    cfg.emitters.count, cfg.emitters.density_per_um2 = (1, 1), None
    cfg.emitters.photons.distribution, cfg.emitters.photons.low = "constant", photons
    cfg.background.photons_per_px = (background, background)
    cfg.background.nonuniform_amplitude = 0.0
    for dye in cfg.emitters.dyes:
        dye.fraction = 1.0
    return cfg, net


def test_frames(cfg, photons: float, n_frames: int) -> FrameBatch:
    """The seeded test frames of a photon level: the same emitters and dyes for every model."""
    return Simulator(cfg).sample(n_frames, torch.Generator().manual_seed(3000 + int(photons)))


def scores(cfg, net, batch: FrameBatch) -> dict:
    em = batch.emitters
    xyz = em.xyz_nm.double().numpy()
    meta = Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=batch.adu.shape[-2:],
                    n_frames=len(batch.adu))
    truth = Localizations(pd.DataFrame({"frame": em.frame.numpy(), "x_nm": xyz[:, 0], "y_nm": xyz[:, 1],
                                        "color": em.color.numpy()}), meta)
    predictor = DensityPredictor(cfg, fold_batchnorm(net))
    with torch.inference_mode():
        table = predictor.localize_frames(batch.adu)
    m = evaluate(truth, Localizations(table, meta), 250.0, None)
    return {k: m.get(k) for k in KEYS}


def ideal_color_accuracy(cfg, batch: FrameBatch) -> float:
    """Accuracy of the oracle that knows each emitter's position, photons, blur and the background and
    picks the dye whose expected image makes the frame most likely (Poisson shot noise, Gaussian read
    noise as a shifted Poisson): an upper bound on what any classifier can reach on these frames."""
    if cfg.camera.type != "ccd":
        raise ValueError("the ideal observer models a CCD camera")
    sim, cam, em = Simulator(cfg), cfg.camera, batch.emitters
    with torch.no_grad():
        counts = ((batch.adu - cam.baseline_adu) * cam.e_per_adu + cam.read_noise_e ** 2).clamp(min=0)
        log_lik = []
        for dye in range(len(cfg.emitters.dyes)):
            other = Emitters(em.xyz_nm, em.photons, em.frame, em.molecule, torch.full_like(em.color, dye))
            rate = cam.qe * sim.expected_photons(other, batch.background, batch.blur_px) + cam.read_noise_e ** 2
            log_lik.append((counts * rate.log() - rate).sum((1, 2)))
    guess = torch.stack(log_lik).argmax(0)[em.frame]
    return float((guess == em.color).double().mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True, help="label=model folder or shipped name")
    ap.add_argument("--photons", type=float, nargs="+", default=[500, 1000, 2000, 5000, 10000])
    ap.add_argument("--background", type=float, default=20.0)
    ap.add_argument("--field", type=int, default=40)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--separation-plot", default=None)
    ap.add_argument("--ideal", action="store_true",
                    help="also the oracle's accuracy (truth known but the dye): the bound for each PSF")
    args = ap.parse_args()
    models = dict(m.split("=", 1) for m in args.model)
    separation = {key: dye_separation_nm(name) for key, name in models.items()}
    out = {"benchmark": "multicolor_psf", "models": models, "dye_separation_nm": separation,
           "frames_per_level": args.frames,
           "background_photons_per_px": args.background, "field_px": args.field,
           "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__,
                       "python": platform.python_version()}, "results": []}
    for photons in args.photons:
        row = {"photons": photons}
        for key, name in models.items():
            cfg, net = test_config(name, photons, args.background, args.field)
            batch = test_frames(cfg, photons, args.frames)
            row[key] = scores(cfg, net, batch)
            if args.ideal:
                row[key]["ideal_color_accuracy"] = ideal_color_accuracy(cfg, batch)
        out["results"].append(row)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for key in models:
            ax.plot(args.photons, [100 * (r[key]["color_accuracy"] or 0) for r in out["results"]], "o-", label=key)
        ax.set_xscale("log")
        ax.set_xlabel(f"signal photons (background {args.background:g} photons/px)")
        ax.set_ylabel("dye classified correctly (%)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    if args.separation_plot:
        separation_plot(out, args.separation_plot)
    print(json.dumps(out, indent=2))


def dye_separation_nm(name: str) -> float:
    """Smallest gap (nm) between the dyes' emission peaks of a model's config."""
    cfg, _ = load_model(name)
    peaks = sorted(d.wavelength_nm for d in cfg.emitters.dyes)
    return float(min(b - a for a, b in zip(peaks, peaks[1:])))


def separation_plot(out: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = out["results"][0]
    lines: dict[str, list[tuple[float, float]]] = {}
    for key in out["models"]:
        lines.setdefault(key.split("-")[0], []).append((out["dye_separation_nm"][key],
                                                         100 * (first[key]["color_accuracy"] or 0)))
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for kind, points in lines.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=kind)
    ax.set_xlabel("dye separation (nm)")
    ax.set_ylabel(f"dye classified correctly (%), {first['photons']:g} photons")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
