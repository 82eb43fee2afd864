"""Picasso's 3D (astigmatic) calibration file: a YAML mapping written by Picasso Localize's "Calibrate 3D".

The format, read from Picasso's own description of it (jungmannlab/picasso: ``picasso/zfit.py``,
``calibrate_z`` writes the file and ``_fit_z`` / ``zfit`` read it; ``picasso/gausslq.py`` and
``picasso/gaussmle.py`` define the widths; ``picasso/gui/localize.py`` the fit methods):

- ``X Coefficients``, ``Y Coefficients``: the spot widths sx(s), sy(s) as polynomials (``numpy.polyfit``, degree
  6, so 7 numbers, highest power first) of the stage position s in nm. The widths are the standard deviations
  of the fitted Gaussian in camera pixels: a Gaussian sampled at the pixel centres for Picasso's default fit
  (``LQ, Gaussian``), a pixel-integrated one for ``MLE, integrated Gaussian``. The file does not say which.
- ``Magnification factor``: Picasso's z of a spot is this factor times the stage position whose widths it
  matches (0.79 is its usual value for an oil objective imaging in water); older files lack it (it was
  typed in at fit time).
- ``Step size in nm``, ``Number of frames``: the scan; frame k was at s = −(k·step − (frames − 1)·step/2), so
  the first frames of a scan upward into the sample have positive z. Older files lack them; Picasso fits z
  within s ∈ [−1000, 1000] nm. Newer Picasso versions shift s so that the curves cross at s = 0 (the shift
  is not stored).
- Newer files add bookkeeping (``Path``, ``Frame bounds``, ``Frames per step``, ``Frame order``) and may add an
  ``Affine transform`` (a lateral x, y correction Picasso applies after the z fit), which is not imported.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from deepsmlm.errors import UserInputError
from deepsmlm.io.raw_movies import PlainYamlLoader

PICASSO_FIT_BOUND_NM = 1000.0  # Picasso fits z within ±this stage position when the file gives no scan range
COEFFICIENT_KEYS = ("X Coefficients", "Y Coefficients")
UNUSED_KEYS = ("Affine transform",)
FOREIGN_MAGIC = {b"\x89HDF\r\n\x1a\n": "an HDF5 file (a uiPSF .h5?)", b"MATLAB": "a MATLAB .mat file (an SMAP "
                 "3dcal.mat?)"}


@dataclass(frozen=True)
class PicassoZCalibration:
    """A Picasso 3D calibration: width polynomials (camera px vs stage nm, highest power first), the
    magnification factor (None when the file lacks it), the scan (None when absent) and keys not imported."""

    x_coefficients_px: tuple[float, ...]
    y_coefficients_px: tuple[float, ...]
    magnification: float | None
    step_nm: float | None
    frames: int | None
    unused: tuple[str, ...]

    def stage_range_nm(self) -> tuple[float, float]:
        """The stage positions calibrated: the scan's ±(frames − 1)·step/2, else Picasso's fit bounds."""
        if self.step_nm is None or self.frames is None:
            return (-PICASSO_FIT_BOUND_NM, PICASSO_FIT_BOUND_NM)
        half = (self.frames - 1) * self.step_nm / 2
        return (-half, half)


def read_picasso_z_calibration(path: str | os.PathLike) -> PicassoZCalibration:
    """The Picasso 3D calibration in ``path``; a file of another kind, or a key missing or not numeric, is a
    one-line UserInputError naming the file and the key."""
    data = _mapping(Path(path))
    missing = [key for key in COEFFICIENT_KEYS if key not in data]
    if missing:
        what = "a deepsmlm config" if "psf" in data or "frame" in data else "not a Picasso 3D calibration"
        raise UserInputError(f"{path}: {what} (no '{missing[0]}' key)")
    step = _number(data, "Step size in nm", path, optional=True)
    frames = _number(data, "Number of frames", path, optional=True)
    if (step is None) != (frames is None) or (step is not None and (step <= 0 or frames < 2 or frames % 1)):
        raise UserInputError(f"{path}: 'Step size in nm' {step} and 'Number of frames' {frames}: need a positive "
                             f"step and a whole number of frames ≥ 2, or neither")
    magnification = _number(data, "Magnification factor", path, optional=True)
    if magnification is not None and magnification <= 0:
        raise UserInputError(f"{path}: 'Magnification factor' {magnification:g}: must be positive")
    return PicassoZCalibration(_coefficients(data, "X Coefficients", path), _coefficients(data, "Y Coefficients", path),
                               magnification, step, None if frames is None else int(frames),
                               tuple(k for k in UNUSED_KEYS if k in data))


def _mapping(path: Path) -> dict:
    """The YAML mapping in ``path``; a binary file of a known other kind, or any non-mapping, is refused."""
    if not path.is_file():
        raise UserInputError(f"{path}: calibration file not found")
    raw = path.read_bytes()
    for magic, what in FOREIGN_MAGIC.items():
        if raw.startswith(magic):
            raise UserInputError(f"{path}: {what}; only Picasso 3D calibrations (.yaml) are read so far "
                                 f"(see docs/calibration.md)")
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=PlainYamlLoader)
    except (UnicodeDecodeError, yaml.YAMLError):
        raise UserInputError(f"{path}: not a Picasso 3D calibration (not a YAML text file)") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: not a Picasso 3D calibration (no 'X Coefficients' key)")
    return data


def _number(data: dict, key: str, path: Path, optional: bool = False) -> float | None:
    """``data[key]`` as a finite float (None when absent and ``optional``), else a one-line error."""
    value = data.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserInputError(f"{path}: '{key}' is {value!r}, not a finite number")
    return float(value)


def _coefficients(data: dict, key: str, path: Path) -> tuple[float, ...]:
    """``data[key]`` as a non-empty list of finite floats, else a one-line error."""
    value = data[key]
    if not isinstance(value, list) or not value:
        raise UserInputError(f"{path}: '{key}' is {value!r}, not a list of polynomial coefficients")
    return tuple(_number({key: v}, key, path) for v in value)
