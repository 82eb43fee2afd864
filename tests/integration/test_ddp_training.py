"""Training on 2 processes (DDP over gloo on CPU), through the entry point torchrun runs: the ranks hold the
same weights after every step; those weights are the ones of one process that draws rank 0's and then
rank 1's frames (each rank's share of the global batch, from the documented per-rank seeds) and averages
the two gradients; and a job killed with SIGKILL after a checkpoint, resumed with ``--resume``, ends with
the weights (and every rank's generator) of the uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file

from deepsmlm.cli import app
from deepsmlm.config import config_from_dict
from deepsmlm.training.distributed import World
from deepsmlm.training.loop import TrainingLoop, learning_rate
from deepsmlm.training.trainer import DensityParts
from tests.unit.test_deepstorm2d import tiny_config

STEPS = 30
TINY = {**tiny_config().model_dump(mode="json"), "name": "tiny-ddp"}
TINY["training"] = {**TINY["training"], "steps": STEPS, "validate_every": 3}  # global batch 2: 1 frame a rank
ROOT = Path(__file__).resolve().parents[2]


def flat(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def rank_process(rank: int, port: int, config: dict, out: Path, record: Path) -> None:
    """One rank as torchrun starts it (its place in the environment), training through ``deepsmlm.train``;
    its network's parameters after every step go to ``record``/rank<r>.pt."""
    import deepsmlm

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    steps, step = [], TrainingLoop.train_step

    def recorded(loop: TrainingLoop) -> float:
        loss = step(loop)
        steps.append(flat(loop.net))
        return loss

    TrainingLoop.train_step = recorded
    deepsmlm.train(config_from_dict(config), out, steps=STEPS)
    torch.save(torch.stack(steps), record / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """2 spawned ranks train TINY for STEPS steps into <folder>/model; per-rank parameters in <folder>."""
    folder = tmp_path_factory.mktemp("ddp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(rank_process, args=(port, TINY, folder / "model", folder), nprocs=2, start_method="spawn")
    return folder


def reference_steps(out: Path) -> torch.Tensor:
    """One process: each step averages the gradients of rank 0's and rank 1's batches (their generators
    seeded as the ranks' are), at the loop's learning rate; the parameters after every step."""
    cfg = config_from_dict(TINY)
    ranks = [DensityParts.build(cfg, out, world=World(r, 2, r)) for r in (0, 1)]
    net, head = ranks[0].net, ranks[0].head
    sources = [parts.batches() for parts in ranks]
    optim = ranks[0].optimiser()
    steps = []
    for step in range(STEPS):
        net.train()
        for group in optim.param_groups:
            group["lr"] = learning_rate(cfg.training, step / STEPS)
        optim.zero_grad()
        for batches in sources:
            x, target = batches()
            (head.loss(net(x).float(), target) / len(sources)).backward()
        optim.step()
        steps.append(flat(net))
    return torch.stack(steps)


def test_ranks_agree_after_every_step_and_equal_one_process_of_the_global_batch(ddp_run, one_thread):
    rank0, rank1 = torch.load(ddp_run / "rank0.pt"), torch.load(ddp_run / "rank1.pt")
    assert rank0.shape[0] == STEPS
    assert torch.equal(rank0, rank1)  # identical weights on both ranks after each step
    assert not torch.equal(rank0[0], rank0[-1])  # and they trained
    reference = reference_steps(ddp_run / "reference")
    torch.testing.assert_close(rank0, reference, rtol=1e-4, atol=1e-5)
    saved = load_file(str(ddp_run / "model" / "last.safetensors"))  # rank 0's checkpoint: the trained weights
    names = [name for name, _ in DensityParts.build(config_from_dict(TINY), ddp_run / "names").net.named_parameters()]
    assert torch.equal(torch.cat([saved[f"net.{name}"].flatten() for name in names]), rank0[-1])


def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren, … (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def torchrun(out: Path, config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "deepsmlm",
            "train", str(config), "-o", str(out), "--steps", str(STEPS), *extra]


def checkpointed_step(out: Path) -> int:
    try:
        return json.loads((out / "last.json").read_text())["step"]
    except (OSError, ValueError):
        return 0


def test_a_killed_job_resumed_ends_with_the_weights_of_the_uninterrupted_run(ddp_run, tmp_path, runner, one_line):
    config, out = tmp_path / "tiny.yaml", tmp_path / "model"
    config.write_text(yaml.safe_dump(TINY))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(torchrun(out, config), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while checkpointed_step(out) == 0 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    for pid in [job.pid, *descendants(job.pid)]:  # the whole job: the agent and its workers
        os.kill(pid, signal.SIGKILL)
    job.wait()
    assert 0 < checkpointed_step(out) < STEPS  # killed mid-run, after a checkpoint

    done = subprocess.run(torchrun(out, config, "--resume"), cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = [line for line in done.stdout.splitlines() if line.startswith("trained ")]
    assert len(summary) == 1 and f"(step {STEPS} in all)" in summary[0]  # rank 0 alone reports
    resumed, uninterrupted = (load_file(str(folder / "last.safetensors")) for folder in (out, ddp_run / "model"))
    assert resumed.keys() == uninterrupted.keys() and {"rng", "rng.1"} <= resumed.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)

    res = runner.invoke(app, ["train", str(config), "-o", str(out), "--resume", "--steps", str(STEPS + 3)])
    assert res.exit_code == 2 and "trained on 2 process(es), resumed on 1" in one_line(res.stderr)
