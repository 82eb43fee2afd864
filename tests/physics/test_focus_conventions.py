"""The focus conventions of docs/physics.md under index mismatch (tetrapod_paper optics, no mask):
z = depth − NFP = 0 is not the best focus, and a bead stack on the coverslip is not a fixed-focus z-scan."""

from __future__ import annotations

import torch

from deepsmlm.optics.pupil import PupilGrid, PupilPSF

PIXEL_NM, WAVELENGTH_NM, NA, N_IMM = 110.0, 670.0, 1.45, 1.518


def grid(n_sample: float) -> PupilGrid:
    return PupilGrid(129, PIXEL_NM, WAVELENGTH_NM, NA, N_IMM, n_sample, oversample=3)


def test_best_focus_lies_at_0_71_nfp_under_oil_water_mismatch() -> None:
    """NFP 1.5 µm into water through oil: the peak intensity is highest for an emitter at depth 1065 nm
    (0.71·NFP, z = −435 nm), not at z = 0."""
    nfp = 1500.0
    psf = PupilPSF(grid(1.33), 11, nfp, pixel_integration=False)
    depth = torch.arange(900.0, 1250.0, 5.0)
    offset = torch.zeros(len(depth), 3)
    offset[:, 2] = depth - nfp
    with torch.no_grad():
        field = psf.pupil_field(offset)
        image = torch.fft.fft2(field)
        peak = ((image.real**2 + image.imag**2) / psf.field_norm(field)).flatten(1).amax(1)
    best = float(depth[peak.argmax()])
    assert 0.70 <= best / nfp <= 0.72


def test_bead_stack_is_a_focal_plane_scan_not_a_z_scan() -> None:
    """A bead on the coverslip (depth 0) at stage position s is imaged with NFP = s (z = −s). Under index
    mismatch that PSF is far from the fixed-focus PSF at the same z (NFP 1.5 µm, depth 1.5 µm − s);
    with matched indices the two are the same."""
    one = torch.ones(1)
    for n_sample, low, high in ((1.33, 0.5, 1.0), (N_IMM, 0.0, 1e-5)):
        g = grid(n_sample)
        fixed = PupilPSF(g, 31, 1500.0, pixel_integration=False)
        for s in (500.0, 1000.0):
            z = torch.tensor([[0.0, 0.0, -s]])
            bead = PupilPSF(g, 31, s, pixel_integration=False).patches(z, one)
            scan = fixed.patches(z, one)
            assert low <= float((bead - scan).norm() / scan.norm()) <= high
