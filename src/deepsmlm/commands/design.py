"""`deepsmlm design tetrapod|learn|multicolor`: phase masks for a config's optics and camera
(:mod:`deepsmlm.api.design`), with the CLI's progress bars and summary lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from deepsmlm.api import design_learn, design_multicolor, design_tetrapod
from deepsmlm.commands.progress_bars import DESIGNING, TRAINING, progress_bar
from deepsmlm.commands.train import steps_run, warn_if_weak


def run_design_tetrapod(config: str, out: Path, basis: str, steps: int, max_noll: int, smoothness_weight: float,
                        photons: float | None, background: float | None, planes: int, seed: int) -> None:
    with progress_bar(DESIGNING) as progress:
        report = design_tetrapod(config, out, basis=basis, steps=steps, max_noll=max_noll,
                                 smoothness_weight=smoothness_weight, photons=photons, background=background,
                                 planes=planes, seed=seed, progress=progress)
    summary = ", ".join(f"{name} {m['mean_3d_crlb_nm']:.2f} nm" for name, m in report["masks"].items())
    print(f"mean 3D √CRLB: {summary}; wrote mask.npy/.mat/.png, psf.png, crlb.png, design.json in {out}")


def learn_with_bars(design: Callable[..., dict], config: str, out: Path, steps: int | None, minutes: float | None,
                    from_scratch: bool, smoothness_weight: float, resume: bool, device: str, basis: str,
                    max_noll: int, crlb_cap_nm: float | None, overwrite: bool) -> dict:
    """Run ``design`` (``design_learn`` or ``design_multicolor``) under the training bars; warn of a weak
    model; return the run's summary."""
    with progress_bar(TRAINING) as progress:
        summary = design(config, out, steps=steps, minutes=minutes, from_scratch=from_scratch,
                         smoothness_weight=smoothness_weight, resume=resume, overwrite=overwrite, device=device,
                         basis=basis, max_noll=max_noll, crlb_cap_nm=crlb_cap_nm, progress=progress)
    warn_if_weak(summary["best_jaccard"], out)
    return summary


def run_design_learn(config: str, out: Path, steps: int | None, minutes: float | None, from_scratch: bool,
                     smoothness_weight: float, resume: bool, device: str, basis: str = "pixel",
                     max_noll: int = 28, crlb_cap_nm: float | None = None, overwrite: bool = False) -> None:
    """Learn the mask and the 3D network together; writes the model folder, the mask and pictures."""
    summary = learn_with_bars(design_learn, config, out, steps, minutes, from_scratch, smoothness_weight, resume,
                              device, basis, max_noll, crlb_cap_nm, overwrite)
    print(f"trained {steps_run(summary)} in {summary['seconds']:.0f} s; best validation Jaccard "
          f"{summary['best_jaccard']:.3f}; model and mask.npy/.mat/.png, psf.png, training_curves.png in {out}")


def run_design_multicolor(config: str, out: Path, steps: int | None, minutes: float | None, from_scratch: bool,
                          smoothness_weight: float, resume: bool, device: str, basis: str = "pixel",
                          max_noll: int = 28, crlb_cap_nm: float | None = None, overwrite: bool = False) -> None:
    """Learn one mask and a dye-classifying network for the config's 2–4 dyes; writes the model folder, the
    mask, every dye's PSF montage (psf_dyes.png) and the training curves."""
    summary = learn_with_bars(design_multicolor, config, out, steps, minutes, from_scratch, smoothness_weight,
                              resume, device, basis, max_noll, crlb_cap_nm, overwrite)
    accuracy = summary["color_accuracy"]
    print(f"trained {steps_run(summary)} in {summary['seconds']:.0f} s; best validation Jaccard "
          f"{summary['best_jaccard']:.3f} (last colour accuracy {accuracy if accuracy is None else f'{accuracy:.3f}'}); "
          f"model and mask.npy/.mat/.png, psf_dyes.png, training_curves.png in {out}")
