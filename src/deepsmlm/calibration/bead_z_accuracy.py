"""Leave-one-bead-out z accuracy of a pupil calibration: does the calibrated PSF give a bead's z?

For each of the B beads, the pupil is fitted again to the other B − 1 beads (warm-started from the all-bead
fit: a few L-BFGS iterations of :func:`~deepsmlm.calibration.pupil_fit.fit_scan`), with their stage wobble
slice by slice (:mod:`.stage_wobble`). The held-out bead's crops are then localized slice by slice with the
3D maximum-likelihood fitter ``psf-mle`` on the config of that fit, as a focus scan (the focal plane at the
fitted focus offset Δ − z), so the fitted z is the stage z of a bead at depth 0. Over the slices with
|z_stage| ≤ :data:`RANGE_NM`:

- z_fit − z_stage per slice (the bias curve), its RMS, and its RMS after the bead's mean (its own height:
  the coverslip's tilt, the bead's size) is removed;
- the lateral residuals: the fitted x, y less the wobble of the other beads' fit, about their mean (on every
  :data:`LATERAL_EVERY`-th slice, where that wobble is fitted: the costliest part).

Every fit counts, converged or not (``psf-mle``'s strict flag fails where the model does not explain the
bead: the figures would flatter it); the converged count is reported beside.

At ~30,000 photons the Cramér–Rao bounds (reported beside) are a few nm, so this measures the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from deepsmlm.assembly.fitters import build_psf_mle
from deepsmlm.calibration.pupil_fit import ScanData, ScanModel, fit_scan
from deepsmlm.calibration.stage_wobble import fit_wobble
from deepsmlm.config import SimulationConfig, updated
from deepsmlm.inference.psf_mle import centre_crop
from deepsmlm.progress import ProgressCallback, ProgressEvent

RANGE_NM = 600.0  # slices with |z_stage| up to this are localized
BOX_PX = 19  # psf-mle's fit box (px): the defocused astigmatic spots need more than its default 13
REFIT_ITERATIONS = 6  # L-BFGS iterations of the B − 1 bead refit, warm-started from the all-bead fit
WOBBLE_STEPS = 2  # Fisher-scoring steps of the B − 1 beads' wobble per slice, from the all-bead wobble
LATERAL_EVERY = 3  # the lateral residuals on every this-many-th evaluated slice
FIT_ITERATIONS = 100  # psf-mle's steps per crop (its default 30 stops short where the model fits poorly)


@dataclass(frozen=True)
class HeldOut:
    """One held-out bead's fits over the evaluated slices (S,): z (nm), lateral residual (S, 2) nm about
    the mean after the other beads' wobble (NaN on slices not checked laterally), Cramér–Rao σ (S, 3) nm of
    x, y, z, and whether each converged."""

    z_nm: np.ndarray
    lateral_nm: np.ndarray
    crlb_nm: np.ndarray
    converged: np.ndarray


def localizer_config(cfg: SimulationConfig, model: ScanModel, z_nm: np.ndarray) -> SimulationConfig:
    """``cfg`` (a calibrated config) as the focus scan of ``model``: z moves the focal plane (at Δ − z), the
    bead on the coverslip, over the stack's z range, so a fitted z is the stage z."""
    return updated(cfg, {"optics.z_scan": "focus",
                         "optics.nominal_focal_plane_nm": round(model.focus_offset_nm().item(), 2),
                         "emitters.z_range_nm": (float(z_nm.min()), float(z_nm.max()))})


@torch.inference_mode()
def localize_bead(cfg: SimulationConfig, data: ScanData, bead: int, slices: Sequence[int]) -> HeldOut:
    """Fit ``bead``'s crops in ``slices`` with ``psf-mle`` on ``cfg`` (box :data:`BOX_PX` or the crop if
    smaller), one spot per crop at its centre pixel; lateral residuals before any wobble is removed."""
    p = data.photons.shape[-1]
    box = min(BOX_PX, p - (1 - p % 2))
    fitter = build_psf_mle(cfg, box_px=box, iterations=FIT_ITERATIONS)
    boxes = centre_crop(data.photons[bead, list(slices)], box)
    v0 = torch.broadcast_to(data.v0, data.photons.shape[:1] + (1, p, p))[bead]
    v0 = centre_crop(v0.expand(len(boxes), p, p), box)
    edge = torch.cat([boxes[:, 0], boxes[:, -1], boxes[:, 1:-1, 0], boxes[:, 1:-1, -1]], -1)
    theta, info, converged, _ = fitter.fit(boxes, v0, edge.median(-1).values.clamp_min(1e-3))
    sigma = torch.diagonal(torch.linalg.inv_ex(info)[0], dim1=-2, dim2=-1).clamp_min(0).sqrt()
    px = cfg.frame.pixel_size_nm
    crlb = torch.stack([sigma[:, 0] * px, sigma[:, 1] * px, sigma[:, 4]], -1)
    return HeldOut(theta[:, 4].double().numpy(), theta[:, :2].double().numpy() * px, crlb.double().numpy(),
                   converged.numpy())


def hold_out(model: ScanModel, data: ScanData, bead: int, slices: Sequence[int], refit_slices: Sequence[int],
             config_of: Callable[[ScanModel], SimulationConfig], z_nm: np.ndarray, wobble: bool) -> HeldOut:
    """The pupil refitted without ``bead`` (module docstring), then ``bead`` localized in ``slices``; its
    lateral residuals less the other beads' wobble, about their mean."""
    others = [i for i in range(data.photons.shape[0]) if i != bead]
    fitted, rest = model.keep_beads(others), data.keep_beads(others)
    fit_scan(fitted, rest, refit_slices, REFIT_ITERATIONS, True)
    checked = np.zeros(len(slices), bool)
    checked[::LATERAL_EVERY if wobble else 1] = True
    if wobble:
        fit_wobble(fitted, rest, np.asarray(slices)[checked].tolist(), WOBBLE_STEPS)
    held = localize_bead(localizer_config(config_of(fitted), fitted, z_nm), data, bead, slices)
    lateral = held.lateral_nm - fitted.wobble_px()[list(slices)].detach().double().numpy() * fitted.psf.pixel_nm
    lateral[~checked] = np.nan
    return HeldOut(held.z_nm, lateral - np.nanmean(lateral, 0), held.crlb_nm, held.converged)


def leave_one_out(model: ScanModel, data: ScanData, z_nm: np.ndarray, refit_slices: Sequence[int],
                  config_of: Callable[[ScanModel], SimulationConfig], wobble: bool,
                  progress: ProgressCallback | None = None) -> tuple[np.ndarray, list[HeldOut]]:
    """Every bead held out in turn (module docstring): the evaluated slices' stage z (S,) and one
    :class:`HeldOut` per bead. ``config_of`` turns a fitted model into its calibrated config."""
    slices = [int(k) for k in np.flatnonzero(np.abs(z_nm) <= RANGE_NM + 1e-6)]
    beads = data.photons.shape[0]
    results = []
    for bead in range(beads):
        if progress is not None:
            progress(ProgressEvent("leave one bead out", bead, beads, status=f"bead {bead + 1} of {beads}"))
        results.append(hold_out(model, data, bead, slices, refit_slices, config_of, z_nm, wobble))
    return z_nm[slices], results


def rms(values: np.ndarray) -> float | None:
    """Root mean square over all axes (None when empty), rounded to 0.01."""
    return round(float(np.sqrt(np.mean(np.square(values)))), 2) if values.size else None


def bead_summary(z_stage: np.ndarray, held: HeldOut) -> dict:
    """One bead's figures (nm): z RMSE, its mean offset, the RMSE after it, lateral RMSE, median CRLB."""
    bias = held.z_nm - z_stage
    offset = float(bias.mean())
    lateral = held.lateral_nm[np.isfinite(held.lateral_nm[:, 0])]
    crlb = np.median(held.crlb_nm, axis=0)
    return {"z_rmse_nm": rms(bias), "z_offset_nm": round(offset, 2), "z_rmse_after_offset_nm": rms(bias - offset),
            "lateral_rmse_nm": rms(np.linalg.norm(lateral, axis=-1)), "x_rmse_nm": rms(lateral[:, 0]),
            "y_rmse_nm": rms(lateral[:, 1]), "lateral_slices": len(lateral),
            "crlb_median_nm": {"x": round(float(crlb[0]), 2), "y": round(float(crlb[1]), 2),
                               "z": round(float(crlb[2]), 2)},
            "converged": f"{int(held.converged.sum())}/{len(bias)}", "z_bias_nm": bias.round(2).tolist()}


def loo_report(z_stage: np.ndarray, results: Sequence[HeldOut]) -> dict:
    """calibration.json's ``leave_one_out``: per bead (:func:`bead_summary`) and pooled over beads and slices."""
    beads = [bead_summary(z_stage, held) for held in results]
    bias = np.stack([h.z_nm - z_stage for h in results])
    lateral = np.concatenate([h.lateral_nm for h in results])
    lateral = lateral[np.isfinite(lateral[:, 0])]
    return {"range_nm": RANGE_NM, "box_px": BOX_PX, "z_stage_nm": z_stage.tolist(), "z_rmse_nm": rms(bias),
            "z_rmse_after_offset_nm": rms(bias - bias.mean(1, keepdims=True)),
            "lateral_rmse_nm": rms(np.linalg.norm(lateral, axis=-1)),
            "beads": [{"bead": i + 1, **b} for i, b in enumerate(beads)]}
