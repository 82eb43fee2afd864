"""Config values out of range are refused in one line naming the key, the value and the limit; files a
config names (sCMOS maps) are found relative to it and checked for what they hold."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from deepsmlm.config import config_from_dict, load_config
from deepsmlm.errors import UserInputError
from deepsmlm.models.registry import resolve_model_dir, shipped_models
from deepsmlm.physics.camera import Camera


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("emitters: {count: [50, 5]}", ("emitters.count", "50", "exceeds high 5")),
        ("emitters: {count: [-5, -1]}", ("emitters.count", "-5", "below 0")),
        ("frame: {pixel_size_nm: .inf}", ("frame.pixel_size_nm", "finite", "inf")),
        ("frame: {pixel_size_nm: .nan}", ("frame.pixel_size_nm", "finite", "nan")),
        ("emitters: {z_range_nm: [0.0, .inf]}", ("emitters.z_range_nm", "finite")),
        ("camera: {baseline_adu: [90.0, .inf]}", ("camera.baseline_adu", "finite")),
        ("model: {input_scale_photons: .nan}", ("model.input_scale_photons", "finite")),
        ("background: {photons_per_px: [-50, -10]}", ("background.photons_per_px", "-50", "below 0")),
        ("background: {photons_per_px: [50, 10]}", ("background.photons_per_px", "50", "exceeds high 10")),
        ("emitters: {photons: {distribution: uniform, low: 6000, high: 100}}",
         ("emitters.photons", "uniform low", "6000", "exceeds high 100")),
        ("training: {density_range_per_um2: [3, 1]}", ("training.density_range_per_um2", "exceeds high 1")),
        ("training: {density_range_per_um2: [-1, 1]}", ("training.density_range_per_um2", "below 0")),
        ("training: {density_range_per_um2: [0, 0]}", ("training.density_range_per_um2", "high must be > 0")),
        ("seed: 9223372036854775808", ("seed", "9223372036854775808", "less than")),
        ("seed: -1", ("seed", "-1", "greater than or equal to 0")),
        ("training: {seed: 100000000000000000000000}", ("training.seed", "less than")),
        ("frame: {height: yes}", ("frame.height", "True", "whole number of pixels")),
        ("psf: {zernike_rad: {0: 0.2}}", ("psf.zernike_rad", "Noll index 0", "1 … 231")),
        ("psf: {pupil_amplitude: {7: -0.5}}", ("psf.pupil_amplitude", "order 7", "1 … 6")),
        ("emitters: {structure: {kind: ellipsoid, ellipsoid_semi_axes_nm: [0, 1000, 1000]}}",
         ("emitters.structure.ellipsoid_semi_axes_nm", "> 0")),
        ("model: {threshold: 1.5}", ("model.threshold", "1.5", "less than or equal to 1")),
        ("model: {kind: deepstorm3d, architecture: paper, upsampling: 3, z_planes: 4}",
         ("model", "upsampling 3", "power of 2")),
    ],
)
def test_out_of_range_value_is_one_line_naming_key_value_and_limit(tmp_path, text, fragments):
    path = tmp_path / "cfg.yaml"
    path.write_text(text + "\n")
    with pytest.raises(UserInputError) as info:
        load_config(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_unused_photon_bounds_and_shipped_configs_still_load():
    """``high`` below ``low`` matters only for the uniform distribution; every shipped config is valid."""
    cfg = config_from_dict({"emitters": {"photons": {"distribution": "constant", "low": 6000}}})
    assert cfg.emitters.photons.expected() == 6000
    for name in shipped_models():
        load_config(resolve_model_dir(name) / "config.yaml")


def _maps(path: Path, shape=(8, 8)) -> Path:
    np.savez(path, offset=np.full(shape, 100.0), variance=np.full(shape, 4.0), gain=np.full(shape, 2.0))
    return path


def test_scmos_maps_are_found_beside_their_config_from_anywhere(tmp_path, monkeypatch):
    folder = tmp_path / "experiment"
    folder.mkdir()
    _maps(folder / "maps.npz")
    (folder / "cfg.yaml").write_text("frame: {height: 8, width: 8}\ncamera: {type: scmos, scmos_maps: maps.npz}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path(os.path.relpath(folder / "cfg.yaml")))
    assert Path(cfg.camera.scmos_maps) == (folder / "maps.npz").resolve()
    camera = Camera(cfg.camera, (8, 8))
    assert float(camera.offset.mean()) == 100.0 and float(camera.adu_per_e.mean()) == 2.0


@pytest.mark.parametrize(
    ("name", "write", "fragment"),
    [
        ("maps.npy", lambda p: np.save(p, np.ones((8, 8))), "a single array, not sCMOS maps"),
        ("maps.npz", lambda p: p.write_bytes(b"PK\x03\x04" + bytes(200)), "not readable as sCMOS maps"),
        ("maps.npz", lambda p: np.savez(p, offset=np.ones((8, 8))), "missing sCMOS map(s) variance, gain"),
        ("maps.npz", lambda p: np.savez(p, offset=np.ones(8), variance=np.ones(8), gain=np.ones(8)),
         "expected a 2D (rows, columns) map"),
        ("maps.npz", lambda p: np.savez(p, offset=np.array(["a"] * 64).reshape(8, 8), variance=np.ones((8, 8)),
                                        gain=np.ones((8, 8))), "cannot read sCMOS maps"),
    ],
)
def test_wrong_scmos_maps_file_is_one_line_naming_it_and_what_is_expected(tmp_path, name, write, fragment):
    path = tmp_path / name
    write(path)
    cfg = config_from_dict({"camera": {"type": "scmos", "scmos_maps": str(path)}})
    with pytest.raises(UserInputError) as info:
        Camera(cfg.camera)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and fragment in msg


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--seed", str(2**70)), ("'--seed'", "9223372036854775807")),
        (("--seed", "1e23"), ("'--seed'",)),
        (("--seed", "-1"), ("'--seed'", "0")),
        (("--density", "inf"), ("emitters.density_per_um2", "finite", "inf")),
    ],
)
def test_command_line_overrides_are_checked_like_the_config(runner, uniform_gaussian_config, tmp_path, one_line,
                                                           args, fragments):
    from deepsmlm.cli import app

    res = runner.invoke(app, ["simulate", str(uniform_gaussian_config), "-o", str(tmp_path / "sim"), *args])
    assert res.exit_code == 2
    line = one_line(res.stderr)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert not (tmp_path / "sim").exists()
