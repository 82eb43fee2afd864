"""`deepsmlm calibrate stack` / `deepsmlm.measured_psf` (issue 20): a bead z-stack becomes a measured-stack PSF
and a config on it that reproduces the PSF the beads were made with; its inputs are never written over."""

from __future__ import annotations

import numpy as np
import tifffile
import torch
from typer.testing import CliRunner

import deepsmlm
from deepsmlm.cli import app
from deepsmlm.config import load_config, updated
from deepsmlm.optics.factory import build_psf

BEADS_RC = ((12, 12), (12, 36), (34, 24))  # bead centre pixels (row, col) in a 48×48 frame
PHOTONS, BACKGROUND = 2e5, 2.0
Z = np.arange(-400.0, 401.0, 25.0)


def astigmatic_config():
    """A fast astigmatic pupil config (scalar pupil, 64-grid, 11-px patch, ideal camera)."""
    return updated(load_config("epfl2016_2d"), {
        "psf.model": "pupil", "psf.patch_px": 11, "psf.pupil_grid": 64, "camera.type": "ideal",
        "psf.zernike_rad": {6: 0.6}, "emitters.z_range_nm": (-400.0, 400.0)})


def bead_frames(cfg) -> np.ndarray:
    """(K, 48, 48) noise-free photons (= ADU of the ideal camera) of three beads at sub-pixel offsets, z = Z."""
    psf = build_psf(cfg, fast=False)
    frames = np.full((len(Z), 48, 48), BACKGROUND)
    h = cfg.psf.patch_px // 2
    xy = torch.tensor([[20.0, -30.0], [-10.0, 25.0], [35.0, 10.0]])
    for k, z in enumerate(Z):
        offsets = torch.cat([xy, torch.full((3, 1), float(z))], 1)
        with torch.no_grad():
            patches = psf.patches(offsets, torch.full((3,), PHOTONS)).numpy()
        for (r, c), patch in zip(BEADS_RC, patches):
            frames[k, r - h:r + h + 1, c - h:c + h + 1] += patch
    return frames


def test_measured_stack_config_reproduces_the_beads_psf(tmp_path, one_thread):
    cfg = astigmatic_config()
    info = deepsmlm.measured_psf(bead_frames(cfg), cfg, tmp_path / "stack", z_step_nm=25.0, z_smoothing_nm=0.0)
    assert info["beads"] == 3
    measured = load_config(tmp_path / "stack" / "measured.yaml")
    assert measured.psf.model == "measured"
    lo, hi = measured.emitters.z_range_nm
    assert info["z_range_nm"][0] <= lo < hi <= info["z_range_nm"][1]
    planes = torch.tensor([[0.0, 0.0, z] for z in (-300.0, 0.0, 250.0)])
    with torch.no_grad():
        got = build_psf(measured, base_dir=tmp_path / "stack").patches(planes, torch.ones(3))
        want = build_psf(cfg, fast=False).patches(planes, torch.ones(3))
    # photons are counted in the crop of the sharpest plane: compare shapes, each plane normalised
    got, want = got / got.sum((-2, -1), keepdim=True), want / want.sum((-2, -1), keepdim=True)
    assert float(((got - want).norm(dim=(-2, -1)) / want.norm(dim=(-2, -1))).max()) < 0.03
    # an astigmatic PSF: the planes either side of focus differ (the test can fail on a flat stack)
    assert float((want[0] - want[2]).norm() / want[1].norm()) > 0.2


def test_calibrate_stack_command_never_writes_over_its_inputs(tmp_path, one_thread):
    cfg = astigmatic_config()
    (tmp_path / "base.yaml").write_text(deepsmlm.config.dump_config(cfg))
    tifffile.imwrite(tmp_path / "beads.tif", bead_frames(cfg).astype(np.uint16))
    out = tmp_path / "out"
    run = ["calibrate", "stack", str(tmp_path / "beads.tif"), "-o", str(out), "--z-step-nm", "25", "--config"]
    first = CliRunner().invoke(app, [*run, str(tmp_path / "base.yaml")])
    assert first.exit_code == 0, first.output
    assert "3 beads" in first.output and (out / "measured_psf.npz").exists()
    before = (out / "measured.yaml").read_bytes()
    # the earlier run's config as the base: it would be written over
    again = CliRunner().invoke(app, [*run, str(out / "measured.yaml")])
    assert again.exit_code != 0 and len(again.output.strip().splitlines()) == 1
    assert "measured.yaml" in again.output and "written over" in again.output
    assert (out / "measured.yaml").read_bytes() == before
