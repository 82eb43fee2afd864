"""`calibrate psf`'s stage wobble and leave-one-bead-out z check (issue 20).

Three beads, astigmatic (Z6 0.4 rad, Z11 0.1 rad), at depths 30, −20 and 0 nm, imaged noise-free with
2·10⁵ photons while the stage wobbles laterally by a known ±0.3 px per slice: the fitted wobble is the
truth; each bead localized by psf-mle through the pupil fitted to the other two lands on the stage z plus
its own height relative to theirs, within a few nm; a pupil basis that cannot hold the astigmatism (Noll 5
only) fails the check by hundreds of nm.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepsmlm.api.calibration import calibrate_psf
from deepsmlm.config import load_config, updated
from deepsmlm.optics.factory import build_pupil_psf

TRUTH = {6: 0.4, 11: 0.1}  # rad RMS
BEADS_RC = ((14, 14), (14, 36), (36, 25))  # bead centre pixels in a 50×50 frame
DEPTH_NM = (30.0, -20.0, 0.0)
DXY_PX = ((0.2, -0.3), (-0.1, 0.25), (0.35, 0.1))
Z_NM = np.linspace(-800.0, 800.0, 17)  # the stack; the check covers ±600 nm
PHOTONS, BACKGROUND = 2e5, 2.0


def small_config(**changes):
    """A fast vectorial pupil config: 64-grid, 15-px crops, ideal camera."""
    base = {"psf.patch_px": 15, "psf.pupil_grid": 64, "camera.type": "ideal", "emitters.z_range_nm": (-800.0, 800.0)}
    return updated(load_config("epfl2016_2d"), {**base, **changes})


def wobble_truth() -> np.ndarray:
    """(K, 2) px, mean zero: the stage's lateral wobble per slice."""
    w = np.random.default_rng(1).uniform(-0.3, 0.3, (len(Z_NM), 2))
    return w - w.mean(0)


def wobbling_stack() -> np.ndarray:
    """(K, 50, 50) noise-free photons (= ADU, ideal camera) of the three beads, slice k moved by the wobble."""
    psf = build_pupil_psf(small_config(**{"psf.zernike_rad": TRUTH}))
    frames = np.full((len(Z_NM), 50, 50), BACKGROUND)
    h = 7
    for k, (z, (wx, wy)) in enumerate(zip(Z_NM, wobble_truth())):
        offsets = torch.tensor([[(dx + wx) * 100, (dy + wy) * 100, d + z] for (dx, dy), d in zip(DXY_PX, DEPTH_NM)],
                               dtype=torch.float32)
        with torch.no_grad():
            patches = psf.patches(offsets, torch.full((3,), PHOTONS)).numpy()
        for (r, c), patch in zip(BEADS_RC, patches):
            frames[k, r - h:r + h + 1, c - h:c + h + 1] += patch
    return frames


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """calibrate_psf's report and output folder on the wobbling stack (Zernike terms up to Noll 15)."""
    out = tmp_path_factory.mktemp("wobble") / "cal"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = calibrate_psf(wobbling_stack(), small_config(), out, z_step_nm=100.0, max_noll=15,
                               halo=False)  # these beads have none; a fitted halo stays at ~4 % and costs 1 % error
    finally:
        torch.set_num_threads(threads)
    return report, out


def test_fitted_wobble_is_the_stages(calibrated):
    report, _ = calibrated
    fitted = np.stack([report["wobble"]["x_nm"], report["wobble"]["y_nm"]], 1)
    error = fitted - wobble_truth() * 100  # nm, of a ±30 nm wobble
    assert np.abs(error).max() < 1.5 and np.sqrt((error**2).mean()) < 0.8
    assert report["wobble"]["rms_nm"] == pytest.approx(np.sqrt((wobble_truth() ** 2).sum(1).mean()) * 100, abs=0.3)
    assert report["after"]["median_rel_l2_pm500"] < 0.01


def test_leave_one_bead_out_finds_the_stage_z(calibrated):
    report, out = calibrated
    loo = report["leave_one_out"]
    assert loo["z_stage_nm"] == Z_NM[2:-2].tolist()  # ±600 nm
    assert loo["z_rmse_after_offset_nm"] < 3.0 and loo["lateral_rmse_nm"] < 4.0
    # a held-out bead's offset is its depth less the mean depth of the two beads that calibrated
    others = [np.mean(np.delete(DEPTH_NM, b)) for b in range(3)]
    for bead, depth, rest in zip(loo["beads"], DEPTH_NM, others):
        assert bead["z_offset_nm"] == pytest.approx(depth - rest, abs=3.0)
        assert bead["z_rmse_after_offset_nm"] < 3.0
    written = json.loads((out / "calibration.json").read_text())
    assert written["leave_one_out"]["z_rmse_nm"] == loo["z_rmse_nm"]
    assert (out / "z_accuracy.png").stat().st_size > 0


def test_a_pupil_without_the_astigmatism_fails_the_check(tmp_path, one_thread):
    report = calibrate_psf(wobbling_stack(), small_config(), tmp_path / "cal", z_step_nm=100.0, max_noll=5,
                           pupil="zernike", wobble=False)  # auto would free the pixels and find the astigmatism
    assert report["wobble"] is None
    assert report["leave_one_out"]["z_rmse_after_offset_nm"] > 100.0
