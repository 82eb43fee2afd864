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
        [--ideal] [--glrt] [--data-physics model|physical|reference] [--out FILE]

``--ideal`` adds the oracle that knows all but the dye; ``--glrt`` a likelihood-ratio classifier that
fits position, photons, blur and background per dye (what the PSF allows without being told them).
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

import deepsmlm
import harness
from deepsmlm.analysis.metrics import evaluate
from deepsmlm.api.model import Model
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import SimulationConfig, updated
from deepsmlm.localizations import Localizations
from deepsmlm.optics.factory import with_physics
from deepsmlm.simulation.emitters import Emitters
from deepsmlm.simulation.simulator import FrameBatch, Simulator

KEYS = ("jaccard", "rmse_lateral_nm", *harness.COUNTS, "color_accuracy", "color_confusion")


def test_config(cfg: SimulationConfig, photons: float, background: float, field: int) -> SimulationConfig:
    """A model's config set to single emitters of ``photons`` on a flat ``background``, every dye equally
    often, in ``field``-px frames."""
    return updated(cfg, {"frame.height": field, "frame.width": field, "emitters.count": (1, 1),
                        "emitters.density_per_um2": None, "emitters.photons.distribution": "constant",
                        "emitters.photons.low": photons, "background.photons_per_px": (background, background),
                        "background.nonuniform_amplitude": 0.0,
                        "emitters.dyes": [updated(dye, {"fraction": 1.0}) for dye in cfg.emitters.dyes]})


def test_set(cfg: SimulationConfig, photons: float, n_frames: int, physics: str = "model"
             ) -> tuple[FrameBatch, Localizations]:
    """The seeded test frames of a photon level and their ground truth: the same emitters and dyes for every
    model, imaged with the model's own physics or another (``with_physics``)."""
    sim = build_simulator(with_physics(cfg, physics))
    return harness.test_set(sim, n_frames, 3000 + int(photons), cfg.frame.pixel_size_nm)


def scores(model: Model, batch: FrameBatch, truth: Localizations) -> dict:
    pred = Localizations(harness.localize(model, batch.adu), truth.meta)
    return harness.scores(evaluate(truth, pred, 250.0, None), KEYS)


def photon_counts(cfg, batch: FrameBatch) -> torch.Tensor:
    """The frames as shifted-Poisson counts (photoelectrons + read variance) of a CCD camera."""
    cam = cfg.camera
    if cam.type != "ccd":
        raise ValueError("the likelihood classifiers model a CCD camera")
    return ((batch.adu - cam.baseline_adu) * cam.e_per_adu + cam.read_noise_e ** 2).clamp(min=0)


def log_likelihood(cfg, sim: Simulator, counts: torch.Tensor, em: Emitters, dye: int, background: torch.Tensor,
                   blur: torch.Tensor | None) -> torch.Tensor:
    """(F,) log-likelihood of each frame if its emitter were of ``dye`` (shot noise, read noise as a shifted
    Poisson), up to a constant."""
    cam = cfg.camera
    other = Emitters(em.xyz_nm, em.photons, em.frame, em.molecule, torch.full_like(em.color, dye))
    rate = cam.qe * sim.expected_photons(other, background, blur) + cam.read_noise_e ** 2
    return (counts * rate.log() - rate).sum((1, 2))


def ideal_color_accuracy(cfg, batch: FrameBatch) -> float:
    """Accuracy of the oracle that knows each emitter's position, photons, blur and the background and
    picks the dye whose expected image makes the frame most likely: an upper bound on what any classifier
    can reach on these frames."""
    sim, em, counts = build_simulator(cfg), batch.emitters, photon_counts(cfg, batch)
    with torch.no_grad():
        log_lik = [log_likelihood(cfg, sim, counts, em, dye, batch.background, batch.blur_px)
                   for dye in range(len(cfg.emitters.dyes))]
    guess = torch.stack(log_lik).argmax(0)[em.frame]
    return float((guess == em.color).double().mean())


def glrt_color_accuracy(cfg, batch: FrameBatch, iterations: int = 150) -> float:
    """Accuracy of a generalised likelihood-ratio test: for each dye, the maximum-likelihood fit of the
    emitter's x, y, photons, blur (within the configured range) and a flat background, started from the
    truth (a fitter that has found the emitter); the dye whose fit is likelier wins. Unlike the oracle it
    does not know blur and brightness, which a wider PSF can trade against the dye. Single emitters."""
    sim, em, counts = build_simulator(cfg), batch.emitters, photon_counts(cfg, batch)
    lo, hi = cfg.psf.blur_sigma_px
    n = len(counts)
    best = []
    for dye in range(len(cfg.emitters.dyes)):
        xy = em.xyz_nm[:, :2].clone().requires_grad_(True)
        log_photons = em.photons.log().clone().requires_grad_(True)
        log_background = batch.background.mean((1, 2)).log().clone().requires_grad_(True)
        blur_logit = torch.zeros(n, requires_grad=True)
        optim = torch.optim.Adam([{"params": [xy], "lr": 5.0},
                                  {"params": [log_photons, log_background, blur_logit], "lr": 0.05}])

        def fit_log_likelihood() -> torch.Tensor:
            fit = Emitters(torch.cat([xy, em.xyz_nm[:, 2:]], 1), log_photons.exp(), em.frame, em.molecule, em.color)
            background = log_background.exp()[:, None, None].expand_as(counts)
            blur = lo + (hi - lo) * torch.sigmoid(blur_logit) if hi > 0 else None
            return log_likelihood(cfg, sim, counts, fit, dye, background, blur)

        for _ in range(iterations):
            loss = -fit_log_likelihood().sum()
            optim.zero_grad()
            loss.backward()
            optim.step()
        with torch.no_grad():
            best.append(fit_log_likelihood())
    guess = torch.stack(best).argmax(0)[em.frame]
    return float((guess == em.color).double().mean())


def main() -> None:
    ap = harness.parser(__doc__)
    harness.add_labelled_models(ap)
    ap.add_argument("--photons", type=float, nargs="+", default=[500, 1000, 2000, 5000, 10000])
    ap.add_argument("--background", type=float, default=20.0)
    ap.add_argument("--field", type=int, default=40)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--separation-plot", default=None)
    ap.add_argument("--ideal", action="store_true",
                    help="also the oracle's accuracy (truth known but the dye): the bound for each PSF")
    ap.add_argument("--glrt", action="store_true",
                    help="also a likelihood-ratio classifier that fits position, photons, blur and background")
    harness.add_data_physics(ap, " (--ideal and --glrt keep the model's)")
    args = ap.parse_args()
    names = dict(args.model)
    models = {key: deepsmlm.load_model(name) for key, name in names.items()}
    results = []
    for photons in args.photons:
        row = {"photons": photons}
        for key, model in models.items():
            cfg = test_config(model.config, photons, args.background, args.field)
            batch, truth = test_set(cfg, photons, args.frames, args.data_physics)
            row[key] = scores(model, batch, truth)
            if args.ideal:
                row[key]["ideal_color_accuracy"] = ideal_color_accuracy(cfg, batch)
            if args.glrt:
                row[key]["glrt_color_accuracy"] = glrt_color_accuracy(cfg, batch)
        results.append(row)
    out = {"benchmark": "multicolor_psf", "models": names,
           "dye_separation_nm": {key: dye_separation_nm(model.config) for key, model in models.items()},
           "frames_per_level": args.frames, "data_physics": args.data_physics,
           "background_photons_per_px": args.background, "field_px": args.field,
           "machine": harness.machine(), "results": results}
    if args.plot:
        accuracy_plot(out, args.photons, args.background, args.plot)
    if args.separation_plot:
        separation_plot(out, args.separation_plot)
    harness.report(out, args.out)


def dye_separation_nm(cfg: SimulationConfig) -> float:
    """Smallest gap (nm) between the dyes' emission peaks of a model's config."""
    peaks = sorted(d.wavelength_nm for d in cfg.emitters.dyes)
    return float(min(b - a for a, b in zip(peaks, peaks[1:])))


def accuracy_plot(out: dict, photons: list[float], background: float, path: str) -> None:
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    for key in out["models"]:
        ax.plot(photons, [100 * (r[key]["color_accuracy"] or 0) for r in out["results"]], "o-", label=key)
    ax.set_xscale("log")
    ax.set_xlabel(f"signal photons (background {background:g} photons/px)")
    ax.set_ylabel("dye classified correctly (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def separation_plot(out: dict, path: str) -> None:
    first = out["results"][0]
    lines: dict[str, list[tuple[float, float]]] = {}
    for key in out["models"]:
        lines.setdefault(key.split("-")[0], []).append((out["dye_separation_nm"][key],
                                                         100 * (first[key]["color_accuracy"] or 0)))
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
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
