"""`deepsmlm.measured_psf`: the measured-stack PSF of a bead z-stack, the non-parametric fallback for PSFs no
smooth pupil explains (:mod:`deepsmlm.calibration.measured_stack`), and a config that uses it.

Writes into the output folder ``measured_psf.npz`` (the aligned, averaged, unit-photon bead stack) and
``measured.yaml`` (the base config with ``psf.model: measured`` on that file instead of its pupil, the
emitters' z range cut to the planes the stack covers). z is the stack's nominal z (``--z-step-nm``, ``--z-first-nm``), as in
``calibrate psf``: for beads on the coverslip, the focus scan's z.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from deepsmlm.api.calibration import bead_inputs, read_beads
from deepsmlm.api.inputs import ConfigLike, Frames, as_config, config_label
from deepsmlm.calibration.measured_stack import write_measured_psf
from deepsmlm.config import dump_config, updated
from deepsmlm.errors import check_positive
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.io.outputs import check_output_folder
from deepsmlm.physics.camera import Camera

OUTPUTS = ("measured_psf.npz", "measured.yaml")
Z_SMOOTHING_NM = 15.0  # σ of the smoothing in z: a few beads' shot noise, below 10 nm of defocus's change


def measured_psf(beads: Frames, config: ConfigLike, out: str | os.PathLike, *, z_step_nm: float = 10.0,
                 z_first_nm: float | None = None, positions: str | os.PathLike = "auto",
                 z_smoothing_nm: float = Z_SMOOTHING_NM) -> dict:
    """Average the beads of a z-stack (ADU; slice k at nominal z = z_first + k·``z_step_nm``) into a
    measured-stack PSF with ``config``'s camera and pixel size, and write ``measured_psf.npz`` and
    ``measured.yaml`` into ``out``. Returns the beads' offsets (x, y nm from the crop centre, z nm), the
    stack's z range (nm) and ``seconds``.

    Example::

        info = deepsmlm.measured_psf("beads_AS.tif", "epfl2016_3d", "stack")
        deepsmlm.simulate("stack/measured.yaml", frames=100, seed=1)
    """
    started, out = time.perf_counter(), Path(out)
    check_output_folder(out, OUTPUTS, bead_inputs(beads, config, positions))
    cfg, label = as_config(config), config_label(config)
    check_positive(z_step_nm, "--z-step-nm")
    name, frames, z_nm, crops = read_beads(beads, cfg, positions, z_step_nm, z_first_nm)
    background = np.median(frames.reshape(len(frames), -1), axis=1)  # per slice, the frame away from the beads
    camera = Camera(cfg.camera, frames.shape[-2:])
    out.mkdir(parents=True, exist_ok=True)
    psf = write_measured_psf(out / OUTPUTS[0], crops.crops, z_nm, camera, cfg.frame.pixel_size_nm, background,
                             z_smoothing_nm=z_smoothing_nm)
    z0, z1 = float(psf.z_nm[0]), float(psf.z_nm[-1])
    lo, hi = cfg.emitters.z_range_nm
    z_range = (max(lo, z0), min(hi, z1)) if lo < z1 and hi > z0 else (z0, z1)
    measured = updated(cfg, {"name": f"{cfg.name}_measured", "psf.model": "measured",
                             "psf.measured": {"file": OUTPUTS[0]}, "psf.mask": None, "psf.zernike_rad": {},
                             "psf.pupil_amplitude": {}, "emitters.z_range_nm": z_range})
    write_text_atomic(out / OUTPUTS[1], dump_config(measured))
    return {"stack": name, "config": label, "beads": len(crops.crops), "z_range_nm": [z0, z1],
            "offsets_nm": np.round(psf.offsets * [cfg.frame.pixel_size_nm, cfg.frame.pixel_size_nm, 1.0], 2).tolist(),
            "seconds": round(time.perf_counter() - started, 1)}
