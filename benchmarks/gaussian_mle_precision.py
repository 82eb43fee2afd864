"""Precision of the `gaussian-mle` baseline against the Cramér–Rao bound on sparse 2D data.

Prints one JSON document. The `epfl2016_2d` preset's camera (EMCCD, 6 ADU/photon) and optics, in
focus (z = 0), 0.1 emitters/µm², 2,000 photons each, 20 background photons/px, 64×64 px frames;
once with the Gaussian PSF (σ 93 nm, the model the fit assumes) and once with the preset's scalar
pupil PSF (not a Gaussian: expect some excess). Matching within 250 nm (Hungarian). The bound is
√(CRLB_x + CRLB_y) of (x, y, photons, background) at the true PSF and positions, with the camera's
variance (EMCCD excess noise included), as an RMS over the emitters; ratio = lateral RMSE / bound.

    python benchmarks/gaussian_mle_precision.py [--frames 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from deepsmlm.analysis.metrics import evaluate
from deepsmlm.config import load_config
from deepsmlm.inference.gaussian_mle import GaussianMLE
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.optics.psf import split_positions
from deepsmlm.physics.crlb import crlb
from deepsmlm.simulation.simulator import Simulator

PHOTONS, BACKGROUND, DENSITY = 2000.0, 20.0, 0.1


def run(psf_model: str, n_frames: int, seed: int) -> dict:
    """Simulate, localize, match and compare with the CRLB for one PSF model."""
    cfg = load_config("epfl2016_2d")
    cfg.psf.model = psf_model
    cfg.emitters.density_per_um2 = DENSITY
    cfg.emitters.z_range_nm = (0.0, 0.0)
    cfg.emitters.photons.distribution = "constant"
    cfg.emitters.photons.low = PHOTONS
    cfg.background.photons_per_px = (BACKGROUND, BACKGROUND)
    sim = Simulator(cfg)
    batch = sim.sample(n_frames, torch.Generator().manual_seed(seed))
    em = batch.emitters
    mle = GaussianMLE(cfg)
    mle.localize(batch.adu[:2])  # warm-up
    t0 = time.perf_counter()
    pred = mle.localize(batch.adu)
    seconds = time.perf_counter() - t0

    px = cfg.frame.pixel_size_nm
    meta = Metadata(pixel_size_nm=px, image_shape=(cfg.frame.height, cfg.frame.width), n_frames=n_frames)
    xyz = em.xyz_nm.double()
    gt = Localizations.from_arrays(em.frame.numpy(), xyz[:, 0].numpy(), xyz[:, 1].numpy(), meta=meta)
    scores = evaluate(gt, Localizations(pred, meta), lateral_tol_nm=250.0, axial_tol_nm=None)

    _, _, offset = split_positions(em.xyz_nm, px)
    theta = torch.cat([offset, em.photons[:, None], torch.full_like(em.photons[:, None], BACKGROUND)], dim=1)
    bound = crlb(sim.psf, theta, sim.camera.variance_photons, params=("x", "y", "photons", "background"))
    crlb_x, crlb_y = bound[:, 0].double() ** 2, bound[:, 1].double() ** 2
    lateral_bound = float(torch.sqrt((crlb_x + crlb_y).mean()))
    rmse = scores["rmse_lateral_nm"]
    return {
        "psf": psf_model,
        "n_gt": scores["n_gt"], "n_pred": scores["n_pred"], "n_tp": scores["n_tp"],
        "n_fp": scores["n_fp"], "n_fn": scores["n_fn"],
        "jaccard": scores["jaccard"],
        "rmse_lateral_nm": rmse,
        "bias_x_nm": scores["bias_x_nm"], "bias_y_nm": scores["bias_y_nm"],
        "mean_sqrt_crlb_x_nm": float(bound[:, 0].double().mean()),
        "sqrt_crlb_lateral_nm": lateral_bound,
        "rmse_over_sqrt_crlb": rmse / lateral_bound if rmse is not None else None,
        "mean_reported_sigma_x_nm": float(pred["sigma_x_nm"].mean()),
        "median_psf_sigma_nm": float(pred["psf_sigma_nm"].median()),
        "median_photons": float(pred["photons"].median()),
        "median_bg": float(pred["bg"].median()),
        "frames_per_s": n_frames / seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    runs = [run(model, args.frames, args.seed) for model in ("gaussian", "pupil")]
    print(json.dumps({
        "benchmark": "gaussian_mle_precision",
        "setup": f"epfl2016_2d camera+optics, z=0, {DENSITY:g}/um2, {PHOTONS:g} photons, {BACKGROUND:g} bg/px, "
                 f"{args.frames} frames 64x64, match 250 nm; box 7 px, threshold 6, sigma free",
        "machine": {"device": "cpu", "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "runs": runs,
    }, indent=2))


if __name__ == "__main__":
    main()
