"""`deepsmlm calibrate …`: the PSF from bead z-stacks, the camera, or a calibration made elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepsmlm.cli.common import guard

BeadStackArg = typer.Argument(..., help="bead z-stack (TIFF, ADU): beads on the coverslip, the focus scanned")
ZStepOpt = typer.Option(10.0, "--z-step-nm", help="z step between slices (nm)")
ZFirstOpt = typer.Option(None, "--z-first-nm", help="z of the first slice, bead relative to the focal plane "
                                                    "(default: centred)")
BeadsOpt = typer.Option("auto", "--beads", help="auto (find them) or a CSV with columns x_nm, y_nm")
calibrate_app = typer.Typer(no_args_is_help=True, help="Calibrate your own microscope: the PSF from bead z-stacks "
                                                       "(psf), the camera from dark and flat frames (camera), "
                                                       "or a calibration made elsewhere (import).")


@calibrate_app.command("psf")
def calibrate_psf(
    beads: Path = BeadStackArg,
    config: str = typer.Option(..., "--config", help="base config (preset name or YAML): optics, camera, mask"),
    out: Path = typer.Option(..., "-o", "--out", help="output folder (calibrated.yaml, calibration.json, figures)"),
    z_step_nm: float = ZStepOpt, z_first_nm: Optional[float] = ZFirstOpt, positions: str = BeadsOpt,
    max_noll: int = typer.Option(45, "--max-noll", help="highest Noll index of the fitted Zernike terms (≥ 5)"),
    pupil: str = typer.Option("auto", "--pupil", help="zernike, or pixels: then free the phase per pupil pixel "
                                                      "(pupil_phase.npz); auto: pixels when Zernike fits poorly"),
    wobble: bool = typer.Option(True, "--wobble/--no-wobble", help="fit the stage's lateral wobble per slice"),
    blur: bool = typer.Option(True, "--blur/--no-blur", help="fit a Gaussian blur of the images (bead size, camera)"),
    halo: bool = typer.Option(True, "--halo/--no-halo", help="fit a halo: a share of the light spread "
                              "exponentially over a few px (stray light, scattering)"),
    loo: bool = typer.Option(True, "--loo/--no-loo", help="leave-one-bead-out z check with psf-mle (z_accuracy.png)"),
) -> None:
    """Fit the pupil (Zernike aberrations) to a bead z-stack by maximum likelihood: a calibrated config."""
    from deepsmlm.commands.calibrate_psf import run_calibrate_psf

    guard(run_calibrate_psf, beads, config, out, z_step_nm, z_first_nm, positions, max_noll, pupil, wobble, blur,
          halo, loo)


@calibrate_app.command("stack")
def calibrate_stack(
    beads: Path = BeadStackArg,
    config: str = typer.Option(..., "--config", help="base config (preset name or YAML): camera, pixel size"),
    out: Path = typer.Option(..., "-o", "--out", help="output folder (measured_psf.npz, measured.yaml)"),
    z_step_nm: float = ZStepOpt, z_first_nm: Optional[float] = ZFirstOpt, positions: str = BeadsOpt,
) -> None:
    """Average the beads into a measured-stack PSF (no model): for PSFs no smooth pupil explains."""
    from deepsmlm.commands.calibrate_stack import run_calibrate_stack

    guard(run_calibrate_stack, beads, config, out, z_step_nm, z_first_nm, positions)


@calibrate_app.command("camera")
def calibrate_camera(
    dark: Optional[Path] = typer.Option(None, "--dark", help="dark frames (no light): the offset and read noise"),
    flat: list[Path] = typer.Option([], "--flat", help="a stack of even light; repeat for two or more levels"),
    movie: Optional[Path] = typer.Option(None, "--movie", help="a raw movie: gain from its pixels' mean/variance, "
                                                              "offset from its unlit pixels when no --dark"),
    camera_type: Optional[str] = typer.Option(None, "--type", help="emccd, ccd or scmos (default: --config's, "
                                                                   "else emccd)"),
    config: Optional[str] = typer.Option(None, "--config", help="base config: camera.yaml is it with the measured "
                                                                "camera"),
    out: Path = typer.Option(..., "-o", "--out", help="output folder (camera.yaml, mean_variance.png, "
                                                      "scmos_maps.npz)"),
    em_gain: Optional[float] = typer.Option(None, "--em-gain", help="EMCCD: the EM gain used (default: --config's)"),
    e_per_adu: Optional[float] = typer.Option(None, "--e-per-adu", help="EMCCD: the known e⁻ per ADU instead "
                                                                       "(the EM gain is then measured)"),
) -> None:
    """Camera offset, gain and read noise (sCMOS: per-pixel maps) by the photon-transfer method."""
    from deepsmlm.commands.calibrate_camera import run_calibrate_camera

    guard(run_calibrate_camera, dark, flat, movie, camera_type, config, out, em_gain, e_per_adu)


@calibrate_app.command("import")
def calibrate_import(
    file: Path = typer.Argument(..., help="a calibration made elsewhere: Picasso's 3D calibration (.yaml)"),
    config: str = typer.Option(..., "--config", help="base config (preset name or YAML): camera, pixel size"),
    out: Path = typer.Option(..., "-o", "--out", help="the calibrated config to write (.yaml)"),
    picasso_fit: str = typer.Option("lq", "--picasso-fit", help="the Picasso fit that measured the widths: lq "
                                                                "(its default, sampled Gaussian) or mle"),
    magnification: Optional[float] = typer.Option(None, "--magnification-factor", help="Picasso's z per stage nm "
                                                                                       "(default: the file's)"),
) -> None:
    """Import a calibration made elsewhere (Picasso's astigmatic 3D calibration) as a calibrated config."""
    from deepsmlm.commands.calibrate_import import run_calibrate_import

    guard(run_calibrate_import, file, config, out, picasso_fit, magnification)
