"""Phase masks: file loading, physical scaling onto the pupil grid, the printed Tetrapod against golden PSFs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepsmlm.config import load_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.optics.factory import build_pupil_psf, pupil_grid_for, with_reference_psf
from deepsmlm.optics.masks import load_mask_array, mask_frequency_step, resample_mask, shared_data_root
from deepsmlm.optics.zernike import noll_to_nm, zernike

DATA = shared_data_root()
needs_data = pytest.mark.skipif(DATA is None or not (DATA / "deepstorm3d_tetrapod").is_dir(),
                                reason="shared reference data not available")


def test_tetrapod_mask_scale_follows_from_the_optics():
    # M·p/(λ·f) = 100 · 30 µm / (670 nm · 100 mm) = 0.0448 µm⁻¹ per SLM pixel
    step = mask_frequency_step(30.0, 100.0, 100.0, 670.0)
    assert step * 1e3 == pytest.approx(0.04478, rel=1e-3)
    # one FFT pixel of the N = 203 grid at 110 nm camera pixels is the same frequency step
    assert 1 / (203 * 110.0) == pytest.approx(step, rel=1e-3)


@needs_data
def test_tetrapod_reference_grid_is_203_with_a_48_px_pupil():
    cfg = with_reference_psf(load_config("tetrapod_paper"))
    grid = pupil_grid_for(cfg)
    assert grid.n == 203 and grid.oversample == 1
    assert grid.pupil_radius_px == pytest.approx(48.3, abs=0.05)
    psf = build_pupil_psf(cfg)
    raw = load_mask_array(DATA / "deepstorm3d_tetrapod" / "mask_tetrapod_printed.mat")
    assert np.allclose(psf.mask_phase.numpy(), raw, atol=1e-6)  # copied one to one, not stretched


@needs_data
@pytest.mark.parametrize("key,offset", [("centre", (0.0, 0.0)), ("offset", (330.0, -220.0))])
def test_printed_tetrapod_reproduces_the_reference_psfs(key, offset):
    golden = np.load(DATA / "deepstorm3d_tetrapod" / "golden_psf.npz")
    cfg = with_reference_psf(load_config("tetrapod_paper"))  # DeepSTORM3D's own image formation
    psf = build_pupil_psf(cfg)
    z = torch.tensor(golden["z_um_above_coverslip"] * 1000 - 1500.0, dtype=torch.float32)
    off = torch.zeros(len(z), 3)
    off[:, 0], off[:, 1], off[:, 2] = offset[0], offset[1], z
    ours = psf.patches(off, torch.ones(len(z))).numpy()
    ref = golden[key]
    rel = np.linalg.norm(ours - ref, axis=(1, 2)) / np.linalg.norm(ref, axis=(1, 2))
    assert rel.max() < 0.01, rel
    # a transposed mask is a different PSF: orientation matters
    flipped = build_pupil_psf(updated(cfg, {"psf.mask.transpose": True}))
    rel_t = np.linalg.norm(flipped.patches(off, torch.ones(len(z))).numpy() - ref, axis=(1, 2))
    assert (rel_t / np.linalg.norm(ref, axis=(1, 2))).min() > 0.3


def test_resampling_honours_the_mask_pixel_scale():
    # a phase ramp of 0.1 rad per mask pixel; mask pixels half as wide in frequency as grid pixels
    ramp = np.tile(np.arange(-50, 51) * 0.1, (101, 1))
    out = resample_mask(ramp, mask_step=0.5, grid_n=41, grid_step=1.0).numpy()
    assert np.allclose(np.diff(out[20, 10:30]), 0.2, atol=1e-6)  # two mask pixels per grid pixel
    same = resample_mask(ramp, mask_step=1.0, grid_n=41, grid_step=1.0).numpy()
    assert np.allclose(same, ramp[30:71, 30:71])


def test_resampling_does_not_smear_phase_wraps():
    phase = np.where(np.arange(64)[None, :] < 32, np.pi - 0.05, -np.pi + 0.05) * np.ones((64, 1))
    out = resample_mask(phase, mask_step=1.0, grid_n=51, grid_step=0.93).numpy()
    assert np.all(np.abs(np.abs(out[:, 5:46]) - np.pi) < 0.1)  # values stay near ±π, never near 0


@pytest.mark.parametrize("content,message", [
    (np.full((8, 8), np.nan), "NaN"),
    (np.zeros((2, 8, 8)), "2D"),
])
def test_bad_mask_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "mask.npy"
    np.save(path, content)
    with pytest.raises(UserInputError) as err:
        load_mask_array(path)
    assert str(path) in str(err.value) and message in str(err.value) and "\n" not in str(err.value)


def test_missing_and_unreadable_mask_files(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        load_mask_array(tmp_path / "none.mat")
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file")
    with pytest.raises(UserInputError, match="bad.mat"):
        load_mask_array(bad)


def test_noll_indices_and_orthonormality():
    assert [noll_to_nm(j) for j in range(1, 12)] == [
        (0, 0), (1, 1), (1, -1), (2, 0), (2, -2), (2, 2), (3, -1), (3, 1), (3, -3), (3, 3), (4, 0)]
    n = 801
    u = torch.linspace(-1, 1, n, dtype=torch.float64)
    y, x = torch.meshgrid(u, u, indexing="ij")
    rho, theta = torch.hypot(x, y), torch.atan2(y, x)
    inside = rho <= 1
    zs = torch.stack([zernike(j, rho, theta)[inside] for j in range(1, 16)])
    gram = zs @ zs.T / inside.sum()
    assert torch.allclose(gram, torch.eye(15, dtype=torch.float64), atol=0.02)
