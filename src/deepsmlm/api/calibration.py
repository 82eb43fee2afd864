"""`deepsmlm.calibrate_psf`: the pupil of your microscope from a bead z-stack, by maximum likelihood through
the same pupil PSF that simulates and trains (:mod:`deepsmlm.calibration.pupil_fit`).

Writes into the output folder ``calibrated.yaml`` (the base config with the fitted ``psf.zernike_rad`` and
``psf.pupil_amplitude``),
``calibration.json`` (coefficients, per-bead fits, per-slice errors before and after), ``beads_vs_model.png``
and ``zernike.png``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deepsmlm.api.inputs import ConfigLike, Frames, as_config, config_label, opened
from deepsmlm.calibration.bead_z_accuracy import leave_one_out, loo_report
from deepsmlm.calibration.beads import (BeadCrops, beads_from_csv, centroid_offsets, crop_beads, cut, find_beads,
                                        focus_width_nm)
from deepsmlm.calibration.pixel_pupil import PHASE_FILE, PixelScanModel, fit_pixel_phase, with_pixel_phase
from deepsmlm.calibration.pupil_fit import FIRST_NOLL, ScanData, ScanModel, fit_scan, slice_errors
from deepsmlm.calibration.stage_wobble import fit_wobble
from deepsmlm.config import PUPIL_MODELS, SimulationConfig, dump_config, updated
from deepsmlm.config.optics import MAX_NOLL
from deepsmlm.errors import UserInputError, check_positive
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.io.outputs import check_output_folder
from deepsmlm.optics.factory import build_pupil_psf
from deepsmlm.physics.camera import Camera
from deepsmlm.plots import bead_model_montage, z_accuracy_plot, zernike_bars
from deepsmlm.progress import ProgressCallback

OUTPUTS = ("calibrated.yaml", "calibration.json", "beads_vs_model.png", "zernike.png", "z_accuracy.png")
PUPILS = ("auto", "zernike", "pixels")  # the fitted pupil phase: Zernike terms, or free per pupil-grid pixel after them
AUTO_PIXELS = (0.2, 2.0)  # auto frees the pixels when the Zernike fit's median relative L2 error and reduced χ²
# over ±500 nm are both above these (a fit noise cannot explain, far from the 10 % goal)
MIN_SLICES = 5
FIT_SLICES = 16  # slices (evenly spread) of the first fits; the refinement takes twice as many
ITERATIONS = {"base": 15, "pupil": 30, "refine": 10, "halo": 20}  # L-BFGS iterations per stage
FOCUS_WIDTH_RATIO = (0.4, 3.5)  # the beads' focus range over the base PSF's: beyond, the z-step is wrong
POOR_FIT_L2 = 0.3  # median relative L2 error over ±500 nm above which the fit is flagged as poor
SUMMARY_RANGES_NM = (500.0, 750.0)


def scan_z(n_slices: int, z_step_nm: float, z_first_nm: float | None) -> np.ndarray:
    """Nominal z (nm) of each slice: z_first + k·step, z_first defaulting to a stack centred on focus."""
    first = -(n_slices - 1) / 2 * z_step_nm if z_first_nm is None else z_first_nm
    return first + z_step_nm * np.arange(n_slices)


def bead_crops(stack: np.ndarray, patch_px: int, positions: str | os.PathLike, pixel_nm: float,
               label: str) -> BeadCrops:
    """The checked crops of the beads found in ``stack`` (``positions`` "auto") or listed in a CSV."""
    if str(positions) == "auto":
        centres = find_beads(stack, patch_px, label)
        crops = crop_beads(stack, centres, patch_px, label)
        return BeadCrops(crops.crops, centres, centroid_offsets(crops.crops))
    centres, start = beads_from_csv(positions, pixel_nm)
    return crop_beads(stack, centres, patch_px, label, start)


def bead_inputs(beads: Frames, config: ConfigLike, positions: str | os.PathLike) -> dict:
    """The files a bead calibration reads (for :func:`check_output_folder`): stack, config, bead list."""
    return {"BEADS": beads if isinstance(beads, (str, os.PathLike)) else None,
            "--config": None if isinstance(config, SimulationConfig) else config,
            "--beads": None if str(positions) == "auto" else positions}


def read_beads(beads: Frames, cfg: SimulationConfig, positions: str | os.PathLike, z_step_nm: float,
               z_first_nm: float | None) -> tuple[str, np.ndarray, np.ndarray, BeadCrops]:
    """The bead stack's label, frames (ADU), each slice's nominal z (nm) and the beads' checked crops."""
    with opened(beads) as stack:
        label, frames = str(stack.path), stack[:]
    if len(frames) < MIN_SLICES:
        raise UserInputError(f"{label}: {len(frames)} slices; a bead z-stack needs at least {MIN_SLICES}")
    z_nm = scan_z(len(frames), z_step_nm, z_first_nm)
    return label, frames, z_nm, bead_crops(frames, cfg.psf.patch_px, positions, cfg.frame.pixel_size_nm, label)


def check_z_step(crops: np.ndarray, z_nm: np.ndarray, cfg: SimulationConfig, label: str, background: float) -> None:
    """Refuse a z-step the beads contradict: their in-focus range (:func:`focus_width_nm` above the stack's
    ``background``, median over beads) is not within :data:`FOCUS_WIDTH_RATIO` of the base PSF's, both on the
    stack's z."""
    step = float(z_nm[1] - z_nm[0])
    psf = build_pupil_psf(updated(cfg, {"emitters.z_range_nm": (float(z_nm.min()), float(z_nm.max()))}))
    planes = np.linspace(z_nm.min(), z_nm.max(), min(len(z_nm), 61))
    offset = torch.zeros(len(planes), 3)
    offset[:, 2] = torch.as_tensor(planes, dtype=torch.float32)
    with torch.no_grad():
        model = psf.patches(offset, torch.ones(len(planes))).numpy()
    expected = focus_width_nm(model, float(planes[1] - planes[0]))
    measured = float(np.median([focus_width_nm(c, step, background) for c in crops]))
    lo, hi = FOCUS_WIDTH_RATIO
    if not lo <= measured / expected <= hi:
        raise UserInputError(f"{label}: the beads stay in focus over {measured:.0f} nm at --z-step-nm {step:g} "
                             f"({len(z_nm)} slices), the base PSF over {expected:.0f} nm; the z-step does not "
                             f"match the stack")


def scan_data(stack: np.ndarray, centres: np.ndarray, camera: Camera, patch_px: int) -> ScanData:
    """The beads' crops in photons and the camera's noise model on them."""
    photons = camera.adu_to_photons(torch.as_tensor(stack.astype(np.float32)))
    v0 = camera.variance_photons(torch.zeros(photons.shape[-2:]))
    return ScanData(cut(photons, centres, patch_px), cut(v0, centres, patch_px)[:, None],
                    camera.excess_noise_factor / camera.qe)


def start_model(cfg: SimulationConfig, z_nm: np.ndarray, data: ScanData, crops: BeadCrops, max_noll: int,
                background: float, pupil: str = "auto", wobble: bool = False, blur: bool = False,
                halo: bool = False) -> ScanModel:
    """The scan model on the base PSF (grid sized for the scan; beads on the coverslip, the focus moved), from
    the beads' centroids, their brightest slice's photons and the stack's background (photons/px); with
    ``wobble`` the stage's lateral wobble per slice is fitted too, with ``blur`` a Gaussian blur (starting from
    the base config's mean ``psf.blur_sigma_px``), with ``halo`` the PSF's halo (from the base config's, or
    :data:`~deepsmlm.calibration.pupil_fit.HALO_START`)."""
    psf = build_pupil_psf(updated(cfg, {"emitters.z_range_nm": (float(z_nm.min()), float(z_nm.max())),
                                        "optics.z_scan": "focus", "optics.nominal_focal_plane_nm": 0.0}))
    bg = torch.full((len(crops.centres),), max(background, 0.05))
    signal = (data.photons - bg[:, None, None, None]).sum((-2, -1)).amax(1).clamp_min(100.0)
    kind = ScanModel if pupil == "zernike" else PixelScanModel
    return kind(psf, torch.as_tensor(z_nm, dtype=torch.float32), max_noll,
                torch.as_tensor(crops.start_xy_px, dtype=torch.float32), signal, bg, wobble=wobble, blur=blur,
                blur_px=0.5 * sum(cfg.psf.blur_sigma_px), halo=halo)


def spread(n_slices: int, count: int, offset: float = 0.0) -> list[int]:
    """``count`` slice indices evenly over the stack (all when it has fewer), shifted by ``offset`` steps."""
    step = max(n_slices / count, 1.0)
    return sorted({min(int(step * (i + offset)), n_slices - 1) for i in range(min(count, n_slices))})


def summary(rel: np.ndarray, chi2: np.ndarray, z_nm: np.ndarray) -> dict:
    """Medians over beads and the slices within ±500 and ±750 nm of the relative L2 error and reduced χ²."""
    out = {}
    for r in SUMMARY_RANGES_NM:
        near = np.abs(z_nm) <= r
        out[f"median_rel_l2_pm{r:.0f}"] = float(np.median(rel[:, near])) if near.any() else None
        out[f"median_chi2_pm{r:.0f}"] = float(np.median(chi2[:, near])) if near.any() else None
    out["rel_l2_per_slice"] = np.median(rel, axis=0).round(4).tolist()
    out["chi2_per_slice"] = np.median(chi2, axis=0).round(3).tolist()
    return out


def bead_table(model: ScanModel, crops: BeadCrops, pixel_nm: float) -> list[dict]:
    """Per bead: position (nm, camera convention), z offset from the slices' nominal z (nm), photons, background."""
    xy = model.xy.detach().numpy() + crops.centres[:, ::-1] + 0.5
    rows = zip(xy, model.z_offset_nm().detach().numpy(), model.log_photons.exp().detach().numpy(),
               model.log_background.exp().detach().numpy())
    return [{"x_nm": round(float(p[0]) * pixel_nm, 2), "y_nm": round(float(p[1]) * pixel_nm, 2),
             "z_offset_nm": round(float(dz), 2), "photons": round(float(n), 1), "background": round(float(b), 3)}
            for p, dz, n, b in rows]


def added(fitted: dict[int, float], base: dict[int, float]) -> dict[int, float]:
    """Fitted terms on top of the base config's, per index, rounded to 4 decimals."""
    return {j: round(fitted.get(j, 0.0) + float(base.get(j, 0.0)), 4) for j in sorted(set(fitted) | set(base))}


def calibrated(cfg: SimulationConfig, zernike_rad: dict[int, float], amplitude: dict[int, float],
               model: ScanModel) -> SimulationConfig:
    """The base config with the fitted pupil (and blur, replacing the base's range, and halo); a focus-scan
    config (``optics.z_scan: focus``) also takes the scan's focus offset as its nominal focal plane, so its z is
    the stack's nominal z (the stage's)."""
    fitted = {"psf.zernike_rad": zernike_rad, "psf.pupil_amplitude": amplitude}
    if model.fit_blur:
        fitted["psf.blur_sigma_px"] = (round(model.blur_px().item(), 3),) * 2
    if model.fit_halo:
        fitted.update({f"psf.{key}": value for key, value in model.halo_terms().items()})
    if cfg.optics.z_scan == "focus":
        fitted["optics.nominal_focal_plane_nm"] = round(model.focus_offset_nm().item(), 2)
    return updated(cfg, fitted)


def check_inputs(cfg: SimulationConfig, label: str, z_step_nm: float, max_noll: int, pupil: str = "auto") -> None:
    """One-line refusals of a base config without a pupil PSF and of out-of-range options."""
    if cfg.psf.model not in PUPIL_MODELS:
        raise UserInputError(f"{label}: PSF calibration fits a pupil; the base config needs psf.model "
                             f"{' or '.join(PUPIL_MODELS)}, not {cfg.psf.model}")
    check_positive(z_step_nm, "--z-step-nm")
    if not FIRST_NOLL <= max_noll <= MAX_NOLL:
        raise UserInputError(f"--max-noll {max_noll}: must be {FIRST_NOLL} … {MAX_NOLL}")
    if pupil not in PUPILS:
        raise UserInputError(f"--pupil {pupil}: must be {', '.join(PUPILS[:-1])} or {PUPILS[-1]}")


def fit_stages(model: ScanModel, data: ScanData, z_nm: np.ndarray, pupil: str,
               progress: ProgressCallback | None) -> tuple[dict, dict]:
    """The base config's fit (beads only, pupil held), then the pupil fit and its refinement on twice as
    many slices, then for ``pupil`` pixels, or auto when the Zernike fit is poor (:data:`AUTO_PIXELS`), the
    pixel-wise phase on the first fits' 16 slices, then with the model's ``fit_halo`` the halo with the whole
    pupil on those slices (the base config's own halo until then). A fitted stage wobble is held until the
    refinement (freed earlier it slows the pupil's convergence), then fitted slice by slice on every slice.
    Returns the per-slice errors (relative L2, reduced χ²) before and after the pupil fit."""
    k, wobble = data.photons.shape[1], model.wobble.requires_grad
    first, finer = spread(k, FIT_SLICES, 0.5), spread(k, 2 * FIT_SLICES, 0.25)
    model.wobble.requires_grad_(False)
    model.halo_active = False  # the base config's own halo until the pupil has converged without one
    fit_scan(model, data, first, ITERATIONS["base"], False, progress, "fitting the beads (base PSF)")
    before = slice_errors(model, data)
    fit_scan(model, data, first, ITERATIONS["pupil"], True, progress, "fitting the pupil")
    model.wobble.requires_grad_(wobble)
    fit_scan(model, data, finer, ITERATIONS["refine"], True, progress, "refining the pupil")
    if isinstance(model, PixelScanModel):
        model.zernike_errors = slice_errors(model, data)
        fit = summary(*model.zernike_errors, z_nm)
        poor = all((fit[key] or 0.0) > limit for key, limit in zip(("median_rel_l2_pm500", "median_chi2_pm500"),
                                                                   AUTO_PIXELS))
        if pupil == "pixels" or poor:
            fit_pixel_phase(model, data, first, progress=progress)
    if model.fit_halo:  # last, on the converged pupil, with it
        model.halo_active = True
        fit_scan(model, data, first, ITERATIONS["halo"], True, progress, "fitting the halo")
    if wobble:
        fit_wobble(model, data, range(k), progress=progress)
    return before, slice_errors(model, data)


def pupil_terms(cfg: SimulationConfig, model: ScanModel) -> tuple[dict, dict, dict, dict]:
    """The fitted Zernike terms and apodisation (rounded), each alone and added to the base config's."""
    fitted = {j: round(float(c), 4) for j, c in zip(model.noll, model.coefficients.detach())}
    apodisation = {k: round(a, 4) for k, a in model.amplitude_terms().items()}
    base = {int(j): float(c) for j, c in cfg.psf.zernike_rad.items()}
    return fitted, added(fitted, base), apodisation, added(apodisation, cfg.psf.pupil_amplitude)


def wobble_report(model: ScanModel, pixel_nm: float) -> dict | None:
    """The fitted stage wobble per slice (nm) and its RMS, or None when it was not fitted."""
    if not model.wobble.requires_grad:
        return None
    w = model.wobble_px().detach().double().numpy() * pixel_nm
    return {"x_nm": w[:, 0].round(2).tolist(), "y_nm": w[:, 1].round(2).tolist(),
            "rms_nm": round(float(np.sqrt((w**2).sum(1).mean())), 2),
            "rms_x_nm": round(float(np.sqrt((w[:, 0] ** 2).mean())), 2),
            "rms_y_nm": round(float(np.sqrt((w[:, 1] ** 2).mean())), 2)}


def bead_z_accuracy(out: Path, cfg: SimulationConfig, model: ScanModel, data: ScanData, z_nm: np.ndarray,
                    label: str, progress: ProgressCallback | None) -> dict:
    """The leave-one-bead-out z accuracy (:mod:`deepsmlm.calibration.bead_z_accuracy`), each refit's config
    made as calibrated.yaml is (a pixel pupil's phase in a temporary file), and ``z_accuracy.png``."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        def config_of(fitted: ScanModel) -> SimulationConfig:
            refit = calibrated(cfg, *pupil_terms(cfg, fitted)[1::2], fitted)
            if not pixel_phase(fitted):
                return refit
            phase = Path(tmp) / PHASE_FILE
            return updated(with_pixel_phase(refit, fitted, phase), {"psf.mask.file": str(phase)})

        z_stage, held = leave_one_out(model, data, z_nm, spread(len(z_nm), FIT_SLICES, 0.5), config_of,
                                      model.wobble.requires_grad, progress)
    bias, lateral = np.stack([h.z_nm - z_stage for h in held]), np.stack([h.lateral_nm for h in held])
    z_accuracy_plot(z_stage, bias, lateral, out / "z_accuracy.png",
                    title=f"{label}: leave one bead out, psf-mle z vs stage z")
    return {**loo_report(z_stage, held), "seconds": round(time.perf_counter() - started, 1)}


def pupil_record(model: ScanModel, z_nm: np.ndarray) -> dict:
    """calibration.json's ``pupil`` (zernike | pixels) and for pixels the smoothness weight chosen, its path of
    held-out deviances and the errors of the Zernike fit the pixel phase started from (``zernike_only``)."""
    if not pixel_phase(model):
        return {"pupil": "zernike"}
    return {"pupil": "pixels", "phase_file": PHASE_FILE, "smoothness_weight": model.weight,
            "smoothness_path": model.path, "zernike_only": summary(*model.zernike_errors, z_nm)}


def pixel_phase(model: ScanModel) -> bool:
    """Whether ``model``'s pupil phase was freed per pixel (not only the Zernike sum)."""
    return isinstance(model, PixelScanModel) and model.pixels_freed


def write_calibrated(out: Path, cfg: SimulationConfig, model: ScanModel) -> None:
    """``calibrated.yaml``: ``cfg``, for a pixel pupil imaging through its phase mask written beside it."""
    if pixel_phase(model):
        cfg = with_pixel_phase(cfg, model, out / PHASE_FILE)
    write_text_atomic(out / "calibrated.yaml", dump_config(cfg))


def write_figures(out: Path, model: ScanModel, data: ScanData, z_nm: np.ndarray, pixel_nm: float,
                  fitted: dict[int, float], base: dict[int, float], label: str) -> None:
    """beads_vs_model.png (the first bead at 9 z over the stack) and zernike.png (coefficient bars)."""
    planes = np.linspace(0, len(z_nm) - 1, 9).round().astype(int).tolist()
    with torch.no_grad():
        mu = model(planes)[0].numpy()
    bead_model_montage(data.photons[0, planes].numpy(), mu, z_nm[planes].tolist(), pixel_nm,
                       out / "beads_vs_model.png", title=f"{label}: bead 1, measured vs calibrated model")
    noll = sorted(set(fitted) | set(base))
    series = {"calibrated": [fitted.get(j, 0.0) + base.get(j, 0.0) for j in noll]}
    if base:
        series["base config"] = [base.get(j, 0.0) for j in noll]
    zernike_bars(noll, series, out / "zernike.png", title=f"{label}: pupil aberrations")


def calibrate_psf(beads: Frames, config: ConfigLike, out: str | os.PathLike, *, z_step_nm: float = 10.0,
                  z_first_nm: float | None = None, positions: str | os.PathLike = "auto", max_noll: int = 45,
                  pupil: str = "auto", wobble: bool = True, blur: bool = True, halo: bool = True, loo: bool = True,
                  progress: ProgressCallback | None = None) -> dict:
    """Fit the pupil of ``config`` to a bead z-stack (ADU; slice k at nominal z = z_first + k·``z_step_nm``,
    z of a bead on the coverslip relative to the focal plane, default z_first: the stack centred on focus)
    and write ``calibrated.yaml``, ``calibration.json``, ``beads_vs_model.png`` and ``zernike.png`` into
    ``out``. Beads are found in the stack (``positions`` "auto") or read from a CSV (x_nm, y_nm). ``pupil``
    "pixels" then frees the phase per pupil-grid pixel (:mod:`deepsmlm.calibration.pixel_pupil`), written as
    the phase mask ``pupil_phase.npz`` that calibrated.yaml names; "auto" does so only when the Zernike terms
    leave a poor fit (the double helix), "zernike" never. ``wobble``: fit the stage's lateral wobble
    per slice; ``blur``: fit a Gaussian blur of the images (``blur_sigma_px``, written to calibrated.yaml's
    ``psf.blur_sigma_px``); ``halo``: fit the PSF's halo, a share of the light spread exponentially over a few px
    (``psf.halo_fraction``, ``psf.halo_length_px``); ``loo``: the leave-one-bead-out z accuracy (``leave_one_out``,
    ``z_accuracy.png``).

    Returns calibration.json's content: ``zernike_rad`` (fitted, Noll 5 … ``max_noll``, added to the base
    config's), ``pupil_amplitude`` (the fitted apodisation {k: a_k}, likewise), ``beads``, ``before`` / ``after`` (per-slice and median relative L2 errors and reduced χ²
    of the base config and of the calibrated pupil), ``poor_fit`` and ``seconds``.

    Example::

        report = deepsmlm.calibrate_psf("beads_AS.tif", "epfl2016_2d", "calibration")
        report["after"]["median_rel_l2_pm500"]
    """
    started, out = time.perf_counter(), Path(out)
    check_output_folder(out, (*OUTPUTS, PHASE_FILE), bead_inputs(beads, config, positions))
    cfg = as_config(config)
    check_inputs(cfg, config_label(config), z_step_nm, max_noll, pupil)
    label, frames, z_nm, crops = read_beads(beads, cfg, positions, z_step_nm, z_first_nm)
    check_z_step(crops.crops, z_nm, cfg, label, float(np.median(frames)))
    camera = Camera(cfg.camera, frames.shape[-2:])
    data = scan_data(frames, crops.centres, camera, cfg.psf.patch_px)
    background = float(camera.adu_to_photons(torch.tensor(float(np.median(frames)))).mean())
    model = start_model(cfg, z_nm, data, crops, max_noll, background, pupil, wobble, blur, halo)
    before, after = fit_stages(model, data, z_nm, pupil, progress)
    fitted, combined, apodisation, amplitude = pupil_terms(cfg, model)
    base = {int(j): float(c) for j, c in cfg.psf.zernike_rad.items()}
    out.mkdir(parents=True, exist_ok=True)
    write_calibrated(out, calibrated(cfg, combined, amplitude, model), model)
    write_figures(out, model, data, z_nm, cfg.frame.pixel_size_nm, fitted, base, Path(label).name)
    report = {"stack": label, "config": cfg.name, "z_step_nm": z_step_nm, "z_first_nm": float(z_nm[0]),
              "max_noll": max_noll, "zernike_rad": fitted, "calibrated_zernike_rad": combined,
              "pupil_amplitude": apodisation, "calibrated_pupil_amplitude": amplitude,
              "focus_offset_nm": round(model.focus_offset_nm().item(), 2),
              "blur_sigma_px": round(model.blur_px().item(), 3) if blur else None,
              "halo": model.halo_terms() if halo else None,
              "beads": bead_table(model, crops, cfg.frame.pixel_size_nm), "z_nm": z_nm.tolist(),
              "before": summary(*before, z_nm), "after": summary(*after, z_nm), **pupil_record(model, z_nm),
              "wobble": wobble_report(model, cfg.frame.pixel_size_nm)}
    if loo and len(crops.centres) > 1:
        report["leave_one_out"] = bead_z_accuracy(out, cfg, model, data, z_nm, Path(label).name, progress)
    report["poor_fit"] = bool((report["after"]["median_rel_l2_pm500"] or 0.0) > POOR_FIT_L2)
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_text_atomic(out / "calibration.json", json.dumps(report, indent=1))
    return report
