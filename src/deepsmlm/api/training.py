"""`deepsmlm.train`: train a model on batches simulated on the fly from a config's physics, into a model folder.

The run folder is checked before any work: a new run does not replace a trained model unless asked to,
and a resumed run continues the folder's run exactly. Started by ``torchrun`` the run is distributed
(DistributedDataParallel over the processes; the recipe in :mod:`deepsmlm.training.distributed`).
Messages name the options by their command-line spelling (``--steps`` is ``steps=``, ``--resume`` is
``resume=True``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from deepsmlm.api.inputs import ConfigLike, as_config
from deepsmlm.config import SimulationConfig, load_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.io.outputs import check_output_folder, check_writable_folder
from deepsmlm.models.registry import CONFIG, WEIGHTS, load_model
from deepsmlm.progress import ProgressCallback
from deepsmlm.training.checkpoint import STATE
from deepsmlm.training.distributed import World
from deepsmlm.training.trainer import Trainer

# what the trainer writes into the config it saves: a resumed run may differ from its CONFIG there
TRAINER_FILLED = ("model.input_offset_photons", "model.input_scale_photons", "model.threshold", "model.sigma_scale")
LABEL = ("name",)  # only names the run: resuming under another name changes nothing trained


def training_config(config: ConfigLike, out: Path, steps: int | None, minutes: float | None, resume: bool,
                    overwrite: bool = False, filled: tuple[str, ...] = TRAINER_FILLED) -> SimulationConfig:
    """The config a training run starts from, after checking the run folder before any work: the given
    config for a new run (``out`` must not hold a trained model unless ``overwrite``, nor be where the
    config file lives), the folder's own when resuming (the given config must equal it up to the keys in
    ``filled``)."""
    if steps is not None and minutes is not None:
        raise UserInputError("give either --steps or --minutes, not both")
    if minutes is not None and not 0 < minutes < math.inf:
        raise UserInputError(f"--minutes {minutes:g}: must be a finite number of minutes > 0")
    if resume and overwrite:
        raise UserInputError("give either --resume or --overwrite, not both")
    if not resume:
        config_file = None if isinstance(config, SimulationConfig) else config
        check_output_folder(out, (CONFIG, WEIGHTS, STATE), {"CONFIG": config_file})
        if not overwrite:
            check_fresh_folder(out)
        return as_config(config)
    check_writable_folder(out, "-o")
    if not (out / CONFIG).is_file():
        raise UserInputError(f"{out}: nothing to resume (no {CONFIG})")
    saved = load_config(out / CONFIG)
    check_resumable(as_config(config), saved, out, filled)
    return saved


def differing_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves where two nested config dicts differ."""
    keys = []
    for key in sorted(set(a) | set(b), key=str):
        path = f"{prefix}{key}"
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            keys += differing_keys(x, y, f"{path}.")
        elif x != y:
            keys.append(path)
    return keys


def check_resumable(given: SimulationConfig, saved: SimulationConfig, out: Path,
                    filled: tuple[str, ...] = TRAINER_FILLED) -> None:
    """A resumed run continues the run in ``out`` exactly: the config must be the one it was started with
    (up to the run's name and the ``filled`` keys, with everything below them, that training writes)."""
    ignored = (*filled, *LABEL)
    keys = [k for k in differing_keys(given.model_dump(mode="json"), saved.model_dump(mode="json"))
            if not any(k == i or k.startswith(f"{i}.") for i in ignored)]
    if keys:
        shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        raise UserInputError(f"--resume: the config differs from the one {out} was trained with ({out / CONFIG}) "
                             f"at {shown}; resume with that config, or train anew into another folder")


def check_fresh_folder(out: Path) -> None:
    """Training anew must not replace a trained model unless asked to."""
    found = [name for name in (WEIGHTS, STATE) if (out / name).is_file()]
    if found:
        raise UserInputError(f"{out}: already holds a trained model ({found[0]}); give --resume to continue it "
                             f"or --overwrite to replace it")


def warm_start(cfg: SimulationConfig, init_from: str | os.PathLike) -> tuple[SimulationConfig, dict]:
    """(config, weights) for a run that starts from a trained model's weights (fine-tuning, e.g. to a
    changed PSF): the network must be the config's, and the input normalisation is the model's, so the
    weights see the inputs they were trained on."""
    init_cfg, net = load_model(init_from)
    ignored = ("model.threshold", "model.input_offset_photons", "model.input_scale_photons", "model.sigma_scale")
    keys = [k for k in differing_keys(cfg.model.model_dump(mode="json"), init_cfg.model.model_dump(mode="json"),
                                      "model.") if k not in ignored]
    if keys:
        raise UserInputError(f"--init-from {init_from}: its network differs from the config's at {', '.join(keys)}")
    m = init_cfg.model
    cfg = updated(cfg, {"model.input_offset_photons": m.input_offset_photons,
                        "model.input_scale_photons": m.input_scale_photons}, f"--init-from {init_from}")
    return cfg, net.state_dict()


def train(config: ConfigLike, out_dir: str | os.PathLike, steps: int | None = None, minutes: float | None = None,
          resume: bool = False, overwrite: bool = False, init_from: str | os.PathLike | None = None,
          device: str = "cpu", progress: ProgressCallback | None = None) -> dict:
    """Train the config's network on batches simulated from its physics into the model folder ``out_dir``
    (config.yaml, model.safetensors, training_log.json, checkpoints), which ``load_model`` then reads.

    ``steps``: total steps (default the config's), or ``minutes`` of wall time; ``resume``: continue the
    run in ``out_dir`` exactly; ``overwrite``: train anew over a model already there; ``init_from``: start
    from this model's weights (shipped name or folder; the same network); ``progress``: hears of every step
    and, by a message line, of each validation. Returns the summary: ``steps`` (total), ``session_steps``,
    ``seconds``, ``best_jaccard`` (validation) and more.

    Under ``torchrun`` every process runs this call: each simulates its share of the global batch
    (``training.batch_size`` / N frames) from its own generator and DDP averages the gradients; rank 0
    validates, writes the folder and reports ``progress`` (``device="cuda"`` is ``cuda:LOCAL_RANK``).

    Example::

        summary = deepsmlm.train("epfl2013_bundled_tubes", "my_model", minutes=30)
        model = deepsmlm.load_model("my_model")
    """
    if resume and init_from:
        raise UserInputError("give either --resume or --init-from, not both")
    out = Path(out_dir)
    cfg = training_config(config, out, steps, minutes, resume, overwrite)
    weights = None
    if init_from:
        cfg, weights = warm_start(cfg, init_from)
    world = World.from_environment()
    place = world.device(device)
    with world.joined(place):
        loop = Trainer(cfg, out, str(place), world=world).loop
        if resume:
            loop.resume()
        if weights is not None:
            loop.net.load_state_dict(weights)
        return loop.run(steps=steps, minutes=minutes, progress=progress)
