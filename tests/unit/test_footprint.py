"""The benchmarks' PSF footprint: the radius holding a fraction of a centred emitter's light."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.footprint import energy_radius_nm


def test_energy_radius_of_a_gaussian_spot_follows_the_rayleigh_distribution():
    sigma_px, pixel_nm = 4.0, 100.0
    yy, xx = np.mgrid[-30:31, -30:31]
    spot = np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma_px ** 2))
    ring = np.exp(-(np.hypot(xx, yy) - 12.0) ** 2 / 2)  # thin ring of radius 12 px
    radii = energy_radius_nm(np.stack([spot, 3 * spot, ring]), pixel_nm, 0.5)
    expected = sigma_px * np.sqrt(-2 * np.log(0.5)) * pixel_nm  # 1.177 σ
    assert radii[0] == pytest.approx(expected, abs=0.5 * pixel_nm)
    assert radii[1] == radii[0]  # brightness does not matter
    assert radii[2] == pytest.approx(12 * pixel_nm, abs=0.6 * pixel_nm)
    r90 = energy_radius_nm(spot[None], pixel_nm, 0.9)[0]
    assert r90 == pytest.approx(sigma_px * np.sqrt(-2 * np.log(0.1)) * pixel_nm, abs=0.5 * pixel_nm)
