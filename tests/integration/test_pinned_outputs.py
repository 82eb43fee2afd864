"""Behaviour pinned by bytes (issue 19: structural changes must not change results): for every shipped
model and the classic fitter, a seeded `simulate` of the model's own config followed by `localize` gives
exactly the localization file recorded here. A change of a shipped model, of the physics or of the
post-processing must update these hashes in the same commit and say why."""

from __future__ import annotations

import hashlib

import pytest

from deepsmlm.cli import app
from deepsmlm.models.registry import resolve_model_dir
from deepsmlm.optics.masks import shared_data_root

# sha256 of the ThunderSTORM CSV written by `localize` (recorded on this project's machines)
PINNED = {
    "default-2d": "c0fb3e1d3c41d745840b561a1a25f8b86ebc3bd13391871bd4a45ba608093196",
    "tetrapod-3d": "0a48b57c4d86d1dff2adc50ac54cb476b72cb5b886feaf6c0a3af48e4dddcca7",
    "learned-3d": "e7026e1614bde0218193221fe1805ca7c0b28ea49b35adad4aef0e0ca20573c7",
    "multicolor-2dye": "73a4e23e498b6c35c9fbcf50a5c9f1aaf22ab1de600f7607b791da0f8bd4e4fc",
    "epfl2016-as-3d": "c702d2bf83dba099c34bd774f0d9e00477c498e5989414d6e1c88e9c9280e679",
    "locnet-tetrapod": "c9c38f071ba0984e1a84ebe864f9b4d885c1b056dc47c2b7e261593e62d8121a",
    "locnet-2d": "9def3153826cfd5709437c342f3c299e4167b82fdd2bade6a204066107178eef",
    "gaussian-mle": "e5f8804fbbf47b53d5dea2fa1a687f889407c1a36c7bf01237cc604ce4f0024e",
}


def config_of(model: str) -> str:
    return "epfl2016_2d" if model == "gaussian-mle" else str(resolve_model_dir(model) / "config.yaml")


def needs_data(model: str):
    """The printed Tetrapod mask (tetrapod-3d's, locnet-tetrapod's) lives in the shared reference data, not in
    the package."""
    return pytest.param(model, marks=pytest.mark.skipif("tetrapod" in model and shared_data_root() is None,
                                                      reason="shared reference data not found"))


@pytest.mark.parametrize("model", [needs_data(m) for m in PINNED])
def test_seeded_simulate_then_localize_gives_the_pinned_file(runner, tmp_path, model, one_thread):
    sim = tmp_path / "sim"
    res = runner.invoke(app, ["simulate", config_of(model), "-o", str(sim), "--frames", "3", "--seed", "19"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "locs.csv"
    args = ["--config", "epfl2016_2d"] if model == "gaussian-mle" else []
    res = runner.invoke(app, ["localize", str(sim / "frames.tif"), "--model", model, *args, "-o", str(out)])
    assert res.exit_code == 0, res.output
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert len(out.read_text().splitlines()) > 3  # a few localizations, not an empty table
    assert digest == PINNED[model], digest
