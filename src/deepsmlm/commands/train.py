"""`deepsmlm train`: train a model on simulation matched to a config (under torchrun, rank 0 alone shows
progress and the summary)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from deepsmlm.api import train
from deepsmlm.commands.progress_bars import TRAINING, progress_bar
from deepsmlm.models.registry import jaccard_warning
from deepsmlm.training.distributed import main_process


def steps_run(summary: dict) -> str:
    """'N steps' run in this session, with the run's total when it was resumed."""
    done = f"{summary['session_steps']} steps"
    return done if summary["session_steps"] == summary["steps"] else f"{done} (step {summary['steps']} in all)"


def run_train(config: str, out: Path, steps: int | None, minutes: float | None, resume: bool, device: str,
              overwrite: bool = False, init_from: str | None = None) -> None:
    shown = main_process()
    with progress_bar(TRAINING, show=shown) as progress:
        summary = train(config, out, steps, minutes, resume, overwrite, init_from, device, progress)
    if not shown:
        return
    print(f"trained {steps_run(summary)} in {summary['seconds']:.0f} s; best validation Jaccard "
          f"{summary['best_jaccard']:.3f}; model in {out}")
    warn_if_weak(summary["best_jaccard"], out)


def warn_if_weak(best_jaccard: float, out: Path) -> None:
    """A warning line on stderr when a finished run's best validation Jaccard is below the floor."""
    warning = jaccard_warning(best_jaccard, f"the model in {out}")
    if warning:
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(warning)}; train longer (--steps, --minutes) "
                                   f"or check the config's physics", highlight=False, soft_wrap=True)
