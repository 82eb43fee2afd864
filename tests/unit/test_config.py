"""Config contract: presets load and round-trip; bad files give one-line errors naming file and key."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from deepsmlm.config import (
    PhotonConfig,
    SimulationConfig,
    config_from_dict,
    dump_config,
    load_config,
    preset_names,
)
from deepsmlm.errors import UserInputError


def _error(path) -> str:
    with pytest.raises(UserInputError) as info:
        load_config(path)
    return str(info.value)


# --- presets and round trip ---------------------------------------------------------------------

def test_the_documented_presets_are_shipped():
    names = preset_names()
    assert {"epfl2013_bundled_tubes", "epfl2016_2d", "tetrapod_paper"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name", preset_names())
def test_preset_loads_and_names_itself(name):
    cfg = load_config(name)
    assert isinstance(cfg, SimulationConfig)
    assert cfg.name == name


@pytest.mark.parametrize("name", preset_names())
def test_preset_round_trips_through_yaml(name, tmp_path):
    cfg = load_config(name)
    text = dump_config(cfg)
    assert config_from_dict(yaml.safe_load(text)) == cfg
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    assert load_config(path) == cfg
    # dumping again is stable (a resolved config is a fixed point)
    assert dump_config(load_config(path)) == text


def test_non_default_fields_round_trip(tmp_path):
    cfg = config_from_dict({
        "name": "rt",
        "psf": {"model": "pupil", "zernike_rad": {4: 0.3, 11: -0.25}, "blur_sigma_px": [0.5, 1.0],
                "mask": {"file": "mask.npy", "pixel_pitch_um": 30.0, "transpose": True}},
        "emitters": {"count": [2, 9], "z_range_nm": [-400.0, 600.0],
                     "blinking": {"enabled": True, "photon_budget": 5000.0},
                     "structure": {"kind": "ellipsoid", "ellipsoid_semi_axes_nm": [1000.0, 800.0, 500.0]}},
        "camera": {"type": "scmos", "scmos_maps": "maps.npz"},
        "seed": 42,
    })
    back = config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert back == cfg
    assert back.psf.zernike_rad == {4: 0.3, 11: -0.25}
    assert back.emitters.count == (2, 9) and back.emitters.density_per_um2 is None


def test_empty_file_gives_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == SimulationConfig()


# --- unknown keys -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("bogus: 1\n", "bogus"),
        ("psf: {bogus: 1}\n", "psf.bogus"),
        ("psf:\n  gaussian: {sigma_nm: 100.0, bogus: 1}\n", "psf.gaussian.bogus"),
        ("emitters:\n  photons: {distribution: gamma, sigmaa: 1}\n", "emitters.photons.sigmaa"),
    ],
)
def test_unknown_key_names_file_and_dotted_key_in_one_line(tmp_path, text, key):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    msg = _error(path)
    assert "\n" not in msg
    assert str(path) in msg
    assert f"'{key}'" in msg


def test_unknown_key_in_a_plain_dict_names_the_source():
    with pytest.raises(UserInputError) as info:
        config_from_dict({"frame": {"heigth": 10}}, source="my-source")
    msg = str(info.value)
    assert "\n" not in msg and "my-source" in msg and "frame.heigth" in msg


# --- bad files and bad values -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "must_contain"),
    [
        ("psf: {model: gaussian\nframe: [1, 2\n", "YAML"),  # unterminated flow mapping
        ("psf:\n\tmodel: gaussian\n", "YAML"),  # tab indentation
        ("- 1\n- 2\n", "mapping"),  # top level is a list
        ("just a string\n", "mapping"),  # top level is a scalar
        ("psf: {patch_px: 30}\n", "patch_px"),  # even patch
        ("optics: {na: 1.6, n_immersion: 1.518}\n", "na"),  # NA above the immersion index
        ("optics: {na: 1.518, n_immersion: 1.518}\n", "na"),  # NA equal to it
        ("emitters: {density_per_um2: 1.0, count: [1, 5]}\n", "density_per_um2"),  # both rates
        ("emitters: {z_range_nm: [500.0, -500.0]}\n", "z_range_nm"),
        ("frame: {height: abc}\n", "frame.height"),
        ("psf: {model: airy}\n", "psf.model"),  # vectorial is a model since issue 18
        ("camera: {qe: 1.5}\n", "camera.qe"),
        ("camera: {baseline_adu: [40.0, 20.0]}\n", "baseline_adu"),  # range upside down
        ("camera: {read_noise_e: -1.0}\n", "read_noise_e"),
    ],
)
def test_bad_file_or_value_gives_one_line_error_naming_the_file(tmp_path, text, must_contain):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    msg = _error(path)
    assert "\n" not in msg
    assert str(path) in msg
    assert must_contain in msg


@pytest.mark.parametrize("name", ["missing.yaml", "missing.yml", "sub/missing.yaml"])
def test_missing_file_names_it(tmp_path, name):
    path = tmp_path / name
    msg = _error(path)
    assert "\n" not in msg and str(path) in msg
    assert "not found" in msg


def test_directory_is_not_a_config(tmp_path):
    msg = _error(tmp_path)
    assert "\n" not in msg and str(tmp_path) in msg


def test_binary_file_gives_user_error(tmp_path):
    """A TIFF passed where a config belongs (arguments swapped) is bad input, not a crash."""
    path = tmp_path / "frames.yaml"
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    msg = _error(path)
    assert "\n" not in msg and str(path) in msg


def test_unknown_preset_lists_available_presets():
    msg = _error("no_such_preset")
    assert "\n" not in msg
    assert "no_such_preset" in msg
    for name in preset_names():
        assert name in msg


# --- photon statistics --------------------------------------------------------------------------

PHOTON_CASES = [
    PhotonConfig(distribution="gamma", shape=3.0, scale=3000.0),
    PhotonConfig(distribution="gamma", shape=1.5, scale=400.0),
    PhotonConfig(distribution="uniform", low=500.0, high=4500.0),
    PhotonConfig(distribution="lognormal", mean=2000.0, sigma=0.3),
    PhotonConfig(distribution="lognormal", mean=750.0, sigma=0.8),
    PhotonConfig(distribution="constant", low=1234.0),
]


@pytest.mark.parametrize("cfg", PHOTON_CASES, ids=lambda c: c.distribution)
def test_photon_expected_matches_analytic_mean(cfg):
    analytic = {
        "gamma": cfg.shape * cfg.scale,
        "uniform": (cfg.low + cfg.high) / 2,
        "lognormal": cfg.mean,  # `mean` is the mean of the photon count itself
        "constant": cfg.low,
    }[cfg.distribution]
    assert cfg.expected() == pytest.approx(analytic, rel=1e-12)


@pytest.mark.parametrize("cfg", PHOTON_CASES, ids=lambda c: c.distribution)
def test_photon_expected_matches_what_the_simulator_draws(cfg):
    from deepsmlm.simulation.emitters import sample_photons

    n = 200_000
    draws = sample_photons(cfg, n, torch.Generator().manual_seed(7)).double()
    assert draws.shape == (n,)
    std = float(draws.std())
    # 5 standard errors (and float32 rounding for the constant case)
    tol = 5 * std / math.sqrt(n) + 1e-3 * cfg.expected()
    assert float(draws.mean()) == pytest.approx(cfg.expected(), abs=tol)
