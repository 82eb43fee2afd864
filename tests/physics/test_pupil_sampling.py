"""Physics options of the scalar pupil PSF (issue 18): evanescent supercritical light, pupil-grid sampling,
exact pixel integration, Zernike polynomials orthonormal on the open aperture, and the shipped settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from scipy.integrate import quad

import deepsmlm.pretrained
from deepsmlm.config import PUPIL_MODELS, load_config, preset_names, updated
from deepsmlm.errors import UserInputError
from deepsmlm.optics.factory import (PHYSICS_OPTIONS, build_pupil_psf, pupil_grid_for, refined_grid,
                                    with_physical_psf, with_reference_psf)
from deepsmlm.optics.masks import resample_mask, shared_data_root
from deepsmlm.optics.pupil import PupilGrid, PupilPSF, supercritical_fraction
from deepsmlm.optics.zernike import zernike_phase

DATA = shared_data_root()
HAS_DATA = DATA is not None and (DATA / "deepstorm3d_tetrapod").is_dir()
MODELS_DIR = Path(deepsmlm.pretrained.__file__).parent
PUPIL_PRESETS = [n for n in preset_names() if load_config(n).psf.model in PUPIL_MODELS]


def test_pixel_integration_matches_a_41x_supersampled_integral():
    """Σ over a camera pixel of I(u) at 41×41 sub-positions (field evaluated by a direct Fourier sum)."""
    grid = PupilGrid(127, 100.0, 640.0, 1.4, 1.518, 1.33)
    psf = PupilPSF(grid, 9, 300.0, zernike_rad={6: 0.5})
    point = PupilPSF(grid, 9, 300.0, zernike_rad={6: 0.5}, pixel_integration=False)
    off = torch.tensor([[23.0, -41.0, 150.0]])
    field = psf.pupil_field(off)[0].to(torch.complex128)
    sub = 41
    u = ((torch.arange(9 * sub, dtype=torch.float64) + 0.5) / sub - 4.5) * grid.pixel_nm  # nm from the centre
    k = (torch.arange(grid.n, dtype=torch.float64) - grid.n // 2) * grid.freq_step
    w = torch.exp(-2j * math.pi * u[:, None] * k[None, :])  # image of the FFT convention: Σ P(f)·exp(−2πi f·u)
    amp = w @ field @ w.T
    fine = amp.abs() ** 2 / (grid.n**2 * (field.abs() ** 2).sum()) * (grid.oversample / sub) ** 2
    ref = fine.reshape(9, sub, 9, sub).sum(dim=(1, 3))
    ours = psf.patches(off, torch.ones(1))[0].double()
    assert float((ours - ref).abs().max()) < 1e-3 * float(ref.max())
    # point sampling at the pixel centre (the reference model) is measurably sharper
    sampled = point.patches(off, torch.ones(1))[0].double()
    assert float((sampled - ref).abs().max()) > 2e-2 * float(ref.max())
    assert float(sampled.max()) > 1.03 * float(ref.max())


def test_pixel_integration_needs_the_intensity_band_on_the_grid():
    grid = PupilGrid(63, 110.0, 600.0, 1.45, 1.518, 1.33)  # pupil radius 16.7 px > N/4
    with pytest.raises(ValueError, match="intensity band"):
        PupilPSF(grid, 21, 0.0)
    PupilPSF(grid, 21, 0.0, pixel_integration=False)


@pytest.mark.parametrize("depth_nm", [0.0, 100.0, 300.0])
def test_supercritical_fraction_matches_angular_integration(depth_nm):
    """Share of |P|² past the critical angle: ∫ exp(−2k0·n_s·d·√((λf/n_s)² − 1))·2πf df, pupil-wide."""
    wl, na, n_imm, n_s = 670.0, 1.45, 1.518, 1.33
    grid = PupilGrid(401, 110.0, wl, na, n_imm, n_s)
    psf = PupilPSF(grid, 21, 0.0)
    k0, f_c, f_na = 2 * math.pi / wl, n_s / wl, na / wl

    def weight(f: float) -> float:
        kappa = math.sqrt(max((wl * f / n_s) ** 2 - 1, 0.0))
        return math.exp(-2 * k0 * n_s * depth_nm * kappa) * f

    beyond = quad(weight, f_c, f_na)[0]
    expected = beyond / (f_c**2 / 2 + beyond)
    got = supercritical_fraction(psf, depth_nm)
    assert got == pytest.approx(expected, rel=0.02)  # the grid samples the steep decay past θ_c
    if depth_nm == 0.0:  # uniform scalar pupil: the area share 1 − (n_s/NA)² = 15.9 %
        assert got == pytest.approx(1 - (n_s / na) ** 2, rel=0.01)
    cut = PupilPSF(PupilGrid(401, 110.0, wl, na, n_imm, n_s, supercritical="cut"), 21, 0.0)
    assert supercritical_fraction(cut, depth_nm) == 0.0


def test_evanescent_light_sharpens_the_psf_at_the_coverslip_only():
    def grid(mode):
        return PupilGrid(255, 110.0, 670.0, 1.45, 1.518, 1.33, supercritical=mode)

    off = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 2000.0]])  # depths 0 and 2 µm (NFP 0)
    ev, cut = (PupilPSF(grid(m), 21, 0.0).patches(off, torch.ones(2)) for m in ("evanescent", "cut"))
    rel = (ev - cut).norm(dim=(1, 2)) / cut.norm(dim=(1, 2))
    assert float(rel[0]) > 0.1 and float(rel[1]) < 0.02  # decays as exp(−k0·n_s·d·√(…)): ~gone at 2 µm
    assert float(ev[0].max()) > float(cut[0].max())  # higher angles: a narrower in-focus spot


def test_gradients_reach_the_mask_with_every_physics_option():
    grid = PupilGrid(95, 110.0, 670.0, 1.45, 1.518, 1.33)
    psf = PupilPSF(grid, 21, 300.0, learnable_mask=True, zernike_rad={5: 0.3})
    out = psf.patches(torch.tensor([[10.0, -5.0, 100.0]]), torch.tensor([1000.0]))
    (out**2).sum().backward()
    assert psf.mask_phase.grad.abs().max() > 0


@pytest.mark.parametrize("name", ["epfl2016_2d", "tetrapod_paper"])
def test_zernike_is_orthonormal_on_the_open_aperture(name):
    if name == "tetrapod_paper" and not HAS_DATA:
        pytest.skip("shared reference data not available")
    cfg = with_physical_psf(load_config(name))
    for supercritical in ("evanescent", "cut"):
        cfg = updated(cfg, {"psf.supercritical": supercritical})
        g = pupil_grid_for(cfg)
        inside = g.aperture > 0
        modes = torch.stack([zernike_phase({j: 1.0}, g.rho, g.theta, inside)[inside] for j in range(1, 37)])
        gram = modes @ modes.T / inside.sum()
        assert torch.allclose(gram, torch.eye(36, dtype=gram.dtype), atol=1e-2)
    # normalised to NA with the supercritical light cut (the reference), water samples break it: Z4 RMS 0.88
    g = pupil_grid_for(updated(cfg, {"psf.zernike_aperture": "na"}))
    inside = g.aperture > 0
    z4 = zernike_phase({4: 1.0}, g.rho, g.theta)[inside]
    assert float(z4.square().mean().sqrt()) == pytest.approx(1.0 if name == "epfl2016_2d" else 0.88, abs=0.02)


def test_mask_oversampling_turns_each_mask_pixel_into_a_block():
    gen = torch.Generator().manual_seed(0)
    mask = torch.randn(11, 11, generator=gen, dtype=torch.float64, requires_grad=True)
    out = resample_mask(mask, mask_step=3.0, grid_n=41, grid_step=1.0)
    assert out.shape == (41, 41)
    assert torch.equal(out[20 - 16:20 + 17, 20 - 16:20 + 17], mask.repeat_interleave(3, 0).repeat_interleave(3, 1))
    out.sum().backward()
    assert torch.all(mask.grad == 9)  # differentiable: each mask pixel feeds its 3×3 block


@pytest.mark.skipif(not HAS_DATA, reason="shared reference data not available")
def test_computed_grid_oversamples_the_tetrapod_mask_five_times_vectorial_three_times_scalar():
    cfg = with_physical_psf(load_config("tetrapod_paper"))
    assert cfg.psf.model == "vectorial" and pupil_grid_for(cfg).n == 5 * 203
    cfg = updated(cfg, {"psf.model": "pupil"})
    assert pupil_grid_for(cfg).n == 3 * 203
    assert pupil_grid_for(updated(cfg, {"psf.mask_oversample": 1})).n == 203


def test_reference_grid_rule_without_a_mask_is_the_old_one():
    """The design code drops a preset's mask (``--from-scratch``): mask_oversample 1 keeps 2·P·s + 1."""
    cfg = updated(with_reference_psf(load_config("tetrapod_paper")), {"psf.mask": None})
    assert pupil_grid_for(cfg).n == 2 * 121 + 1
    # the sampling condition over z = −1.5 … 2.5 µm, with rays to sinθ_s 0.97 (scalar) or 0.99 (vectorial)
    assert pupil_grid_for(with_physical_psf(cfg, vectorial=False)).n == 525
    assert pupil_grid_for(with_physical_psf(cfg)).n == 675


@pytest.mark.parametrize("name", PUPIL_PRESETS)
def test_grid_is_converged_for_every_preset(name):
    """Refining the computed pupil grid 3× moves no plane by > 1 % (relative L2), nor the patch sum by ≥ 0.5 %."""
    cfg = with_physical_psf(load_config(name))
    if cfg.psf.mask is not None and cfg.psf.mask.file.startswith("data:") and not HAS_DATA:
        pytest.skip("shared reference data not available")
    grid, fine = pupil_grid_for(cfg), refined_grid(cfg)
    z0, z1 = cfg.emitters.z_range_nm
    off = torch.zeros(3, 3)
    off[:, 2] = torch.tensor([z0, (z0 + z1) / 2, z1])
    with torch.no_grad():
        a, b = (build_pupil_psf(c).patches(off, torch.ones(3)).double() for c in (cfg, fine))
    assert pupil_grid_for(fine).n == 3 * grid.n
    rel = (a - b).norm(dim=(1, 2)) / b.norm(dim=(1, 2))
    assert float(rel.max()) < 0.01, rel
    assert float(((a.sum(dim=(1, 2)) - b.sum(dim=(1, 2))) / b.sum(dim=(1, 2))).abs().max()) < 0.005


def test_shipped_models_state_their_physics_and_presets_the_physical_one():
    """Each shipped model's config states the PSF physics it was trained with (issue 18); the presets
    follow the physics: the schema's defaults, and the vectorial model wherever a pupil is used."""
    for folder in sorted(p for p in MODELS_DIR.iterdir() if (p / "config.yaml").is_file()):
        text = (folder / "config.yaml").read_text()
        for key in ("model", *PHYSICS_OPTIONS):
            assert f"\n  {key}:" in text, (folder.name, key)
    for name in preset_names():
        psf = load_config(name).psf
        assert (psf.supercritical, psf.pixel_integration, psf.zernike_aperture, psf.mask_oversample) == \
            ("evanescent", True, "open", None), name
        assert psf.model in ("vectorial", "gaussian") and psf.pupil_grid is None, name


def test_bad_physics_options_are_one_line_errors(tmp_path):
    for bad in ("supercritical: partial", "mask_oversample: 2", "mask_oversample: 3", "zernike_aperture: disk"):
        path = tmp_path / "c.yaml"
        path.write_text(f"psf:\n  model: pupil\n  {bad}\n")
        with pytest.raises(UserInputError) as err:
            load_config(path)
        assert "\n" not in str(err.value) and bad.split(":")[0] in str(err.value)


def test_geometric_spread_is_defocus_times_the_marginal_tangent_with_matched_indices():
    from deepsmlm.optics.sampling import SIN_MAX, fft_friendly_odd, lateral_spread_nm

    sin_max = min(1.2 / 1.518, SIN_MAX)
    spread = lateral_spread_nm(600.0, 1.2, 1.518, 1.518, 0.0, (-800.0, 500.0), evanescent=True)
    assert spread == pytest.approx(800.0 * sin_max / math.sqrt(1 - sin_max**2), rel=1e-6)
    assert [fft_friendly_odd(n) for n in (43, 161, 190)] == [45, 175, 225]
