"""Resumable training state: network, optimizer and data-generator state in one safetensors file.

``last.safetensors`` holds tensors (``net.*``, ``optim.<param>.<key>``, ``rng``); ``last.json`` the
scalars (step, optimizer hyper-parameters, validation history). Both are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import atomic_path, write_text_atomic

STATE = "last.safetensors"
META = "last.json"


def save_checkpoint(folder: Path, net: torch.nn.Module, optim: torch.optim.Optimizer, rng: torch.Generator,
                    scalars: dict) -> None:
    """Everything needed to continue training exactly where it stopped."""
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    opt = optim.state_dict()
    for pid, st in opt["state"].items():
        for key, val in st.items():
            tensors[f"optim.{pid}.{key}"] = torch.as_tensor(val).detach().cpu().contiguous()
    tensors["rng"] = rng.get_state()
    with atomic_path(folder / STATE) as tmp:
        save_file(tensors, str(tmp))
    write_text_atomic(folder / META, json.dumps({**scalars, "param_groups": opt["param_groups"]}, indent=1))


def load_checkpoint(folder: Path, net: torch.nn.Module, optim: torch.optim.Optimizer,
                    rng: torch.Generator) -> dict:
    """Restore network, optimizer and generator in place; returns the saved scalars."""
    if not (folder / STATE).is_file() or not (folder / META).is_file():
        raise UserInputError(f"{folder}: nothing to resume (no {STATE} / {META})")
    tensors = load_file(str(folder / STATE))
    scalars = json.loads((folder / META).read_text())
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, key = k.split(".", 2)
            state.setdefault(int(pid), {})[key] = v
    optim.load_state_dict({"state": state, "param_groups": scalars.pop("param_groups")})
    rng.set_state(tensors["rng"])
    return scalars
