"""Training on several processes: PyTorch DistributedDataParallel in a world started by ``torchrun``.

``torchrun`` gives each process its place through the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``); :meth:`World.from_environment` reads it and :meth:`World.joined` holds the
process group for a run (gloo on CPU; on CUDA nccl for the network's gradients and gloo for the small CPU
messages, each process on ``cuda:LOCAL_RANK``). The recipe does not change with the number of processes N:

- ``training.batch_size`` is the global batch; each process simulates ``batch_size / N`` frames per step
  (N must divide it) and DDP averages the gradients, so a step sees the same number of frames, at the same
  learning rate, over the same ``training.steps`` as one process does. BatchNorm statistics are each
  process's own (over its ``batch_size / N`` frames), as usual with DDP.
- Each process draws from its own generator: rank 0's is seeded with ``training.seed`` (so a world of one
  is exactly the single-process run), rank r ≥ 1's with the first 64-bit word of
  ``numpy.random.SeedSequence([training.seed, r])``.
- Rank 0 validates, keeps the model, writes checkpoints and logs and reports progress; a checkpoint holds
  every rank's generator state (``rng`` rank 0's, ``rng.<r>`` rank r's), and a run resumes only on as
  many processes as it was trained on. A time budget ends all ranks at the same step: its progress is
  rank 0's, broadcast each time it is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import distributed as dist
from torch import nn

from deepsmlm.config import SimulationConfig, updated
from deepsmlm.errors import UserInputError

PLACE = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets for each process


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` training processes: global ``rank``, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> World:
        """The world torchrun describes in ``env``; a single process when ``WORLD_SIZE`` is unset."""
        if "WORLD_SIZE" not in env:
            return cls()
        try:
            rank, size, local = (int(env[key]) for key in PLACE)
        except (KeyError, ValueError):
            shown = ", ".join(f"{k}={env.get(k)!r}" for k in PLACE)
            raise UserInputError(f"torchrun environment incomplete or malformed ({shown})") from None
        if not 0 <= rank < size:
            raise UserInputError(f"torchrun environment: RANK {rank} is not in 0 … WORLD_SIZE-1 ({size - 1})")
        return cls(rank, size, local)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Whether this process validates, writes and reports (rank 0)."""
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """The seed of this rank's data generator (see the module docstring)."""
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1, np.uint64)[0])

    def device(self, name: str) -> torch.device:
        """Where this rank runs: ``cuda`` (no index) is ``cuda:LOCAL_RANK`` in a distributed run."""
        device = torch.device(name)
        if self.distributed and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def share(self, cfg: SimulationConfig) -> SimulationConfig:
        """``cfg`` with this rank's share of the global batch, ``training.batch_size`` / N frames."""
        if not self.distributed:
            return cfg
        batch = cfg.training.batch_size
        if batch % self.size:
            raise UserInputError(f"training.batch_size {batch} does not split over {self.size} processes; "
                                 f"give a multiple of {self.size} (it is the global batch)")
        return updated(cfg, {"training.batch_size": batch // self.size})

    @contextmanager
    def joined(self, device: torch.device) -> Iterator[None]:
        """The process group of a distributed run for the duration of the block (destroyed on errors too)."""
        if not self.distributed:
            yield
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo", rank=self.rank,
                                world_size=self.size)
        try:
            yield
        finally:
            dist.destroy_process_group()

    def wrap(self, net: nn.Module, device: torch.device) -> nn.Module:
        """The module a step runs: ``net`` in DistributedDataParallel (gradients averaged over the ranks)."""
        if not self.distributed:
            return net
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(net, device_ids=ids)

    def agree(self, value: float) -> float:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        shared = torch.tensor([value], dtype=torch.float64)
        dist.broadcast(shared, 0)
        return float(shared)

    def gather(self, state: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``state`` (a CPU tensor of the same shape on each), by rank."""
        if not self.distributed:
            return [state]
        states = [torch.empty_like(state) for _ in range(self.size)]
        dist.all_gather(states, state)
        return states


def main_process() -> bool:
    """Whether this process reports and writes: always, but in a torchrun world only rank 0."""
    return World.from_environment().main


def unvalidated(net: nn.Module, step: int) -> dict:
    """The validator of a rank other than 0: those never validate."""
    raise RuntimeError("only rank 0 validates")
