"""The simulator chain: rendered emitters + background through the camera, against the analytic models."""

from __future__ import annotations

import pytest
import torch

from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import SimulationConfig, updated
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
    sim = build_simulator(gaussian_config())
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
    sim = build_simulator(updated(gaussian_config(qe=1.0), {"emitters.count": (3, 6)}))
    chunks = list(sim.movie(10, torch.Generator().manual_seed(4), chunk=3))
    again = list(sim.movie(10, torch.Generator().manual_seed(4), chunk=3))
    assert all(torch.equal(a.adu, b.adu) for a, b in zip(chunks, again))
    assert [c.first_frame for c in chunks] == [0, 3, 6, 9]
    frames = torch.cat([c.adu for c in chunks])
    assert frames.shape == (10, 16, 16)
    em = torch.cat([c.emitters.frame for c in chunks])
    assert em.min() == 0 and em.max() == 9 and torch.all(em[1:] >= em[:-1])


def test_blur_range_is_applied_per_emitter():
    sim = build_simulator(updated(gaussian_config(), {"psf.blur_sigma_px": (0.75, 1.25)}))
    blur = sim.blur_px(1000, torch.Generator().manual_seed(0))
    assert 0.75 <= float(blur.min()) and float(blur.max()) <= 1.25 and float(blur.std()) > 0.1


def test_a_batch_carries_the_blur_it_was_rendered_with():
    """Re-rendering a batch's truth with its per-emitter blur explains the frames (Poisson likelihood)
    better than without blur or with the blurs shuffled between emitters."""
    cfg = updated(gaussian_config(), {"psf.blur_sigma_px": (0.5, 1.5), "emitters.count": (3, 3),
                                      "emitters.photons.distribution": "constant", "emitters.photons.low": 20000.0})
    sim = build_simulator(cfg)
    batch = sim.sample(40, torch.Generator().manual_seed(2))
    assert batch.blur_px is not None and batch.blur_px.shape == (len(batch.emitters),)

    def log_likelihood(blur):
        rate = sim.expected_photons(batch.emitters, batch.background, blur) + 1e-6
        return float((batch.adu * rate.log() - rate).sum())

    own = log_likelihood(batch.blur_px)
    assert own > log_likelihood(None)
    assert own > log_likelihood(batch.blur_px.flip(0))


class PassThroughCamera(torch.nn.Module):
    """A camera without noise: both noise models return the expected photons they are given."""

    def forward(self, photons: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return photons

    def reparameterized(self, photons: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return photons


class LearnableGain(GaussianPSF):
    """A Gaussian PSF with a learnable brightness: what a design's gradients must reach."""

    def __init__(self):
        super().__init__(100.0, 15, 120.0)
        self.gain = torch.nn.Parameter(torch.tensor(1.0))

    def patches(self, offset_nm, photons, blur_px=None):
        return self.gain * super().patches(offset_nm, photons, blur_px)


def test_the_differentiable_batch_images_the_same_draws_as_the_camera_batch():
    """The same generator state gives the same emitters, background and blur through both noise models: with
    a noiseless camera both return the same expected photons; only the differentiable one keeps the graph."""
    cfg = updated(gaussian_config(), {"psf.blur_sigma_px": (0.5, 1.0), "emitters.count": (2, 5),
                                      "background.photons_per_px": (3.0, 9.0), "background.nonuniform_amplitude": 0.3})
    built = build_simulator(cfg)
    sim = Simulator(LearnableGain(), PassThroughCamera(), built.emitters, built.background, built.blur_sigma_px)
    plain = sim.sample(6, torch.Generator().manual_seed(5))
    photons, emitters = sim.reparameterized_sample(6, torch.Generator().manual_seed(5))
    assert plain.blur_px is not None and len(plain.emitters) > 6
    assert torch.equal(photons, plain.adu)
    assert torch.equal(emitters.xyz_nm, plain.emitters.xyz_nm) and torch.equal(emitters.photons, plain.emitters.photons)
    assert photons.requires_grad and not plain.adu.requires_grad
    photons.sum().backward()
    assert float(sim.psf.gain.grad) == pytest.approx(float(plain.adu.sum() - plain.background.sum()), rel=1e-4)
