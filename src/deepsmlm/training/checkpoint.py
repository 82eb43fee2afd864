"""Resumable training state: network, optimizer and data-generator state in one safetensors file.

``last.safetensors`` holds tensors (``net.*``, ``optim.<param>.<key>``, ``rng``, and in a run on N
processes ``rng.<r>``, rank r's generator, r = 1 … N-1); ``last.json`` the scalars (step, optimizer
hyper-parameters, validation history, and ``world_size`` N when N > 1). Both are written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import atomic_path, write_text_atomic

STATE = "last.safetensors"
META = "last.json"
REQUIRED = {"step": int, "best_jaccard": (int, float), "history": list, "param_groups": list}  # in META


def save_checkpoint(folder: Path, net: torch.nn.Module, optim: torch.optim.Optimizer, rng: torch.Generator,
                    scalars: dict, rank_rngs: Sequence[torch.Tensor] = ()) -> None:
    """Everything needed to continue training exactly where it stopped; ``rank_rngs``: the generator states
    of ranks 1 … N-1 of a distributed run (``rng`` is rank 0's)."""
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    opt = optim.state_dict()
    for pid, st in opt["state"].items():
        for key, val in st.items():
            tensors[f"optim.{pid}.{key}"] = torch.as_tensor(val).detach().cpu().contiguous()
    tensors["rng"] = rng.get_state()
    tensors.update({f"rng.{r}": state for r, state in enumerate(rank_rngs, 1)})
    with atomic_path(folder / STATE) as tmp:
        save_file(tensors, str(tmp))
    write_text_atomic(folder / META, json.dumps({**scalars, "param_groups": opt["param_groups"]}, indent=1))


def load_checkpoint(folder: Path, net: torch.nn.Module, optim: torch.optim.Optimizer,
                    rng: torch.Generator, rank: int = 0, world_size: int = 1) -> dict:
    """Restore network, optimizer and generator (rank ``rank``'s of ``world_size`` processes) in place;
    returns the saved scalars (``step``, ``best_jaccard``, ``history`` and what the trainer added). A
    missing, damaged or foreign checkpoint, or one of another number of processes, is a one-line
    UserInputError naming the file."""
    state_path, meta_path = folder / STATE, folder / META
    if not state_path.is_file() or not meta_path.is_file():
        raise UserInputError(f"{folder}: nothing to resume (no {STATE} / {META})")
    try:
        tensors = load_file(str(state_path))
    except (SafetensorError, OSError) as err:
        raise UserInputError(f"{state_path}: damaged checkpoint ({_first_line(err)})") from None
    scalars = _read_scalars(meta_path)
    saved_world = scalars.pop("world_size", 1)
    if saved_world != world_size:
        raise UserInputError(f"{meta_path}: trained on {saved_world} process(es), resumed on {world_size}; "
                             f"resume with as many (torchrun --nproc_per_node …)")
    state: dict[int, dict] = {}
    try:
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, key = k.split(".", 2)
                state.setdefault(int(pid), {})[key] = v
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        rng.set_state(tensors["rng" if rank == 0 else f"rng.{rank}"])
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise UserInputError(f"{state_path}: does not fit this model ({_first_line(err)})") from None
    try:
        optim.load_state_dict({"state": state, "param_groups": scalars.pop("param_groups")})
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as err:
        raise UserInputError(f"{meta_path}: optimizer state does not fit this model ({_first_line(err)})") from None
    return scalars


def _read_scalars(path: Path) -> dict:
    """The JSON scalars of a checkpoint, with the keys (and types) resuming needs."""
    try:
        scalars = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserInputError(f"{path}: damaged checkpoint ({_first_line(err)})") from None
    if not isinstance(scalars, dict):
        raise UserInputError(f"{path}: damaged checkpoint (not a JSON object)")
    for key, kind in REQUIRED.items():
        if not isinstance(scalars.get(key), kind) or isinstance(scalars.get(key), bool):
            raise UserInputError(f"{path}: damaged checkpoint (missing or malformed '{key}')")
    return scalars


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
