"""The Python API (``deepsmlm.load_model`` … ``deepsmlm.render``): a notebook session gives what the CLI
writes, an array localizes like its file, bad input is one UserInputError line, importing deepsmlm stays
cheap, and nothing below the CLI (nor any benchmark) reaches into ``deepsmlm.commands``."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

import deepsmlm
import deepsmlm.api
from deepsmlm.cli import app
from deepsmlm.errors import UserInputError
from deepsmlm.progress import ProgressEvent
from tests.unit.test_deepstorm2d import tiny_config

ROOT = Path(__file__).resolve().parents[2]
# (model, the preset its movie is simulated with, the data config it is loaded with)
SESSIONS = [("default-2d", "epfl2013_bundled_tubes", None), ("gaussian-mle", "epfl2016_2d", "epfl2016_2d")]


@pytest.fixture(scope="module")
def movies(tmp_path_factory) -> dict[str, Path]:
    """Four seeded frames of each session's preset, written by ``deepsmlm.simulate``."""
    root = tmp_path_factory.mktemp("movies")
    return {preset: deepsmlm.simulate(preset, frames=4, seed=3, out_dir=root / preset).folder
            for _, preset, _ in SESSIONS}


def cli(runner, *args: str) -> None:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output


def test_importing_deepsmlm_loads_the_api_only_when_used():
    code = ("import json, sys\nimport deepsmlm\nloaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('deepsmlm', 'torch', 'matplotlib', 'rich'))\ndeepsmlm.render\n"
            "print(json.dumps([loaded, 'torch' in sys.modules, deepsmlm.__version__]))")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert done.stderr == ""
    assert json.loads(done.stdout) == [["deepsmlm", "deepsmlm._version"], False, "0.1.0"]


def test_each_api_name_is_the_function_or_class_it_names():
    from deepsmlm.api import analysis, model, simulation, training

    assert deepsmlm.simulate is simulation.simulate and deepsmlm.train is training.train  # not the modules
    assert (deepsmlm.load_model, deepsmlm.Model, deepsmlm.render) == (model.load_model, model.Model, analysis.render)
    assert all(callable(getattr(deepsmlm, name)) for name in deepsmlm.api.__all__)
    assert set(deepsmlm.api.__all__) <= set(dir(deepsmlm))
    with pytest.raises(AttributeError, match="no attribute 'localise'"):
        deepsmlm.localise


@pytest.mark.parametrize("model, preset, config", SESSIONS)
def test_a_session_localizes_exactly_as_the_cli(model, preset, config, movies, runner, tmp_path, capfd):
    frames = movies[preset] / "frames.tif"
    cli(runner, "localize", frames, "--model", model, *(["--config", config] if config else []),
        "-o", tmp_path / "cli.csv")
    capfd.readouterr()
    events: list[ProgressEvent] = []
    m = deepsmlm.load_model(model, config=config)
    locs = m.localize(frames, progress=events.append)
    assert capfd.readouterr() == ("", "")  # silent: progress goes to the callback
    assert (m.name, str(m.device), m.config.frame.pixel_size_nm) == (model, "cpu", 100.0)
    assert (locs.meta.image_shape, locs.meta.n_frames, locs.meta.source) == ((64, 64), 4, str(frames))
    assert [(e.done, e.total) for e in events][-1] == (4, 4)
    deepsmlm.write_localizations(tmp_path / "api.csv", locs)
    assert len(locs) > 4
    assert (tmp_path / "api.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()


@pytest.mark.parametrize("model, preset, config", SESSIONS)
def test_an_array_of_frames_localizes_as_its_file(model, preset, config, movies):
    frames = movies[preset] / "frames.tif"
    m = deepsmlm.load_model(model, config=config)
    from_file = m.localize(frames)
    from_array = m.localize(tifffile.imread(frames).astype(np.float32), pixel_size_nm=100.0)
    pd.testing.assert_frame_equal(from_array.table, from_file.table)
    assert from_array.meta.source == "array"


def test_fitter_options_set_gaussian_mle_and_its_localizer_is_what_localize_runs(movies):
    from deepsmlm.inference.tiling import Tile

    frames = movies["epfl2016_2d"] / "frames.tif"
    free = deepsmlm.load_model("gaussian-mle", config="epfl2016_2d").localize(frames).table["psf_sigma_nm"]
    held = deepsmlm.load_model("gaussian-mle", config="epfl2016_2d", fitter_options={"fit_sigma": False})
    table = held.localize(frames).table
    assert free.nunique() > 1 and table["psf_sigma_nm"].nunique() == 1  # σ fitted, or held at the PSF's
    localizer = held.localizer()
    adu = torch.from_numpy(tifffile.imread(frames).astype(np.float32))
    pd.testing.assert_frame_equal(localizer.localize_tile(localizer.photons(adu), 0, Tile.whole(64, 64)).table, table)


def test_a_simulation_in_memory_is_the_one_written_to_a_folder(movies):
    folder = movies["epfl2013_bundled_tubes"]
    sim = deepsmlm.simulate("epfl2013_bundled_tubes", frames=4, seed=3)
    assert sim.folder is None and sim.frames.dtype == np.uint16
    np.testing.assert_array_equal(sim.frames, tifffile.imread(folder / "frames.tif"))
    written = deepsmlm.read_localizations(folder / "ground_truth.csv")
    assert sim.n_emitters == len(sim.truth) == len(written)
    columns = ["x_nm", "y_nm", "photons"]
    np.testing.assert_allclose(sim.truth.table[columns], written.table[columns], rtol=0, atol=1e-3)  # 3 decimals
    assert (sim.truth.meta.pixel_size_nm, sim.truth.meta.image_shape) == (100.0, (64, 64))


def test_evaluate_and_render_give_what_the_cli_writes(movies, runner, tmp_path):
    folder = movies["epfl2013_bundled_tubes"]
    locs = deepsmlm.load_model("default-2d").localize(folder / "frames.tif")
    deepsmlm.write_localizations(tmp_path / "locs.csv", locs)
    cli(runner, "evaluate", "--gt", folder / "ground_truth.csv", "--pred", tmp_path / "locs.csv",
        "--json", tmp_path / "scores.json")
    scores = deepsmlm.evaluate(folder / "ground_truth.csv", tmp_path / "locs.csv")
    assert scores == json.loads((tmp_path / "scores.json").read_text()) and scores["jaccard"] > 0.3
    assert deepsmlm.evaluate(folder / "ground_truth.csv", locs)["n_tp"] == scores["n_tp"]  # the table itself
    cli(runner, "render", tmp_path / "locs.csv", "-o", tmp_path / "cli.png", "--roi", "0,0,3000,3000")
    image = deepsmlm.render(tmp_path / "locs.csv", 10.0, roi=(0, 0, 3000, 3000), out=tmp_path / "api.png")
    np.testing.assert_array_equal(image, tifffile.imread(tmp_path / "cli.tif"))
    assert (tmp_path / "api.png").read_bytes() == (tmp_path / "cli.png").read_bytes()


def test_train_writes_a_model_that_load_model_reads(tmp_path):
    events: list[ProgressEvent] = []
    summary = deepsmlm.train(tiny_config(), tmp_path / "m", steps=2, progress=events.append)
    assert summary["steps"] == 2 and events[-1].done == events[-1].total == 1.0
    model = deepsmlm.load_model(tmp_path / "m")
    assert not model.classic and model.config.frame.height == 16
    with pytest.raises(UserInputError, match="already holds a trained model"):
        deepsmlm.train(tiny_config(), tmp_path / "m", steps=2)


def empty() -> deepsmlm.Localizations:
    return deepsmlm.Localizations.from_arrays([], [], [])


@pytest.mark.parametrize("call, fragment", [
    (lambda: deepsmlm.load_model("gaussian-mle"), "gaussian-mle needs --config"),
    (lambda: deepsmlm.load_model("no-such-model"), "no-such-model: neither a model folder nor a shipped model"),
    (lambda: deepsmlm.load_model("default-2d", device="tpu"), "'tpu' is not a torch device"),
    (lambda: deepsmlm.load_model("default-2d", fitter_options={"box_px": 9}), "fitter options are gaussian-mle's"),
    (lambda: deepsmlm.load_model("default-2d").localize(np.zeros((64, 64))), "give frames as a (frames, height"),
    (lambda: deepsmlm.load_model("default-2d").localize(np.full((2, 64, 64), "a")), "give frames as a (frames"),
    (lambda: deepsmlm.load_model("default-2d").localize("missing.tif"), "missing.tif: no such file"),
    (lambda: deepsmlm.load_model("default-2d").localize(np.zeros((2, 64, 64)), threshold=2.0),
     "a network's threshold is a summed density between 0 and 1"),
    (lambda: deepsmlm.load_model("default-2d").localize(np.full((2, 64, 64), -1.0), force=True),
     "array: frame 0 (0-based) has negative pixels"),
    (lambda: deepsmlm.simulate("epfl2016_2d", frames=0), "simulate(): frames"),
    (lambda: deepsmlm.evaluate(empty(), empty(), match="best"), "unknown matching method 'best'"),
    (lambda: deepsmlm.render(empty(), 10.0), "no localizations to render"),
    (lambda: deepsmlm.train("epfl2016_2d", "unused", steps=2, minutes=1.0), "give either --steps or --minutes"),
], ids=lambda case: case if isinstance(case, str) else "")
def test_bad_input_raises_one_line(call, fragment):
    with pytest.raises(UserInputError) as err:
        call()
    assert fragment in str(err.value) and "\n" not in str(err.value)


def imports_of_commands(path: Path) -> list[str]:
    """``path``:line of each import of deepsmlm.commands (or of a module in it) in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        if any(n == "deepsmlm.commands" or n.startswith("deepsmlm.commands.") for n in names):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_only_the_cli_imports_the_commands():
    src = ROOT / "src" / "deepsmlm"
    callers = [p for p in src.rglob("*.py") if not {"cli", "commands"} & set(p.relative_to(src).parts)]
    callers += sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(callers) > 40
    assert [hit for p in callers for hit in imports_of_commands(p)] == []


def test_the_import_check_sees_each_form(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import deepsmlm.commands.localize as l\nfrom deepsmlm.commands.simulate import x\n"
                      "from deepsmlm import commands\nfrom deepsmlm.api import simulate\n")
    assert imports_of_commands(module) == ["m.py:1", "m.py:2", "m.py:3"]
