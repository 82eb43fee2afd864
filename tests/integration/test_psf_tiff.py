"""`deepsmlm psf` writes the z-stack as a float32 ImageJ TIFF beside the PNG, with the configured blur applied."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from deepsmlm.cli import app
from deepsmlm.commands import optics
from deepsmlm.config import load_config
from deepsmlm.io.images import open_stack
from deepsmlm.optics.factory import build_psf

Z = np.linspace(-400.0, 400.0, 5)


def second_moments(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Variance (px²) of each plane along x (columns) and y (rows)."""
    p = stack.shape[-1]
    c = np.arange(p, dtype=np.float64)
    w = stack.astype(np.float64) / stack.sum(axis=(-2, -1), keepdims=True)
    wx, wy = w.sum(axis=-2), w.sum(axis=-1)
    mx, my = (wx * c).sum(-1), (wy * c).sum(-1)
    return (wx * (c - mx[:, None]) ** 2).sum(-1), (wy * (c - my[:, None]) ** 2).sum(-1)


def config(write_yaml, model: str, blur: tuple[float, float]):
    psf = ({"model": "gaussian", "patch_px": 31, "gaussian": {"sigma_nm": 110.0, "astig_focus_offset_nm": 200.0}}
           if model == "gaussian" else {"model": "pupil", "patch_px": 41})
    return write_yaml({"name": f"psf_{model}", "frame": {"height": 32, "width": 32, "pixel_size_nm": 100.0},
                       "psf": {**psf, "blur_sigma_px": list(blur)}, "emitters": {"z_range_nm": [-400.0, 400.0]}},
                      name=f"{model}.yaml")


@pytest.mark.parametrize("model", ["gaussian", "pupil"])
def test_psf_writes_tiff_z_stack_with_the_configured_blur(runner, tmp_path, write_yaml, monkeypatch, model):
    path = config(write_yaml, model, (0.5, 1.5))  # the middle: σ_blur = 1 camera px
    titles = []
    original = optics.psf_montage
    monkeypatch.setattr(optics, "psf_montage", lambda *a, **k: titles.append(k["title"]) or original(*a, **k))
    out = tmp_path / "figs" / "psf.png"
    res = runner.invoke(app, ["psf", str(path), "-o", str(out), "--planes", "5"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "blur σ 1 px" in titles[0]

    tif = out.with_suffix(".tif")
    with tifffile.TiffFile(tif) as t:
        stack, ij = t.asarray(), t.imagej_metadata
    p = 31 if model == "gaussian" else 41
    assert stack.shape == (5, p, p) and stack.dtype == np.float32
    info = json.loads(ij["Info"])
    np.testing.assert_allclose(info["z_nm"], Z)
    assert info["blur_sigma_px"] == 1.0 and ij["spacing"] == pytest.approx(0.2) and ij["unit"] == "um"
    assert ij["Labels"][0] == "z = -400.0 nm"
    with open_stack(tif) as s:
        assert s.pixel_size_nm == pytest.approx(100.0) and s.n_frames == 5

    cfg = load_config(str(path))
    psf = build_psf(cfg, fast=False)
    offsets = torch.zeros(5, 3)
    offsets[:, 2] = torch.tensor(Z)
    with torch.inference_mode():
        model_sums = psf.patches(offsets, torch.ones(5), torch.ones(5)).sum(dim=(-2, -1)).numpy()
        sharp = psf.z_stack(torch.tensor(Z, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(stack.sum(axis=(-2, -1)), model_sums, rtol=1e-5)
    if model == "gaussian":  # a wide patch holds the spot: the plane sums to one photon
        np.testing.assert_allclose(stack.sum(axis=(-2, -1)), 1.0, rtol=1e-3)
    for blurred, unblurred in zip(second_moments(stack), second_moments(sharp)):
        np.testing.assert_allclose(blurred - unblurred, 1.0, atol=0.05)  # variance grows by σ_blur² = 1 px²


def test_psf_without_blur_says_so_and_refuses_a_non_png_output(runner, tmp_path, write_yaml, monkeypatch, one_line):
    path = config(write_yaml, "gaussian", (0.0, 0.0))
    titles = []
    original = optics.psf_montage
    monkeypatch.setattr(optics, "psf_montage", lambda *a, **k: titles.append(k["title"]) or original(*a, **k))
    res = runner.invoke(app, ["psf", str(path), "-o", str(tmp_path / "psf.png"), "--planes", "5"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "no blur" in titles[0]
    sharp = build_psf(load_config(str(path)), fast=False).z_stack(torch.tensor(Z, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(tifffile.imread(tmp_path / "psf.tif"), sharp, rtol=1e-5, atol=1e-9)
    res = runner.invoke(app, ["psf", str(path), "-o", str(tmp_path / "psf.tif")])
    assert res.exit_code == 2
    assert "give a .png path" in one_line(res.output)


def test_psf_replaces_only_its_own_earlier_tiff(runner, tmp_path, write_yaml, one_line):
    path = config(write_yaml, "gaussian", (0.0, 0.0))
    args = ["psf", str(path), "-o", str(tmp_path / "psf.png"), "--planes", "3"]
    for _ in range(2):  # a rerun replaces the stack it wrote
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (res.output, res.exception)
    assert tifffile.imread(tmp_path / "psf.tif").shape == (3, 31, 31)
    user_data = np.arange(12, dtype=np.uint16).reshape(3, 4)
    tifffile.imwrite(tmp_path / "psf.tif", user_data)
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "psf.tif" in one_line(res.output)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "psf.tif"), user_data)
