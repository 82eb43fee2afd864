"""Issue 17's matrix: every bad or hostile input ends in one line naming the problem, before any work,
with the user's files untouched and no output left behind.

Each case is (command line, a fragment the one-line message must hold, files that must keep their bytes,
files that must not exist afterwards). Paths in the command are relative to a fresh copy of a small
workspace: a simulated movie with its ground truth, localizations, a trained model folder and configs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.cli import app
from deepsmlm.commands.simulate import apply_overrides
from deepsmlm.config import dump_config, load_config, updated
from deepsmlm.io.images import open_stack
from deepsmlm.io.tiff import write_stack
from deepsmlm.models.registry import resolve_model_dir
from deepsmlm.simulation.movies import simulate_to_folder


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    fragment: str
    untouched: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    configs: dict = field(default_factory=dict)  # file name -> changes to the epfl2013 preset (dotted keys)


def preset_with(changes: dict) -> dict:
    """The epfl2013_bundled_tubes preset as a dict, with dotted keys set to new values."""
    data = load_config("epfl2013_bundled_tubes").model_dump(mode="json")
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return data


CASES = [
    # 1. files are never written over
    Case("render beside the raw movie", ("localize", "movie.tif", "--model", "default-2d", "-o", "locs_new.csv",
                                         "--render", "movie.png"),
         "is the input STACK", untouched=("movie.tif",), absent=("locs_new.csv", "movie.png")),
    Case("render command beside the raw movie", ("render", "locs.csv", "-o", "movie.png"),
         "is not an earlier output of this kind", untouched=("movie.tif", "locs.csv"), absent=("movie.png",)),
    Case("picasso YAML over a config", ("localize", "movie.tif", "--model", "default-2d", "-o", "preset.hdf5"),
         "is not an earlier output of this kind", untouched=("preset.yaml",), absent=("preset.hdf5",)),
    Case("localizations over the movie", ("localize", "movie.tif", "--model", "default-2d", "-o", "movie.tif",
                                          "--format", "thunderstorm"),
         "is the input STACK", untouched=("movie.tif",)),
    Case("drift over its input", ("drift", "locs.csv", "-o", "locs.csv"), "is the input LOCS",
         untouched=("locs.csv",)),
    Case("FRC plot over its input", ("frc", "locs.csv", "--plot", "locs.csv"), "is the input LOCS",
         untouched=("locs.csv",)),
    Case("run report over the movie", ("localize", "movie.tif", "--model", "default-2d", "-o", "new.csv",
                                       "--report", "movie.tif"),
         "give an .html path", untouched=("movie.tif",), absent=("new.csv",)),
    Case("export of a classic fitter", ("export", "gaussian-mle", "-o", "fitter.onnx"),
         "a classic fitter has no network to export", absent=("fitter.onnx",)),
    Case("bfloat16 for a classic fitter", ("localize", "movie.tif", "--model", "gaussian-mle", "--config",
                                           "epfl2016_2d", "--backend", "torch-bf16", "-o", "fit.csv"),
         "is a classic fitter, not a network", untouched=("movie.tif",), absent=("fit.csv",)),
    Case("halo on a Gaussian PSF", ("simulate", "halo.yaml", "-o", "sim"), "halo_fraction 0.2 needs",
         absent=("sim",), configs={"halo.yaml": {"psf.halo_fraction": 0.2, "psf.halo_length_px": 3.0}}),
    Case("batch of a glob that matches nothing", ("batch", "nothing*.tif", "--model", "default-2d", "-o", "out"),
         "no stack matches", absent=("out",)),
    Case("render onto the localizations", ("localize", "movie.tif", "--model", "default-2d", "-o", "out.csv",
                                           "--render", "out.csv"),
         "give a .png path", untouched=("movie.tif",), absent=("out.csv",)),
    Case("evaluate json over the ground truth", ("evaluate", "--gt", "gt.csv", "--pred", "locs.csv", "--json",
                                                 "gt.csv"),
         "is the input --gt", untouched=("gt.csv", "locs.csv")),
    Case("evaluate json over the predictions", ("evaluate", "--gt", "gt.csv", "--pred", "locs.csv", "--json",
                                                "./locs.csv"),
         "is the input --pred", untouched=("gt.csv", "locs.csv")),
    Case("train over a trained model", ("train", "preset.yaml", "-o", "model", "--steps", "2"),
         "already holds a trained model", untouched=("model",)),
    Case("design over a trained model", ("design", "learn", "learned_paper", "-o", "model", "--steps", "2"),
         "already holds a trained model", untouched=("model",)),
    Case("resume with another config", ("train", "epfl2016_2d", "-o", "model", "--steps", "2", "--resume"),
         "the config differs from the one model was trained with", untouched=("model",)),
    Case("train config inside the output folder", ("train", "model/config.yaml", "-o", "model", "--steps", "2",
                                                   "--overwrite"),
         "is the input CONFIG", untouched=("model",)),
    # 5. data the model does not fit
    Case("pixels 1.5x the model's, no metadata", ("localize", "movie150.tif", "--model", "default-2d", "-o",
                                                   "out.csv"),
         "--pixel-size-nm", untouched=("movie150.tif",), absent=("out.csv",)),
    Case("declared pixel size differs", ("localize", "movie150.tif", "--model", "default-2d", "-o", "out.csv",
                                         "--pixel-size-nm", "150"),
         "pixel size 150 nm (declared) differs from 100 nm", absent=("out.csv",)),
    Case("baseline not subtracted as trained", ("localize", "raised.tif", "--model", "default-2d", "-o", "out.csv"),
         "--force", untouched=("raised.tif",), absent=("out.csv",)),
    Case("ten times the photons", ("localize", "bright.tif", "--model", "default-2d", "-o", "out.csv"),
         "photons", untouched=("bright.tif",), absent=("out.csv",)),
    # 7. real-data files
    Case("raw .npy as sCMOS maps", ("localize", "movie.tif", "--model", "gaussian-mle", "--config", "scmos.yaml",
                                    "-o", "out.csv"),
         "maps.npy", absent=("out.csv",),
         configs={"scmos.yaml": {"camera": {"type": "scmos", "qe": 0.9, "scmos_maps": "maps.npy"}}}),
    # 2. output problems found before the work
    Case("output inside a regular file", ("localize", "movie.tif", "--model", "default-2d", "-o",
                                          "movie.tif/locs.csv"),
         "is a file", untouched=("movie.tif",)),
    Case("simulation failing on a missing mask", ("simulate", "bad.yaml", "-o", "sim"), "missing.npy: mask file not found",
         absent=("sim",), configs={"bad.yaml": {"psf.model": "pupil",
                                                "psf.mask": {"file": "missing.npy", "pixel_pitch_um": 30.0}}}),
    Case("unknown output extension", ("localize", "movie.tif", "--model", "default-2d", "-o", "out.xyz"),
         "unknown localization file extension", absent=("out.xyz",)),
    Case("unknown output format", ("localize", "movie.tif", "--model", "default-2d", "-o", "out.csv",
                                   "--format", "foo"),
         "--format 'foo'", absent=("out.csv",)),
    Case("render output not a png", ("render", "locs.csv", "-o", "image.jpg"), "give a .png path",
         absent=("image.jpg", "image.tif")),
    Case("estimate over its config", ("estimate", "movie.tif", "--config", "preset.yaml", "-o", "preset.yaml"),
         "is the input --config", untouched=("preset.yaml", "movie.tif"), absent=("preset.png",)),
    Case("estimate over a user's YAML", ("estimate", "movie.tif", "--config", "preset.yaml", "-o", "mine.yaml"),
         "was not written by `deepsmlm estimate`", untouched=("mine.yaml",), absent=("mine.png",),
         configs={"mine.yaml": {}}),
    Case("camera calibration into the movie", ("calibrate", "camera", "--movie", "movie.tif", "--type", "ccd",
                                               "-o", "movie.tif"),
         "is a file", untouched=("movie.tif",)),
    Case("PSF calibration of a Gaussian config", ("calibrate", "psf", "movie.tif", "--config", "preset.yaml",
                                                  "-o", "cal"),
         "pupil", untouched=("movie.tif",), absent=("cal",)),
    Case("calibration import of a movie", ("calibrate", "import", "movie.tif", "--config", "preset.yaml",
                                           "-o", "cal.yaml"),
         "not a Picasso 3D calibration", untouched=("movie.tif",), absent=("cal.yaml",)),
    Case("measured stack with a negative z step", ("calibrate", "stack", "movie.tif", "--config", "preset.yaml",
                                                   "-o", "stack", "--z-step-nm", "-10"),
         "--z-step-nm -10: must be a finite positive number", untouched=("movie.tif",), absent=("stack",)),
    Case("PSF calibration with an unknown pupil", ("calibrate", "psf", "movie.tif", "--config", "epfl2016_3d",
                                                   "-o", "cal", "--pupil", "foo"),
         "--pupil foo: must be auto, zernike or pixels", untouched=("movie.tif",), absent=("cal",)),
    # 3. values out of range: one line naming the value
    Case("seed not an integer", ("simulate", "epfl2013_bundled_tubes", "-o", "sim", "--seed", "1e23"),
         "'--seed'", absent=("sim",)),
    Case("unknown device", ("localize", "movie.tif", "--model", "default-2d", "-o", "out.csv", "--device", "foo"),
         "'foo' is not a torch device", absent=("out.csv",)),
    Case("cuda on a machine without it", ("simulate", "epfl2013_bundled_tubes", "-o", "sim", "--device", "cuda"),
         "no CUDA device", absent=("sim",)),
    Case("inverted emitter count", ("simulate", "bad.yaml", "-o", "sim"), "emitters.count: [50, 5]: low 50 exceeds high 5",
         absent=("sim",), configs={"bad.yaml": {"emitters.density_per_um2": None, "emitters.count": [50, 5]}}),
    Case("negative emitter count", ("simulate", "bad.yaml", "-o", "sim"), "emitters.count: [-5, -1]: low -5 is below 0",
         absent=("sim",), configs={"bad.yaml": {"emitters.density_per_um2": None, "emitters.count": [-5, -1]}}),
    Case("infinite pixel size", ("simulate", "bad.yaml", "-o", "sim"), "frame.pixel_size_nm: Input should be a finite",
         absent=("sim",), configs={"bad.yaml": {"frame.pixel_size_nm": float("inf")}}),
    Case("absurd density", ("simulate", "bad.yaml", "-o", "sim"), "GiB of memory, more than the",
         absent=("sim",), configs={"bad.yaml": {"emitters.density_per_um2": 1e6}}),
    Case("absurd frame", ("simulate", "bad.yaml", "-o", "sim"), "200000×200000 px",
         absent=("sim",), configs={"bad.yaml": {"frame.height": 200000, "frame.width": 200000}}),
    Case("absurd frame count", ("simulate", "epfl2013_bundled_tubes", "-o", "sim", "--frames", "100000000"),
         "100000000 frames", absent=("sim",)),
    Case("seed beyond torch's range", ("simulate", "epfl2013_bundled_tubes", "-o", "sim", "--seed",
                                       "100000000000000000000000"),
         "'--seed'", absent=("sim",)),
    Case("damaged checkpoint", ("train", "broken/config.yaml", "-o", "broken", "--steps", "3", "--resume"),
         "broken/last.safetensors: damaged checkpoint", untouched=("broken",)),
    Case("damaged checkpoint record", ("train", "broken/config.yaml", "-o", "broken_json", "--steps", "3",
                                       "--resume"),
         "broken_json/last.json", untouched=("broken_json",)),
    # 4. nonsense values
    Case("negative background", ("simulate", "bad.yaml", "-o", "sim"), "background.photons_per_px: [-50, -10]",
         absent=("sim",), configs={"bad.yaml": {"background.photons_per_px": [-50, -10]}}),
    Case("inverted background", ("simulate", "bad.yaml", "-o", "sim"), "low 50 exceeds high 10",
         absent=("sim",), configs={"bad.yaml": {"background.photons_per_px": [50, 10]}}),
    Case("inverted photons", ("simulate", "bad.yaml", "-o", "sim"), "low 5000 exceeds high 1000", absent=("sim",),
         configs={"bad.yaml": {"emitters.photons": {"distribution": "uniform", "low": 5000, "high": 1000}}}),
    Case("zero training time", ("train", "preset.yaml", "-o", "new_model", "--minutes", "0"),
         "--minutes 0: must be a finite number of minutes > 0", absent=("new_model",)),
    Case("evaluate with zero pixel size", ("evaluate", "--gt", "gt.csv", "--pred", "locs.csv", "--pixel-size-nm",
                                           "0"),
         "--pixel-size-nm 0: must be a finite positive number"),
    Case("render with negative pixel size", ("render", "locs.csv", "-o", "image.png", "--pixel-size-nm", "-100"),
         "--pixel-size-nm -100: must be a finite positive number", absent=("image.png", "image.tif")),
    Case("σ-weighted render of a file without σ", ("render", "locs.csv", "-o", "image.png", "--sigma-weighted"),
         "locs.csv: 1750 localization(s) with an unknown (NaN)", untouched=("locs.csv",),
         absent=("image.png", "image.tif")),
    Case("uncertainty filter on a model without σ", ("localize", "movie.tif", "--model", "default-2d", "-o",
                                                      "out.csv", "--max-uncertainty-nm", "20"),
         "--max-uncertainty-nm: model default-2d gives no uncertainty", absent=("out.csv",)),
    Case("negative uncertainty filter", ("localize", "movie.tif", "--model", "gaussian-mle", "--config",
                                         "preset.yaml", "-o", "out.csv", "--max-uncertainty-nm", "-5"),
         "--max-uncertainty-nm -5: must be a finite positive number", absent=("out.csv",)),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A simulated movie (8 frames of the epfl2013 preset), its ground truth, localizations, a model."""
    root = tmp_path_factory.mktemp("workspace")
    cfg = apply_overrides(load_config("epfl2013_bundled_tubes"), frames=8, seed=5, density=None, emitters=None)
    simulate_to_folder(cfg, root / "sim", build_simulator(cfg))
    shutil.move(root / "sim" / "frames.tif", root / "movie.tif")
    shutil.move(root / "sim" / "ground_truth.csv", root / "gt.csv")
    shutil.rmtree(root / "sim")
    shutil.copy(root / "gt.csv", root / "locs.csv")
    shutil.copytree(resolve_model_dir("default-2d"), root / "model")
    (root / "preset.yaml").write_text(dump_config(cfg))
    np.save(root / "maps.npy", np.ones((64, 64)))
    with open_stack(root / "movie.tif") as stack:
        adu = stack[:].astype(np.int64)
    write_stack(root / "raised.tif", (adu + 600).astype(np.uint16), cfg.frame.pixel_size_nm)
    bright = updated(cfg, {"emitters.photons.mean": 10 * cfg.emitters.photons.mean})
    simulate_to_folder(bright, root / "bright", build_simulator(bright))
    shutil.move(root / "bright" / "frames.tif", root / "bright.tif")
    coarse = updated(cfg, {"frame.pixel_size_nm": 150.0})
    simulate_to_folder(coarse, root / "coarse", build_simulator(coarse))
    with open_stack(root / "coarse" / "frames.tif") as stack:
        write_stack(root / "movie150.tif", stack[:], None)  # no pixel size in the file
    shutil.rmtree(root / "bright")
    shutil.rmtree(root / "coarse")
    for name, damage in (("broken", "last.safetensors"), ("broken_json", "last.json")):
        (root / name).mkdir()
        shutil.copy(root / "model" / "config.yaml", root / name / "config.yaml")
        (root / name / "last.safetensors").write_bytes(b"\0" * 64)
        (root / name / "last.json").write_text('{"step": 3}')
        if damage == "last.json":  # a sound tensor file beside a truncated record
            from safetensors.torch import save_file
            import torch

            save_file({"rng": torch.Generator().get_state()}, str(root / name / "last.safetensors"))
            (root / name / "last.json").write_text('{"step": 3, "best_jacc')
    return root


def digest(path: Path) -> str:
    if path.is_dir():
        return "".join(digest(p) for p in sorted(path.rglob("*")) if p.is_file())
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_in_one_line_leaving_files_alone(case, workspace, tmp_path, runner, one_line):
    work = tmp_path / "work"
    shutil.copytree(workspace, work)
    for name, changes in case.configs.items():
        (work / name).write_text(yaml.safe_dump(preset_with(changes), sort_keys=False))
    before = {name: digest(work / name) for name in case.untouched}
    cwd = os.getcwd()
    os.chdir(work)
    try:
        result = runner.invoke(app, list(case.args))
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert line.startswith("error:") and case.fragment in line, line
    for name in case.untouched:
        assert digest(work / name) == before[name], f"{name} changed"
    for name in case.absent:
        assert not (work / name).exists(), f"{name} was written"


def test_duplicate_prediction_rows_are_counted_and_warned(workspace, tmp_path, runner):
    """Exact duplicate rows are not an error, but the user is told, and the JSON counts them."""
    import pandas as pd

    table = pd.read_csv(workspace / "locs.csv")
    doubled = pd.concat([table, table.iloc[:25]], ignore_index=True)
    doubled["id"] = np.arange(1, len(doubled) + 1)
    doubled.to_csv(tmp_path / "doubled.csv", index=False)
    result = runner.invoke(app, ["evaluate", "--gt", str(workspace / "gt.csv"), "--pred", str(tmp_path / "doubled.csv"),
                                 "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert "25 of the predictions rows repeat an earlier row" in " ".join(result.output.split())
    import json

    scores = json.loads((tmp_path / "m.json").read_text())
    assert scores["n_pred_duplicates"] == 25 and scores["n_gt_duplicates"] == 0
    assert scores["n_fp"] == 25  # each duplicate is an extra, unmatched prediction


def test_version():
    from typer.testing import CliRunner

    from deepsmlm import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"deepsmlm {__version__}"


def test_a_render_may_replace_its_own_earlier_render(workspace, tmp_path, runner):
    """The TIFF beside a PNG is refused over foreign files only: rendering twice to one name works."""
    for _ in range(2):
        result = runner.invoke(app, ["render", str(workspace / "locs.csv"), "-o", str(tmp_path / "image.png")])
        assert result.exit_code == 0, result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder_fails_before_work(workspace, tmp_path, runner, one_line):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = runner.invoke(app, ["localize", str(workspace / "movie.tif"), "--model", "default-2d",
                                     "-o", str(locked / "sub" / "locs.csv")])
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 2 and "is not writable" in one_line(result.output)
