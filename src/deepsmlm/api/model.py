"""`deepsmlm.load_model`: a trained network (batch norm folded into its convolutions) or a classic fitter
(Gaussian MLE, or the 3D PSF MLE), with the config it localizes by, run over a stack chunk by chunk into a
localization table."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial

import torch
import pandas as pd
from torch import nn

from deepsmlm.api.inputs import ConfigLike, Frames, as_config, config_label, opened
from deepsmlm.assembly.fitters import build_gaussian_mle, build_psf_mle, psf_sigma_nm
from deepsmlm.assembly.onnx_networks import exported_network, is_onnx_file, load_onnx
from deepsmlm.assembly.predictors import build_predictor, output_grid
from deepsmlm.config import SimulationConfig, updated
from deepsmlm.errors import UserInputError, check_positive
from deepsmlm.inference.data_check import check_data
from deepsmlm.inference.onnx_network import OnnxNetwork
from deepsmlm.inference.predict import Predictor
from deepsmlm.inference.stream import Localizer, StackResult, run_stack
from deepsmlm.inference.tiling import Plan, plan_passes
from deepsmlm.io.images import ImageStack
from deepsmlm.io.streaming import TableWriter
from deepsmlm.localizations import Localizations, Metadata, lateral_sigma_nm
from deepsmlm.models import registry
from deepsmlm.models.deepstorm3d import receptive_field_px
from deepsmlm.progress import ProgressCallback
from deepsmlm.resources import check_device, memory_budget_bytes

CLASSIC = "gaussian-mle"
PSF_MLE = "psf-mle"
CLASSICS = {CLASSIC: build_gaussian_mle, PSF_MLE: build_psf_mle}  # name -> builder from a config
BACKENDS = ("torch", "torch-bf16", "onnx")  # what runs a network: torch (float32 or bfloat16), or onnxruntime on
# its ONNX export
NETWORK_BATCH, FITTER_BATCH = 32, 256  # frames per pass unless told (Model.default_batch_size)


def with_experiment(model_cfg: SimulationConfig, experiment: SimulationConfig, model: str,
                    config: str) -> SimulationConfig:
    """The model's config with the experiment's camera (ADU → photons by the data's own camera, so a model
    survives a change of gain or baseline); its pixel size must match and, for a 3D model, its axial range
    must lie within the trained one."""
    if abs(experiment.frame.pixel_size_nm / model_cfg.frame.pixel_size_nm - 1) > 0.01:
        raise UserInputError(f"{config}: pixel size {experiment.frame.pixel_size_nm:g} nm differs from "
                             f"{model_cfg.frame.pixel_size_nm:g} nm of model {model}")
    if model_cfg.localizes_z():
        (z0, z1), (t0, t1) = experiment.emitters.z_range_nm, model_cfg.emitters.z_range_nm
        if z0 < t0 or z1 > t1:
            raise UserInputError(f"{config}: z range {z0:g} … {z1:g} nm lies outside the range {t0:g} … {t1:g} nm "
                                 f"model {model} was trained for")
    return updated(model_cfg, {"camera": experiment.camera}, config)


def run_config(cfg: SimulationConfig, threshold: float | None, baseline_subtracted: bool,
               classic: bool) -> SimulationConfig:
    """``cfg`` for one run: ``baseline_subtracted`` frames had the camera baseline removed already;
    ``threshold`` (None: the config's) is gaussian-mle's detection threshold (standard deviations of the
    filtered background noise, > 0) or a network's (the summed density of a detection, 0–1)."""
    changes: dict[str, object] = {"camera.baseline_subtracted": cfg.camera.baseline_subtracted or baseline_subtracted}
    if threshold is not None and classic:
        if not threshold > 0:
            raise UserInputError(f"--threshold {threshold:g}: gaussian-mle needs a positive threshold "
                                 f"(standard deviations of the background noise)")
        changes["model.gaussian_mle_threshold"] = threshold
    elif threshold is not None:
        if not 0 <= threshold <= 1:
            raise UserInputError(f"--threshold {threshold:g}: a network's threshold is a summed density "
                                 f"between 0 and 1")
        changes["model.threshold"] = threshold
    return updated(cfg, changes, "--threshold")


def check_pixel_size(stack: ImageStack, cfg: SimulationConfig, source: str, declared_nm: float | None = None,
                     force: bool = False) -> bool:
    """The data's pixel size (``declared_nm``, else the file's) must match the model's within 1 % unless
    ``force``. Returns whether the data's pixel size is known (else the model's is assumed)."""
    px = declared_nm if declared_nm is not None else stack.pixel_size_nm
    model_px = cfg.frame.pixel_size_nm
    if px is not None and abs(px / model_px - 1) > 0.01 and not force:
        origin = "declared" if declared_nm is not None else "in the file"
        raise UserInputError(f"{stack.path}: pixel size {px:g} nm ({origin}) differs from {model_px:g} nm of "
                             f"{source}; run anyway with --force")
    return px is not None


def check_field(stack: ImageStack, cfg: SimulationConfig, source: str) -> None:
    """A model that sees T consecutive frames needs a stack of at least T; a 3D model needs frames at least
    as large as its receptive field (the Tetrapod's lobes)."""
    if len(stack) < cfg.model.frames:
        raise UserInputError(f"{stack.path}: {len(stack)} frame(s), but {source} sees {cfg.model.frames} "
                             "consecutive frames at a time")
    if cfg.model.kind != "deepstorm3d":
        return
    need = receptive_field_px(cfg.model.dilations)
    height, width = stack.shape
    if min(height, width) < need:
        raise UserInputError(f"{stack.path}: frames of {height}×{width} px are smaller than the {need} px "
                             f"receptive field of {source}")


def plan_stack(stack: ImageStack, localizer: Localizer, batch_size: int, max_memory_gb: float | None,
               superres: bool, source: str) -> Plan:
    """Frames per pass and tiles for ``stack`` within the memory budget (``max_memory_gb``, default a share
    of the memory available); a super-resolved image is held throughout, with one chunk's part."""
    height, width = stack.shape
    image_bytes = 0
    if superres and isinstance(localizer, Predictor):
        rows, cols = localizer.grid.fine_shape(height, width)
        image_bytes = 2 * 4 * rows * cols  # float32, the whole frame's and a chunk's part
    return plan_passes(stack.shape, stack.dtype.itemsize, localizer.footprint(height, width),
                       memory_budget_bytes(max_memory_gb), batch_size,
                       f"localizing {height}×{width} px frames with {source}", image_bytes)


def within_uncertainty(table: pd.DataFrame, max_nm: float) -> pd.DataFrame:
    """The rows of ``table`` whose lateral uncertainty (:func:`~deepsmlm.localizations.lateral_sigma_nm`, the
    ThunderSTORM ``uncertainty_xy``) is at most ``max_nm``; rows of unknown uncertainty are dropped."""
    return table[lateral_sigma_nm(table) <= max_nm].reset_index(drop=True)


@dataclass(frozen=True)
class Run:
    """One pass of a model over a stack: the config it ran by (the model's, with the run's threshold and
    camera), the metadata of its table, and the stream's result (rows unless they went only to a writer,
    the super-resolved image when asked for, seconds, frames/s)."""

    config: SimulationConfig
    metadata: Metadata
    result: StackResult

    @property
    def localizations(self) -> Localizations:
        """The rows kept, with the run's metadata."""
        return Localizations(self.result.table, self.metadata)

    @property
    def superres_pixel_nm(self) -> float:
        """The pixel of a network's super-resolved image (nm): its output grid's fine pixel."""
        return output_grid(self.config).fine_nm


class Model:
    """A localizer ready to run: a trained network or the classic fitter, with its config.

    ``name``: the shipped name or folder it was loaded from (or gaussian-mle); ``config``: the config it
    localizes by (the model's own, with the experiment's camera when one was given); ``device``: where it
    runs. Make one with :func:`load_model`.
    """

    def __init__(self, name: str, config: SimulationConfig, net: nn.Module | OnnxNetwork | None,
                 device: torch.device, source: str, fitter_options: Mapping[str, float] | None = None):
        self.name, self.config, self.device, self.source = name, config, device, source
        self._net = net
        self._fitter_options = dict(fitter_options or {})

    @property
    def classic(self) -> bool:
        """True for a classic fitter (gaussian-mle, psf-mle), False for a network."""
        return self._net is None

    @property
    def gives_uncertainty(self) -> bool:
        """Whether its localizations carry σ: a LocNet network's (calibrated) or a classic fitter's √CRLB."""
        return self.classic or self.config.model.kind == "locnet"

    def check_max_uncertainty(self, max_uncertainty_nm: float | None) -> None:
        """One-line errors for a ``--max-uncertainty-nm`` that is not positive, or given to a model whose
        localizations carry no σ (before any work)."""
        check_positive(max_uncertainty_nm, "--max-uncertainty-nm")
        if max_uncertainty_nm is not None and not self.gives_uncertainty:
            raise UserInputError(f"--max-uncertainty-nm: {self.source} gives no uncertainty to filter by (LocNet "
                                 f"models and the classic fitters do)")

    @property
    def default_batch_size(self) -> int:
        """Frames per pass unless told: a network's 32, a fitter's 256 (sparse frames hold few spots, and a
        batched fit's cost per step is mostly fixed; the memory plan may lower either)."""
        return FITTER_BATCH if self.classic else NETWORK_BATCH

    def __repr__(self) -> str:
        return f"Model({self.name!r}, device={str(self.device)!r})"

    def localizer(self, config: SimulationConfig | None = None) -> Localizer:
        """What :meth:`stream` runs, built by ``config`` (default :attr:`config`): the network's predictor or
        the fitter, on :attr:`device`, for callers that drive passes and tiles themselves (its
        ``photons``, ``localize_tile`` and ``footprint``)."""
        cfg = self.config if config is None else config
        if self.classic:
            return CLASSICS[self.name](cfg, device=self.device, **self._fitter_options)
        return build_predictor(cfg, self._net, self.device)

    def localize(self, frames: Frames, *, batch_size: int | None = None, threshold: float | None = None,
                 pixel_size_nm: float | None = None, baseline_subtracted: bool = False, force: bool = False,
                 max_memory_gb: float | None = None, max_uncertainty_nm: float | None = None,
                 progress: ProgressCallback | None = None) -> Localizations:
        """Localize every frame of ``frames`` (ADU: a TIFF / folder / .dax / .raw path, an open ImageStack,
        or an array (frames, height, width)) into a table in nm and photons, 0-based frames.

        ``batch_size``: most frames read at once (default :meth:`default_batch_size`); ``threshold``: detection threshold (a network's summed
        density, 0–1, or gaussian-mle's in noise standard deviations; default the model's);
        ``pixel_size_nm``: the data's pixel size (nm; default the file's, else the model's is assumed);
        ``baseline_subtracted``: the frames had the camera baseline removed; ``force``: run even when the
        data do not fit the model; ``max_memory_gb``: the working-memory budget (GiB);
        ``max_uncertainty_nm``: keep only localizations whose lateral σ (RMS of σx and σy, nm) is at most
        this; ``progress``: hears of the frames done. Bad input raises a one-line
        :class:`~deepsmlm.errors.UserInputError`.

        Example::

            locs = deepsmlm.load_model("default-2d").localize("frames.tif")
            locs.table[["frame", "x_nm", "y_nm", "photons"]]
        """
        check_positive(pixel_size_nm, "--pixel-size-nm")
        with opened(frames) as stack:
            return self.stream(stack, batch_size=batch_size, threshold=threshold, pixel_size_nm=pixel_size_nm,
                               baseline_subtracted=baseline_subtracted, force=force, max_memory_gb=max_memory_gb,
                               max_uncertainty_nm=max_uncertainty_nm, progress=progress).localizations

    def stream(self, stack: ImageStack, *, batch_size: int | None = None, threshold: float | None = None,
               pixel_size_nm: float | None = None, baseline_subtracted: bool = False, force: bool = False,
               max_memory_gb: float | None = None, max_uncertainty_nm: float | None = None,
               progress: ProgressCallback | None = None, superres: bool = False,
               open_writer: Callable[[Metadata], AbstractContextManager[TableWriter]] | None = None,
               keep_rows: bool = False, frames: range | None = None, checked: bool = False) -> Run:
        """:meth:`localize` over an open stack, for long stacks: rows go to ``open_writer(metadata)``'s
        writer chunk by chunk when given (and are kept too with ``keep_rows``), else into the result's
        table; ``superres``: also sum the network's super-resolved image (of every detection, also those
        ``max_uncertainty_nm`` drops). ``frames``: only these frames (a step-1 range; their neighbours are
        read as temporal context); ``checked``: :meth:`check_stack` passed already (a chunk of a batch)."""
        self.check_max_uncertainty(max_uncertainty_nm)
        cfg = run_config(self.config, threshold, baseline_subtracted, self.classic)
        localizer = self.localizer(cfg)
        if not checked:
            self.check_stack(stack, cfg, pixel_size_nm, force)
        plan = plan_stack(stack, localizer, batch_size or self.default_batch_size, max_memory_gb, superres, self.source)
        meta = Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=stack.shape, n_frames=len(stack),
                        config=cfg.model_dump(mode="json"), source=str(stack.path))
        with torch.inference_mode(), (nullcontext() if open_writer is None else open_writer(meta)) as write:
            select = None if max_uncertainty_nm is None else partial(within_uncertainty, max_nm=max_uncertainty_nm)
            result = run_stack(stack, localizer, plan, progress, write, superres, keep_rows, select, frames)
        return Run(cfg, meta, result)

    def check_stack(self, stack: ImageStack, cfg: SimulationConfig, pixel_size_nm: float | None = None,
                    force: bool = False) -> bool:
        """One-line errors naming ``stack`` when it does not fit ``cfg`` (a run's config): frames smaller than
        a 3D network's receptive field, another pixel size (unless ``force``), data unlike the model's
        (unless ``force``). Returns whether the data's pixel size is known."""
        check_field(stack, cfg, self.source)
        known = check_pixel_size(stack, cfg, self.source, pixel_size_nm, force)
        if not force:
            check_data(stack, cfg, self.source, psf_sigma_nm=psf_sigma_nm(cfg), trained=not self.classic,
                       pixel_declared=known)
        return known


def load_network(name_or_dir: str | os.PathLike, backend: str,
                 device: torch.device) -> tuple[SimulationConfig, nn.Module | OnnxNetwork]:
    """The config and inference network of a shipped name, model folder or (``onnx``) exported .onnx file:
    the torch network with batch norm folded, channels-last (``torch-bf16``: its weights in bfloat16), or
    (``onnx``) that network exported to ONNX in memory."""
    if backend not in BACKENDS:
        raise UserInputError(f"--backend {backend}: use {' or '.join(BACKENDS)}")
    if is_onnx_file(name_or_dir):
        if backend != "onnx":
            raise UserInputError(f"{name_or_dir}: an ONNX model runs with --backend onnx")
        return load_onnx(name_or_dir)
    cfg, net = registry.load_model(name_or_dir, device if backend != "onnx" else "cpu")
    net = registry.fold_batchnorm(net)
    if backend == "onnx":
        return cfg, exported_network(cfg, net, f"model {name_or_dir}")
    net = net.to(memory_format=torch.channels_last)  # the input's layout: faster convolutions on CPU
    return cfg, (net.to(torch.bfloat16) if backend == "torch-bf16" else net)


def load_model(name_or_dir: str | os.PathLike, device: str = "cpu", *, config: ConfigLike | None = None,
               fitter_options: Mapping[str, float] | None = None, backend: str = "torch") -> Model:
    """A model by shipped name (``default-2d``, ``locnet-2d``, ``tetrapod-3d``, ``locnet-tetrapod``,
    ``learned-3d``, ``multicolor-2dye``, ``epfl2016-as-3d``), by
    model folder (what ``train`` writes), or a classic fitter (``gaussian-mle``; ``psf-mle``, the 3D fit with
    the config's PSF model), on ``device`` (cpu, cuda).

    ``config`` (a preset name, YAML path or loaded config) describes the data: the camera (and pixel size)
    a classic fitter needs (psf-mle: also the PSF model and z range), or, for a network, the experiment's
    camera that replaces the model's (its pixel size must match, its z range lie within the trained one).
    ``fitter_options``: a classic fitter's fit settings (gaussian-mle: ``box_px``, ``fit_sigma``,
    ``iterations``, ``split_threshold``, ``max_spots``; psf-mle: ``box_px``, ``iterations``; default their own).
    ``backend``: ``torch``, ``torch-bf16`` (the network in bfloat16: on CPUs with AMX or AVX512-BF16 about
    2× faster at 512×512, positions within about 1 nm of float32's; slower on CPUs without them) or ``onnx``
    (the network exported to ONNX, run by onnxruntime on the CPU with torch's thread count; ``name_or_dir`` may
    then be an .onnx file :func:`~deepsmlm.api.onnx.export_onnx` wrote); pre- and post-processing are the same.

    Example::

        model = deepsmlm.load_model("default-2d")
        fitter = deepsmlm.load_model("gaussian-mle", config="epfl2016_2d")
    """
    where = check_device(device)
    name = str(name_or_dir)
    if name in CLASSICS:
        if backend != "torch":
            raise UserInputError(f"--backend {backend}: {name} is a classic fitter, not a network")
        if config is None:
            raise UserInputError(f"{name} needs --config CONFIG (camera and pixel size of the data)")
        return Model(name, as_config(config), None, where, f"config {config_label(config)}", fitter_options)
    if fitter_options:
        raise UserInputError(f"fitter options are gaussian-mle's and psf-mle's, not model {name}'s")
    cfg, net = load_network(name_or_dir, backend, where)
    if config is not None:
        cfg = with_experiment(cfg, as_config(config), name, config_label(config))
    return Model(name, cfg, net, where, f"model {name}")
