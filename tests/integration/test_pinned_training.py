"""Training pinned by bytes (issue 19: restructuring the trainer must not change what it learns): a few
seeded steps of `train` (2D and 3D density networks) and of `design learn` / `design multicolor` (network and mask together)
on tiny configs give exactly the weights, normalisation, threshold and mask recorded here. A deliberate
change of training must update these hashes in the same commit and say why."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

from deepsmlm.cli import app
from tests.unit.test_deepstorm2d import tiny_config
from tests.integration.test_multicolor import TINY_2DYE
from tests.unit.test_deepstorm3d import tiny_3d_config

TINY_PUPIL_3D = {**tiny_3d_config().model_dump(mode="json"),
                 "psf": {"model": "pupil", "patch_px": 15},
                 "training": {"batch_size": 2, "validation_frames": 2, "validate_every": 2, "steps": 4}}

RUNS = {
    "train-2d": (["train"], tiny_config().model_dump(mode="json"), []),
    "train-3d": (["train"], tiny_3d_config().model_dump(mode="json"), []),
    "design-learn": (["design", "learn"], TINY_PUPIL_3D, ["--smoothness", "0.1", "--crlb-cap", "15"]),
    "design-multicolor": (["design", "multicolor"], TINY_2DYE, ["--basis", "zernike", "--max-noll", "15"]),
}

PINNED = {
    "train-2d": "fb58d4c7de4811655c61bfb493354c85c683a2af06f8daf47a2dbaae3a41c7ce",
    "train-3d": "b36f390cae99fcc56be3418b14ae1f1a274c99bb0bdea2b95ea06f3ed364e6ab",
    "design-learn": "28132e060cbd95fe5c54ddf7537a822f51091ea2f2c0b754057d69f9dabec78a",
    "design-multicolor": "d99fff7a57ccdb36e2b897ff67b163b0d92c904271363f4d8875000a504dbf43",
}


def folder_digest(out: Path) -> str:
    """sha256 over the saved network's tensors (by name), the config's normalisation and threshold, and
    the learned mask when there is one."""
    h = hashlib.sha256()
    weights = load_file(str(out / "model.safetensors"))
    for name in sorted(weights):
        h.update(name.encode())
        h.update(np.ascontiguousarray(weights[name]).tobytes())
    model = yaml.safe_load((out / "config.yaml").read_text())["model"]
    h.update(repr([model["input_offset_photons"], model["input_scale_photons"], model["threshold"]]).encode())
    if (out / "mask.npy").is_file():
        h.update(np.load(out / "mask.npy").tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("run", list(RUNS))
def test_seeded_training_steps_give_the_pinned_weights(runner, tmp_path, run, one_thread):
    command, config, extra = RUNS[run]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "model"
    res = runner.invoke(app, [*command, str(path), "-o", str(out), "--steps", "4", *extra])
    assert res.exit_code == 0, res.output
    digest = folder_digest(out)
    assert digest == PINNED[run], digest
