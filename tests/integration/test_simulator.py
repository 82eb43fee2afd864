"""The simulator chain: rendered emitters + background through the camera, against the analytic models."""

from __future__ import annotations

import torch

from deepsmlm.config import SimulationConfig
from deepsmlm.optics.psf import GaussianPSF
from deepsmlm.optics.stack import StackPSF
from deepsmlm.simulation.emitters import Emitters
from deepsmlm.simulation.simulator import Simulator


def gaussian_config(**camera) -> SimulationConfig:
    return SimulationConfig.model_validate({
        "frame": {"height": 16, "width": 16, "pixel_size_nm": 100.0},
        "psf": {"model": "gaussian", "gaussian": {"sigma_nm": 120.0}, "patch_px": 15},
        "camera": {"type": "ideal", **camera},
        "emitters": {"count": [1, 1]},
        "background": {"photons_per_px": [0.0, 0.0]},
    })


def one_emitter(n_frames: int, xyz=(812.0, 735.0, 0.0), photons=2000.0) -> Emitters:
    return Emitters(
        xyz_nm=torch.tensor([xyz] * n_frames), photons=torch.full((n_frames,), photons),
        frame=torch.arange(n_frames), molecule=torch.zeros(n_frames, dtype=torch.long))


def test_mean_of_simulated_frames_is_the_erf_gaussian_model():
    sim = Simulator(gaussian_config())
    n = 3000
    em = one_emitter(n)
    bg = torch.full((n, 16, 16), 5.0)
    expected = sim.expected_photons(one_emitter(1), bg[:1])[0]
    frames = sim.camera(sim.expected_photons(em, bg), generator=torch.Generator().manual_seed(0))
    mean = frames.mean(0)
    # Poisson: the mean of n frames has standard error sqrt(λ/n)
    tol = 4 * torch.sqrt(expected / n) + 1e-3
    assert torch.all((mean - expected).abs() < tol)
    assert abs(float(expected.sum()) - (2000.0 + 5.0 * 256)) < 2.0  # all signal photons land in the frame


def test_fast_path_of_a_gaussian_matches_the_erf_model():
    erf = GaussianPSF(100.0, 21, 130.0, astig_focus_offset_nm=200.0)
    fast = StackPSF(erf, -600, 600, 5)
    off = torch.tensor([[20.0, -35.0, 123.0], [-49.0, 10.0, -401.0]])
    a, b = erf.patches(off, torch.ones(2)), fast.patches(off, torch.ones(2))
    assert torch.allclose(a, b, atol=2e-3 * float(a.max()))


def test_movie_chunks_equal_one_batch_and_seeds_reproduce():
    cfg = gaussian_config(qe=1.0)
    cfg.emitters.count = (3, 6)
    sim = Simulator(cfg)
    chunks = list(sim.movie(10, torch.Generator().manual_seed(4), chunk=3))
    again = list(sim.movie(10, torch.Generator().manual_seed(4), chunk=3))
    assert all(torch.equal(a.adu, b.adu) for a, b in zip(chunks, again))
    assert [c.first_frame for c in chunks] == [0, 3, 6, 9]
    frames = torch.cat([c.adu for c in chunks])
    assert frames.shape == (10, 16, 16)
    em = torch.cat([c.emitters.frame for c in chunks])
    assert em.min() == 0 and em.max() == 9 and torch.all(em[1:] >= em[:-1])


def test_blur_range_is_applied_per_emitter():
    cfg = gaussian_config()
    cfg.psf.blur_sigma_px = (0.75, 1.25)
    sim = Simulator(cfg)
    blur = sim.blur_px(1000, torch.Generator().manual_seed(0))
    assert 0.75 <= float(blur.min()) and float(blur.max()) <= 1.25 and float(blur.std()) > 0.1


def test_a_batch_carries_the_blur_it_was_rendered_with():
    """Re-rendering a batch's truth with its per-emitter blur explains the frames (Poisson likelihood)
    better than without blur or with the blurs shuffled between emitters."""
    cfg = gaussian_config()
    cfg.psf.blur_sigma_px = (0.5, 1.5)
    cfg.emitters.count = (3, 3)
    cfg.emitters.photons.distribution, cfg.emitters.photons.low = "constant", 20000.0
    sim = Simulator(cfg)
    batch = sim.sample(40, torch.Generator().manual_seed(2))
    assert batch.blur_px is not None and batch.blur_px.shape == (len(batch.emitters),)

    def log_likelihood(blur):
        rate = sim.expected_photons(batch.emitters, batch.background, blur) + 1e-6
        return float((batch.adu * rate.log() - rate).sum())

    own = log_likelihood(batch.blur_px)
    assert own > log_likelihood(None)
    assert own > log_likelihood(batch.blur_px.flip(0))
