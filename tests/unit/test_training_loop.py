"""The training loop over injected parts: it validates every ``validate_every`` steps (and once at the end),
keeps the model of each better validation only, adds the extra loss terms, runs the hooks, and a resumed run
continues exactly where the checkpoint stopped."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from deepsmlm.config import TrainingConfig
from deepsmlm.training.loop import Hooks, TrainingLoop

JACCARDS = {3: 0.2, 6: 0.5, 9: 0.4, 10: 0.6}  # the stub validator's scores by step


class Batches:
    """Fixed inputs (4, 3) and targets (4, 1), drawn with nothing random."""

    def __init__(self):
        self.calls = 0

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        x = torch.linspace(-1, 1, 12).reshape(4, 3)
        return x, x.sum(1, keepdim=True)


class Run:
    """A loop over a linear network with stub batches, loss term, validator and hooks that log their calls."""

    def __init__(self, out: Path, validate_every: int = 3, steps: int = 10):
        torch.manual_seed(0)
        self.net = torch.nn.Linear(3, 1)
        self.batches = Batches()
        self.validated: list[int] = []
        self.kept: list[tuple[int, dict]] = []
        self.events: list[str] = []
        hooks = Hooks(keep_best=self.keep_best, extra_terms=[self.term], after_step=[lambda: self.events.append("step")],
                      before_checkpoint=[lambda: self.events.append("checkpoint")],
                      after_resume=[lambda: self.events.append("resume")])
        settings = TrainingConfig(steps=steps, validate_every=validate_every, learning_rate=0.1)
        self.loop = TrainingLoop(self.net, torch.optim.SGD(self.net.parameters(), lr=0.1), self.batches,
                                 torch.nn.functional.mse_loss, self.validate, hooks, settings, out,
                                 torch.Generator().manual_seed(1), torch.device("cpu"))

    def term(self) -> torch.Tensor:
        self.events.append("term")
        return 0.01 * self.net.weight.square().sum()

    def validate(self, net: torch.nn.Module, step: int) -> dict:
        assert net is self.net
        self.validated.append(step)
        return {"step": step, "jaccard": JACCARDS[step], "threshold": step / 10, "rmse_lateral_nm": 1.0}

    def keep_best(self, net: torch.nn.Module, record: dict) -> None:
        self.kept.append((record["step"], {k: v.clone() for k, v in net.state_dict().items()}))


def test_the_loop_validates_every_few_steps_and_keeps_only_better_models(tmp_path):
    run = Run(tmp_path)
    summary = run.loop.run()
    assert run.batches.calls == 10 and summary["steps"] == 10 and summary["session_steps"] == 10
    assert run.validated == [3, 6, 9, 10]  # every 3 steps, and the last step
    assert [step for step, _ in run.kept] == [3, 6, 10]  # step 9 scored below step 6
    assert summary["best_jaccard"] == 0.6 and summary["jaccard"] == 0.6 and summary["threshold"] == 1.0
    final = run.net.state_dict()
    assert all(torch.equal(final[k], v) for k, v in run.kept[-1][1].items())
    assert [r["step"] for r in run.loop.history] == [3, 6, 9, 10]
    assert run.events.count("term") == 10 and run.events.count("step") == 10 and run.events.count("checkpoint") == 4
    log = json.loads((tmp_path / "training_log.json").read_text())
    assert [r["jaccard"] for r in log["history"]] == [0.2, 0.5, 0.4, 0.6]


def test_the_extra_terms_are_part_of_the_loss_that_is_minimised(tmp_path):
    with_term, plain = Run(tmp_path / "a"), Run(tmp_path / "b")
    plain.loop.hooks.extra_terms = ()
    assert with_term.loop.train_step() > plain.loop.train_step()
    assert not torch.equal(with_term.net.weight, plain.net.weight)


def test_a_resumed_loop_continues_exactly(tmp_path):
    straight = Run(tmp_path / "a", validate_every=3, steps=6)
    straight.loop.run()
    first = Run(tmp_path / "b", validate_every=3, steps=6)
    first.loop.run(steps=3)
    again = Run(tmp_path / "b", validate_every=3, steps=6)
    again.loop.resume()
    assert again.events == ["resume"] and again.loop.step == 3 and again.loop.best_jaccard == 0.2
    again.loop.run()
    assert again.validated == [6] and [r["step"] for r in again.loop.history] == [3, 6]
    assert torch.equal(straight.net.weight, again.net.weight) and torch.equal(straight.net.bias, again.net.bias)
