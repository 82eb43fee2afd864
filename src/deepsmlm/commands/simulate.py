"""`deepsmlm simulate`: write a simulated movie, its ground truth and the resolved config into a folder."""

from __future__ import annotations

from pathlib import Path

from deepsmlm.api import simulate
from deepsmlm.commands.progress_bars import SIMULATING, progress_bar
from deepsmlm.config import SimulationConfig, load_config, updated
from deepsmlm.errors import UserInputError


def apply_overrides(cfg: SimulationConfig, frames: int | None, seed: int | None, density: float | None,
                    emitters: int | None) -> SimulationConfig:
    """A copy of the config with the command-line overrides applied, validated like a config file."""
    if density is not None and emitters is not None:
        raise UserInputError("give either --density or --emitters, not both")
    changes: dict[str, object] = {key: value for key, value in (("frames", frames), ("seed", seed))
                                  if value is not None}
    if density is not None:
        changes.update({"emitters.density_per_um2": density, "emitters.count": None})
    if emitters is not None:
        changes.update({"emitters.density_per_um2": None, "emitters.count": (emitters, emitters)})
    return updated(cfg, changes, "command-line options")


def run_simulate(config: str, out: Path, frames: int | None, seed: int | None, density: float | None,
                 emitters: int | None, device: str) -> None:
    cfg = apply_overrides(load_config(config), frames, seed, density, emitters)
    with progress_bar(SIMULATING, transient=True) as progress:
        sim = simulate(cfg, out_dir=out, device=device, progress=progress)
    print(f"wrote {sim.config.frames} frames with {sim.n_emitters} emitters to {out} in {sim.seconds:.1f} s")
