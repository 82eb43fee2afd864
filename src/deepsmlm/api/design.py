"""`deepsmlm.design_tetrapod`, `deepsmlm.design_learn`, `deepsmlm.design_multicolor`: phase masks for a
config's optics and camera, written into a folder with pictures of what they do.

``design_tetrapod`` finds the mask of least mean 3D CRLB over the config's axial range (how the Tetrapod was
designed); ``design_learn`` learns a mask and a 3D localization network together; ``design_multicolor``
learns one mask and a network that tells 2–4 dyes apart. A mask is written as mask.npy and mask.mat
(variable ``mask``, radians in [−π, π) on the pupil grid, like the shared masks) and pictured in mask.png.
Messages name the options by their command-line spelling (``--basis`` is ``basis=``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import scipy.io
import torch

from deepsmlm.api.inputs import ConfigLike, as_config, config_label
from deepsmlm.api.training import TRAINER_FILLED, training_config
from deepsmlm.assembly.axial import axial_range
from deepsmlm.config import PUPIL_MODELS, SimulationConfig
from deepsmlm.design.crlb_design import design_mask
from deepsmlm.design.crlb_objective import mean_3d_crlb
from deepsmlm.design.end_to_end import MASK_FILE, JointTrainer, save_array
from deepsmlm.design.mask_phase import MASK_BASES, zernike_modes
from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import atomic_path, write_text_atomic
from deepsmlm.io.outputs import check_output_folder
from deepsmlm.optics.factory import build_pupil_psf, grid_mask_pitch_um
from deepsmlm.optics.pupil import PupilPSF
from deepsmlm.physics.camera import Camera
from deepsmlm.physics.crlb import Variance
from deepsmlm.plots import crlb_plot, mask_plot, psf_montage, training_curves
from deepsmlm.progress import ProgressCallback

ASTIGMATISM_RAD = (0.5, 1.0, 1.5, 2.0, 3.0)  # Z6 amplitudes tried for the astigmatic reference
TETRAPOD_OUTPUTS = ("mask.npy", "mask.mat", "mask.png", "psf.png", "crlb.png", "design.json")
DESIGN_FILLED = ("psf.mask", "psf.pupil_grid")  # a learned model's config names its own mask and grid

Bounds = tuple[float, dict[str, np.ndarray]]  # mean 3D √CRLB (nm); per-plane √CRLB (nm) of "x", "y", "z"


def write_mask(phase: np.ndarray, out: Path, pitch_um: float) -> None:
    """mask.npy and mask.mat (``mask``: the (N, N) phase in radians; ``pixel_pitch_um``) and mask.png in ``out``."""
    save_array(out / MASK_FILE, phase)
    with atomic_path(out / "mask.mat") as tmp, open(tmp, "wb") as fh:  # a path would gain a second suffix
        scipy.io.savemat(fh, {"mask": phase, "pixel_pitch_um": pitch_um})
    mask_plot(phase, pitch_um, out / "mask.png")


def check_basis_option(basis: str, default: str) -> None:
    """``--basis`` must name a mask basis (the message names the command's default first)."""
    if basis not in MASK_BASES:
        choices = (default, *(b for b in MASK_BASES if b != default))
        raise UserInputError(f"--basis {basis!r}: choose {' or '.join(choices)}")


def check_pupil_psf(cfg: SimulationConfig, label: str, what: str) -> None:
    """Designing a mask (``what``) needs a PSF model built on the pupil function."""
    if cfg.psf.model not in PUPIL_MODELS:
        raise UserInputError(f"{label}: {what} needs a pupil PSF (psf.model: {' or '.join(PUPIL_MODELS)})")


def mask_bounds(psf: PupilPSF, phase: torch.Tensor, z_nm: torch.Tensor, photons: float, background: float,
                variance: Variance) -> Bounds:
    """Mean 3D √CRLB (nm) and per-plane √CRLB of x, y, z (nm) at ``z_nm`` through the mask ``phase``."""
    psf.set_mask(phase)
    with torch.no_grad():
        mean, per_axis = mean_3d_crlb(psf, z_nm, photons, background, variance)
    return float(mean), {k: v.numpy().astype(np.float64) for k, v in per_axis.items()}


def compare_masks(psf: PupilPSF, designed: torch.Tensor, config_mask: torch.Tensor | None, z_nm: torch.Tensor,
                  photons: float, background: float, variance: Variance) -> dict[str, Bounds]:
    """The bounds through no mask, the best Z6 astigmatism of :data:`ASTIGMATISM_RAD`, the ``designed``
    mask and the config's own mask (when it has one), by name."""
    def bounds(phase: torch.Tensor) -> Bounds:
        return mask_bounds(psf, phase, z_nm, photons, background, variance)

    astig = zernike_modes(psf, 6)[6 - 4]
    candidates = {"no mask": torch.zeros_like(designed)}
    best_astig = min(ASTIGMATISM_RAD, key=lambda a: bounds(a * astig)[0])
    candidates[f"astigmatism ({best_astig:g} rad Z6)"] = best_astig * astig
    candidates["designed"] = designed
    if config_mask is not None:
        candidates["config mask"] = config_mask.to(torch.float32)
    return {name: bounds(phase) for name, phase in candidates.items()}


def design_tetrapod(config: ConfigLike, out_dir: str | os.PathLike, *, basis: str = "zernike", steps: int = 200,
                    max_noll: int = 28, smoothness_weight: float = 0.0, photons: float | None = None,
                    background: float | None = None, planes: int = 21, seed: int = 0,
                    progress: ProgressCallback | None = None) -> dict:
    """The phase mask of least mean 3D √CRLB over the config's axial range, for its optics and (uniform)
    camera, by Adam from a seeded start (``seed``): ``steps`` steps in the ``basis`` "zernike" (Noll 4 …
    ``max_noll``) or "pixel" (with the ``smoothness_weight`` penalty), at ``planes`` depths, for ``photons``
    signal and ``background`` photons/px (default: the config's means).

    Writes into ``out_dir`` the mask (mask.npy, mask.mat, mask.png), its PSF montage (psf.png), the
    √CRLB-vs-z curves of the designed mask against no mask, the best astigmatism and the config's own
    mask (crlb.png), and design.json, which is returned: the settings, each compared mask's bounds under
    ``masks`` (``mean_3d_crlb_nm``, per-plane ``crlb_x_nm`` …) and the optimisation ``history``.
    ``progress`` hears of every step.

    Example::

        report = deepsmlm.design_tetrapod("tetrapod_paper", "my_mask", steps=300)
        report["masks"]["designed"]["mean_3d_crlb_nm"]
    """
    out, label = Path(out_dir), config_label(config)
    check_output_folder(out, TETRAPOD_OUTPUTS, {"CONFIG": None if isinstance(config, SimulationConfig) else config})
    cfg = as_config(config)
    check_pupil_psf(cfg, label, "mask design")
    check_basis_option(basis, "zernike")
    if cfg.camera.scmos_maps is not None:
        raise UserInputError(f"{cfg.camera.scmos_maps}: the design assumes a uniform camera; drop scmos_maps")
    n = photons if photons is not None else cfg.emitters.photons.expected()
    b = background if background is not None else float(np.mean(cfg.background.photons_per_px))
    z = torch.linspace(*axial_range(cfg), planes)
    variance = Camera(cfg.camera, (cfg.frame.height, cfg.frame.width)).fisher_variance_photons
    psf = build_pupil_psf(cfg)  # the config's optics and grid; the design replaces its mask
    config_mask = psf.mask_phase.clone() if cfg.psf.mask is not None else None
    psf.set_mask(torch.zeros_like(psf.mask_phase))
    out.mkdir(parents=True, exist_ok=True)
    result = design_mask(psf, z, n, b, variance, basis, max_noll, steps, smoothness_weight=smoothness_weight,
                         seed=seed, progress=progress)
    figures = compare_masks(psf, result.phase, config_mask, z, n, b, variance)
    pitch = grid_mask_pitch_um(cfg, psf.grid)
    write_mask(result.phase.numpy(), out, pitch)
    psf.set_mask(result.phase)
    with torch.no_grad():
        stack = psf.z_stack(torch.linspace(*axial_range(cfg), 10)).cpu().numpy()
    psf_montage(stack, np.linspace(*axial_range(cfg), 10).tolist(), cfg.frame.pixel_size_nm, out / "psf.png",
                title=f"designed mask ({basis}), {cfg.name}")
    crlb_plot(z.numpy(), {name: f[1] for name, f in figures.items()}, out / "crlb.png",
              title=f"{n:g} photons, {b:g} background/px, {cfg.camera.type}")
    settings = {"basis": basis, "steps": steps, "max_noll": max_noll, "smoothness_weight": smoothness_weight,
                "seed": seed, "photons": n, "background_per_px": b, "mask_pixel_pitch_um": pitch, "z_nm": z.tolist()}
    report = {"config": cfg.name, **settings, "masks": {name: bounds_record(f) for name, f in figures.items()},
              "history": result.history}
    write_text_atomic(out / "design.json", json.dumps(report, indent=1))
    return report


def bounds_record(bounds: Bounds) -> dict:
    """A mask's bounds as design.json records them (nm): the mean 3D √CRLB, and per axis each plane's and
    their mean."""
    mean, per_axis = bounds
    return {"mean_3d_crlb_nm": mean, **{f"crlb_{k}_nm": v.tolist() for k, v in per_axis.items()},
            **{f"mean_crlb_{k}_nm": float(np.mean(v)) for k, v in per_axis.items()}}


def learn_mask_and_network(config: ConfigLike, out: Path, what: str, *, steps: int | None, minutes: float | None,
                           from_scratch: bool, smoothness_weight: float, resume: bool, overwrite: bool, device: str,
                           basis: str, max_noll: int, crlb_cap_nm: float | None,
                           progress: ProgressCallback | None) -> tuple[JointTrainer, dict]:
    """Train a JointTrainer on ``config`` into ``out``: the model folder, the best mask (.npy/.mat/.png) and
    the training curves (titled by ``what``); returns the trainer, its PSF through the best mask, and the
    run's summary."""
    label = config_label(config)
    cfg = training_config(config, out, steps, minutes, resume, overwrite, filled=(*TRAINER_FILLED, *DESIGN_FILLED))
    check_pupil_psf(cfg, label, "learning a mask")
    if cfg.model.kind != "deepstorm3d":
        raise UserInputError(f"{label}: learning a mask trains a deepstorm3d model (model.kind)")
    check_basis_option(basis, "pixel")
    if crlb_cap_nm is not None and not cfg.localizes_z():
        raise UserInputError(f"{label}: --crlb-cap bounds the 3D CRLB; it needs a 3D model (model.z_planes > 1)")
    trainer = JointTrainer(cfg, out, device, start_from_mask=not from_scratch and not resume,
                           smoothness_weight=smoothness_weight, basis=basis, max_noll=max_noll,
                           crlb_cap_nm=crlb_cap_nm)
    if resume:
        trainer.loop.resume()
    summary = trainer.loop.run(steps=steps, minutes=minutes, progress=progress)
    phase = np.load(out / MASK_FILE)
    write_mask(phase, out, trainer.mask_pitch_um)
    trainer.psf.set_mask(torch.from_numpy(phase))
    training_curves(trainer.loop.history, out / "training_curves.png", title=f"{what}, {cfg.name}")
    return trainer, summary


def design_learn(config: ConfigLike, out_dir: str | os.PathLike, *, steps: int | None = None,
                 minutes: float | None = None, from_scratch: bool = False, smoothness_weight: float = 0.0,
                 resume: bool = False, overwrite: bool = False, device: str = "cpu", basis: str = "pixel",
                 max_noll: int = 28, crlb_cap_nm: float | None = None,
                 progress: ProgressCallback | None = None) -> dict:
    """Learn the phase mask and the config's 3D network (deepstorm3d) together into the model folder
    ``out_dir``, which ``load_model`` then reads, with the mask (mask.npy, mask.mat, mask.png), its PSF
    montage (psf.png) and the training curves (training_curves.png).

    ``steps``, ``minutes``, ``resume``, ``overwrite``, ``device`` and ``progress`` as for
    :func:`deepsmlm.train`; ``from_scratch``: start from no mask, not the config's; ``basis``: learn every
    pupil pixel ("pixel") or Zernike coefficients Noll 4 … ``max_noll`` ("zernike");
    ``smoothness_weight``: weight of the mask smoothness term; ``crlb_cap_nm``: penalise depths whose 3D
    √CRLB (nm) exceeds it. Returns the run's summary, as :func:`deepsmlm.train` does.
    """
    out = Path(out_dir)
    trainer, summary = learn_mask_and_network(
        config, out, "mask and network learned together", steps=steps, minutes=minutes, from_scratch=from_scratch,
        smoothness_weight=smoothness_weight, resume=resume, overwrite=overwrite, device=device, basis=basis,
        max_noll=max_noll, crlb_cap_nm=crlb_cap_nm, progress=progress)
    cfg = trainer.cfg
    with torch.no_grad():
        z = np.linspace(*axial_range(cfg), 10)
        stack = trainer.psf.z_stack(torch.tensor(z, dtype=torch.float32)).cpu().numpy()
    psf_montage(stack, z.tolist(), cfg.frame.pixel_size_nm, out / "psf.png", title=f"learned mask, {cfg.name}")
    return summary


def design_multicolor(config: ConfigLike, out_dir: str | os.PathLike, *, steps: int | None = None,
                      minutes: float | None = None, from_scratch: bool = False, smoothness_weight: float = 0.0,
                      resume: bool = False, overwrite: bool = False, device: str = "cpu", basis: str = "pixel",
                      max_noll: int = 28, crlb_cap_nm: float | None = None,
                      progress: ProgressCallback | None = None) -> dict:
    """Learn one phase mask and a network that localizes emitters and tells the config's 2–4 dyes
    (``emitters.dyes``, one ``model.colors`` output each) apart by PSF shape, into the model folder
    ``out_dir``, with the mask, every dye's PSF montage (psf_dyes.png) and the training curves.

    The options are :func:`design_learn`'s. Returns the run's summary with the last validation's colour
    accuracy as ``color_accuracy`` (None before any).
    """
    out, label = Path(out_dir), config_label(config)
    cfg = as_config(config)
    dyes = cfg.emitters.dyes or []
    if not 2 <= len(dyes) <= 4:
        raise UserInputError(f"{label}: multicolour design needs 2 to 4 dyes in emitters.dyes, found {len(dyes)}")
    if cfg.model.colors != len(dyes):
        raise UserInputError(f"{label}: model.colors must equal the number of dyes ({len(dyes)})")
    trainer, summary = learn_mask_and_network(
        config, out, "mask and dye-classifying network learned together", steps=steps, minutes=minutes,
        from_scratch=from_scratch, smoothness_weight=smoothness_weight, resume=resume, overwrite=overwrite,
        device=device, basis=basis, max_noll=max_noll, crlb_cap_nm=crlb_cap_nm, progress=progress)
    z = np.linspace(*axial_range(trainer.cfg), 5)
    with torch.no_grad():
        stack = np.concatenate([p.z_stack(torch.tensor(z, dtype=torch.float32)).cpu().numpy()
                                for p in trainer.dye_psfs])
    psf_montage(stack, z.tolist() * len(dyes), cfg.frame.pixel_size_nm, out / "psf_dyes.png",
                title=f"learned mask, one row per dye, {cfg.name}",
                row_labels=[f"{d.wavelength_nm:.0f} nm" for d in dyes], cols=len(z))
    history = trainer.loop.history
    accuracy = history[-1].get("color_accuracy") if history else None
    return {**summary, "color_accuracy": accuracy}
