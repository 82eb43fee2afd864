"""Colour physics: one optics, one mask, a PSF per dye wavelength; dye labels through the simulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.simulation.movies import ground_truth_table
from deepsmlm.config import SimulationConfig, updated
from deepsmlm.optics.factory import at_wavelength, build_dye_psfs, build_psf, mask_phase_for, pupil_grid_for


def config(**psf) -> SimulationConfig:
    return SimulationConfig.model_validate({
        "frame": {"height": 32, "width": 32, "pixel_size_nm": 20.0},
        "optics": {"wavelength_nm": 600.0, "na": 1.0, "n_immersion": 1.518, "n_sample": 1.518},
        "psf": {"model": "pupil", "patch_px": 81, "pupil_grid": 1023, **psf},
        "camera": {"type": "ideal"},
    })


def first_zero_nm(cfg: SimulationConfig) -> float:
    """Radius of the in-focus PSF's first dark ring (parabolic interpolation of the radial minimum)."""
    img = build_psf(cfg, fast=False).patches(torch.zeros(1, 3), torch.ones(1))[0].double().numpy()
    row = img[40, 40:]
    k = next(i for i in range(1, len(row) - 1) if row[i] < row[i - 1] and row[i] <= row[i + 1])
    a, b, c = row[k - 1], row[k], row[k + 1]
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * cfg.frame.pixel_size_nm


def test_psf_of_a_dye_without_mask_scales_with_its_wavelength_like_the_airy_radius():
    base = config()
    for wl in (600.0, 650.0, 700.0):
        assert first_zero_nm(at_wavelength(base, wl)) == pytest.approx(0.61 * wl / 1.0, rel=0.02)


def test_a_fixed_relief_has_phase_inversely_proportional_to_the_wavelength(tmp_path):
    """A mask of constant 1.2 rad at its design wavelength 600 nm reads 1.2·600/λ rad at λ, and with a
    dispersion of (n − 1) the extra factor 1 + D·(λ − 600)."""
    mask = tmp_path / "flat.npy"
    np.save(mask, np.full((301, 301), 1.2))
    cfg = config(mask={"file": str(mask), "pixel_pitch_um": 8.0})
    for wl in (600.0, 650.0, 700.0):
        at = at_wavelength(cfg, wl)
        phase = mask_phase_for(at, pupil_grid_for(at))
        centre = phase.shape[0] // 2
        assert float(phase[centre, centre]) == pytest.approx(1.2 * 600.0 / wl, rel=1e-5)
    at = at_wavelength(updated(cfg, {"psf.mask.dispersion_per_nm": -2e-4}), 700.0)
    phase = mask_phase_for(at, pupil_grid_for(at))
    c = phase.shape[0] // 2
    assert float(phase[c, c]) == pytest.approx(1.2 * 600.0 / 700.0 * (1 - 2e-4 * 100.0), rel=1e-5)


def test_dyes_label_molecules_and_render_with_their_own_psf():
    cfg = SimulationConfig.model_validate({
        "frame": {"height": 32, "width": 32, "pixel_size_nm": 100.0},
        "optics": {"wavelength_nm": 600.0, "na": 1.4, "n_immersion": 1.518, "n_sample": 1.518},
        "psf": {"model": "pupil", "patch_px": 15},
        "camera": {"type": "ideal"},
        "emitters": {"count": [20, 20], "photons": {"distribution": "constant", "low": 1000.0},
                     "dyes": [{"wavelength_nm": 600.0, "fraction": 3.0},
                              {"wavelength_nm": 700.0, "spectrum": [[680.0, 1.0], [720.0, 1.0]]}]},
        "background": {"photons_per_px": [0.0, 0.0]},
    })
    sim = build_simulator(cfg)
    assert len(sim.dye_psfs) == 2
    batch = sim.sample(50, torch.Generator().manual_seed(0))
    color = batch.emitters.color
    assert color is not None and set(color.unique().tolist()) == {0, 1}
    assert float((color == 0).float().mean()) == pytest.approx(0.75, abs=0.05)
    # the red dye's spot is wider: the same emitter rendered by both dye PSFs
    spots = [psf.patches(torch.zeros(1, 3), torch.ones(1))[0] for psf in build_dye_psfs(cfg)]
    r2 = [float((s * ((torch.arange(15) - 7.0) ** 2)[None, :]).sum() / s.sum()) for s in spots]
    assert r2[1] > 1.1 * r2[0]
    table = ground_truth_table(batch, 100.0)
    assert "color" in table and table["color"].tolist() == color.tolist()


def learned_mask_config(tmp_path, phase: np.ndarray | None = None,
                        model: str = "pupil") -> tuple[SimulationConfig, "object"]:
    """A two-dye config and the learnable design-grid PSF (random smooth-ish mask) of end-to-end design."""
    from deepsmlm.optics.factory import build_pupil_psf

    cfg = SimulationConfig.model_validate({
        "frame": {"height": 24, "width": 24, "pixel_size_nm": 100.0},
        "optics": {"wavelength_nm": 625.0, "na": 1.4, "n_immersion": 1.518, "n_sample": 1.518,
                   "magnification": 100.0, "fourier_focal_length_mm": 100.0},
        "psf": {"model": model, "patch_px": 15, "pupil_grid": 63},
        "camera": {"type": "ideal"},
        "emitters": {"dyes": [{"wavelength_nm": 600.0}, {"wavelength_nm": 650.0}]},
    })
    source = build_pupil_psf(cfg, learnable_mask=True)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        source.mask_phase.copy_(torch.randn(63, 63, generator=gen) * source.aperture)
    return cfg, source


@pytest.mark.parametrize("model", ["pupil", "vectorial"])
def test_dyes_sharing_a_learnable_mask_see_what_the_saved_mask_file_gives(tmp_path, model):
    """The PSF a dye sees during end-to-end design (the design-grid mask re-centred on its own grid,
    phase × λ_d/λ) equals the PSF the saved mask file gives that dye through the fixed-mask path, in the
    scalar and the vectorial model."""
    from deepsmlm.config import MaskConfig
    from deepsmlm.design.dye_masks import shared_mask_dye_psfs
    from deepsmlm.optics.factory import grid_mask_pitch_um

    cfg, source = learned_mask_config(tmp_path, model=model)
    learned = shared_mask_dye_psfs(cfg, source)
    assert all(type(psf.source) is type(source) and isinstance(psf, type(source)) for psf in learned)
    np.save(tmp_path / "mask.npy", source.mask_phase.detach().numpy())
    mask = MaskConfig(file=str(tmp_path / "mask.npy"), pixel_pitch_um=grid_mask_pitch_um(cfg, source.grid))
    fixed_cfg = updated(cfg, {"psf.mask": mask})
    fixed = build_dye_psfs(fixed_cfg, fast=False)
    offsets = torch.tensor([[0.0, 0.0, 0.0], [30.0, -20.0, 200.0]])
    for a, b in zip(learned, fixed):
        with torch.no_grad():
            pa, pb = a.patches(offsets, torch.ones(2)), b.patches(offsets, torch.ones(2))
        assert float((pa - pb).abs().max()) < 1e-4 * float(pa.max())
    # and the two dyes really differ through this mask
    with torch.no_grad():
        assert float((learned[0].patches(offsets, torch.ones(2)) - learned[1].patches(offsets, torch.ones(2))).abs().sum()) > 0.05


@pytest.mark.parametrize("model", ["pupil", "vectorial"])
def test_every_dye_psf_carries_gradient_to_the_one_learnable_mask(tmp_path, model):
    from deepsmlm.design.dye_masks import shared_mask_dye_psfs

    cfg, source = learned_mask_config(tmp_path, model=model)
    for psf in shared_mask_dye_psfs(cfg, source):
        source.mask_phase.grad = None
        img = psf.patches(torch.tensor([[10.0, 0.0, 100.0]]), torch.ones(1))
        (img[0, 7, 5:10] ** 2).sum().backward()
        grad = source.mask_phase.grad
        assert grad is not None and float(grad.abs().sum()) > 0
