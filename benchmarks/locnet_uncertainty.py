"""Can a LocNet model's predicted σ be trusted? z-scores and reliability at low and high density.

Prints one JSON document. Test sets are the model's validation simulation (uniformly random emitters,
the config's photons, background and PSF) at ``--densities`` times the config's density
(``emitters.density_per_um2``), seeded apart from training and validation. Matched within the
config's lateral tolerance (Hungarian), the z-scores (error / predicted σ) of each axis have standard
deviation 1 when σ is calibrated (target 0.9-1.1); reported for the σ the model writes (``calibrated``,
× its ``model.sigma_scale``) and the network's own (``raw``), with the reliability curve (observed RMSE
in bins of predicted σ). A model trained before the calibration existed (sigma_scale 1) is calibrated
here exactly as training does at its end (``--fit``): the scale is the z-score SDs of the validation set
its config defines. ``--plot`` draws the reliability figure (``deepsmlm.plots.reliability_plot``).

    python benchmarks/locnet_uncertainty.py --model MODEL_DIR [--frames 64] [--densities 0.5 1.5] [--fit]
        [--plot docs/images/locnet_uncertainty.png] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

import deepsmlm
import harness
from deepsmlm.analysis.matching import match
from deepsmlm.analysis.metrics import evaluate
from deepsmlm.analysis.uncertainty import axes, matched_errors, reliability, zscore_sd
from deepsmlm.api.model import Model
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import SimulationConfig, dump_config
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.models.registry import CONFIG, WEIGHTS, resolve_model_dir
from deepsmlm.plots import reliability_plot
from deepsmlm.simulation.emitters import EmitterSampler
from deepsmlm.simulation.movies import ground_truth_table
from deepsmlm.training.batches import training_emitters, training_field
from deepsmlm.training.validation import ValidationSet, kept_config

TEST_SEED = 20_211


def fitted(model_dir: str, folder: Path) -> Model:
    """A copy of the model (in ``folder``) with its σ calibrated as training does at the kept step: each
    axis' factor the z-score SD of its raw σ on the validation set of its config, at its threshold."""
    model = deepsmlm.load_model(model_dir)
    cfg = model.config
    field = training_field(cfg)
    frames = ValidationSet.build(build_simulator(field), field)
    found = Localizations(harness.localize(model, frames.adu), frames.truth.meta)
    m = evaluate(frames.truth, found, cfg.training.lateral_tol_nm, cfg.training.axial_tol_nm,
                 counted=frames.counted)
    record = {"threshold": cfg.model.threshold}
    for axis, scale in zip("xyz", cfg.model.sigma_scale):
        if m.get(f"zscore_sd_{axis}") is not None:  # of the raw σ: the model's σ are raw × scale
            record[f"zscore_sd_{axis}"] = m[f"zscore_sd_{axis}"] * scale
    shutil.copy(resolve_model_dir(model_dir) / WEIGHTS, folder / WEIGHTS)
    (folder / CONFIG).write_text(dump_config(kept_config(cfg, record)))
    return deepsmlm.load_model(folder)


def test_frames(cfg: SimulationConfig, density: float, n_frames: int, seed: int) -> tuple[torch.Tensor, Localizations]:
    """Frames (ADU) of the validation simulation at ``density`` (µm⁻²) and their ground truth (2D: no z)."""
    sim = build_simulator(cfg)
    batch = sim.sample(n_frames, torch.Generator().manual_seed(seed), EmitterSampler(training_emitters(cfg, density),
                                                                                    cfg.frame))
    meta = Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=(cfg.frame.height, cfg.frame.width),
                    n_frames=n_frames)
    table = ground_truth_table(batch, cfg.frame.pixel_size_nm)
    return batch.adu, Localizations(table if cfg.localizes_z() else table.drop(columns="z_nm"), meta)


def calibration(model: Model, density: float, n_frames: int, seed: int) -> tuple[dict, dict]:
    """(figures, {axis: {"raw" | "calibrated": reliability curve}}) of ``model`` on test frames at ``density``."""
    cfg = model.config
    adu, truth = test_frames(cfg, density, n_frames, seed)
    found = Localizations(harness.localize(model, adu), truth.meta)
    pairs = match(truth, found, cfg.training.lateral_tol_nm, cfg.training.axial_tol_nm)
    out = {"density_per_um2": density, "n_gt": len(truth), "n_matched": len(pairs.gt_idx)}
    curves = {}
    for k, axis in enumerate(axes(pairs)):
        sigma, error = matched_errors(truth, found, pairs, axis)
        scale = cfg.model.sigma_scale[k]
        predicted, observed, count = reliability(sigma, error)
        raw = reliability(sigma / scale, error)
        out[axis] = {"zscore_sd_raw": zscore_sd(sigma / scale, error), "zscore_sd_calibrated": zscore_sd(sigma, error),
                     "sigma_scale": scale, "rmse_nm": float(np.sqrt(np.mean(error**2))),
                     "median_sigma_nm": float(np.median(sigma)),
                     "reliability": {"predicted_sigma_nm": predicted.round(2).tolist(),
                                     "observed_rmse_nm": observed.round(2).tolist(), "pairs": count.tolist()}}
        curves[axis] = {"raw": raw[:2], "calibrated": (predicted, observed)}
    return out, curves


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--model", required=True, help="a LocNet model folder or shipped name")
    ap.add_argument("--frames", type=int, default=64, help="test frames per density")
    ap.add_argument("--densities", type=float, nargs="+", default=[0.5, 1.5], help="× the config's density")
    ap.add_argument("--seed", type=int, default=TEST_SEED)
    ap.add_argument("--fit", action="store_true", help="calibrate σ on the model's validation set first")
    ap.add_argument("--plot", default=None, help="write the reliability figure (PNG) here")
    harness.add_threads(ap)
    args = ap.parse_args()
    with harness.scratch() as folder:
        model = fitted(args.model, folder) if args.fit else deepsmlm.load_model(args.model)
        density = model.config.emitters.density_per_um2
        results, curves = [], {}
        for k, factor in enumerate(args.densities):
            figures, curve = calibration(model, factor * density, args.frames, args.seed + k)
            results.append({"density_factor": factor, **figures})
            for kind in ("raw", "calibrated"):
                curves[f"{factor:g}× density ({factor * density:.3g} µm⁻²), {kind} σ"] = {
                    axis: c[kind] for axis, c in curve.items()}
    if args.plot:
        reliability_plot(curves, args.plot, title=f"LocNet σ reliability ({Path(args.model).name})")
    harness.report({"benchmark": "locnet_uncertainty", "model": args.model, "fitted_here": args.fit,
                    "frames": args.frames, "results": results, "machine": harness.machine()}, args.out)


if __name__ == "__main__":
    main()
