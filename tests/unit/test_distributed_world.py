"""A process's place in a torchrun world: read from the environment (a bad one refused in one line), the
documented per-rank seeds (rank 0's is the training seed), the global batch split evenly over the ranks,
and a time budget whose progress is the one ``agree`` hands out (rank 0's, in a distributed run)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from deepsmlm.errors import UserInputError
from deepsmlm.training.distributed import World
from deepsmlm.training.loop import Budget
from tests.unit.test_deepstorm2d import tiny_config


def test_the_world_is_read_from_torchruns_environment():
    assert World.from_environment({}) == World()
    assert World.from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    for env in ({"WORLD_SIZE": "2"}, {"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"},
                {"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}):
        with pytest.raises(UserInputError, match="torchrun environment"):
            World.from_environment(env)


def test_each_rank_has_its_documented_seed_and_device():
    seeds = [World(r, 4).seed(7) for r in range(4)]
    assert seeds[0] == 7 and len(set(seeds)) == 4
    assert seeds[2] == int(np.random.SeedSequence([7, 2]).generate_state(1, np.uint64)[0])
    assert World(1, 2, 1).device("cuda") == torch.device("cuda", 1)
    assert World(1, 2, 1).device("cpu") == torch.device("cpu") and World().device("cuda") == torch.device("cuda")


def test_the_global_batch_is_split_evenly_or_refused():
    cfg = tiny_config()  # batch_size 2
    assert World().share(cfg) is cfg
    assert World(1, 2).share(cfg).training.batch_size == 1
    with pytest.raises(UserInputError, match="batch_size 2 does not split over 3 processes"):
        World(0, 3).share(cfg)


def test_a_time_budget_reads_its_progress_through_agree():
    heard = []
    budget = Budget(10, time_budget=(time.monotonic(), 60.0), agree=lambda p: heard.append(p) or 0.25)
    assert budget.progress() == 0.25 and len(heard) == 1 and 0 <= heard[0] < 0.1
    budget.time_budget = None
    budget.step = 5
    assert budget.progress() == 0.5 and len(heard) == 1  # a step budget is the same on every rank
