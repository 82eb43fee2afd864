"""Emitter sampling: counts, positions, photon statistics, blinking and structures."""

from __future__ import annotations

import math

import pytest
import torch

from deepsmlm.config import BlinkingConfig, EmitterConfig, FrameConfig, PhotonConfig, StructureConfig
from deepsmlm.simulation.emitters import sample_emitters, sample_photons, stationary_on_fraction
from deepsmlm.simulation.structures import filament_paths, sample_on_ellipsoid, sample_on_filaments

FRAME = FrameConfig(height=40, width=50, pixel_size_nm=100.0)  # 4 x 5 um = 20 um^2


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_density_sets_mean_and_poisson_variance_of_count_per_frame():
    em = sample_emitters(EmitterConfig(density_per_um2=2.0), FRAME, 2000, gen())
    counts = torch.bincount(em.frame, minlength=2000).double()
    assert counts.mean().item() == pytest.approx(40.0, rel=0.02)
    assert counts.var().item() == pytest.approx(40.0, rel=0.1)


def test_margin_keeps_uniform_emitters_that_far_from_every_edge():
    em = sample_emitters(EmitterConfig(density_per_um2=5.0, margin_px=8.0), FRAME, 200, gen())
    x, y, _ = em.xyz_nm.T
    assert x.min() >= 800 and x.max() <= 4200 and y.min() >= 800 and y.max() <= 3200
    # the inner field is filled: emitters come within a pixel of the margin on every side
    assert x.min() < 900 and x.max() > 4100 and y.min() < 900 and y.max() > 3100
    # a density counts per µm² of that inner field: 5/µm² × (34 × 24 px of 100 nm) = 40.8 per frame
    assert len(em) / 200 == pytest.approx(40.8, rel=0.03)


def test_count_range_is_respected_and_covered():
    em = sample_emitters(EmitterConfig(count=(3, 7)), FRAME, 500, gen())
    counts = torch.bincount(em.frame, minlength=500)
    assert set(counts.tolist()) == {3, 4, 5, 6, 7}


def test_uniform_positions_fill_field_and_z_range():
    em = sample_emitters(EmitterConfig(density_per_um2=5.0, z_range_nm=(-400.0, 600.0)), FRAME, 100, gen())
    x, y, z = em.xyz_nm.T
    assert x.min() >= 0 and x.max() < 5000 and y.min() >= 0 and y.max() < 4000
    assert z.min() >= -400 and z.max() <= 600
    assert x.mean().item() == pytest.approx(2500, rel=0.03) and z.mean().item() == pytest.approx(100, abs=20)
    assert em.xyz_nm.dtype == torch.float32 and em.photons.dtype == torch.float32
    assert torch.equal(em.molecule.unique(), torch.arange(len(em)))  # independent frames: fresh molecules
    assert bool((em.frame.diff() >= 0).all())


@pytest.mark.parametrize("shape", [3.0, 0.5])
def test_gamma_mean_and_variance(shape: float):
    ph = sample_photons(PhotonConfig(distribution="gamma", shape=shape, scale=1000.0), 200_000, gen()).double()
    assert ph.mean().item() == pytest.approx(shape * 1000, rel=0.02)
    assert ph.var().item() == pytest.approx(shape * 1000**2, rel=0.04)
    assert ph.min() >= 0


def test_lognormal_mean_and_log_sigma():
    ph = sample_photons(PhotonConfig(distribution="lognormal", mean=2000.0, sigma=0.5), 200_000, gen()).double()
    assert ph.mean().item() == pytest.approx(2000, rel=0.01)
    assert ph.log().std().item() == pytest.approx(0.5, rel=0.01)


def test_uniform_and_constant_photons():
    ph = sample_photons(PhotonConfig(distribution="uniform", low=100.0, high=300.0), 100_000, gen())
    assert ph.min() >= 100 and ph.max() < 300 and ph.mean().item() == pytest.approx(200, rel=0.01)
    constant = sample_photons(PhotonConfig(distribution="constant", low=42.0), 3, gen())
    assert torch.equal(constant, torch.full((3,), 42.0))


@pytest.mark.parametrize("kind", ["uniform", "filaments", "ellipsoid"])
@pytest.mark.parametrize("blink", [False, True])
def test_same_seed_gives_identical_emitters(kind: str, blink: bool):
    cfg = EmitterConfig(
        z_range_nm=(-300.0, 300.0),
        structure=StructureConfig(kind=kind, n_filaments=3, filament_z_amplitude_nm=100.0),
        blinking=BlinkingConfig(enabled=blink, p_off_to_on=0.1, photon_budget=20_000.0),
    )
    a, b = (sample_emitters(cfg, FRAME, 20, gen(7)) for _ in range(2))
    c = sample_emitters(cfg, FRAME, 20, gen(8))
    for name in ("xyz_nm", "photons", "frame", "molecule"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.photons, c.photons)


def test_blinking_matches_stationary_fraction_and_mean_on_count():
    blink = BlinkingConfig(enabled=True, p_on_to_off=0.3, p_off_to_on=0.05)
    on_fraction = stationary_on_fraction(blink)
    assert on_fraction == pytest.approx(0.05 / 0.35)
    em = sample_emitters(EmitterConfig(count=(20, 20), blinking=blink), FRAME, 1000, gen())  # pool of 140
    assert int(em.molecule.max()) < 140
    counts = torch.bincount(em.frame, minlength=1000).double()
    assert counts.mean().item() == pytest.approx(20.0, rel=0.05)
    em = sample_emitters(EmitterConfig(density_per_um2=10.0, blinking=blink), FRAME, 1000, gen())  # pool ~ 1400
    counts = torch.bincount(em.frame, minlength=1000).double()
    assert counts.mean().item() == pytest.approx(200.0, rel=0.1)
    assert counts[0].item() == pytest.approx(200.0, rel=0.25)  # starts stationary, not all off
    n_mol = int(em.molecule.max()) + 1
    frames_on = torch.bincount(em.molecule, minlength=n_mol).double() / 1000
    assert frames_on.mean().item() == pytest.approx(on_fraction, rel=0.05)
    # mean on-run length of a two-state chain is 1 / p_on_to_off
    runs = sum(int((em.frame[em.molecule == m].diff() != 1).sum()) + 1 for m in em.molecule.unique()[:50].tolist())
    frames_in_runs = int(torch.isin(em.molecule, em.molecule.unique()[:50]).sum())
    assert frames_in_runs / runs == pytest.approx(1 / 0.3, rel=0.15)


def test_blinking_molecules_keep_their_position():
    blink = BlinkingConfig(enabled=True, p_on_to_off=0.5, p_off_to_on=0.2)
    em = sample_emitters(EmitterConfig(count=(10, 10), blinking=blink), FRAME, 50, gen())
    assert len(em.molecule.unique()) < len(em)
    for m in em.molecule.unique().tolist():
        rows = em.xyz_nm[em.molecule == m]
        assert torch.equal(rows, rows[:1].expand_as(rows))
        assert len(em.frame[em.molecule == m].unique()) == len(rows)


def test_photon_budget_caps_cumulative_photons():
    blink = BlinkingConfig(enabled=True, p_on_to_off=0.5, p_off_to_on=0.5, photon_budget=5000.0)
    photons = PhotonConfig(distribution="constant", low=1000.0)
    em = sample_emitters(EmitterConfig(count=(2000, 2000), blinking=blink, photons=photons), FRAME, 200, gen())
    totals = torch.zeros(4000, dtype=torch.float64).index_add_(0, em.molecule, em.photons.double())
    # every molecule bleaches within 200 frames; what it emits in total is its Exponential budget
    assert totals.mean().item() == pytest.approx(5000, rel=0.08)
    assert totals.std().item() == pytest.approx(5000, rel=0.15)
    last = torch.zeros(4000, dtype=torch.int64).scatter_reduce_(0, em.molecule, em.frame, "amax", include_self=False)
    assert bool((em.frame[em.photons < 1000] == last[em.molecule[em.photons < 1000]]).all())
    assert bool(((em.photons > 0) & (em.photons <= 1000)).all())
    assert em.frame.max() < 199  # all bleached before the end


def _segment_distance(points: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
    a, d = path[:-1], path[1:] - path[:-1]
    t = ((points[:, None] - a) * d).sum(-1) / (d * d).sum(-1)
    return (points[:, None] - (a + t.clamp(0, 1)[..., None] * d)).norm(dim=-1).amin(dim=1)


def test_filament_samples_lie_on_paths_inside_field():
    cfg = StructureConfig(kind="filaments", n_filaments=4, filament_z_amplitude_nm=300.0)
    paths = filament_paths(cfg, 5000.0, 4000.0, 100.0, gen())
    assert len(paths) == 4
    pts = sample_on_filaments(paths, 2000, gen(1))
    dist = torch.stack([_segment_distance(pts, p) for p in paths]).amin(dim=0)
    assert dist.max() < 1.0
    all_pts = torch.cat(paths)
    assert all_pts[:, 0].min() >= 0 and all_pts[:, 0].max() < 5000 and all_pts[:, 1].max() < 4000
    assert (all_pts[:, 2] - 100).abs().max() <= 300 + 1e-9 and (all_pts[:, 2] - 100).abs().max() > 150


def test_filament_samples_are_uniform_by_arc_length():
    path = torch.tensor([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [100.0, 300.0, 0.0]], dtype=torch.float64)
    pts = sample_on_filaments([path], 40_000, gen())
    assert (pts[:, 1] > 0).double().mean().item() == pytest.approx(0.75, abs=0.01)


@pytest.mark.parametrize("persistence", [1000.0, 4000.0])
def test_filament_tangent_correlation_decays_with_persistence(persistence: float):
    cfg = StructureConfig(kind="filaments", n_filaments=40, filament_persistence_nm=persistence)
    paths = filament_paths(cfg, 20_000.0, 20_000.0, 0.0, gen())
    lag_nm = 1500.0
    lag = round(lag_nm / 15.0)
    cosines = []
    for p in paths:
        d = p[1:, :2] - p[:-1, :2]
        theta = torch.atan2(d[:, 1], d[:, 0])
        if len(theta) > lag:
            cosines.append(torch.cos(theta[lag:] - theta[:-lag]))
    measured = torch.cat(cosines).mean().item()
    assert measured == pytest.approx(math.exp(-lag_nm / (2 * persistence)), abs=0.08)


def test_ellipsoid_samples_lie_on_surface():
    pts = sample_on_ellipsoid((3000.0, 2000.0, 1000.0), (10.0, 20.0, 30.0), 5000, gen())
    q = ((pts - torch.tensor([10.0, 20.0, 30.0], dtype=torch.float64)) / torch.tensor([3000.0, 2000.0, 1000.0]))
    assert torch.allclose(q.pow(2).sum(dim=1), torch.ones(5000, dtype=torch.float64))


def test_sphere_samples_obey_archimedes():
    pts = sample_on_ellipsoid((1000.0, 1000.0, 1000.0), (0.0, 0.0, 0.0), 50_000, gen())
    for lo, hi in [(-1000.0, -600.0), (-100.0, 300.0), (700.0, 1000.0)]:
        frac = ((pts[:, 2] >= lo) & (pts[:, 2] < hi)).double().mean().item()
        assert frac == pytest.approx((hi - lo) / 2000, abs=0.008)


def test_ellipsoid_density_is_uniform_by_area():
    # A flat ellipsoid (a = b = 1000, c = 100) has almost all its area on the two caps: the
    # equatorial band |z| < 50 holds far less than the half of points a sphere mapping would give.
    a, c = 1000.0, 100.0
    pts = sample_on_ellipsoid((a, a, c), (0.0, 0.0, 0.0), 50_000, gen())
    e = math.sqrt(1 - (c / a) ** 2)
    area = 2 * math.pi * a**2 * (1 + (1 - e**2) / e * math.atanh(e))
    # area of the band |z| < h for an oblate spheroid, by numerical integration over z
    z = torch.linspace(-50.0, 50.0, 20001, dtype=torch.float64)
    r = a * torch.sqrt(1 - (z / c) ** 2)
    dr_dz = -a * (z / c**2) / torch.sqrt(1 - (z / c) ** 2)
    band = torch.trapezoid(2 * math.pi * r * torch.sqrt(1 + dr_dz**2), z).item()
    frac = (pts[:, 2].abs() < 50).double().mean().item()
    assert frac == pytest.approx(band / area, abs=0.01)


def test_structures_place_emitters_through_sample_emitters():
    filaments = EmitterConfig(z_range_nm=(0.0, 400.0), structure=StructureConfig(kind="filaments", n_filaments=2))
    em = sample_emitters(filaments, FRAME, 5, gen())
    assert bool((em.xyz_nm[:, 2] == 200).all())  # no excursion: the middle of the z range
    ellipsoid = EmitterConfig(
        z_range_nm=(-200.0, 200.0),
        structure=StructureConfig(kind="ellipsoid", ellipsoid_semi_axes_nm=(1500.0, 1000.0, 500.0)),
    )
    em = sample_emitters(ellipsoid, FRAME, 5, gen())
    q = (em.xyz_nm.double() - torch.tensor([2500.0, 2000.0, 0.0], dtype=torch.float64)) / torch.tensor(
        [1500.0, 1000.0, 500.0], dtype=torch.float64
    )
    assert torch.allclose(q.pow(2).sum(dim=1), torch.ones(len(em), dtype=torch.float64), atol=1e-5)
