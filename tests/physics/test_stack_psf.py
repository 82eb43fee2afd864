"""A PSF given as a z-stack array (a measured, averaged bead stack) fits the same PSF interface as the
model PSFs: made from a pupil PSF's own planes it is the cached fast path of that PSF, bit for bit, and it
renders frames like it."""

from __future__ import annotations

import pytest
import torch

from deepsmlm.optics.psf import render
from deepsmlm.optics.pupil import PupilGrid, PupilPSF
from deepsmlm.optics.stack import StackPSF, ZStackPSF


def pupil_psf() -> PupilPSF:
    return PupilPSF(PupilGrid(63, 100.0, 600.0, 1.4, 1.518, 1.33), 11, 300.0, zernike_rad={6: 0.5})


def test_a_stack_array_is_the_psf_it_was_sampled_from():
    base = pupil_psf()
    z = torch.linspace(-400.0, 400.0, 17)
    with torch.no_grad():
        measured = ZStackPSF.from_stack(base.z_stack(z), z, base.pixel_nm)
        cached = StackPSF(base, -400.0, 400.0, 50.0, cache=False)
    assert torch.equal(measured.spectra, cached.spectra) and measured.z_step_nm == cached.z_step_nm
    xyz = torch.tensor([[530.0, 470.0, -125.0], [260.0, 910.0, 310.0]])  # between planes, off pixel centres
    photons, frame = torch.tensor([1000.0, 2000.0]), torch.tensor([0, 1])
    with torch.no_grad():
        exact = render(base, xyz, photons, frame, 2, 12, 12)
        image = render(measured, xyz, photons, frame, 2, 12, 12)
    assert float((image - exact).norm() / exact.norm()) < 0.02  # linear in z between 50 nm planes
    assert float(image.sum()) == pytest.approx(float(exact.sum()), rel=1e-2)  # photons kept


def test_the_stack_psf_is_differentiable_in_position():
    z = torch.linspace(-400.0, 400.0, 9)
    with torch.no_grad():
        psf = ZStackPSF.from_stack(pupil_psf().z_stack(z), z, 100.0)
    xyz = torch.tensor([[530.0, 470.0, -125.0]], requires_grad=True)
    render(psf, xyz, torch.tensor([1000.0]), torch.tensor([0]), 1, 12, 12).pow(2).sum().backward()
    assert torch.isfinite(xyz.grad).all() and (xyz.grad.abs() > 0).all()


@pytest.mark.parametrize("shape, z, fragment", [
    ((3, 11, 9), [0.0, 1.0, 2.0], "(Z ≥ 2, P, P)"),
    ((1, 11, 11), [0.0], "(Z ≥ 2, P, P)"),
    ((3, 11, 11), [0.0, 1.0], "3 planes need 3 depths"),
    ((3, 11, 11), [0.0, 10.0, 30.0], "equal steps"),
    ((3, 11, 11), [20.0, 10.0, 0.0], "equal steps"),
    ((3, 10, 10), [0.0, 10.0, 20.0], "odd"),
])
def test_a_malformed_stack_is_refused(shape, z, fragment):
    with pytest.raises(ValueError) as err:
        ZStackPSF.from_stack(torch.rand(shape), torch.tensor(z), 100.0)
    assert fragment in str(err.value)
