"""`deepsmlm simulate`: write a simulated movie, its ground truth and the resolved config into a folder."""

from __future__ import annotations

from pathlib import Path

from deepsmlm.api import simulate
from deepsmlm.commands.progress_bars import SIMULATING, progress_bar
from deepsmlm.config import SimulationConfig, config_from_dict, load_config
from deepsmlm.errors import UserInputError


def apply_overrides(cfg: SimulationConfig, frames: int | None, seed: int | None, density: float | None,
                    emitters: int | None) -> SimulationConfig:
    """A copy of the config with the command-line overrides applied, validated like a config file."""
    if density is not None and emitters is not None:
        raise UserInputError("give either --density or --emitters, not both")
    cfg = cfg.model_copy(deep=True)
    if frames is not None:
        cfg.frames = frames
    if seed is not None:
        cfg.seed = seed
    if density is not None:
        cfg.emitters.density_per_um2, cfg.emitters.count = density, None
    if emitters is not None:
        cfg.emitters.density_per_um2, cfg.emitters.count = None, (emitters, emitters)
    return config_from_dict(cfg.model_dump(), "command-line options")


def run_simulate(config: str, out: Path, frames: int | None, seed: int | None, density: float | None,
                 emitters: int | None, device: str) -> None:
    cfg = apply_overrides(load_config(config), frames, seed, density, emitters)
    with progress_bar(SIMULATING, transient=True) as progress:
        sim = simulate(cfg, out_dir=out, device=device, progress=progress)
    print(f"wrote {sim.config.frames} frames with {sim.n_emitters} emitters to {out} in {sim.seconds:.1f} s")
