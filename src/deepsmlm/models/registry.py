"""Networks by name, and model folders: config.yaml (resolved config) + model.safetensors (weights), and
the training log (training_log.json) whose validation scores tell how good a model was when trained.

A model is named by a folder path or by a shipped name (``deepsmlm/pretrained/<name>/``). Weights are
only ever read from safetensors, never unpickled.
"""

from __future__ import annotations

import copy
import json
import math
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from deepsmlm.config import ModelConfig, SimulationConfig, dump_config, load_config
from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import atomic_path, write_text_atomic
from deepsmlm.models.deepstorm2d import DeepStorm2DCPU, DeepStorm2DPaper
from deepsmlm.models.deepstorm3d import DeepStorm3D
from deepsmlm.models.locnet import LocNet, locnet_outputs

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
TRAINING_LOG = "training_log.json"
# below this validation Jaccard (matched / (truth ∪ detections)) at most one in ten emitters-or-detections
# is a correct localization: an untrained network scores 0, the shipped models 0.59 … 0.99
JACCARD_FLOOR = 0.1
PRETRAINED_PACKAGE = "deepsmlm.pretrained"


def build_network(cfg: ModelConfig, localizes_z: bool = False) -> nn.Module:
    """A freshly initialised network for the model config; ``localizes_z``: a LocNet predicts z too (the
    whole config's :meth:`~deepsmlm.config.SimulationConfig.localizes_z`)."""
    if cfg.kind == "locnet":
        return LocNet(locnet_outputs(localizes_z), cfg.channels, cfg.levels, cfg.frames)
    if cfg.kind == "deepstorm3d":
        return DeepStorm3D(cfg.z_planes * cfg.colors, cfg.upsampling, cfg.channels, cfg.dilations, cfg.architecture)
    if cfg.architecture == "paper":
        return DeepStorm2DPaper(cfg.upsampling, cfg.channels)
    return DeepStorm2DCPU(cfg.upsampling, cfg.channels, cfg.head_channels)


def shipped_models() -> list[str]:
    """Names of the models inside the package."""
    root = resources.files(PRETRAINED_PACKAGE)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / WEIGHTS).is_file())


def resolve_model_dir(name_or_dir: str | Path) -> Path:
    """A model folder from a path or a shipped name; one-line error otherwise."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    shipped = resources.files(PRETRAINED_PACKAGE) / str(name_or_dir)
    if shipped.is_dir():
        return Path(str(shipped))
    raise UserInputError(f"{name_or_dir}: neither a model folder nor a shipped model "
                         f"(shipped: {', '.join(shipped_models()) or 'none'})")


def save_model(folder: Path, cfg: SimulationConfig, net: nn.Module, name: str = WEIGHTS) -> None:
    """Write weights (safetensors) and the resolved config atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(folder / name) as tmp:
        save_file(state, str(tmp))
    write_text_atomic(folder / CONFIG, dump_config(cfg))


def load_model(name_or_dir: str | Path, device: str | torch.device = "cpu") -> tuple[SimulationConfig, nn.Module]:
    """(config, network in eval mode) of a model folder or shipped name."""
    folder = resolve_model_dir(name_or_dir)
    if not (folder / CONFIG).is_file():
        raise UserInputError(f"{folder}: model folder has no {CONFIG}")
    if not (folder / WEIGHTS).is_file():
        raise UserInputError(f"{folder}: model folder has no {WEIGHTS}")
    cfg = load_config(folder / CONFIG)
    net = build_network(cfg.model, cfg.localizes_z())
    try:
        state = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError) as err:
        raise UserInputError(f"{folder / WEIGHTS}: unreadable weights ({err})") from None
    missing, unexpected = _compare_keys(net, state)
    if missing or unexpected:
        raise UserInputError(f"{folder / WEIGHTS}: weights do not fit the {cfg.model.kind}/{cfg.model.architecture} "
                             f"network ({len(missing)} missing, {len(unexpected)} unexpected tensors)")
    try:
        net.load_state_dict(state)
    except RuntimeError:
        raise UserInputError(f"{folder / WEIGHTS}: tensor shapes do not fit the configured network") from None
    return cfg, net.to(device).eval()


def training_log(name_or_dir: str | Path) -> dict | None:
    """A model folder's training log (``history``: the validation records by step; ``elapsed_s``), or None
    when the folder has no readable one (a model made elsewhere); a one-line error for no model folder."""
    try:
        log = json.loads((resolve_model_dir(name_or_dir) / TRAINING_LOG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return log if isinstance(log, dict) and isinstance(log.get("history"), list) else None


def recorded_jaccard(name_or_dir: str | Path) -> float | None:
    """The best validation Jaccard in a model folder's training log (the saved model's), or None when the
    folder has no readable log (a model made elsewhere)."""
    try:
        scores = [float(record["jaccard"]) for record in training_log(name_or_dir)["history"]]
    except (ValueError, KeyError, TypeError):
        return None
    finite = [j for j in scores if math.isfinite(j)]
    return max(finite) if finite else None


def jaccard_warning(jaccard: float | None, what: str) -> str | None:
    """A one-line warning when ``what`` (a model) validated below ``JACCARD_FLOOR``, else None."""
    if jaccard is None or jaccard >= JACCARD_FLOOR:
        return None
    return (f"{what} reached a validation Jaccard of only {jaccard:.3f} in training (below {JACCARD_FLOOR}): "
            f"most of its localizations will be missing or wrong")


def _compare_keys(net: nn.Module, state: dict) -> tuple[set, set]:
    expected = set(net.state_dict())
    return expected - set(state), set(state) - expected


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """An inference copy of ``net`` with every Conv2d → BatchNorm2d pair merged into one convolution.

    In eval mode BN is the affine map y = γ(x − μ)/√(σ² + ε) + β, so the conv's weights scale by
    γ/√(σ² + ε) and its bias becomes β + (b − μ)·γ/√(σ² + ε): same outputs, one pass fewer.
    """
    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        layers = list(module)
        for i in range(len(layers) - 1):
            conv, bn = layers[i], layers[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                  conv.dilation, conv.groups, bias=True)
                with torch.no_grad():
                    fused.weight.copy_(conv.weight * scale[:, None, None, None])
                    fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
                module[i], module[i + 1] = fused, nn.Identity()
    return net
