"""PupilPSF.set_mask, the one way to set a pupil PSF's phase mask: shape-checked, images exactly like a PSF
built with that mask, keeps a design's autograd graph, and leaves a learnable mask the same Parameter."""

from __future__ import annotations

import pytest
import torch

from deepsmlm.optics.pupil import PupilGrid, PupilPSF

GRID = PupilGrid(32, 110.0, 670.0, 1.45, 1.518, 1.33)
Z_NM = torch.tensor([-400.0, 0.0, 400.0])


def random_phase(seed: int) -> torch.Tensor:
    return torch.randn(32, 32, generator=torch.Generator().manual_seed(seed)) * GRID.aperture.float()


@pytest.mark.parametrize("learnable", [False, True], ids=["fixed", "learnable"])
def test_a_phase_off_the_pupil_grid_is_refused(learnable):
    psf = PupilPSF(GRID, 7, 1500.0, learnable_mask=learnable)
    with pytest.raises(ValueError, match="32×32"):
        psf.set_mask(torch.zeros(31, 32))


@pytest.mark.parametrize("learnable", [False, True], ids=["fixed", "learnable"])
def test_the_set_mask_images_like_a_psf_built_with_it(learnable):
    phase = random_phase(0)
    psf = PupilPSF(GRID, 7, 1500.0, learnable_mask=learnable)
    psf.set_mask(phase)
    with torch.no_grad():
        torch.testing.assert_close(psf.z_stack(Z_NM), PupilPSF(GRID, 7, 1500.0, mask_phase=phase).z_stack(Z_NM),
                                   rtol=0, atol=0)


def test_gradients_reach_what_a_phase_set_with_its_graph_was_computed_from():
    scale = torch.tensor(0.5, requires_grad=True)
    psf = PupilPSF(GRID, 7, 1500.0)
    psf.set_mask(scale * random_phase(1))
    (psf.z_stack(Z_NM) ** 2).sum().backward()
    assert scale.grad is not None and float(scale.grad.abs()) > 0


def test_a_learnable_mask_stays_the_same_parameter_and_takes_values_without_a_graph():
    psf = PupilPSF(GRID, 7, 1500.0, learnable_mask=True)
    parameter = psf.mask_phase
    source = torch.tensor(2.0, requires_grad=True)
    psf.set_mask(source * random_phase(2))
    assert psf.mask_phase is parameter and isinstance(parameter, torch.nn.Parameter)
    assert parameter.is_leaf and parameter.grad_fn is None
    torch.testing.assert_close(parameter.detach(), 2.0 * random_phase(2), rtol=0, atol=0)
    psf.set_mask(parameter)  # the parameter itself (a pixel-basis design refreshing its mask): unchanged
    assert psf.mask_phase is parameter
    (psf.z_stack(Z_NM) ** 2).sum().backward()
    assert source.grad is None and parameter.grad is not None  # the parameter gets the gradient
