"""`optics.z_scan: focus` (issue 20): z moves the focal plane past an emitter on the coverslip, the geometry
of a bead z-stack (focal plane at NFP₀ − z). It must equal the emitter-depth model with the emitter at depth 0
and the focal plane there, differ from a depth scan under an index mismatch, and equal it without one."""

from __future__ import annotations

import pytest
import torch

from deepsmlm.config import load_config, updated
from deepsmlm.optics.factory import build_psf

GRID = 129  # one pupil grid for every variant, so only the z physics differs


def patch(model: str, n_sample: float, z_scan: str, nfp: float, z: float) -> torch.Tensor:
    """The PSF patch (photons, unit emitter) at axial coordinate ``z`` nm of the EPFL 2016 optics with a
    little astigmatism (so focus and its sign show)."""
    cfg = updated(load_config("epfl2016_2d"), {
        "psf.model": model, "psf.pupil_grid": GRID, "psf.patch_px": 15, "psf.zernike_rad": {6: 0.3},
        "optics.n_sample": n_sample, "optics.z_scan": z_scan, "optics.nominal_focal_plane_nm": nfp})
    with torch.no_grad():
        return build_psf(cfg, fast=False).patches(torch.tensor([[0.0, 0.0, z]]), torch.ones(1))[0]


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("model", ["pupil", "vectorial"])
@pytest.mark.parametrize("z", [-500.0, 300.0])
def test_focus_scan_is_the_coverslip_emitter_under_a_moved_focus(model, z):
    offset = 127.0  # the stack's focus offset NFP₀: focal plane at NFP₀ − z
    water_scan = patch(model, 1.33, "focus", offset, z)
    # the emitter at depth (z − NFP₀) + (NFP₀ − z) = 0
    assert rel_l2(water_scan, patch(model, 1.33, "emitter", offset - z, z - offset)) < 1e-4
    # under the mismatch a depth scan is another PSF (focal shift, spherical aberration, supercritical light)
    assert rel_l2(water_scan, patch(model, 1.33, "emitter", 0.0, z - offset)) > 0.05
    # matched indices: only the emitter's distance from the focal plane, z − NFP₀, counts
    assert rel_l2(patch(model, 1.518, "focus", offset, z), patch(model, 1.518, "emitter", 0.0, z - offset)) < 1e-4
