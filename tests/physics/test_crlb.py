"""Fisher information by autograd against finite differences and the Mortensen formula."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.integrate import quad

from deepsmlm.config import CameraConfig
from deepsmlm.optics.psf import GaussianPSF
from deepsmlm.optics.pupil import PupilGrid, PupilPSF
from deepsmlm.physics.camera import Camera
from deepsmlm.physics.crlb import PARAMS, crlb, expected_counts, fisher_information, frame_crlb

PX, SIGMA = 100.0, 120.0


def theta(n=1000.0, b=10.0, x=7.0, y=-12.0, z=0.0) -> torch.Tensor:
    return torch.tensor([[x, y, z, n, b]], dtype=torch.float64)


def mortensen_std(n, b, sigma=SIGMA, a=PX) -> float:
    sa2 = sigma**2 + a**2 / 12
    tau = 2 * math.pi * sa2 * b / (n * a**2)
    integral = quad(lambda t: math.log(t) / (1 + t / tau), 0, 1)[0]
    return math.sqrt(sa2 / n / (1 + integral))


def test_autograd_fisher_equals_finite_difference_fisher():
    psf = GaussianPSF(PX, 21, SIGMA, astig_focus_offset_nm=250.0, astig_depth_nm=400.0)
    th = theta(z=120.0)
    info = fisher_information(psf, th)[0]
    steps = torch.tensor([1e-3, 1e-3, 1e-3, 1e-3, 1e-5], dtype=torch.float64)
    mu = expected_counts(psf, th)[0]
    jac = []
    for i in range(5):
        d = torch.zeros_like(th)
        d[0, i] = steps[i]
        jac.append((expected_counts(psf, th + d)[0] - expected_counts(psf, th - d)[0]) / (2 * steps[i]))
    j = torch.stack(jac)
    fd = torch.einsum("ipq,jpq->ij", j, j / mu)
    scale = torch.sqrt(torch.outer(torch.diagonal(info), torch.diagonal(info)))
    assert torch.allclose(info / scale, fd / scale, rtol=0, atol=1e-7)


@pytest.mark.parametrize("n,b", [(1000.0, 10.0), (5000.0, 50.0), (300.0, 2.0)])
def test_gaussian_crlb_matches_mortensen(n, b):
    psf = GaussianPSF(PX, 25, SIGMA)
    bounds = crlb(psf, theta(n, b), params=("x", "y", "photons", "background"))[0]
    assert float(bounds[0]) == pytest.approx(mortensen_std(n, b), rel=0.10)
    assert float(bounds[1]) == pytest.approx(float(bounds[0]), rel=0.05)


def test_emccd_excess_noise_costs_sqrt2():
    psf = GaussianPSF(PX, 25, SIGMA)
    # 1 e⁻/ADU: the rounding noise, (1/300)²/12 photons², is negligible against 2λ
    cam = Camera(CameraConfig(type="emccd", qe=1.0, em_gain=300.0, e_per_adu=1.0, read_noise_e=0.0))
    poisson = crlb(psf, theta(), params=("x", "y", "photons", "background"))[0, 0]
    emccd = crlb(psf, theta(), variance=cam.variance_photons, params=("x", "y", "photons", "background"))[0, 0]
    assert float(emccd / poisson) == pytest.approx(math.sqrt(2), rel=1e-6)
    assert float(emccd) == pytest.approx(math.sqrt(2) * mortensen_std(1000.0, 10.0), rel=0.10)


def test_read_noise_adds_to_the_variance():
    psf = GaussianPSF(PX, 25, SIGMA)
    quiet = Camera(CameraConfig(type="ccd", qe=1.0, read_noise_e=0.0))
    noisy = Camera(CameraConfig(type="ccd", qe=1.0, read_noise_e=10.0))
    p = ("x", "y", "photons", "background")
    assert crlb(psf, theta(), noisy.variance_photons, p)[0, 0] > 1.2 * crlb(psf, theta(), quiet.variance_photons, p)[0, 0]


def test_crlb_scales_as_inverse_sqrt_photons_without_background():
    grid = PupilGrid(127, 100.0, 640.0, 1.4, 1.518, 1.518)
    psf = PupilPSF(grid, 31, 0.0, zernike_rad={6: 0.8})  # astigmatism encodes z
    th = torch.tensor([[3.0, -4.0, 150.0, 1000.0, 1e-3], [3.0, -4.0, 150.0, 4000.0, 1e-3]])
    b = crlb(psf, th, params=("x", "y", "z", "photons"))
    ratio = b[0, :3] / b[1, :3]
    assert torch.allclose(ratio, torch.full((3,), 2.0), rtol=0.01)
    assert torch.all(torch.isfinite(b)) and PARAMS[2] == "z"


def test_frame_bound_of_lone_spots_and_of_spots_cut_by_the_edge_or_overlapping():
    """One frame: a lone centred spot has the single-emitter bound; a spot on the left frame edge (x on a
    pixel boundary) keeps half its pixels, so by mirror symmetry I_yy halves and √CRLB_y grows by √2;
    two spots 150 nm apart along x are bounded worse than alone, most along x."""
    psf = GaussianPSF(PX, 21, SIGMA)
    xyz = torch.tensor([[3250.0, 3250.0, 0.0], [0.0, 1050.0, 0.0], [1050.0, 5050.0, 0.0], [1200.0, 5050.0, 0.0]],
                       dtype=torch.float64)
    photons = torch.full((4,), 1000.0, dtype=torch.float64)
    frame = torch.zeros(4, dtype=torch.int64)
    b = frame_crlb(psf, xyz, photons, frame, 10.0, 1, 64, 64)
    lone = crlb(psf, theta(x=0.0, y=0.0), params=("x", "y", "photons", "background"))
    torch.testing.assert_close(b[0, :2], lone[0, :2], rtol=1e-6, atol=0)  # x, y decouple from the background
    assert float(b[1, 1] / lone[0, 1]) == pytest.approx(math.sqrt(2), rel=1e-4)
    assert float(b[1, 0]) > math.sqrt(2) * float(lone[0, 0])  # x also loses the left flank's information
    assert (b[2:, 0] > 3 * lone[0, 0]).all() and (b[2:, 1] > 1.2 * lone[0, 1]).all()  # worst along the pair


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_background_poisson_bound_is_the_b_to_0_limit(dtype):
    """At background 0 the far pixels expect exactly 0 photons (0/0 gave NaN): they add nothing to the
    signal parameters and make the background certain, so the bound is the b → 0 limit, Mortensen's
    √(σ_a²/N) for x and y and √N for the photons (Poisson counting)."""
    psf = GaussianPSF(PX, 25, SIGMA)
    zero = theta(b=0.0).to(dtype)
    assert (expected_counts(psf, zero) == 0).any()
    p = ("x", "y", "photons", "background")
    bounds = crlb(psf, zero, params=p)[0].double()
    limit = crlb(psf, theta(b=1e-6), params=p)[0]  # b → 0 (far pixels still expect > 0)
    assert torch.all(torch.isfinite(bounds)) and float(bounds[3]) == 0.0
    torch.testing.assert_close(bounds[:3], limit[:3], rtol=1e-4, atol=0)
    sa2 = SIGMA**2 + PX**2 / 12
    assert float(bounds[0]) == pytest.approx(math.sqrt(sa2 / 1000.0), rel=1e-3)
    assert float(bounds[2]) == pytest.approx(math.sqrt(1000.0), rel=1e-4)
    without = crlb(psf, zero, params=("x", "y", "photons"))[0].double()  # background given: the same bound
    torch.testing.assert_close(without, bounds[:3], rtol=1e-4, atol=0)
    frame = frame_crlb(psf, torch.tensor([[3250.0, 3250.0, 0.0]], dtype=dtype), torch.tensor([1000.0], dtype=dtype),
                       torch.zeros(1, dtype=torch.int64), 0.0, 1, 64, 64)
    assert float(frame[0, 0]) == pytest.approx(math.sqrt(sa2 / 1000.0), rel=1e-3)
