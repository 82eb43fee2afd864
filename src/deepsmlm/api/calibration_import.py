"""`deepsmlm.import_calibration`: a calibration made elsewhere as a config every command loads.

Read so far: Picasso's 3D (astigmatic) calibration YAML (:mod:`deepsmlm.io.picasso_calibration`), into the
Gaussian PSF with polynomial widths (:mod:`deepsmlm.calibration.imported`) on the base config's pixel size
(Picasso's widths are in camera pixels), emitters.z_range_nm the calibrated range. The format is told from
the content; SMAP's ``*_3dcal.mat`` and uiPSF's ``.h5`` are named and refused (docs/calibration.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deepsmlm.api.inputs import ConfigLike, as_config, config_label
from deepsmlm.calibration.imported import ImportedWidths, PicassoFit, picasso_widths
from deepsmlm.config import SimulationConfig, dump_config, updated
from deepsmlm.config.optics import DipoleConfig
from deepsmlm.errors import UserInputError, check_positive
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.io.outputs import check_outputs
from deepsmlm.io.picasso_calibration import read_picasso_z_calibration

HEADER = "# calibrated config written by `deepsmlm calibrate import`\n"
PICASSO_FITS = ("lq", "mle")


@dataclass(frozen=True)
class ImportedCalibration:
    """The calibrated config and what it was made from: the file's format, the magnification factor used,
    the widths, and the file's keys that were not imported."""

    config: SimulationConfig
    source_format: str
    magnification: float
    widths: ImportedWidths
    unused_keys: tuple[str, ...]


def check_output(out: Path, inputs: dict) -> None:
    """``out`` is a .yaml that is no input; a file there is replaced only when this command wrote it."""
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise UserInputError(f"-o {out}: give a .yaml path (the calibrated config)")
    check_outputs({"-o": out}, inputs)
    if out.exists() and not out.read_text(errors="replace").startswith(HEADER):
        raise UserInputError(f"-o {out}: exists and was not written by `deepsmlm calibrate import`; it would be "
                             f"written over (choose another output name)")


def import_calibration(file: str | os.PathLike, config: ConfigLike, out: str | os.PathLike | None = None, *,
                       picasso_fit: PicassoFit = "lq", magnification: float | None = None) -> ImportedCalibration:
    """``config`` with the PSF of the calibration in ``file`` (a Picasso 3D calibration: the Gaussian PSF with
    its width curves on the config's pixel size, z range the calibrated one); with ``out`` written there.

    ``picasso_fit``: the Picasso fit that measured the widths (``lq``, its default, samples the Gaussian at
    pixel centres; ``mle`` integrates it over pixels as ours does); ``magnification``: Picasso's magnification
    factor (z = factor · stage position), needed when the file lacks it, else overriding it."""
    file = Path(file)
    if picasso_fit not in PICASSO_FITS:
        raise UserInputError(f"--picasso-fit {picasso_fit}: use one of {', '.join(PICASSO_FITS)}")
    check_positive(magnification, "--magnification-factor")
    if out is not None:
        out = Path(out)
        check_output(out, {"FILE": file, "--config": None if isinstance(config, SimulationConfig) else config})
    cal = read_picasso_z_calibration(file)
    factor = magnification if magnification is not None else cal.magnification
    if factor is None:
        raise UserInputError(f"{file}: no 'Magnification factor' key (an older Picasso file): give "
                             f"--magnification-factor (Picasso's z = factor × stage position; 1 for beads imaged "
                             f"like the sample)")
    base = as_config(config)
    widths = picasso_widths(cal, base.frame.pixel_size_nm, factor, picasso_fit, str(file))
    cfg = calibrated_config(base, widths, f"{file.name} (Picasso 3D calibration)")
    if out is not None:
        write_text_atomic(out, HEADER + f"# from {file} (Picasso 3D calibration, {picasso_fit.upper()} widths, "
                          f"magnification factor {factor:g}) onto {config_label(config)}\n" + dump_config(cfg))
    return ImportedCalibration(cfg, "picasso", factor, widths, cal.unused)


def calibrated_config(base: SimulationConfig, widths: ImportedWidths, source: str) -> SimulationConfig:
    """``base`` with the Gaussian PSF of ``widths`` (no mask, aberrations or measured stack: the widths are
    the whole PSF) and their z range."""
    g = base.psf.gaussian
    polished = updated(g, {"sigma_x_poly_nm": widths.sigma_x_poly_nm, "sigma_y_poly_nm": widths.sigma_y_poly_nm,
                           "astig_focus_offset_nm": 0.0}, source)
    polished = updated(polished, {"sigma_nm": polished.focus_sigma_nm(widths.z_range_nm)}, source)
    return updated(base, {"psf.model": "gaussian", "psf.gaussian": polished, "psf.mask": None,
                          "psf.mask_oversample": None, "psf.zernike_rad": {}, "psf.pupil_amplitude": {},
                          "psf.measured": None, "psf.dipole": DipoleConfig(),
                          "emitters.z_range_nm": widths.z_range_nm}, source)
