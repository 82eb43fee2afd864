"""The PSF halo (``psf.halo_fraction`` f, ``psf.halo_length_px`` L): the image convolved with
(1 − f)·δ + f·exp(−r/L)/(2πL²), through the kernel's Fourier transform. It keeps every photon, leaves (1 − f)
of the core and spreads the rest far out; configs refuse a halo they cannot render."""

from __future__ import annotations

import math

import pytest
import torch

from deepsmlm.config import load_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.optics.factory import build_pupil_psf
from deepsmlm.optics.pupil import halo_transfer

FRACTION, LENGTH_PX = 0.2, 4.0


def images(**halo) -> torch.Tensor:
    """(2, 61, 61) in-focus images of one photon, without and with the halo."""
    cfg = updated(load_config("epfl2016_3d"), {"psf.patch_px": 61})
    out = []
    for changes in ({}, halo):
        psf = build_pupil_psf(updated(cfg, changes))
        with torch.no_grad():
            out.append(psf.patches(torch.zeros(1, 3), torch.ones(1))[0])
    return torch.stack(out)


def test_halo_keeps_photons_and_scales_the_core():
    plain, halo = images(**{"psf.halo_fraction": FRACTION, "psf.halo_length_px": LENGTH_PX})
    assert float(halo.sum()) == pytest.approx(float(plain.sum()), abs=0.01)  # beyond 30 px: e^(-7.5) of f
    assert float(halo[30, 30]) == pytest.approx((1 - FRACTION) * float(plain[30, 30]), rel=0.02)


def test_transfer_function_is_the_kernels_fourier_transform():
    """halo_transfer against the kernel's 2D Fourier transform summed numerically (0.1 px samples, ±60 px)."""
    grid = build_pupil_psf(load_config("epfl2016_3d")).grid
    transfer = halo_transfer(grid, FRACTION, LENGTH_PX)
    step = 0.1
    x = torch.arange(-600, 601, dtype=torch.float64) * step
    r = torch.hypot(x[:, None], x[None, :])
    kernel = torch.exp(-r / LENGTH_PX) / (2 * math.pi * LENGTH_PX**2) * step**2
    for k in (0, 2, 5, 10, 20):  # rfft2 column k: q = k / N cycles per px along x
        q = k / grid.n
        numeric = (1 - FRACTION) + FRACTION * float((kernel * torch.cos(2 * math.pi * q * x)[None, :]).sum())
        assert float(transfer[0, k]) == pytest.approx(numeric, abs=1e-3), k


@pytest.mark.parametrize("changes", [{"psf.halo_fraction": 0.2},
                                     {"psf.halo_fraction": 0.2, "psf.halo_length_px": 3.0, "psf.model": "gaussian"},
                                     {"psf.halo_fraction": 1.5, "psf.halo_length_px": 3.0}])
def test_configs_refuse_a_halo_they_cannot_render(changes):
    with pytest.raises(UserInputError, match="halo_fraction"):
        updated(load_config("epfl2016_3d"), changes)
