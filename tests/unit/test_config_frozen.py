"""Configs are read-only once loaded; a variant is a new config from ``updated``, validated like a file."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from deepsmlm.config import EmitterConfig, MaskConfig, SimulationConfig, dump_config, load_config, updated
from deepsmlm.errors import UserInputError


def _error(cfg, changes, **kwargs) -> str:
    with pytest.raises(UserInputError) as info:
        updated(cfg, changes, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("assign", [
    lambda c: setattr(c, "frames", 3),
    lambda c: setattr(c.frame, "height", 32),
    lambda c: setattr(c.psf, "mask", None),
    lambda c: setattr(c.emitters.photons, "low", 1.0),
])
def test_assigning_a_field_of_a_loaded_config_raises(assign):
    cfg = load_config("tetrapod_paper")
    with pytest.raises(ValidationError, match="frozen"):
        assign(cfg)
    assert cfg == load_config("tetrapod_paper")


def test_updated_is_a_new_validated_config_and_leaves_the_original_unchanged():
    cfg = load_config("tetrapod_paper")
    before = dump_config(cfg)
    mask = MaskConfig(file="other.npy", pixel_pitch_um=20.0)
    out = updated(cfg, {"frame.height": 96, "psf.mask": mask, "model.threshold": 0.4, "seed": 7})
    assert dump_config(cfg) == before
    assert (out.frame.height, out.frame.width, out.psf.mask, out.model.threshold, out.seed) == (96, 121, mask, 0.4, 7)
    # everything not named stays as it was
    assert yaml.safe_load(dump_config(out))["emitters"] == yaml.safe_load(before)["emitters"]
    assert updated(cfg, {"psf.mask": None}).psf.mask is None
    # plain values are validated (coerced) as in a file; a section is updated on its own
    assert updated(cfg, {"emitters.count": [3, 3]}).emitters.count == (3, 3)
    assert updated(cfg.psf, {"patch_px": 41}).patch_px == 41


def test_the_default_emitter_rate_is_set_while_validating():
    assert EmitterConfig().density_per_um2 == 1.0
    assert EmitterConfig(count=(2, 4)).density_per_um2 is None
    cfg = updated(SimulationConfig(), {"emitters.density_per_um2": None, "emitters.count": (2, 4)})
    assert (cfg.emitters.density_per_um2, cfg.emitters.count) == (None, (2, 4))
    assert updated(cfg, {"emitters.count": None}).emitters.density_per_um2 == 1.0


@pytest.mark.parametrize("changes, message", [
    ({"frame.height": 0}, "config update: frame.height: Input should be greater than or equal to 1 (got 0)"),
    ({"model.threshold": 1.5}, "config update: model.threshold: Input should be less than or equal to 1 (got 1.5)"),
    ({"psf.patch_px": 30}, "config update: psf: patch_px must be odd, got 30"),
    ({"emitters.count": (2, 4)}, "config update: emitters: give either density_per_um2 or count, not both"),
    ({"psf.no_such_key": 1}, "config update: unknown config key 'psf.no_such_key'"),
    ({"no_such_section.key": 1}, "config update: unknown config key 'no_such_section'"),
    ({"frame.height.rows": 1}, "config update: frame.height.rows: frame.height is 64, not a config section"),
])
def test_an_invalid_update_is_one_line_naming_the_key(changes, message):
    assert _error(SimulationConfig(), changes) == message


def test_an_update_names_its_source():
    message = _error(load_config("epfl2016_2d"), {"psf.mask.file": "m.npy"}, source="--mask")
    assert message == "--mask: psf.mask.file: psf.mask is None, not a config section"


def test_a_model_folders_relative_files_resolve_against_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    data = SimulationConfig().model_dump(mode="json")
    data["psf"].update(model="pupil", mask={"file": "mask.npy", "pixel_pitch_um": 30.0})
    data["camera"].update(type="scmos", scmos_maps="maps/camera.npz")
    (folder / "config.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    cfg = load_config("model/config.yaml")
    assert cfg.psf.mask.file == str(folder.resolve() / "mask.npy")
    assert cfg.camera.scmos_maps == str(folder.resolve() / "maps" / "camera.npz")
    with pytest.raises(ValidationError, match="frozen"):
        cfg.psf.mask.file = "mask.npy"
    # package and shared-data names are kept as written
    data["psf"]["mask"]["file"] = "data:deepstorm3d_tetrapod/mask.mat"
    (folder / "config.yaml").write_text(yaml.safe_dump(data))
    assert load_config(folder / "config.yaml").psf.mask.file == "data:deepstorm3d_tetrapod/mask.mat"
