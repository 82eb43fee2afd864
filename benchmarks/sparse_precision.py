"""Precision of `gaussian-mle` (and optionally a deep model, ``--model``) against the Cramér–Rao bound on sparse 2D data.

Prints one JSON document. The `epfl2016_2d` preset's camera (EMCCD, 6 ADU/photon) and optics, in
focus (z = 0), 0.1 emitters/µm², 2,000 photons each, 20 background photons/px, 64×64 px frames;
once with the Gaussian PSF (σ 93 nm, the model the fit assumes) and once with the preset's optics as a
scalar pupil PSF in the reference image formation (`with_reference_psf`, what `epfl2016_sparse` was
trained on; not a Gaussian: expect some excess). Matching within 250 nm (Hungarian). The bound is
√(CRLB_x + CRLB_y) at the true PSF, positions and photons from the Fisher information of the whole
frame (every emitter's x, y, photons and the background, camera variance with EMCCD excess noise,
only the pixels on the sensor): it is the bound of the image as simulated, so spots cut by the frame
edge or overlapping a neighbour are bounded as they are imaged. Reported as an RMS over the matched
emitters; ratio = lateral RMSE / bound; for all matched pairs and for isolated emitters (no other
emitter within 1 µm in the same frame, at least 350 nm from the frame edge).

    python benchmarks/sparse_precision.py [--frames 500] [--seed 0] [--model MODEL_DIR] [--split-threshold 25]
        [--out FILE]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import deepsmlm
import harness
from deepsmlm.analysis.matching import match
from deepsmlm.analysis.metrics import evaluate
from deepsmlm.api.model import Model
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import SimulationConfig, load_config, updated
from deepsmlm.localizations import Localizations
from deepsmlm.optics.factory import with_reference_psf
from deepsmlm.physics.crlb import frame_crlb

PHOTONS, BACKGROUND, DENSITY = 2000.0, 20.0, 0.1
ISOLATION_NM, BORDER_NM = 1000.0, 350.0


def isolated(xyz_nm: np.ndarray, frame: np.ndarray, field_nm: tuple[float, float]) -> np.ndarray:
    """Emitters with no other emitter within ISOLATION_NM in their frame and BORDER_NM from the edge."""
    nearest = np.full(len(frame), np.inf)
    for f in np.unique(frame):
        i = np.flatnonzero(frame == f)
        d = np.hypot(*(xyz_nm[i, None, :2] - xyz_nm[None, i, :2]).transpose(2, 0, 1))
        np.fill_diagonal(d, np.inf)
        nearest[i] = d.min(axis=1)
    edge = np.minimum(xyz_nm[:, :2].min(axis=1), np.min(np.asarray(field_nm) - xyz_nm[:, :2], axis=1))
    return (nearest >= ISOLATION_NM) & (edge >= BORDER_NM)


def localizers(cfg: SimulationConfig, model: str | None, fitter_options: dict) -> dict[str, Model]:
    """name -> model: gaussian-mle for data described by ``cfg`` always, a deep model when given."""
    out = {"gaussian-mle": deepsmlm.load_model("gaussian-mle", config=cfg, fitter_options=fitter_options)}
    if model is not None:
        out[f"deep:{model}"] = deepsmlm.load_model(model)
    return out


def precision(pred: pd.DataFrame, gt: Localizations, lateral_var: np.ndarray, alone_gt: np.ndarray) -> dict:
    """Matching scores, lateral RMSE against the bound, for all matched pairs and for isolated emitters."""
    locs = Localizations(pred, gt.meta)
    scores = evaluate(gt, locs, lateral_tol_nm=250.0, axial_tol_nm=None)
    rmse = scores["rmse_lateral_nm"]
    pairs = match(gt, locs, 250.0, None)
    xyz = gt.table[["x_nm", "y_nm"]].to_numpy()
    sq_err = ((pred[["x_nm", "y_nm"]].to_numpy()[pairs.pred_idx] - xyz[pairs.gt_idx]) ** 2).sum(axis=1)
    var = lateral_var[pairs.gt_idx]

    def against_bound(sel: np.ndarray) -> dict:
        rmse_sel, bound = float(np.sqrt(sq_err[sel].mean())), float(np.sqrt(var[sel].mean()))
        # per emitter: squared error in units of its own bound, so no few huge bounds dominate
        return {"n_tp": int(sel.sum()), "rmse_lateral_nm": rmse_sel, "sqrt_crlb_lateral_nm": bound,
                "rmse_over_sqrt_crlb": rmse_sel / bound,
                "rms_error_over_own_sqrt_crlb": float(np.sqrt((sq_err[sel] / var[sel]).mean()))}

    return {
        **harness.scores(scores, ("n_gt", "n_pred", *harness.COUNTS, "jaccard", "bias_x_nm", "bias_y_nm")),
        **against_bound(np.ones(len(var), dtype=bool)),
        "isolated": against_bound(alone_gt[pairs.gt_idx]),
    }


def run(psf_model: str, n_frames: int, seed: int, model: str | None, fitter_options: dict) -> dict:
    """Simulate once for one PSF model; localize with each method; compare with the CRLB."""
    cfg = with_reference_psf(load_config("epfl2016_2d"))  # the image formation epfl2016_sparse was trained with
    cfg = updated(cfg, {"psf.model": psf_model, "emitters.density_per_um2": DENSITY, "emitters.z_range_nm": (0.0, 0.0),
                        "emitters.photons.distribution": "constant", "emitters.photons.low": PHOTONS,
                        "background.photons_per_px": (BACKGROUND, BACKGROUND)})
    sim = build_simulator(cfg)
    px = cfg.frame.pixel_size_nm
    batch, gt = harness.test_set(sim, n_frames, seed, px)
    em = batch.emitters
    xyz = em.xyz_nm.double()
    bound = frame_crlb(sim.psf, xyz, em.photons.double(), em.frame, BACKGROUND, n_frames,
                       cfg.frame.height, cfg.frame.width, sim.camera.variance_photons).numpy()
    lateral_var = bound[:, 0] ** 2 + bound[:, 1] ** 2
    alone_gt = isolated(xyz.numpy(), em.frame.numpy(), (cfg.frame.width * px, cfg.frame.height * px))
    methods = {}
    # the deep model was trained for the pupil PSF; run it on those frames only
    for name, method in localizers(cfg, model if psf_model == "pupil" else None, fitter_options).items():
        harness.localize(method, batch.adu[:2])  # warm-up
        seconds, pred = harness.best_seconds(lambda: harness.localize(method, batch.adu, n_frames))
        methods[name] = {**precision(pred, gt, lateral_var, alone_gt), "frames_per_s": n_frames / seconds}
    return {"psf": psf_model, "mean_sqrt_crlb_x_nm": float(bound[:, 0].mean()), "methods": methods}


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-threshold", type=float, default=None,
                    help="gaussian-mle likelihood-ratio threshold for a second spot (default: the fitter's)")
    ap.add_argument("--model", default=None, help="also run a deep model trained for these conditions (pupil PSF)")
    args = ap.parse_args()
    options = {} if args.split_threshold is None else {"split_threshold": args.split_threshold}
    runs = [run(psf, args.frames, args.seed, args.model, options) for psf in ("gaussian", "pupil")]
    harness.report({
        "benchmark": "sparse_precision",
        "setup": f"epfl2016_2d camera+optics, z=0, {DENSITY:g}/um2, {PHOTONS:g} photons, {BACKGROUND:g} bg/px, "
                 f"{args.frames} frames 64x64, match 250 nm; box 7 px, threshold 6, sigma free, 20 iterations; "
                 "frames/s best of 3",
        "machine": harness.machine(),
        "runs": runs,
    }, args.out)


if __name__ == "__main__":
    main()
