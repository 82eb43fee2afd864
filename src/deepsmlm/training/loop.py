"""The training loop, over injected parts: a network and its optimiser, a batch source, a loss (plus extra
terms), a validator and hooks. It owns the schedule (constant or cosine learning rate over a step or time
budget), the validation history with the best model, the resumable checkpoints and the progress reports.

Every ``validate_every`` steps the validator scores the network; a record with a better Jaccard than any
before is handed to the ``keep_best`` hook (which saves the model), and a resumable checkpoint and the
training log are written. In a run on several processes (:mod:`deepsmlm.training.distributed`) each step
runs the network in DistributedDataParallel, and only rank 0 validates, writes and reports. What a run
trains and how (a density network, or a mask learned with it) is assembled by
:mod:`deepsmlm.training.trainer` and :mod:`deepsmlm.design.end_to_end`.
"""

from __future__ import annotations

import datetime
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from deepsmlm.config import TrainingConfig
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.models.registry import TRAINING_LOG
from deepsmlm.progress import ProgressCallback, ProgressEvent, ignore
from deepsmlm.training.checkpoint import load_checkpoint, save_checkpoint
from deepsmlm.training.distributed import World
from deepsmlm.training.validation import validation_line

BatchSource = Callable[[], tuple[torch.Tensor, torch.Tensor]]  # () -> (network input, target)
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (float32 prediction, target) -> loss
Validator = Callable[[nn.Module, int], dict]  # (network, step) -> record with "step", "jaccard", "threshold"
Hook = Callable[[], None]


@dataclass
class Hooks:
    """What a run adds to the loop: ``keep_best(net, record)`` saves the model of a record better than any
    before; ``extra_terms`` are added to the loss in order (each may draw from the run's generator);
    ``after_step`` runs after each optimiser step, ``before_checkpoint`` before a checkpoint is written,
    ``after_resume`` after one is read back."""

    keep_best: Callable[[nn.Module, dict], None]
    extra_terms: Sequence[Callable[[], torch.Tensor]] = ()
    after_step: Sequence[Hook] = ()
    before_checkpoint: Sequence[Hook] = ()
    after_resume: Sequence[Hook] = ()


@dataclass
class Budget:
    """How far training has come: ``step`` of ``horizon`` steps, or with a ``time_budget`` (session start,
    seconds; monotonic clock) the time trained over the time of earlier sessions (``trained_s``) plus it, as
    ``agree`` makes it (in a distributed run rank 0's, so that all ranks stop at the same step)."""

    horizon: int
    step: int = 0
    trained_s: float = 0.0
    time_budget: tuple[float, float] | None = None
    agree: Callable[[float], float] = float

    def progress(self) -> float:
        """Fraction of the budget spent, 0 … 1."""
        if self.time_budget is None:
            return min(self.step / max(self.horizon, 1), 1.0)
        start, seconds = self.time_budget
        return self.agree(min((self.trained_s + time.monotonic() - start) / (self.trained_s + seconds), 1.0))


def learning_rate(settings: TrainingConfig, progress: float) -> float:
    """Learning rate at ``progress`` (0 … 1) of the budget: constant, or cosine decay to 5 %."""
    if settings.lr_schedule == "constant":
        return settings.learning_rate
    return settings.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class TrainingLoop:
    """Trains ``net`` with ``optim`` (each parameter group's learning rate scaled by its ``lr_scale``) on
    ``batches``, minimising ``loss`` plus the hooks' extra terms, validating with ``validator`` every
    ``settings.validate_every`` steps; checkpoints (network, optimiser, ``rng``) go into ``out``. ``world``:
    the processes training together (one by default)."""

    net: nn.Module
    optim: torch.optim.Optimizer
    batches: BatchSource
    loss: Loss
    validator: Validator
    hooks: Hooks
    settings: TrainingConfig
    out: Path
    rng: torch.Generator
    device: torch.device
    world: World = field(default_factory=World)
    best_jaccard: float = -1.0
    history: list[dict] = field(default_factory=list)
    budget: Budget = field(init=False)
    model: nn.Module = field(init=False)  # what a step runs: ``net``, or ``net`` in DDP
    checkpointed: int | None = field(init=False, default=None)  # the step of the last checkpoint

    def __post_init__(self) -> None:
        self.budget = Budget(self.settings.steps, agree=self.world.agree)
        self.model = self.world.wrap(self.net, self.device)

    @property
    def step(self) -> int:
        return self.budget.step

    def train_step(self) -> float:
        """One optimiser step on one batch; returns the loss."""
        self.net.train()
        lr = learning_rate(self.settings, self.budget.progress())
        for group in self.optim.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        x, target = self.batches()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.settings.bfloat16):
            pred = self.model(x)
        loss = self.loss(pred.float(), target)
        for term in self.hooks.extra_terms:
            loss = loss + term()
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        for hook in self.hooks.after_step:
            hook()
        self.budget.step += 1
        return loss.item()

    def validate(self) -> dict:
        """Score the network; keep it (``keep_best``) when it beats every earlier validation."""
        record = self.validator(self.net, self.step)
        self.history.append(record)
        if record["jaccard"] > self.best_jaccard:
            self.best_jaccard = record["jaccard"]
            self.hooks.keep_best(self.net, record)
        return record

    def milestone(self, start: float) -> dict:
        """Validate (rank 0) and checkpoint, ``start`` the session's start; the record ({} on other ranks)."""
        record = self.validate() if self.world.main else {}
        self.checkpoint(time.monotonic() - start)
        return record

    def checkpoint(self, elapsed_s: float) -> None:
        """Save the resumable state (every rank's generator) and the validation history; ``elapsed_s``: this
        session's time. Every rank takes part; rank 0 writes."""
        for hook in self.hooks.before_checkpoint:
            hook()
        self.checkpointed = self.step
        rngs = self.world.gather(self.rng.get_state())
        if not self.world.main:
            return
        trained_s = self.budget.trained_s + elapsed_s
        scalars = {"step": self.step, "best_jaccard": self.best_jaccard, "history": self.history,
                   "trained_s": trained_s, **({"world_size": self.world.size} if self.world.distributed else {})}
        save_checkpoint(self.out, self.net, self.optim, self.rng, scalars, rngs[1:])
        write_text_atomic(self.out / TRAINING_LOG, json.dumps({"elapsed_s": trained_s, "history": self.history},
                                                              indent=1))

    def resume(self) -> None:
        """Continue from the checkpoint in ``out``, exactly where it stopped."""
        scalars = load_checkpoint(self.out, self.net, self.optim, self.rng, self.world.rank, self.world.size)
        self.budget.step, self.best_jaccard, self.history = scalars["step"], scalars["best_jaccard"], scalars["history"]
        self.checkpointed = self.step
        self.budget.trained_s = float(scalars.get("trained_s", 0.0))
        for hook in self.hooks.after_resume:
            hook()

    def run(self, steps: int | None = None, minutes: float | None = None,
            progress: ProgressCallback | None = None) -> dict:
        """Train until ``steps`` (total, this session and earlier ones) or for ``minutes`` of wall time (this
        session); validate and checkpoint on the way. ``progress`` hears of every step, and of each
        validation by a message line. The summary's ``steps`` is the total, ``session_steps`` the steps of
        this session. Only rank 0 reports."""
        t0 = time.monotonic()
        first = self.step
        if steps is not None:
            total = self.budget.horizon = steps
        else:
            total = self.settings.steps if minutes is None else math.inf
        if minutes is not None:
            self.budget.time_budget = (t0, 60 * minutes)
        last: dict = {}
        report = (progress or ignore) if self.world.main else ignore
        report(ProgressEvent("training", self.budget.progress(), 1.0, self.status(first, total, t0)))
        while self.step < total and self.budget.progress() < 1.0:
            loss = self.train_step()
            message = None
            if self.step % self.settings.validate_every == 0:
                last = self.milestone(t0)
                message = validation_line(last) if last else None
            report(ProgressEvent("training", self.budget.progress(), 1.0, self.status(first, total, t0),
                                 f"loss {loss:.3g}", message))
        if self.checkpointed != self.step:
            last = self.milestone(t0)
        return {"steps": self.step, "session_steps": self.step - first, "seconds": time.monotonic() - t0,
                "best_jaccard": self.best_jaccard, **last}

    def status(self, first: int, total: float, start: float) -> str:
        """Progress text: the step (of the total; this session's steps too when resumed), the time elapsed
        since ``start`` and, with a time budget, the time left."""
        text = f"step {self.step}" + (f"/{total}" if math.isfinite(total) else "")
        if first:
            text += f" ({self.step - first} this session)"
        elapsed = time.monotonic() - start
        text += f", {_clock(elapsed)} elapsed"
        if self.budget.time_budget is not None:
            text += f", {_clock(max(self.budget.time_budget[1] - elapsed, 0.0))} left"
        return text


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))
