"""`train` never replaces a trained model unasked, resumes only the run it was started as, refuses a
damaged checkpoint or an empty time budget in one line, follows the time budget it is given, says how many
steps this session ran, and warns when a model it trained (or is asked to use) validated near zero."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from deepsmlm.cli import app
from deepsmlm.config import config_from_dict
from deepsmlm.models.registry import JACCARD_FLOOR, jaccard_warning, recorded_jaccard, shipped_models
from deepsmlm.training.trainer import Trainer
from tests.unit.test_deepstorm2d import tiny_config

TINY = {**tiny_config().model_dump(mode="json"), "name": "tiny"}  # the unit tests' tiny 2D run, as YAML data


def train(runner, config: Path, out: Path, *extra: str):
    return runner.invoke(app, ["train", str(config), "-o", str(out), *extra])


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def tiny(write_yaml) -> Path:
    return write_yaml(TINY, name="tiny.yaml")


@pytest.fixture
def trained(runner, tiny, tmp_path) -> Path:
    """A model folder after 2 training steps of TINY (with its resumable checkpoint)."""
    out = tmp_path / "model"
    res = train(runner, tiny, out, "--steps", "2")
    assert res.exit_code == 0, (res.stdout, res.stderr)
    return out


def test_training_into_a_trained_model_folder_is_refused_unless_asked(runner, tiny, trained, one_line):
    before = digests(trained)
    res = train(runner, tiny, trained, "--steps", "2")
    assert res.exit_code == 2
    line = one_line(res.stderr)
    assert str(trained) in line and "--resume" in line and "--overwrite" in line
    assert digests(trained) == before
    res = train(runner, tiny, trained, "--steps", "2", "--resume", "--overwrite")
    assert res.exit_code == 2 and "not both" in one_line(res.stderr)
    res = train(runner, tiny, trained, "--steps", "2", "--overwrite")
    assert res.exit_code == 0, res.stderr
    assert json.loads((trained / "last.json").read_text())["step"] == 2  # trained anew, not continued


def test_resume_with_another_config_names_the_keys_that_differ(runner, write_yaml, trained, one_line):
    other = json.loads(json.dumps(TINY))
    other["emitters"]["photons"]["low"] = 900.0
    other["training"]["learning_rate"] = 0.01
    res = train(runner, write_yaml(other, name="other.yaml"), trained, "--steps", "4", "--resume")
    assert res.exit_code == 2
    line = one_line(res.stderr)
    assert "emitters.photons.low" in line and "training.learning_rate" in line and str(trained) in line
    # the values the trainer fills in, and the run's name, are no difference
    renamed = {**TINY, "name": "renamed"}
    res = train(runner, write_yaml(renamed, name="renamed.yaml"), trained, "--steps", "4", "--resume")
    assert res.exit_code == 0, res.stderr


def test_a_resumed_run_reports_this_sessions_steps_and_the_total(runner, tiny, trained):
    res = train(runner, tiny, trained, "--steps", "4", "--resume")
    assert res.exit_code == 0, res.stderr
    assert "trained 2 steps (step 4 in all)" in res.stdout


@pytest.mark.parametrize(
    ("name", "damage", "fragment"),
    [
        ("last.safetensors", lambda b: b[: len(b) // 2], "damaged checkpoint"),
        ("last.safetensors", lambda b: b"\x13garbage" * 100, "damaged checkpoint"),
        ("last.json", lambda b: b[: len(b) // 2], "damaged checkpoint"),
        ("last.json", lambda b: b"\xff\xfe garbage", "damaged checkpoint"),
        ("last.json", lambda b: json.dumps({k: v for k, v in json.loads(b).items() if k != "step"}).encode(),
         "'step'"),
        ("last.json", lambda b: json.dumps({**json.loads(b), "param_groups": [{}]}).encode(), "optimizer state"),
    ],
)
def test_a_damaged_checkpoint_is_one_line_naming_the_file(runner, tiny, trained, one_line, name, damage, fragment):
    path = trained / name
    path.write_bytes(damage(path.read_bytes()))
    res = train(runner, tiny, trained, "--steps", "4", "--resume")
    assert res.exit_code == 2
    line = one_line(res.stderr)
    assert str(path) in line and fragment in line


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf"])
def test_an_empty_time_budget_is_refused_before_any_work(runner, tiny, tmp_path, one_line, minutes):
    out = tmp_path / "model"
    res = train(runner, tiny, out, "--minutes", minutes)
    assert res.exit_code == 2
    assert f"--minutes {minutes}" in one_line(res.stderr)
    assert not out.exists()


@pytest.mark.parametrize(("command", "preset"), [("learn", "learned_paper"), ("multicolor", "multicolor_2dye")])
def test_the_design_commands_refuse_an_empty_time_budget_too(runner, tmp_path, one_line, command, preset):
    out = tmp_path / "design"
    res = runner.invoke(app, ["design", command, preset, "-o", str(out), "--minutes", "0"])
    assert res.exit_code == 2
    assert "--minutes 0" in one_line(res.stderr)
    assert not out.exists()


def test_a_cosine_schedule_follows_the_time_budget(tmp_path):
    """With --minutes the learning rate decays over the minutes given (not over training.steps): the last
    step of a 2.4 s budget runs at a clearly decayed rate (near the 5 % floor on an idle machine; a busy one
    starts its last step earlier in the budget), while step/steps is still ~0 (a rate ≈ 100 %)."""
    cfg = config_from_dict({**TINY, "training": {**TINY["training"], "lr_schedule": "cosine", "steps": 100_000,
                                                 "validate_every": 100_000}})
    loop = Trainer(cfg, tmp_path / "m").loop
    summary = loop.run(minutes=0.04)
    assert summary["steps"] < 1000
    assert loop.optim.param_groups[0]["lr"] < 0.6 * cfg.training.learning_rate  # past 45 % of the time budget
    saved = json.loads((tmp_path / "m" / "last.json").read_text())
    assert saved["trained_s"] == pytest.approx(2.4, abs=1.0)  # a resumed run continues this budget's clock


def test_a_near_zero_validation_score_is_warned_about_after_training_and_before_localizing(
        runner, trained, tmp_path, one_line):
    jaccard = recorded_jaccard(trained)
    assert jaccard is not None and jaccard < JACCARD_FLOOR  # 2 steps teach the network nothing
    from deepsmlm.assembly.simulators import build_simulator
    from deepsmlm.simulation.movies import simulate_to_folder

    movie = config_from_dict({**TINY, "frames": 2})
    simulate_to_folder(movie, tmp_path / "movie", build_simulator(movie))
    res = runner.invoke(app, ["localize", str(tmp_path / "movie" / "frames.tif"), "--model", str(trained),
                              "-o", str(tmp_path / "locs.csv")])
    assert res.exit_code == 0, res.stderr
    warning = [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and re.search(r"validation Jaccard of only 0\.\d{3}", warning[0])
    assert str(trained) in warning[0]


def test_training_ending_near_zero_warns(runner, tiny, tmp_path):
    res = train(runner, tiny, tmp_path / "model", "--steps", "2")
    assert res.exit_code == 0
    assert "warning:" in res.stderr and "validation Jaccard of only" in res.stderr


def test_shipped_models_validated_well_above_the_floor():
    for name in shipped_models():
        jaccard = recorded_jaccard(name)
        assert jaccard is not None and jaccard > 4 * JACCARD_FLOOR, name
        assert jaccard_warning(jaccard, name) is None


def test_a_model_folder_without_a_readable_log_is_not_judged(tmp_path):
    (tmp_path / "training_log.json").write_text("{not json")
    assert recorded_jaccard(tmp_path) is None
    (tmp_path / "training_log.json").write_text(json.dumps({"history": [{"jaccard": math.nan}]}))
    assert recorded_jaccard(tmp_path) is None


def test_training_that_cannot_fit_in_memory_is_refused_before_any_work(runner, write_yaml, tmp_path, one_line):
    big = {**TINY, "frame": {"height": 100000, "width": 100000, "pixel_size_nm": 100.0}}
    out = tmp_path / "model"
    res = train(runner, write_yaml(yaml.safe_load(yaml.safe_dump(big)), name="big.yaml"), out, "--steps", "1")
    assert res.exit_code == 2
    line = one_line(res.stderr)
    assert "training on batches of 2 frames of 100000×100000 px" in line and "GiB of memory" in line
    assert not out.exists()


def test_init_from_starts_from_the_models_weights_and_normalisation(runner, tiny, trained, tmp_path, one_line):
    """Fine-tuning: `--init-from MODEL` starts from MODEL's weights and input normalisation (a fresh
    optimiser and schedule); a model of another network, or together with --resume, is one line."""
    from safetensors.torch import load_file

    from deepsmlm.api.training import warm_start
    from deepsmlm.config import load_config
    from deepsmlm.models.registry import load_model

    source_cfg, source_net = load_model(trained)
    cfg, weights = warm_start(load_config(tiny), str(trained))
    assert (cfg.model.input_offset_photons, cfg.model.input_scale_photons) == \
        (source_cfg.model.input_offset_photons, source_cfg.model.input_scale_photons)
    assert all((weights[k] == v).all() for k, v in source_net.state_dict().items())
    out = tmp_path / "tuned"
    res = train(runner, tiny, out, "--steps", "1", "--init-from", str(trained))
    assert res.exit_code == 0, res.stderr
    tuned, source = load_file(str(out / "model.safetensors")), load_file(str(trained / "model.safetensors"))
    params = [name for name, _ in source_net.named_parameters()]  # not BN statistics and counters
    step = max(float((tuned[k] - source[k]).abs().max()) for k in params)
    assert 0 < step < 0.01  # one Adam step (≤ lr 1e-3 a parameter) away from the source, not a fresh network
    res = train(runner, tiny, tmp_path / "other", "--steps", "1", "--init-from", "tetrapod-3d")
    assert res.exit_code == 2
    line = one_line(res.stderr)
    assert "--init-from tetrapod-3d: its network differs from the config's at" in line and "model.kind" in line
    res = train(runner, tiny, trained, "--steps", "3", "--resume", "--init-from", str(trained))
    assert res.exit_code == 2 and "not both" in one_line(res.stderr)
