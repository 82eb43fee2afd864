"""`deepsmlm design tetrapod`: a CRLB-optimal phase mask for a configuration's optics and camera."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from deepsmlm.commands.optics import axial_range
from deepsmlm.commands.progress_bars import TRAINING, progress_bar
from deepsmlm.commands.train import steps_run, warn_if_weak
from deepsmlm.config import PUPIL_MODELS, load_config
from deepsmlm.design.crlb_design import design_mask
from deepsmlm.design.crlb_objective import mean_3d_crlb
from deepsmlm.design.mask_phase import zernike_modes
from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import atomic_path, write_text_atomic
from deepsmlm.io.outputs import check_output_folder
from deepsmlm.optics.factory import build_pupil_psf, grid_mask_pitch_um
from deepsmlm.optics.pupil import PupilPSF
from deepsmlm.physics.camera import Camera
from deepsmlm.plots import crlb_plot, new_figure, psf_montage, save_figure, training_curves

ASTIGMATISM_RAD = (0.5, 1.0, 1.5, 2.0, 3.0)  # Z6 amplitudes tried for the astigmatic reference


def bounds_of(psf: PupilPSF, phase: torch.Tensor, z: torch.Tensor, photons: float, background: float,
              variance) -> tuple[float, dict[str, np.ndarray]]:
    """Mean 3D √CRLB (nm) and per-plane √CRLB of x, y, z for a mask phase."""
    psf.mask_phase = phase
    with torch.no_grad():
        mean, per_axis = mean_3d_crlb(psf, z, photons, background, variance)
    return float(mean), {k: v.numpy().astype(np.float64) for k, v in per_axis.items()}


def save_mask(phase: np.ndarray, out: Path, pitch_um: float) -> None:
    """mask.npy, mask.mat (variable ``mask``, radians, like the shared masks) and mask.png."""
    with atomic_path(out / "mask.npy") as tmp, open(tmp, "wb") as fh:  # a path would gain a second suffix
        np.save(fh, phase)
    with atomic_path(out / "mask.mat") as tmp, open(tmp, "wb") as fh:
        scipy.io.savemat(fh, {"mask": phase, "pixel_pitch_um": pitch_um})
    fig = new_figure((4.2, 3.6))
    ax = fig.subplots()
    im = ax.imshow(phase, cmap="twilight", vmin=-np.pi, vmax=np.pi)
    ax.set_title(f"phase mask ({phase.shape[0]}×{phase.shape[1]} px of {pitch_um:.3g} µm)", fontsize=9)
    ax.axis("off")
    fig.colorbar(im, ax=ax, label="phase (rad)")
    save_figure(fig, out / "mask.png")


DESIGN_FILLED = ("psf.mask", "psf.pupil_grid")  # a learned model's config names its own mask and grid
TETRAPOD_OUTPUTS = ("mask.npy", "mask.mat", "mask.png", "psf.png", "crlb.png", "design.json")


def run_design_tetrapod(config: str, out: Path, basis: str, steps: int, max_noll: int, smoothness_weight: float,
                        photons: float | None, background: float | None, planes: int, seed: int) -> None:
    check_output_folder(out, TETRAPOD_OUTPUTS, {"CONFIG": config})
    cfg = load_config(config)
    if cfg.psf.model not in PUPIL_MODELS:
        raise UserInputError(f"{config}: mask design needs a pupil PSF (psf.model: {' or '.join(PUPIL_MODELS)})")
    if basis not in ("zernike", "pixel"):
        raise UserInputError(f"--basis {basis!r}: choose zernike or pixel")
    if cfg.camera.scmos_maps is not None:
        raise UserInputError(f"{cfg.camera.scmos_maps}: the design assumes a uniform camera; drop scmos_maps")
    n = photons if photons is not None else cfg.emitters.photons.expected()
    b = background if background is not None else float(np.mean(cfg.background.photons_per_px))
    z = torch.linspace(*axial_range(cfg), planes)
    variance = Camera(cfg.camera, (cfg.frame.height, cfg.frame.width)).fisher_variance_photons
    psf = build_pupil_psf(cfg)  # the config's optics and grid; the design replaces its mask
    shared = psf.mask_phase.clone() if cfg.psf.mask is not None else None
    psf.mask_phase = torch.zeros_like(psf.mask_phase)
    out.mkdir(parents=True, exist_ok=True)
    cols = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*cols) as progress:
        task = progress.add_task(f"designing ({basis})", total=steps, info="")
        result = design_mask(psf, z, n, b, variance, basis, max_noll, steps, smoothness_weight=smoothness_weight,
                             seed=seed, progress=lambda s, v: progress.update(task, completed=s,
                                                                              info=f"mean 3D √CRLB {v:.2f} nm"))
    phase = result.phase
    astig = zernike_modes(psf, 6)[6 - 4]
    candidates = {"no mask": torch.zeros_like(phase)}
    best_astig = min(ASTIGMATISM_RAD, key=lambda a: bounds_of(psf, a * astig, z, n, b, variance)[0])
    candidates[f"astigmatism ({best_astig:g} rad Z6)"] = best_astig * astig
    candidates["designed"] = phase
    if shared is not None:
        candidates["config mask"] = shared.to(torch.float32)
    figures = {name: bounds_of(psf, p, z, n, b, variance) for name, p in candidates.items()}
    pitch = grid_mask_pitch_um(cfg, psf.grid)
    save_mask(phase.numpy(), out, pitch)
    psf.mask_phase = phase
    with torch.no_grad():
        stack = psf.z_stack(torch.linspace(*axial_range(cfg), 10)).cpu().numpy()
    psf_montage(stack, np.linspace(*axial_range(cfg), 10).tolist(), cfg.frame.pixel_size_nm, out / "psf.png",
                title=f"designed mask ({basis}), {cfg.name}")
    crlb_plot(z.numpy(), {name: f[1] for name, f in figures.items()}, out / "crlb.png",
              title=f"{n:g} photons, {b:g} background/px, {cfg.camera.type}")
    report = {"config": cfg.name, "basis": basis, "steps": steps, "max_noll": max_noll,
              "smoothness_weight": smoothness_weight, "seed": seed, "photons": n, "background_per_px": b,
              "mask_pixel_pitch_um": pitch, "z_nm": z.tolist(),
              "masks": {name: {"mean_3d_crlb_nm": f[0], **{f"crlb_{k}_nm": v.tolist() for k, v in f[1].items()},
                               **{f"mean_crlb_{k}_nm": float(np.mean(v)) for k, v in f[1].items()}}
                        for name, f in figures.items()},
              "history": result.history}
    write_text_atomic(out / "design.json", json.dumps(report, indent=1))
    summary = ", ".join(f"{name} {f[0]:.2f} nm" for name, f in figures.items())
    print(f"mean 3D √CRLB: {summary}; wrote mask.npy/.mat/.png, psf.png, crlb.png, design.json in {out}")


def learn_mask_and_network(config: str, out: Path, steps: int | None, minutes: float | None, from_scratch: bool,
                           smoothness_weight: float, resume: bool, device: str, basis: str, max_noll: int, what: str,
                           crlb_cap_nm: float | None = None, overwrite: bool = False):
    """Train a JointTrainer on ``config``; writes the model folder, the best mask (.npy/.mat/.png) and the
    training curves; returns the trainer with its PSF set to the best mask, and the run summary."""
    from deepsmlm.api.training import TRAINER_FILLED, training_config
    from deepsmlm.design.end_to_end import JointTrainer

    cfg = training_config(config, out, steps, minutes, resume, overwrite, filled=(*TRAINER_FILLED, *DESIGN_FILLED))
    if cfg.psf.model not in PUPIL_MODELS:
        raise UserInputError(f"{config}: learning a mask needs a pupil PSF (psf.model: {' or '.join(PUPIL_MODELS)})")
    if cfg.model.kind != "deepstorm3d":
        raise UserInputError(f"{config}: learning a mask trains a deepstorm3d model (model.kind)")
    if basis not in ("pixel", "zernike"):
        raise UserInputError(f"--basis {basis!r}: choose pixel or zernike")
    if crlb_cap_nm is not None and cfg.model.z_planes == 1:
        raise UserInputError(f"{config}: --crlb-cap bounds the 3D CRLB; it needs a 3D model (model.z_planes > 1)")
    trainer = JointTrainer(cfg, out, device, start_from_mask=not from_scratch and not resume,
                           smoothness_weight=smoothness_weight, basis=basis, max_noll=max_noll,
                           crlb_cap_nm=crlb_cap_nm)
    if resume:
        trainer.resume()
    with progress_bar(TRAINING) as progress:
        summary = trainer.run(steps=steps, minutes=minutes, progress=progress)
    phase = np.load(out / "mask.npy")
    save_mask(phase, out, trainer.mask_pitch_um)
    with torch.no_grad():
        trainer.psf.mask_phase.copy_(torch.from_numpy(phase))
    training_curves(trainer.history, out / "training_curves.png", title=f"{what}, {cfg.name}")
    warn_if_weak(summary["best_jaccard"], out)
    return trainer, summary


def run_design_learn(config: str, out: Path, steps: int | None, minutes: float | None, from_scratch: bool,
                     smoothness_weight: float, resume: bool, device: str, basis: str = "pixel",
                     max_noll: int = 28, crlb_cap_nm: float | None = None, overwrite: bool = False) -> None:
    """Learn the mask and the 3D network together; writes the model folder, the mask and pictures."""
    trainer, summary = learn_mask_and_network(config, out, steps, minutes, from_scratch, smoothness_weight, resume,
                                              device, basis, max_noll, "mask and network learned together",
                                              crlb_cap_nm, overwrite)
    cfg = trainer.cfg
    with torch.no_grad():
        z = np.linspace(*axial_range(cfg), 10)
        stack = trainer.psf.z_stack(torch.tensor(z, dtype=torch.float32)).cpu().numpy()
    psf_montage(stack, z.tolist(), cfg.frame.pixel_size_nm, out / "psf.png", title=f"learned mask, {cfg.name}")
    print(f"trained {steps_run(summary)} in {summary['seconds']:.0f} s; best validation Jaccard "
          f"{summary['best_jaccard']:.3f}; model and mask.npy/.mat/.png, psf.png, training_curves.png in {out}")


def run_design_multicolor(config: str, out: Path, steps: int | None, minutes: float | None, from_scratch: bool,
                          smoothness_weight: float, resume: bool, device: str, basis: str = "pixel",
                          max_noll: int = 28, crlb_cap_nm: float | None = None, overwrite: bool = False) -> None:
    """Learn one mask and a dye-classifying network for the config's 2–4 dyes; writes the model folder, the
    mask, every dye's PSF montage (psf_dyes.png) and the training curves."""
    cfg = load_config(config)
    dyes = cfg.emitters.dyes or []
    if not 2 <= len(dyes) <= 4:
        raise UserInputError(f"{config}: multicolour design needs 2 to 4 dyes in emitters.dyes, found {len(dyes)}")
    if cfg.model.colors != len(dyes):
        raise UserInputError(f"{config}: model.colors must equal the number of dyes ({len(dyes)})")
    trainer, summary = learn_mask_and_network(config, out, steps, minutes, from_scratch, smoothness_weight, resume,
                                              device, basis, max_noll,
                                              "mask and dye-classifying network learned together", crlb_cap_nm,
                                              overwrite)
    z = np.linspace(*axial_range(trainer.cfg), 5)
    with torch.no_grad():
        stack = np.concatenate([p.z_stack(torch.tensor(z, dtype=torch.float32)).cpu().numpy()
                                for p in trainer.dye_psfs])
    psf_montage(stack, z.tolist() * len(dyes), cfg.frame.pixel_size_nm, out / "psf_dyes.png",
                title=f"learned mask, one row per dye, {cfg.name}",
                row_labels=[f"{d.wavelength_nm:.0f} nm" for d in dyes], cols=len(z))
    accuracy = trainer.history[-1].get("color_accuracy") if trainer.history else None
    print(f"trained {steps_run(summary)} in {summary['seconds']:.0f} s; best validation Jaccard "
          f"{summary['best_jaccard']:.3f} (last colour accuracy {accuracy if accuracy is None else f'{accuracy:.3f}'}); "
          f"model and mask.npy/.mat/.png, psf_dyes.png, training_curves.png in {out}")
