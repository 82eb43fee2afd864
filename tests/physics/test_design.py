"""CRLB mask design: the mask gradient of the objective, and `deepsmlm design tetrapod` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
import torch
import yaml
from typer.testing import CliRunner

from deepsmlm.cli import app
from deepsmlm.design.crlb_objective import crlb_3d, crlb_cap_penalty, mean_3d_crlb
from deepsmlm.optics.pupil import PupilGrid, PupilPSF
from deepsmlm.optics.vectorial import VectorialPSF
from deepsmlm.physics.crlb import poisson_variance
from tests.integration.test_cli import _tetrapod_mask_present

TINY = {
    "name": "tiny_design",
    "frame": {"height": 32, "width": 32, "pixel_size_nm": 110.0},
    "optics": {"wavelength_nm": 670.0, "na": 1.45, "n_immersion": 1.518, "n_sample": 1.33,
               "nominal_focal_plane_nm": 1500.0},
    "psf": {"model": "pupil", "patch_px": 25},
    "camera": {"type": "ideal"},
    "emitters": {"count": [1, 2], "z_range_nm": [-1000.0, 1000.0],
                 "photons": {"distribution": "constant", "low": 3000.0}},
    "background": {"photons_per_px": [20.0, 20.0]},
}


@pytest.mark.parametrize("kind", [PupilPSF, VectorialPSF], ids=["scalar", "vectorial"])
def test_mask_gradient_of_the_mean_3d_crlb_matches_finite_differences(kind):
    grid = PupilGrid(64, 110.0, 670.0, 1.45, 1.518, 1.33)
    g = torch.Generator().manual_seed(0)
    mask = 0.5 * torch.randn(64, 64, generator=g) * grid.aperture.float()
    z = torch.linspace(-800, 800, 3)

    def objective(phase: torch.Tensor) -> torch.Tensor:
        psf = kind(grid, 21, 1500.0)
        psf.set_mask(phase)
        return mean_3d_crlb(psf, z, 3000.0, 20.0, poisson_variance)[0]

    phase = mask.clone().requires_grad_(True)
    objective(phase).backward()
    for r, c in ((32, 32), (25, 40), (38, 27)):  # pixels inside the aperture (radius ≈ 15 px)
        step = torch.zeros_like(mask)
        step[r, c] = 1e-2
        with torch.no_grad():
            fd = (objective(mask + step) - objective(mask - step)) / 2e-2
        assert float(phase.grad[r, c]) == pytest.approx(float(fd), rel=0.03, abs=1e-4)
    assert float(phase.grad[0, 0]) == 0.0  # outside the aperture the phase does nothing


def test_information_floor_is_zero_within_the_cap_and_pulls_the_worst_depth_down():
    """crlb_cap_penalty: nothing while every depth's 3D bound is under the cap; above it, descending the
    penalty lowers the worst depth's bound (a flat pupil knows little about z near focus)."""
    grid = PupilGrid(64, 110.0, 670.0, 1.45, 1.518, 1.33)
    psf = PupilPSF(grid, 21, 1500.0)
    z = torch.linspace(-800, 800, 5)
    phase = torch.nn.Parameter(0.05 * torch.randn(64, 64, generator=torch.Generator().manual_seed(1)))
    psf.set_mask(phase * grid.aperture.float())
    bounds, _ = crlb_3d(psf, z, 3000.0, 20.0, poisson_variance)
    worst = float(bounds.detach().max())
    loose, _ = crlb_cap_penalty(psf, z, 3000.0, 20.0, poisson_variance, 1.01 * worst)
    assert float(loose.detach()) == 0.0
    cap = 0.5 * float(bounds.detach().min())
    tight, _ = crlb_cap_penalty(psf, z, 3000.0, 20.0, poisson_variance, cap)
    assert float(tight.detach()) == pytest.approx(float(torch.log(bounds.detach() / cap).pow(2).mean()), rel=1e-5)
    optim = torch.optim.Adam([phase], lr=0.05)
    for _ in range(15):
        psf.set_mask(phase * grid.aperture.float())
        penalty, _ = crlb_cap_penalty(psf, z, 3000.0, 20.0, poisson_variance, cap)
        optim.zero_grad()
        penalty.backward()
        optim.step()
    psf.set_mask(phase.detach() * grid.aperture.float())
    with torch.no_grad():
        after, _ = crlb_3d(psf, z, 3000.0, 20.0, poisson_variance)
    assert float(after.max()) < 0.8 * worst


@pytest.mark.parametrize("basis", ["zernike", "pixel"])
def test_design_runs_end_to_end_and_beats_no_mask_and_astigmatism(tmp_path, basis):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    runner = CliRunner()
    result = runner.invoke(app, ["design", "tetrapod", str(cfg), "-o", str(tmp_path / "d"), "--steps", "25",
                                 "--planes", "5", "--max-noll", "15", "--basis", basis, "--smoothness", "1.0"])
    assert result.exit_code == 0, result.output
    for name in ("mask.npy", "mask.mat", "mask.png", "psf.png", "crlb.png", "design.json"):
        assert (tmp_path / "d" / name).is_file()
    report = json.loads((tmp_path / "d" / "design.json").read_text())
    masks = report["masks"]
    astig = next(k for k in masks if k.startswith("astigmatism"))
    assert masks["designed"]["mean_3d_crlb_nm"] < 0.9 * min(masks["no mask"]["mean_3d_crlb_nm"],
                                                             masks[astig]["mean_3d_crlb_nm"])
    history = [h["objective_nm"] for h in report["history"]]
    assert history[-1] < history[0]
    # the written mask, read back by `crlb --mask` on the same config, gives the same bounds
    result = runner.invoke(app, ["crlb", str(cfg), "--mask", str(tmp_path / "d" / "mask.npy"), "--planes", "5",
                                 "--json", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    check = json.loads((tmp_path / "c.json").read_text())
    for axis in ("x", "y", "z"):
        np.testing.assert_allclose(check[f"crlb_{axis}_nm"], masks["designed"][f"crlb_{axis}_nm"], rtol=0.01)


def test_design_tetrapod_api_reports_every_step_and_returns_its_design_json(tmp_path):
    """deepsmlm.design_tetrapod on a loaded config: one progress event per step, the report it returns is
    the design.json it writes, and a bad basis is one UserInputError line naming the default first."""
    import deepsmlm
    from deepsmlm.config import config_from_dict
    from deepsmlm.errors import UserInputError

    cfg, out, events = config_from_dict(TINY), tmp_path / "d", []
    report = deepsmlm.design_tetrapod(cfg, out, steps=3, planes=3, max_noll=10, progress=events.append)
    assert [(e.task, e.done, e.total) for e in events] == [("designing (zernike)", s, 3) for s in range(4)]
    assert report == json.loads((out / "design.json").read_text())
    assert list(report["masks"])[0::2] == ["no mask", "designed"] and report["config"] == "tiny_design"
    np.testing.assert_array_equal(np.load(out / "mask.npy"), scipy.io.loadmat(out / "mask.mat")["mask"])
    with pytest.raises(UserInputError, match=r"^--basis 'foo': choose zernike or pixel$"):
        deepsmlm.design_tetrapod(cfg, out, basis="foo")


@pytest.mark.skipif(not _tetrapod_mask_present(), reason="shared reference data (printed Tetrapod) not found")
def test_shipped_designed_mask_beats_the_printed_tetrapod():
    """The tetrapod_designed preset (shipped mask) against tetrapod_paper's printed Tetrapod: mean 3D √CRLB
    over the 4 µm range at the configs' mean photons and background, same optics and camera."""
    from deepsmlm.config import load_config
    from deepsmlm.optics.factory import build_pupil_psf
    from deepsmlm.physics.camera import Camera

    z = torch.linspace(-1500, 2500, 9)
    means = {}
    for name in ("tetrapod_designed", "tetrapod_paper"):
        cfg = load_config(name)
        variance = Camera(cfg.camera, (cfg.frame.height, cfg.frame.width)).variance_photons
        with torch.no_grad():
            means[name] = float(mean_3d_crlb(build_pupil_psf(cfg), z, 9000.0, 35.0, variance)[0])
    assert means["tetrapod_designed"] <= 1.1 * means["tetrapod_paper"]
    assert means["tetrapod_designed"] < 0.85 * means["tetrapod_paper"]  # measured 14.5 vs 19.8 nm at 21 planes


def _z_stack(cfg, base_dir=None) -> np.ndarray:
    from deepsmlm.optics.factory import build_psf

    with torch.no_grad():
        return build_psf(cfg, fast=False, base_dir=base_dir).z_stack(torch.linspace(-1500, 2500, 9)).numpy()


def test_shipped_learned_model_renders_the_learned_paper_preset_psf():
    """learned-3d reads its mask from the package and was trained with the preset's physics (issue 18):
    its PSF is the learned_paper preset's."""
    from deepsmlm.config import load_config
    from deepsmlm.models.registry import load_model, resolve_model_dir

    cfg, _ = load_model("learned-3d")
    np.testing.assert_allclose(_z_stack(cfg, resolve_model_dir("learned-3d")), _z_stack(load_config("learned_paper")),
                               atol=1e-6)


@pytest.mark.skipif(not _tetrapod_mask_present(), reason="shared reference data (printed Tetrapod) not found")
def test_shipped_learned_mask_has_a_smaller_footprint_than_the_printed_tetrapod():
    """The seed's Fig. 4b: the learned PSF keeps its light closer to the emitter over the 4 µm range
    (50 % and 90 % energy radii averaged over z, same optics)."""
    from benchmarks.footprint import energy_radius_nm
    from deepsmlm.config import load_config

    radii = {name: [energy_radius_nm(_z_stack(load_config(name)), 110.0, f).mean() for f in (0.5, 0.9)]
             for name in ("learned_paper", "tetrapod_paper")}
    assert radii["learned_paper"][0] < 0.9 * radii["tetrapod_paper"][0]
    assert radii["learned_paper"][1] < 0.9 * radii["tetrapod_paper"][1]


def test_learning_the_mask_with_the_network_end_to_end(tmp_path):
    """design learn on a tiny 3D config: the mask moves, outputs are written, the folder localizes."""
    import tifffile

    cfg = dict(TINY)
    cfg.update({
        "frame": {"height": 24, "width": 24, "pixel_size_nm": 110.0},
        "psf": {"model": "pupil", "patch_px": 15},
        "camera": {"type": "ccd", "qe": 1.0, "e_per_adu": 1.0, "baseline_adu": 30.0, "read_noise_e": 5.0},
        "model": {"kind": "deepstorm3d", "channels": 4, "upsampling": 2, "z_planes": 8, "dilations": [1, 2]},
        "training": {"batch_size": 2, "validation_frames": 2, "validate_every": 2, "steps": 4},
    })
    path = tmp_path / "tiny3d.yaml"
    path.write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    out = tmp_path / "learned"
    result = runner.invoke(app, ["design", "learn", str(path), "-o", str(out), "--steps", "4", "--smoothness", "0.1",
                                 "--crlb-cap", "15"])
    assert result.exit_code == 0, result.output
    history = json.loads((out / "training_log.json").read_text())["history"]
    assert all(np.isfinite(h["worst_crlb_3d_nm"]) and h["worst_crlb_3d_nm"] > 0 for h in history)
    assert all(list(h["recall_by_depth"]) == ["-1000..-500", "-500..0", "0..500", "500..1000"] for h in history)
    for name in ("mask.npy", "mask.mat", "mask.png", "psf.png", "training_curves.png", "model.safetensors",
                 "config.yaml"):
        assert (out / name).is_file(), name
    mask = np.load(out / "mask.npy")
    assert np.abs(mask).max() > 0 and np.abs(mask).max() <= np.pi + 1e-6  # learned from no mask, wrapped
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["psf"]["mask"]["file"] == "mask.npy"
    stack = tmp_path / "s.tif"
    tifffile.imwrite(stack, np.full((2, 24, 24), 40, np.uint16))
    result = runner.invoke(app, ["localize", str(stack), "--model", str(out), "-o", str(tmp_path / "l.csv")])
    assert result.exit_code == 0, result.output
    cfg["model"] = dict(cfg["model"], z_planes=1)
    flat = tmp_path / "tiny2d.yaml"
    flat.write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["design", "learn", str(flat), "-o", str(tmp_path / "f"), "--crlb-cap", "20"])
    assert result.exit_code != 0 and "needs a 3D model" in result.output
    last = np.load(out / "last_mask.npy")
    result = runner.invoke(app, ["design", "learn", str(path), "-o", str(out), "--steps", "6", "--resume"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "last.json").read_text())["step"] == 6
    assert not np.array_equal(np.load(out / "last_mask.npy"), last)  # the resumed run moved the mask on
