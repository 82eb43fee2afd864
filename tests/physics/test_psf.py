"""Physics of the PSF models: normalisation, Airy zero, defocus symmetry, shifts, erf model, fast path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepsmlm.optics.psf import GaussianPSF, render
from deepsmlm.optics.pupil import PupilGrid, PupilPSF
from deepsmlm.optics.stack import StackPSF


def pupil(n=255, pixel=50.0, wl=600.0, na=1.2, n_imm=1.518, n_s=1.518, patch=101, nfp=0.0, **kw) -> PupilPSF:
    grid = PupilGrid(n, pixel, wl, na, n_imm, n_s)
    return PupilPSF(grid, patch, nfp, **kw)


def offsets(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_pupil_psf_sums_to_photons_in_large_crop():
    psf = pupil(n=255, patch=201)
    img = psf.patches(offsets([0, 0, 0], [13, -20, 300]), torch.tensor([1000.0, 250.0]))
    sums = img.sum(dim=(1, 2))
    assert torch.allclose(sums, torch.tensor([1000.0, 250.0]), rtol=0.01)
    assert torch.all(sums <= torch.tensor([1000.0, 250.0]) * 1.0001)


def test_full_field_normalisation_loses_energy_outside_the_patch():
    big = pupil(patch=201).patches(offsets([0, 0, 800]), torch.ones(1)).sum()
    small = pupil(patch=11).patches(offsets([0, 0, 800]), torch.ones(1)).sum()
    assert small < 0.9 * big  # a defocused PSF does not fit 11 px; nothing is renormalised


def test_in_focus_airy_first_zero_at_0p61_lambda_over_na():
    wl, na, px = 600.0, 1.0, 20.0
    psf = pupil(n=1023, pixel=px, wl=wl, na=na, patch=81)
    img = psf.patches(offsets([0, 0, 0]), torch.ones(1))[0].double().numpy()
    row = img[40, 40:]
    k = next(i for i in range(1, len(row) - 1) if row[i] < row[i - 1] and row[i] <= row[i + 1])
    a, b, c = row[k - 1], row[k], row[k + 1]
    r_min = (k + 0.5 * (a - c) / (a - 2 * b + c)) * px
    assert r_min == pytest.approx(0.61 * wl / na, rel=0.02)


def test_matched_indices_defocus_is_symmetric_in_z():
    psf = pupil()
    z = 450.0
    up, down = psf.patches(offsets([0, 0, z], [0, 0, -z]), torch.ones(2))
    assert torch.allclose(up, down, atol=1e-6 * float(up.max()) + 1e-9)
    assert not torch.allclose(up, psf.patches(offsets([0, 0, 0]), torch.ones(1))[0], atol=1e-3 * float(up.max()))


def test_index_mismatch_breaks_the_symmetry():
    psf = pupil(n_s=1.33, na=1.2, nfp=1000.0)
    up, down = psf.patches(offsets([0, 0, 450], [0, 0, -450]), torch.ones(2))
    assert (up - down).abs().max() > 0.05 * up.max()


@pytest.mark.parametrize("kind", ["pupil", "stack", "gaussian"])
def test_whole_pixel_shift_moves_the_image_by_one_pixel(kind):
    px = 100.0
    if kind == "gaussian":
        psf = GaussianPSF(px, 15, 130.0)
    else:
        base = PupilPSF(PupilGrid(127, px, 640.0, 1.3, 1.518, 1.518), 31, 0.0, zernike_rad={6: 0.6})
        psf = base if kind == "pupil" else StackPSF(base, -500, 500, 10)
    xyz = torch.tensor([[1230.0, 1570.0, 120.0], [1230.0 + px, 1570.0, 120.0], [1230.0, 1570.0 + px, 120.0]])
    frames = render(psf, xyz, torch.full((3,), 500.0), torch.arange(3), 3, 32, 32)
    assert torch.allclose(frames[1, :, 1:], frames[0, :, :-1], atol=1e-4)
    assert torch.allclose(frames[2, 1:, :], frames[0, :-1, :], atol=1e-4)


def test_sub_pixel_position_is_exact_in_the_pupil_model():
    """A 0.3 px offset rendered directly equals the centred PSF evaluated 0.3 px away (odd-N period)."""
    psf = pupil(n=128 + 1, pixel=50.0, patch=41)
    a = psf.patches(offsets([15.0, 0, 200]), torch.ones(1))[0]
    centroid = (a.sum(0) * torch.arange(-20, 21)).sum() / a.sum() * 50.0
    assert float(centroid) == pytest.approx(15.0, abs=0.3)


def test_gaussian_erf_model_matches_a_supersampled_gaussian():
    px, sigma = 100.0, 110.0
    psf = GaussianPSF(px, 15, sigma)
    dx, dy = 23.0, -41.0
    img = psf.patches(torch.tensor([[dx, dy, 0.0]], dtype=torch.float64), torch.ones(1, dtype=torch.float64))[0]
    sub = 41  # samples per pixel and axis
    u = (torch.arange(15 * sub, dtype=torch.float64) - (15 * sub - 1) / 2) * px / sub
    gx = torch.exp(-((u - dx) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((u - dy) ** 2) / (2 * sigma**2))
    fine = gy[:, None] * gx[None, :] / (2 * math.pi * sigma**2) * (px / sub) ** 2
    binned = fine.reshape(15, sub, 15, sub).sum(dim=(1, 3))
    assert torch.allclose(img, binned, atol=1e-5)


def test_astigmatic_gaussian_widths_swap_with_z():
    psf = GaussianPSF(100.0, 21, 110.0, astig_focus_offset_nm=300.0, astig_depth_nm=400.0)
    sx, sy = psf.sigmas_nm(torch.tensor([-300.0, 300.0]))
    assert sx[1] == pytest.approx(110.0) and sy[0] == pytest.approx(110.0)
    assert sx[0] == pytest.approx(sy[1]) and sx[0] > 110.0


def test_fast_path_matches_the_full_pupil_model():
    base = PupilPSF(PupilGrid(127, 100.0, 640.0, 1.4, 1.518, 1.33), 41, 500.0, zernike_rad={5: 0.8, 8: 0.4})
    fast = StackPSF(base, -800, 800, 5)
    gen = torch.Generator().manual_seed(0)
    off = torch.rand(64, 3, generator=gen)
    off[:, :2] = (off[:, :2] - 0.5) * 100.0
    off[:, 2] = (off[:, 2] - 0.5) * 1600.0
    ph = torch.full((64,), 1000.0)
    a, b = base.patches(off, ph), fast.patches(off, ph)
    rel = (a - b).norm(dim=(1, 2)) / a.norm(dim=(1, 2))
    assert float(rel.max()) < 0.01
    # a frame without emitters renders as background only (an empty FFT batch is an error in MKL)
    for psf in (fast, base):
        empty = render(psf, torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, dtype=torch.long), 2, 16, 16)
        assert empty.shape == (2, 16, 16) and float(empty.abs().sum()) == 0.0


def test_extra_blur_keeps_photons_and_widens():
    psf = GaussianPSF(100.0, 31, 100.0)
    sharp = psf.patches(offsets([0, 0, 0]), torch.ones(1))
    blurred = psf.patches(offsets([0, 0, 0]), torch.ones(1), blur_px=torch.tensor([1.0]))
    assert float(blurred.sum()) == pytest.approx(float(sharp.sum()), rel=1e-3)
    var = lambda im: float((im[0].sum(0) * (torch.arange(31) - 15) ** 2).sum() / im.sum())  # noqa: E731
    assert var(blurred) == pytest.approx(var(sharp) + 1.0, rel=0.02)


def test_gradients_reach_positions_photons_and_mask():
    psf = pupil(n=95, pixel=100.0, patch=21, learnable_mask=True)
    off = offsets([10, -5, 200]).requires_grad_(True)
    ph = torch.tensor([800.0], requires_grad=True)
    target = psf.patches(offsets([30, 10, 100]), torch.tensor([900.0])).detach()
    loss = ((psf.patches(off, ph) - target) ** 2).sum()
    loss.backward()
    assert off.grad.abs().min() > 0 and ph.grad.abs() > 0
    assert psf.mask_phase.grad is not None and psf.mask_phase.grad.abs().max() > 0
    # directional derivative along x matches a finite difference
    h = 0.5
    lp = ((psf.patches(offsets([10 + h, -5, 200]), ph.detach()) - target) ** 2).sum()
    lm = ((psf.patches(offsets([10 - h, -5, 200]), ph.detach()) - target) ** 2).sum()
    assert float(off.grad[0, 0]) == pytest.approx(float(lp.detach() - lm.detach()) / (2 * h), rel=0.02)


def test_render_places_emitters_in_the_right_frame_and_pixel():
    psf = GaussianPSF(100.0, 9, 80.0)
    xyz = torch.tensor([[250.0, 1050.0, 0.0], [-5000.0, 50.0, 0.0]])
    frames = render(psf, xyz, torch.tensor([100.0, 100.0]), torch.tensor([1, 0]), 2, 16, 16)
    assert frames[0].sum() == 0  # the second emitter is far outside the field
    r, c = divmod(int(frames[1].argmax()), 16)
    assert (r, c) == (10, 2)  # x = 250 nm -> column 2, y = 1050 nm -> row 10
    assert float(frames[1].sum()) == pytest.approx(100.0, rel=0.02)


def test_oversampled_pupil_handles_coarse_pixels():
    grid = PupilGrid(3 * 61 + 2, 160.0, 520.0, 1.45, 1.518, 1.518, oversample=3)
    psf = PupilPSF(grid, 41, 0.0)
    img = psf.patches(offsets([0, 0, 0]), torch.ones(1))[0]
    assert float(img.sum()) == pytest.approx(1.0, abs=0.02)
    assert int(img.argmax()) == 20 * 41 + 20
    with pytest.raises(ValueError):
        PupilGrid(61, 250.0, 520.0, 1.45, 1.518, 1.518)  # NA/λ lies beyond the grid without oversampling


def test_centre_pixel_gets_the_peak_for_odd_patch():
    img = pupil().patches(offsets([0, 0, 0]), torch.ones(1))[0].numpy()
    assert np.unravel_index(img.argmax(), img.shape) == (50, 50)


def test_patch_placement_is_the_same_with_and_without_autograd():
    from deepsmlm.optics.psf import place_patches

    gen = torch.Generator().manual_seed(2)
    patches = torch.rand(40, 7, 7, generator=gen)
    frame = torch.randint(0, 3, (40,), generator=gen)
    row = torch.randint(-4, 14, (40,), generator=gen)
    col = torch.randint(-4, 14, (40,), generator=gen)
    with torch.no_grad():
        plain = place_patches(patches, frame, row, col, 3, 10, 10)
    tracked = place_patches(patches.clone().requires_grad_(True), frame, row, col, 3, 10, 10)
    assert torch.allclose(plain, tracked.detach())
    # every photon of a patch whose centre is inside lands somewhere in the frames unless cropped
    inside = (row >= 3) & (row <= 6) & (col >= 3) & (col <= 6)
    assert float(place_patches(patches[inside], frame[inside], row[inside], col[inside], 3, 10, 10).sum()) == \
        pytest.approx(float(patches[inside].sum()), rel=1e-6)
