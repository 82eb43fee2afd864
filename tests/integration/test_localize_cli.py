"""`deepsmlm localize`: end to end on a small model folder, and one clean line for each bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from deepsmlm.cli import app
from deepsmlm.config import updated
from deepsmlm.io.localization_files import read_localizations
from deepsmlm.io.tiff import write_stack
from deepsmlm.models.registry import build_network, save_model
from tests.unit.test_deepstorm2d import tiny_config


@pytest.fixture
def model_dir(tmp_path):
    cfg = updated(tiny_config(), {"model.input_offset_photons": 10.0, "model.input_scale_photons": 100.0})
    save_model(tmp_path / "model", cfg, build_network(cfg.model))
    return tmp_path / "model"


def frames(n=3, value=140, shape=(16, 16)):
    return np.full((n, *shape), value, dtype=np.uint16)


def run(runner, *args):
    result = runner.invoke(app, ["localize", *map(str, args)])
    return result.exit_code, result.output


def test_localize_writes_locs_and_render(runner, tmp_path, model_dir):
    write_stack(tmp_path / "s.tif", frames(), pixel_size_nm=100.0)
    code, out = run(runner, tmp_path / "s.tif", "--model", model_dir, "-o", tmp_path / "l.csv",
                    "--render", tmp_path / "sr.png")
    assert code == 0, out
    locs = read_localizations(tmp_path / "l.csv")
    assert set(locs.table["frame"].unique()) <= {0, 1, 2}
    sr = tifffile.imread(tmp_path / "sr.tif")
    assert sr.dtype == np.float32 and sr.shape == (64, 64)  # ×4 upsampling of 16×16
    assert "frames/s" in out


@pytest.mark.parametrize("case,needle", [
    ("pixel", "pixel size 160"),
    ("nan", "NaN"),
    ("negative", "negative"),
    ("camera", "below the baseline"),
])
def test_bad_stacks_fail_in_one_line_without_output(runner, tmp_path, model_dir, case, needle):
    stack = tmp_path / "s.tif"
    if case == "pixel":
        write_stack(stack, frames(), pixel_size_nm=160.0)
    elif case == "nan":
        data = frames().astype(np.float32)
        data[1, 3, 3] = np.nan
        tifffile.imwrite(stack, data, photometric="minisblack")
    elif case == "negative":
        data = frames().astype(np.float32)
        data[2, 0, 0] = -5
        tifffile.imwrite(stack, data, photometric="minisblack")
    else:
        tifffile.imwrite(stack, frames(value=3), photometric="minisblack")  # baseline-subtracted data given to a baseline-100 model
    code, out = run(runner, stack, "--model", model_dir, "-o", tmp_path / "l.csv")
    assert code == 2 and needle in out and len(out.strip().splitlines()) == 1, out
    assert not (tmp_path / "l.csv").exists()


def test_missing_weights_and_unknown_model(runner, tmp_path, model_dir):
    write_stack(tmp_path / "s.tif", frames(), pixel_size_nm=100.0)
    (model_dir / "model.safetensors").unlink()
    code, out = run(runner, tmp_path / "s.tif", "--model", model_dir, "-o", tmp_path / "l.csv")
    assert code == 2 and "model.safetensors" in out
    code, out = run(runner, tmp_path / "s.tif", "--model", "no-such-model", "-o", tmp_path / "l.csv")
    assert code == 2 and "shipped" in out


def test_empty_stack_is_refused(runner, tmp_path, model_dir):
    (tmp_path / "empty").mkdir()
    code, out = run(runner, tmp_path / "empty", "--model", model_dir, "-o", tmp_path / "l.csv")
    assert code == 2 and len(out.strip().splitlines()) == 1
