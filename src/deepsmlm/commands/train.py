"""`deepsmlm train`: train a model on simulation matched to a config."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from deepsmlm.commands.progress_bars import TRAINING, progress_bar
from deepsmlm.config import SimulationConfig, load_config
from deepsmlm.errors import UserInputError
from deepsmlm.io.outputs import check_output_folder, check_writable_folder
from deepsmlm.models.registry import CONFIG, WEIGHTS, jaccard_warning, load_model
from deepsmlm.training.checkpoint import STATE
from deepsmlm.training.trainer import Trainer

# what the trainer writes into the config it saves: a resumed run may differ from its CONFIG there
TRAINER_FILLED = ("model.input_offset_photons", "model.input_scale_photons", "model.threshold")
LABEL = ("name",)  # only names the run: resuming under another name changes nothing trained


def training_config(config: str, out: Path, steps: int | None, minutes: float | None, resume: bool,
                    overwrite: bool = False, filled: tuple[str, ...] = TRAINER_FILLED) -> SimulationConfig:
    """The config a training run starts from, after checking the run folder before any work: the given
    config for a new run (``out`` must not hold a trained model unless ``overwrite``, nor be where CONFIG
    lives), the folder's own when resuming (CONFIG must equal it up to the keys in ``filled``)."""
    if steps is not None and minutes is not None:
        raise UserInputError("give either --steps or --minutes, not both")
    if minutes is not None and not 0 < minutes < math.inf:
        raise UserInputError(f"--minutes {minutes:g}: must be a finite number of minutes > 0")
    if resume and overwrite:
        raise UserInputError("give either --resume or --overwrite, not both")
    if not resume:
        check_output_folder(out, (CONFIG, WEIGHTS, STATE), {"CONFIG": config})
        if not overwrite:
            check_fresh_folder(out)
        return load_config(config)
    check_writable_folder(out, "-o")
    if not (out / CONFIG).is_file():
        raise UserInputError(f"{out}: nothing to resume (no {CONFIG})")
    saved = load_config(out / CONFIG)
    check_resumable(load_config(config), saved, out, filled)
    return saved


def differing_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves where two nested config dicts differ."""
    keys = []
    for key in sorted(set(a) | set(b), key=str):
        path = f"{prefix}{key}"
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            keys += differing_keys(x, y, f"{path}.")
        elif x != y:
            keys.append(path)
    return keys


def check_resumable(given: SimulationConfig, saved: SimulationConfig, out: Path,
                    filled: tuple[str, ...] = TRAINER_FILLED) -> None:
    """A resumed run continues the run in ``out`` exactly: CONFIG must be the config it was started with
    (up to the run's name and the ``filled`` keys, with everything below them, that training writes)."""
    ignored = (*filled, *LABEL)
    keys = [k for k in differing_keys(given.model_dump(mode="json"), saved.model_dump(mode="json"))
            if not any(k == i or k.startswith(f"{i}.") for i in ignored)]
    if keys:
        shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        raise UserInputError(f"--resume: the config differs from the one {out} was trained with ({out / CONFIG}) "
                             f"at {shown}; resume with that config, or train anew into another folder")


def check_fresh_folder(out: Path) -> None:
    """Training anew must not replace a trained model unless asked to."""
    found = [name for name in (WEIGHTS, STATE) if (out / name).is_file()]
    if found:
        raise UserInputError(f"{out}: already holds a trained model ({found[0]}); give --resume to continue it "
                             f"or --overwrite to replace it")


def steps_run(summary: dict) -> str:
    """'N steps' run in this session, with the run's total when it was resumed."""
    done = f"{summary['session_steps']} steps"
    return done if summary["session_steps"] == summary["steps"] else f"{done} (step {summary['steps']} in all)"


def warm_start(cfg: SimulationConfig, init_from: str) -> tuple[SimulationConfig, dict]:
    """(config, weights) for a run that starts from a trained model's weights (fine-tuning, e.g. to a
    changed PSF): the network must be the config's, and the input normalisation is the model's, so the
    weights see the inputs they were trained on."""
    init_cfg, net = load_model(init_from)
    ignored = ("model.threshold", "model.input_offset_photons", "model.input_scale_photons")
    keys = [k for k in differing_keys(cfg.model.model_dump(mode="json"), init_cfg.model.model_dump(mode="json"),
                                      "model.") if k not in ignored]
    if keys:
        raise UserInputError(f"--init-from {init_from}: its network differs from the config's at {', '.join(keys)}")
    cfg = cfg.model_copy(deep=True)
    cfg.model.input_offset_photons = init_cfg.model.input_offset_photons
    cfg.model.input_scale_photons = init_cfg.model.input_scale_photons
    return cfg, net.state_dict()


def run_train(config: str, out: Path, steps: int | None, minutes: float | None, resume: bool, device: str,
              overwrite: bool = False, init_from: str | None = None) -> None:
    if resume and init_from:
        raise UserInputError("give either --resume or --init-from, not both")
    cfg = training_config(config, out, steps, minutes, resume, overwrite)
    weights = None
    if init_from:
        cfg, weights = warm_start(cfg, init_from)
    trainer = Trainer(cfg, out, device)
    if resume:
        trainer.resume()
    if weights is not None:
        trainer.net.load_state_dict(weights)
    with progress_bar(TRAINING) as progress:
        summary = trainer.run(steps=steps, minutes=minutes, progress=progress)
    print(f"trained {steps_run(summary)} in {summary['seconds']:.0f} s; best validation Jaccard "
          f"{summary['best_jaccard']:.3f}; model in {out}")
    warn_if_weak(summary["best_jaccard"], out)


def warn_if_weak(best_jaccard: float, out: Path) -> None:
    """A warning line on stderr when a finished run's best validation Jaccard is below the floor."""
    warning = jaccard_warning(best_jaccard, f"the model in {out}")
    if warning:
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(warning)}; train longer (--steps, --minutes) "
                                   f"or check the config's physics", highlight=False, soft_wrap=True)
