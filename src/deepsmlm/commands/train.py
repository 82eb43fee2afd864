"""`deepsmlm train`: train a model on simulation matched to a config."""

from __future__ import annotations

from pathlib import Path

from deepsmlm.config import SimulationConfig, load_config
from deepsmlm.errors import UserInputError
from deepsmlm.training.trainer import Trainer


def training_config(config: str, out: Path, steps: int | None, minutes: float | None,
                    resume: bool) -> SimulationConfig:
    """The config a training run starts from: the given one, or the run folder's own when resuming."""
    if steps is not None and minutes is not None:
        raise UserInputError("give either --steps or --minutes, not both")
    if not resume:
        return load_config(config)
    if not (out / "config.yaml").is_file():
        raise UserInputError(f"{out}: nothing to resume (no config.yaml)")
    return load_config(out / "config.yaml")


def run_train(config: str, out: Path, steps: int | None, minutes: float | None, resume: bool, device: str) -> None:
    cfg = training_config(config, out, steps, minutes, resume)
    trainer = Trainer(cfg, out, device)
    if resume:
        trainer.resume()
    summary = trainer.run(steps=steps, minutes=minutes)
    print(f"trained {summary['steps']} steps in {summary['seconds']:.0f} s; best validation Jaccard "
          f"{summary['best_jaccard']:.3f}; model in {out}")
