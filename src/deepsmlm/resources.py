"""What this machine can give a job: memory (bytes) and torch devices, checked before any work starts."""

from __future__ import annotations

import os

import torch

from deepsmlm.errors import UserInputError

GIB = 1 << 30
DEFAULT_MEMORY_FRACTION = 0.5  # of the memory available now, when the user names no budget


def available_memory_bytes() -> int:
    """Memory available to new allocations now (Linux MemAvailable, else physical memory), bytes."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget_bytes(max_memory_gb: float | None = None) -> int:
    """The working-memory budget: ``max_memory_gb`` GiB when given, else a fraction of what is available."""
    if max_memory_gb is not None:
        if not max_memory_gb > 0:
            raise UserInputError(f"--max-memory-gb {max_memory_gb:g}: must be positive")
        return int(max_memory_gb * GIB)
    return int(DEFAULT_MEMORY_FRACTION * available_memory_bytes())


def require_memory(needed_bytes: float, what: str, budget_bytes: int | None = None) -> None:
    """One-line error when ``what`` needs more than the budget (default: all memory available now)."""
    budget = available_memory_bytes() if budget_bytes is None else budget_bytes
    if needed_bytes > budget:
        limit = "available" if budget_bytes is None else "of the memory budget (--max-memory-gb)"
        raise UserInputError(f"{what} needs about {needed_bytes / GIB:.3g} GiB of memory, more than the "
                             f"{budget / GIB:.3g} GiB {limit}")


def check_device(name: str) -> torch.device:
    """A torch device this machine has; one-line error for an unknown name or a missing accelerator."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserInputError(f"{name!r} is not a torch device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"{name!r}: this machine has no CUDA device (torch {torch.__version__}); "
                                 f"use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserInputError(f"{name!r}: this machine has only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserInputError(f"{name!r}: MPS is not available on this machine; use cpu")
    elif device.type != "cpu":
        raise UserInputError(f"{name!r}: unsupported device type; use cpu or cuda")
    return device
