"""Training a density network (Deep-STORM 2D or DeepSTORM3D) on batches simulated on the fly by the
shared forward model.

Each step draws a batch from the config's physics (PSF, camera, photons, background) with uniformly
random emitters at a density drawn from the training range (on fields of ``training.field_px`` when
set), converts ADU to photons with the camera model, and minimises the Deep-STORM loss (3D: on the
voxel grid, with the Dice term). Every ``validate_every`` steps a fixed seeded validation set
is localized and scored (Jaccard, RMSE) at several detection thresholds; the threshold with the best
SMLM-2016 lateral efficiency is chosen, the model with the best validation Jaccard (at its chosen
threshold) is kept with that threshold, and a resumable checkpoint is written.
"""

from __future__ import annotations

import datetime
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deepsmlm.analysis.metrics import evaluate, recall_by_depth
from deepsmlm.config import EmitterConfig, SimulationConfig
from deepsmlm.inference.predict import DensityPredictor, normalised_input
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.models.registry import TRAINING_LOG, build_network, save_model
from deepsmlm.optics.psf import PSF
from deepsmlm.progress import ProgressCallback, ProgressEvent, ignore
from deepsmlm.resources import require_memory
from deepsmlm.simulation.emitters import Emitters, placement_area_um2
from deepsmlm.simulation.simulator import FrameBatch, Simulator
from deepsmlm.training.checkpoint import load_checkpoint, save_checkpoint
from deepsmlm.training.losses import deepstorm_loss
from deepsmlm.training.requirements import training_memory_bytes
from deepsmlm.training.targets import spike_volume

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def density_range(cfg: SimulationConfig) -> tuple[float, float]:
    """Training densities (µm⁻²): the training range, else the config's density, else its emitter count
    range over the area emitters are placed in (the frame less ``emitters.margin_px``)."""
    if cfg.training.density_range_per_um2 is not None:
        return cfg.training.density_range_per_um2
    if cfg.emitters.density_per_um2 is not None:
        return cfg.emitters.density_per_um2, cfg.emitters.density_per_um2
    area_um2 = placement_area_um2(cfg.emitters, cfg.frame)
    lo, hi = cfg.emitters.count
    return lo / area_um2, hi / area_um2


def training_field(cfg: SimulationConfig) -> SimulationConfig:
    """The config the training frames are simulated with: square fields of ``training.field_px`` when
    set (the densities stay those of the full frame), else the config's frame."""
    if cfg.training.field_px is None:
        return cfg
    out = cfg.model_copy(deep=True)
    out.training.density_range_per_um2 = density_range(cfg)
    out.frame.height = out.frame.width = cfg.training.field_px
    return out


def training_emitters(cfg: SimulationConfig, density: float) -> EmitterConfig:
    """Uniformly random, independent emitters at ``density`` with the config's photons and z range, up to
    the field's edge (training fields are crops of a frame, so a frame margin does not apply)."""
    em = cfg.emitters.model_copy(deep=True)
    em.density_per_um2, em.count, em.margin_px = density, None, 0.0
    em.structure.kind = "uniform"
    em.blinking.enabled = False
    return em


def labelled(cfg: SimulationConfig, photons: torch.Tensor) -> torch.Tensor:
    """Emitters bright enough to be labelled (and to count in validation): ``training.label_min_photons``."""
    return photons >= cfg.training.label_min_photons


def default_normalisation(cfg: SimulationConfig, psf: PSF) -> tuple[float, float]:
    """(offset, scale) photons: mean background, and the peak pixel of a mean-brightness in-focus emitter."""
    z0, z1 = cfg.emitters.z_range_nm
    with torch.no_grad():
        peak = float(psf.z_stack(torch.tensor([(z0 + z1) / 2])).max())
    return float(np.mean(cfg.background.photons_per_px)), peak * cfg.emitters.photons.expected()


@dataclass
class ValidationSet:
    """Fixed seeded frames (ADU) and their ground truth, spanning the training density range."""

    adu: torch.Tensor
    truth: Localizations
    counted: np.ndarray

    @classmethod
    def build(cls, sim: Simulator, cfg: SimulationConfig) -> "ValidationSet":
        gen = torch.Generator().manual_seed(cfg.training.seed + 1_000_003)
        lo, hi = density_range(cfg)
        n = cfg.training.validation_frames
        densities = np.linspace(lo, hi, min(n, 8))
        counts = np.diff(np.linspace(0, n, len(densities) + 1).round().astype(int))
        parts, rows, first = [], [], 0
        for d, count in zip(densities, counts):
            batch = sim.sample(int(count), gen, training_emitters(cfg, float(d)))
            xyz = batch.emitters.xyz_nm.numpy().astype(np.float64)
            rows.append(pd.DataFrame({"frame": batch.emitters.frame.numpy() + first,
                                      "x_nm": xyz[:, 0], "y_nm": xyz[:, 1], "z_nm": xyz[:, 2],
                                      "counted": labelled(cfg, batch.emitters.photons).numpy()}))
            if cfg.model.colors > 1:
                rows[-1]["color"] = batch.emitters.color.numpy()
            parts.append(batch.adu)
            first += int(count)
        meta = Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=(cfg.frame.height, cfg.frame.width),
                        n_frames=sum(len(p) for p in parts))
        table = pd.concat(rows, ignore_index=True)
        counted = table.pop("counted").to_numpy(bool)
        if cfg.model.z_planes == 1:
            table = table.drop(columns="z_nm")  # a 2D model is scored laterally
        return cls(torch.cat(parts), Localizations(table, meta), counted)


def validation_efficiency(m: dict) -> float:
    """What the threshold is chosen by: the SMLM-2016 lateral efficiency, averaged with the axial one in 3D."""
    values = [m["efficiency_lateral"]] + ([m["efficiency_axial"]] if m.get("efficiency_axial") is not None else [])
    return -1e9 if values[0] is None else float(np.mean(values))


class Trainer:
    """Owns the simulator, network, optimizer and the data generator of one training run."""

    def __init__(self, cfg: SimulationConfig, out: Path, device: str = "cpu", psf: PSF | None = None,
                 dye_psfs: list[PSF] | None = None):
        field = training_field(cfg)
        f = field.frame
        require_memory(training_memory_bytes(field, training_emitters(field, density_range(field)[1])),
                       f"training on batches of {cfg.training.batch_size} frames of {f.height}×{f.width} px")
        self.out = out
        self.device = torch.device(device)
        self.sim = Simulator(field, psf=psf, device=self.device, dye_psfs=dye_psfs)
        if cfg.model.input_offset_photons is None or cfg.model.input_scale_photons is None:
            cfg = cfg.model_copy(deep=True)
            cfg.model.input_offset_photons, cfg.model.input_scale_photons = default_normalisation(cfg, self.sim.psf)
        self.cfg = cfg
        torch.manual_seed(cfg.training.seed)
        # channels-last speeds float32 convolutions on CPU, but its bfloat16 backward of dilated
        # convolutions crashes (torch 2.13 CPU): bfloat16 runs keep the default layout
        self.layout = torch.contiguous_format if cfg.training.bfloat16 else torch.channels_last
        self.net = build_network(cfg.model).to(self.device).to(memory_format=self.layout)
        self.optim = torch.optim.Adam(self.parameter_groups(), lr=cfg.training.learning_rate)
        self.rng = torch.Generator().manual_seed(cfg.training.seed)
        self.step = 0
        self.horizon = cfg.training.steps
        self.time_budget: tuple[float, float] | None = None  # (start, seconds) of a --minutes session
        self.trained_s = 0.0  # training time of earlier sessions (resumed runs)
        self.best_jaccard = -1.0
        self.history: list[dict] = []
        self.validation = ValidationSet.build(self.sim, training_field(cfg))

    def parameter_groups(self) -> list[dict]:
        """What the optimizer trains: the network."""
        return [{"params": list(self.net.parameters())}]

    def resume(self) -> None:
        """Continue from ``last.safetensors`` in the output folder."""
        scalars = load_checkpoint(self.out, self.net, self.optim, self.rng)
        self.step, self.best_jaccard, self.history = scalars["step"], scalars["best_jaccard"], scalars["history"]
        self.trained_s = float(scalars.get("trained_s", 0.0))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One simulated batch: normalised input (B, 1, H, W) and occupancy target (B, D, uH, uW)."""
        t = self.cfg.training
        lo, hi = density_range(training_field(self.cfg))
        density = lo + (hi - lo) * float(torch.rand(1, generator=self.rng))
        x, em = self.simulate_input(training_emitters(self.cfg, density))
        return x.contiguous(memory_format=self.layout), self.targets(em.to(self.device), t.batch_size)

    def targets(self, em: Emitters, n_frames: int) -> torch.Tensor:
        """(F, C·D, u·H, u·W) occupancy of the labelled emitters: one volume per dye (C = 1 unless
        multicolour), each emitter a unit mass in its own dye's volume."""
        h, w = self.sim.shape
        m = self.cfg.model
        keep = labelled(self.cfg, em.photons)

        def occupancy(sel: torch.Tensor) -> torch.Tensor:
            return spike_volume(em.xyz_nm[sel], em.frame[sel], n_frames, h, w, self.cfg.frame.pixel_size_nm,
                                m.upsampling, self.cfg.emitters.z_range_nm, m.z_planes)

        if m.colors == 1:
            return occupancy(keep)
        return torch.cat([occupancy(keep & (em.color == dye)) for dye in range(m.colors)], dim=1)

    def simulate_input(self, emitters: EmitterConfig) -> tuple[torch.Tensor, Emitters]:
        """A batch of camera frames through the fixed physics: normalised input (B, 1, H, W) and emitters."""
        fb: FrameBatch = self.sim.sample(self.cfg.training.batch_size, self.rng, emitters)
        x = normalised_input(self.sim.camera, fb.adu, self.cfg.model.input_offset_photons,
                             self.cfg.model.input_scale_photons)
        return x, fb.emitters

    def loss_terms(self, loss: torch.Tensor) -> torch.Tensor:
        """The training loss; subclasses add terms (a mask's smoothness)."""
        return loss

    def saved_config(self) -> SimulationConfig:
        """The config saved with the best model."""
        return self.cfg.model_copy(deep=True)

    def save_best(self, cfg: SimulationConfig) -> None:
        save_model(self.out, cfg, self.net)

    def progress(self) -> float:
        """Fraction of the training budget spent, 0 … 1: steps over the ``horizon`` (total steps), or with a
        time budget, time trained over the time of earlier sessions plus this session's budget."""
        if self.time_budget is None:
            return min(self.step / max(self.horizon, 1), 1.0)
        start, seconds = self.time_budget
        return min((self.trained_s + time.monotonic() - start) / (self.trained_s + seconds), 1.0)

    def learning_rate(self) -> float:
        """Learning rate of the next step: constant, or cosine decay to 5 % over the training budget."""
        t = self.cfg.training
        if t.lr_schedule == "constant":
            return t.learning_rate
        return t.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * self.progress())))

    def train_step(self) -> float:
        self.net.train()
        for group in self.optim.param_groups:
            group["lr"] = self.learning_rate() * group.get("lr_scale", 1.0)
        x, target = self.batch()
        t, m = self.cfg.training, self.cfg.model
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=t.bfloat16):
            pred = self.net(x)
        loss = self.loss_terms(deepstorm_loss(pred.float(), target, t.target_sigma_px, t.l1_weight,
                                              t.target_sigma_planes, t.dice_weight, m.colors))
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        self.step += 1
        return loss.item()

    def validate(self) -> dict:
        """Score the validation set at each threshold; keep the best model and its threshold."""
        predictor = DensityPredictor(self.cfg, self.net, self.device)
        # one pass at the lowest threshold: a detection passes a higher one when its confidence does
        # (confidence = window mass, capped at 1; thresholds ≤ 1)
        everything = predictor.localize_frames(self.validation.adu, threshold=THRESHOLDS[0])
        scores = []
        n_true = len(self.validation.truth)

        def pred_at(thr: float) -> Localizations:
            return Localizations(everything[everything.prob >= thr].reset_index(drop=True), self.validation.truth.meta)

        for thr in THRESHOLDS:
            pred = pred_at(thr)
            if len(pred) > 4 * max(n_true, 1):  # an untrained net: far too many detections to be worth matching
                continue
            m = evaluate(self.validation.truth, pred, self.cfg.training.lateral_tol_nm, self.cfg.training.axial_tol_nm,
                         counted=self.validation.counted)
            scores.append((validation_efficiency(m), thr, m))
        if not scores:
            scores.append((-1e9, THRESHOLDS[-1], {"jaccard": 0.0, "rmse_lateral_nm": None, "rmse_axial_nm": None,
                                                  "recall": None, "precision": None, "efficiency_lateral": None,
                                                  "efficiency_axial": None}))
        # the threshold balances detections against precision: the best SMLM-2016 efficiency
        _, thr, m = max(scores, key=lambda s: s[0])
        jaccard = m["jaccard"] or 0.0
        record = {"step": self.step, "jaccard": jaccard, "threshold": thr, "rmse_lateral_nm": m["rmse_lateral_nm"],
                  "recall": m["recall"], "precision": m["precision"], "efficiency_lateral": m["efficiency_lateral"]}
        if self.cfg.model.z_planes > 1:
            record.update(rmse_axial_nm=m["rmse_axial_nm"], efficiency_axial=m["efficiency_axial"],
                          recall_by_depth=recall_by_depth(
                              self.validation.truth, pred_at(thr), self.cfg.emitters.z_range_nm,
                              self.cfg.training.lateral_tol_nm, self.cfg.training.axial_tol_nm,
                              self.validation.counted))
        if self.cfg.model.colors > 1:
            record.update(color_accuracy=m.get("color_accuracy"))
        self.history.append(record)
        if jaccard > self.best_jaccard:
            self.best_jaccard = jaccard
            best = self.saved_config()
            best.model.threshold = thr
            self.save_best(best)
        return record

    def checkpoint(self, elapsed_s: float) -> None:
        """Save the resumable state and the validation history; ``elapsed_s``: this session's time."""
        trained_s = self.trained_s + elapsed_s
        scalars = {"step": self.step, "best_jaccard": self.best_jaccard, "history": self.history, "trained_s": trained_s}
        save_checkpoint(self.out, self.net, self.optim, self.rng, scalars)
        log = {"elapsed_s": trained_s, "history": self.history}
        write_text_atomic(self.out / TRAINING_LOG, json.dumps(log, indent=1))

    def run(self, steps: int | None = None, minutes: float | None = None,
            progress: ProgressCallback | None = None) -> dict:
        """Train until ``steps`` (total, this session and earlier ones) or for ``minutes`` of wall time (this
        session); validate and checkpoint on the way. ``progress`` hears of every step, and of each
        validation by a message line. The summary's ``steps`` is the total, ``session_steps`` the steps of
        this session."""
        t0 = time.monotonic()
        first = self.step
        if steps is not None:
            total = self.horizon = steps
        else:
            total = self.cfg.training.steps if minutes is None else math.inf
        if minutes is not None:
            self.time_budget = (t0, 60 * minutes)
        every = self.cfg.training.validate_every
        last = {}
        report = progress or ignore
        report(ProgressEvent("training", self.progress(), 1.0, self.status(first, total, t0)))
        while self.step < total and self.progress() < 1.0:
            loss = self.train_step()
            message = None
            if self.step % every == 0:
                last = self.validate()
                self.checkpoint(time.monotonic() - t0)
                message = validation_line(last)
            report(ProgressEvent("training", self.progress(), 1.0, self.status(first, total, t0), f"loss {loss:.3g}",
                                 message))
        if not self.history or self.history[-1]["step"] != self.step:
            last = self.validate()
            self.checkpoint(time.monotonic() - t0)
        return {"steps": self.step, "session_steps": self.step - first, "seconds": time.monotonic() - t0,
                "best_jaccard": self.best_jaccard, **last}

    def status(self, first: int, total: float, start: float) -> str:
        """Progress text: the step (of the total; this session's steps too when resumed), the time elapsed
        since ``start`` and, with a time budget, the time left."""
        text = f"step {self.step}" + (f"/{total}" if math.isfinite(total) else "")
        if first:
            text += f" ({self.step - first} this session)"
        elapsed = time.monotonic() - start
        text += f", {_clock(elapsed)} elapsed"
        if self.time_budget is not None:
            text += f", {_clock(max(self.time_budget[1] - elapsed, 0.0))} left"
        return text


def validation_line(record: dict) -> str:
    """One line of a validation record: its step, Jaccard, threshold and RMSE (axial too in 3D), nm."""
    axial = f", axial {record['rmse_axial_nm'] or 0:.1f} nm" if "rmse_axial_nm" in record else ""
    return (f"step {record['step']}: val Jaccard {record['jaccard']:.3f} (threshold {record['threshold']}), "
            f"RMSE {record['rmse_lateral_nm'] or 0:.1f} nm" + axial)


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))
