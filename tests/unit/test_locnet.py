"""LocNet: the Gaussian-mixture loss against a hand computation and at the true parameters, the decoding
of offsets (and z) to nm through a config's head, which configs are 3D, the registry's network and model
folder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepsmlm.api.estimation import fitter_for
from deepsmlm.assembly.predictors import build_head
from deepsmlm.config import ModelConfig, SimulationConfig, load_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.heads.grid import OutputGrid
from deepsmlm.heads.locnet import LocNetHead
from deepsmlm.heads.locnet_loss import COUNT_VARIANCE_FLOOR, PHOTON_SIGMA_MAX, SIGMA_FLOOR, SIGMA_MAX
from deepsmlm.models.registry import build_network, fold_batchnorm, load_model, save_model

PIXEL_NM = 100.0  # locnet_2d's pixel
ASTIGMATIC = {"psf.gaussian": {"sigma_nm": 110.0, "astig_focus_offset_nm": 250.0, "astig_depth_nm": 400.0},
              "emitters.z_range_nm": (-500.0, 500.0)}  # what makes locnet_2d a 3D LocNet


def locnet_config(axial: bool, **model) -> SimulationConfig:
    """locnet_2d with ``model`` settings; 3D (an astigmatic Gaussian over z ±500 nm) when ``axial``."""
    changes = {f"model.{key}": value for key, value in model.items()}
    return updated(load_config("locnet_2d"), {**changes, **(ASTIGMATIC if axial else {})})


def head(**kw) -> LocNetHead:
    return LocNetHead(OutputGrid(PIXEL_NM), **kw)


def target_of(h: LocNetHead, xyz_nm, photons, frames: int, size: tuple[int, int], background=None) -> torch.Tensor:
    xyz = torch.tensor(xyz_nm, dtype=torch.float32)
    frame = torch.zeros(len(xyz), dtype=torch.int64) if frames == 1 else torch.arange(len(xyz))
    return h.targets(xyz, frame, None, torch.ones(len(xyz), dtype=torch.bool), frames, *size,
                     photons=torch.tensor(photons, dtype=torch.float32), background=background)


def logit(p):
    return np.log(p / (1 - p))


def raw_at(truth_px: list[tuple[int, int, float, float, float]], size: tuple[int, int], sigma=(0.1, 0.1, 0.5),
           p_on: float = 0.99, p_off: float = 1e-4) -> torch.Tensor:
    """A 2D raw output (1, 8, H, W) with probability ``p_on`` at each (row, col) of ``truth_px``, offsets
    (dx, dy) px and photons (units) there, ``p_off`` elsewhere, and σ (x, y px, photons)."""
    raw = np.zeros((1, 8, *size))
    raw[0, 0] = logit(p_off)
    for r, c, dx, dy, n in truth_px:
        raw[0, :4, r, c] = logit(p_on), np.arctanh(dx), np.arctanh(dy), np.log(np.expm1(n))
    for i, (s, top) in enumerate(zip(sigma, (SIGMA_MAX, SIGMA_MAX, PHOTON_SIGMA_MAX))):
        raw[0, 5 + i] = logit((s - SIGMA_FLOOR) / top)
    return torch.tensor(raw, dtype=torch.float32)


def reference_nll(raw: np.ndarray, emitters: np.ndarray, background: np.ndarray) -> float:
    """The loss of one 2D frame written out pixel by pixel: −log N(K; Σp, Σp(1−p) + floor)
    − Σ_e log Σ_k p_k/Σp · N(x) N(y) N(photons) + Σ (b̂ − b)²."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    p = sig(raw[0])
    mu, var = p.sum(), (p * (1 - p)).sum() + COUNT_VARIANCE_FLOOR
    k = len(emitters)
    total = 0.5 * math.log(2 * math.pi * var) + (k - mu) ** 2 / (2 * var)
    for x, y, n in emitters:
        like = 0.0
        for r in range(p.shape[0]):
            for c in range(p.shape[1]):
                means = (c + 0.5 + np.tanh(raw[1, r, c]), r + 0.5 + np.tanh(raw[2, r, c]),
                         np.log1p(np.exp(raw[3, r, c])))
                sigmas = [SIGMA_FLOOR + top * sig(raw[5 + i, r, c])
                          for i, top in enumerate((SIGMA_MAX, SIGMA_MAX, PHOTON_SIGMA_MAX))]
                dens = np.prod([math.exp(-0.5 * ((t - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
                                for t, m, s in zip((x, y, n), means, sigmas)])
                like += p[r, c] / mu * dens
        total -= math.log(like)
    return total + ((raw[4] - background) ** 2).sum()


def test_mixture_loss_equals_the_hand_computed_value_on_two_emitters():
    """A 4×5 frame, small enough that every pixel is a component of each emitter's mixture."""
    torch.manual_seed(3)
    raw = torch.randn(1, 8, 4, 5)
    raw[:, 1:3] *= 0.5
    raw[:, 3] += 2.0
    h = head(photon_unit=100.0, background_offset=10.0, background_unit=100.0)
    bg = torch.full((1, 4, 5), 12.0)
    target = target_of(h, [[120.0, 230.0, 0.0], [410.0, 95.0, 0.0]], [250.0, 400.0], 1, (4, 5), bg)
    expected = reference_nll(raw[0].double().numpy(), np.array([[1.2, 2.3, 2.5], [4.1, 0.95, 4.0]]),
                             np.full((4, 5), 0.02))
    assert float(h.loss(raw, target)) == pytest.approx(expected, rel=1e-4)


def test_loss_is_lowest_at_the_true_parameters():
    truth = [(2, 3, 0.2, -0.3, 5.0), (6, 1, -0.4, 0.1, 8.0)]
    size = (9, 8)
    h = head(photon_unit=100.0)
    xyz = [[(c + 0.5 + dx) * PIXEL_NM, (r + 0.5 + dy) * PIXEL_NM, 0.0] for r, c, dx, dy, _ in truth]
    target = target_of(h, xyz, [100.0 * n for *_, n in truth], 1, size)
    best = float(h.loss(raw_at(truth, size), target))
    wrong = {
        "x": [(2, 3, 0.35, -0.3, 5.0), truth[1]],
        "y": [truth[0], (6, 1, -0.4, 0.25, 8.0)],
        "photons": [(2, 3, 0.2, -0.3, 6.0), truth[1]],
        "missing": [truth[0]],
        "extra": [*truth, (0, 7, 0.0, 0.0, 5.0)],
    }
    for name, params in wrong.items():
        assert float(h.loss(raw_at(params, size), target)) > best + 1.0, name
    # the same position claimed by the neighbouring pixel (offset −0.8 px) is just as good
    neighbour = [(2, 4, -0.8, -0.3, 5.0), truth[1]]
    assert float(h.loss(raw_at(neighbour, size), target)) == pytest.approx(best, abs=1e-3)
    # with every x off by 0.1 px, σx = 0.1 px is the one that fits (δ²/2σ² + log σ is least at σ = δ)
    shifted = [(r, c, dx + 0.1, dy, n) for r, c, dx, dy, n in truth]
    by_sigma = {sx: float(h.loss(raw_at(shifted, size, (sx, 0.1, 0.5)), target)) for sx in (0.05, 0.1, 0.2)}
    assert min(by_sigma, key=by_sigma.get) == 0.1


def test_3d_loss_is_lowest_at_the_true_depth_and_its_sigma_fits_the_error():
    """One emitter at z = 200 nm in a 3D head over −500 … 500 nm (z ±1 ↔ ±500 nm, σ_z in half ranges)."""
    hd = build_head(locnet_config(True, input_scale_photons=100.0, input_offset_photons=0.0))
    size = (6, 6)
    target = target_of(hd, [[370.0, 240.0, 200.0]], [500.0], 1, size)

    def raw(z_nm: float, sigma_z: float) -> torch.Tensor:
        out = torch.zeros(1, 10, *size)
        out[0, 0] = -9.0
        out[0, :5, 2, 3] = torch.tensor([9.0, math.atanh(0.2), math.atanh(-0.1), math.atanh(z_nm / 500.0),
                                         math.log(math.expm1(5.0))])
        tops = (SIGMA_MAX, SIGMA_MAX, SIGMA_MAX, PHOTON_SIGMA_MAX)  # σ of x, y (px), z (half ranges), photons
        for i, (s, top) in enumerate(zip((0.1, 0.1, sigma_z, 0.5), tops)):
            out[0, 6 + i] = float(logit((s - SIGMA_FLOOR) / top))
        return out

    best = float(hd.loss(raw(200.0, 0.1), target))
    assert float(hd.loss(raw(300.0, 0.1), target)) > best + 1.5  # 2 σ off: +2 nats
    by_sigma = {s: float(hd.loss(raw(250.0, s), target)) for s in (0.05, 0.1, 0.2)}  # 50 nm off
    assert min(by_sigma, key=by_sigma.get) == 0.1


@pytest.mark.parametrize("axial", [False, True])
def test_targets_decode_back_to_the_emitters_in_every_quadrant_and_at_the_edges(axial):
    """An ideal output made from the targets (probability 1 at each emitter's pixel, its offset, z and
    photons) decodes to the emitters' nm positions: every sub-pixel quadrant, the frame's edges and
    corners, and a tile placed at ``origin``; the head is the config's (3D: z over its range −500 … 500 nm)."""
    h, w = 6, 7
    e = 0.03  # px from the frame's edge
    quadrants = [(3 + a, 2 + b) for a in (0.25, 0.75) for b in (0.25, 0.75)]  # of pixel (row 2, col 3)
    xy_px = quadrants + [(e, e), (w - e, e), (e, h - e), (w - e, h - e), (e, 4.5), (5.5, h - e)]
    z = np.linspace(-450, 450, len(xy_px)) if axial else np.zeros(len(xy_px))
    xyz = [[x * PIXEL_NM, y * PIXEL_NM, zz] for (x, y), zz in zip(xy_px, z)]
    hd = build_head(locnet_config(axial, input_scale_photons=50.0, input_offset_photons=10.0))
    assert (hd.axial, hd.channels) == (axial, 10 if axial else 8)
    target = target_of(hd, xyz, [500.0 + 10 * i for i in range(len(xyz))], len(xyz), (h, w))
    q = 4 if axial else 3
    raw = torch.zeros(len(xyz), 2 + 2 * q, h, w)
    raw[:, 0] = -20.0
    for f, (x, y) in enumerate(xy_px):
        r, c = int(y), int(x)
        raw[f, 0, r, c] = 20.0
        raw[f, 1, r, c] = math.atanh(x - c - 0.5)
        raw[f, 2, r, c] = math.atanh(y - r - 0.5)
        if axial:
            raw[f, 3, r, c] = math.atanh(z[f] / 500.0)
        raw[f, q, r, c] = math.log(math.expm1((500.0 + 10 * f) / 50.0))
    out = hd.activate(raw)
    table = hd.decode(out, hd.detect(out), first_frame=5, origin=(10, 20))
    assert table.frame.tolist() == list(range(5, 5 + len(xyz)))
    np.testing.assert_allclose(table.x_nm, [x * PIXEL_NM + 20 * PIXEL_NM for x, _ in xy_px], atol=1e-3)
    np.testing.assert_allclose(table.y_nm, [y * PIXEL_NM + 10 * PIXEL_NM for _, y in xy_px], atol=1e-3)
    np.testing.assert_allclose(table.photons, 500.0 + 10 * np.arange(len(xyz)), rtol=1e-4)
    np.testing.assert_allclose(table.bg, 10.0, atol=1e-5)  # raw 0: the input offset
    np.testing.assert_allclose(table.prob, 1.0, atol=1e-6)
    if axial:
        np.testing.assert_allclose(table.z_nm, z, atol=0.05)
        np.testing.assert_allclose(target[:, h * w + 3].numpy(), z / 500.0, atol=1e-6)  # z scaled to ±1
        assert (table.sigma_z_nm > 0).all()
    else:
        assert "z_nm" not in table and "sigma_z_nm" not in table
    # the packed target holds the emitters in camera px
    np.testing.assert_allclose(target[:, h * w + 1].numpy(), [x for x, _ in xy_px], atol=1e-5)


def test_detection_needs_the_mass_and_the_local_maximum():
    """A spot spread over two pixels is one detection at the brighter, with their summed mass; a faint
    isolated pixel is none; the threshold applies to the 3×3 mass."""
    h = head()
    out = torch.zeros(1, 8, 5, 5)
    out[0, 0, 1, 1], out[0, 0, 1, 2] = 0.45, 0.4
    out[0, 0, 4, 4] = 0.2
    found = h.detect(out, threshold=0.5)
    assert torch.nonzero(found[0, 0]).tolist() == [[1, 1]]
    assert float(h.decode(out, found).prob.iloc[0]) == pytest.approx(0.85)
    assert int(h.detect(out, threshold=0.1).sum()) == 2


def test_split_mass_finds_two_emitters_under_one_maximum():
    """Two emitters in neighbouring pixels, their probability spread (mass 1.7 around one maximum): one
    detection without a split, two with ``split_mass`` 1.5 (the maximum and the next most probable pixel
    of its 3×3, each at its own offset); a single spread emitter (mass 0.9) stays one."""
    out = torch.zeros(1, 8, 7, 7)
    out[0, 0, 2, 2], out[0, 0, 2, 3], out[0, 0, 3, 2], out[0, 0, 1, 1] = 0.6, 0.55, 0.3, 0.25
    out[0, 1, 2, 3] = 0.3  # the runner-up's x offset (px)
    out[0, 0, 5, 5], out[0, 0, 5, 6] = 0.5, 0.4
    assert torch.nonzero(head().detect(out, threshold=0.5)[0, 0]).tolist() == [[2, 2], [5, 5]]
    split = head(split_mass=1.5)
    found = split.detect(out, threshold=0.5)
    assert torch.nonzero(found[0, 0]).tolist() == [[2, 2], [2, 3], [5, 5]]
    table = split.decode(out, found)
    np.testing.assert_allclose(table.x_nm, [250.0, 380.0, 550.0])
    assert split.reach_px == 2 and head().reach_px == 1
    assert load_config("locnet_2d").model.split_mass == 1.5


@pytest.mark.parametrize("axial", [False, True])
def test_model_folder_round_trips_and_folds_batch_norm(tmp_path, axial):
    cfg = locnet_config(axial, input_offset_photons=10.0, input_scale_photons=90.0, threshold=0.6,
                        sigma_scale=(1.5, 1.6, 0.9))
    torch.manual_seed(0)
    net = build_network(cfg.model, cfg.localizes_z())
    net.train()(torch.randn(4, 1, 32, 32))  # running statistics away from their initial values
    net.eval()
    save_model(tmp_path, cfg, net)
    loaded_cfg, loaded = load_model(tmp_path)
    assert loaded_cfg == cfg
    x = torch.randn(2, 1, 40, 36)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
        torch.testing.assert_close(fold_batchnorm(loaded)(x), net(x), atol=1e-4, rtol=1e-4)
    assert net(x).shape == (2, 10 if axial else 8, 40, 36)
    assert build_head(loaded_cfg).axial == axial


def test_one_rule_says_which_models_localize_z():
    """A LocNet is 3D when its PSF encodes z over a non-empty z range (the rule that picks the 3D fitter);
    a density network when its grid has planes."""
    tetrapod = load_config("tetrapod_paper")
    cases = {
        "locnet_2d": (load_config("locnet_2d"), False),
        "locnet astigmatic": (locnet_config(True), True),
        "locnet astigmatic, no z range": (updated(locnet_config(True), {"emitters.z_range_nm": (0.0, 0.0)}), False),
        "locnet on tetrapod_paper": (updated(tetrapod, {"model.kind": "locnet", "model.upsampling": 1,
                                                        "model.z_planes": 1}), True),
        "deepstorm3d, 40 planes": (tetrapod, True),
        "deepstorm3d, 1 plane per dye": (load_config("multicolor_2dye"), False),
        "deepstorm2d over a z range": (load_config("epfl2016_2d"), False),
    }
    for name, (cfg, three_d) in cases.items():
        assert cfg.localizes_z() == three_d, name
        if cfg.model.kind == "locnet":
            assert (fitter_for(cfg) == "psf-mle") == three_d, name


def test_locnet_config_is_at_camera_resolution():
    assert ModelConfig(kind="locnet", upsampling=1).upsampling == 1
    with pytest.raises((ValueError, UserInputError), match="camera resolution"):
        ModelConfig(kind="locnet", upsampling=4)
