"""Speed (and accuracy) of the 3D fitter `psf-mle` on sparse simulated frames, with 1 and 2 CPU threads.

Prints one JSON document. The `epfl2016_2d` preset's camera (EMCCD, 6 ADU/photon) and pixel, z uniform
in ±600 nm, 0.1 emitters/µm², 3,000 photons each, 30 background photons/px, 64×64 px frames; two PSFs:
an astigmatic Gaussian (σ₀ 93 nm, foci ±300 nm, depth 400 nm) and a scalar pupil with 0.8 rad RMS of
vertical astigmatism (Noll 6; the fit uses its cached z-stack). Localized through the public API
(detection included; 13 px boxes), 32 frames per pass (few spots per pass, so the fixed cost of each
fit step weighs) and 256 (the fitters' default --batch-size); spots/s = localizations per second of the
best of 3 runs after a warm-up. Scores: Hungarian matching within 250 nm laterally and 500 nm axially.

    python benchmarks/psf_mle_speed.py [--frames 200] [--seed 0] [--out FILE]
"""

from __future__ import annotations

import torch

import deepsmlm
import harness
from deepsmlm.analysis.metrics import evaluate
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import SimulationConfig, load_config, updated
from deepsmlm.localizations import Localizations

PHOTONS, BACKGROUND, DENSITY, Z_NM = 3000.0, 30.0, 0.1, 600.0
PSFS = {
    "astigmatic_gaussian": {"psf.model": "gaussian", "psf.gaussian.astig_focus_offset_nm": 300.0,
                            "psf.gaussian.astig_depth_nm": 400.0},
    "astigmatic_pupil": {"psf.model": "pupil", "psf.zernike_rad": {6: 0.8}},
}


def config(psf: str) -> SimulationConfig:
    """The benchmark's config for one PSF (module docstring)."""
    return updated(load_config("epfl2016_2d"), {
        **PSFS[psf], "psf.patch_px": 21, "emitters.density_per_um2": DENSITY, "emitters.z_range_nm": (-Z_NM, Z_NM),
        "emitters.photons.distribution": "constant", "emitters.photons.low": PHOTONS,
        "background.photons_per_px": (BACKGROUND, BACKGROUND)})


def run(psf: str, n_frames: int, seed: int) -> dict:
    """Simulate once; localize with 1 and 2 threads; score the last run."""
    cfg = config(psf)
    batch, gt = harness.test_set(build_simulator(cfg), n_frames, seed, cfg.frame.pixel_size_nm)
    model = deepsmlm.load_model("psf-mle", config=cfg)
    harness.localize(model, batch.adu[:2])  # warm-up: the z-stack, torch's first forward-mode pass
    threads = torch.get_num_threads()
    speed = {}
    for n_threads, batch_size in ((1, 32), (1, 256), (2, 256)):
        torch.set_num_threads(n_threads)
        seconds, pred = harness.best_seconds(lambda: harness.localize(model, batch.adu, batch_size))
        speed[f"{n_threads}_thread_batch_{batch_size}"] = {"spots_per_s": len(pred) / seconds,
                                                          "frames_per_s": n_frames / seconds}
    torch.set_num_threads(threads)
    scores = evaluate(gt, Localizations(pred, gt.meta), lateral_tol_nm=250.0, axial_tol_nm=500.0)
    return {"psf": psf, "n_localizations": len(pred), **speed,
            **harness.scores(scores, ("n_gt", *harness.COUNTS, "jaccard", "rmse_lateral_nm", "rmse_axial_nm")),
            "median_sigma_z_nm": float(pred.sigma_z_nm.median())}


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    runs = [run(psf, args.frames, args.seed) for psf in PSFS]
    harness.report({
        "benchmark": "psf_mle_speed",
        "setup": f"epfl2016_2d camera, z in +-{Z_NM:g} nm, {DENSITY:g}/um2, {PHOTONS:g} photons, {BACKGROUND:g} bg/px, "
                 f"{args.frames} frames 64x64, box 13 px, threshold 6; spots/s best of 3",
        "machine": harness.machine(),
        "runs": runs,
    }, args.out)


if __name__ == "__main__":
    main()
