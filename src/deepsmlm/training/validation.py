"""Validation during training: fixed seeded frames spanning the training density range, localized by the
network at several detection thresholds and scored (Jaccard, RMSE, and for a network that predicts σ the
z-score SD of each axis). The threshold with the best SMLM-2016 lateral efficiency (averaged with the axial
one in 3D) is chosen for the record; a kept model is saved with it and with its σ calibrated post hoc by
those z-score SDs (:func:`kept_config`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from deepsmlm.analysis.metrics import evaluate, recall_by_depth
from deepsmlm.assembly.predictors import build_predictor
from deepsmlm.config import SimulationConfig, updated
from deepsmlm.localizations import Localizations, Metadata
from deepsmlm.simulation.emitters import EmitterSampler
from deepsmlm.simulation.movies import ground_truth_table
from deepsmlm.simulation.simulator import Simulator
from deepsmlm.simulation.windows import window_batch
from deepsmlm.training.batches import density_range, labelled, training_emitters

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
RAW_SIGMA = (1.0, 1.0, 1.0)  # model.sigma_scale of an uncalibrated σ
NOTHING_FOUND = {"jaccard": 0.0, "rmse_lateral_nm": None, "rmse_axial_nm": None, "recall": None, "precision": None,
                 "efficiency_lateral": None, "efficiency_axial": None}  # the metrics of an unscorable network


@dataclass
class ValidationSet:
    """Fixed seeded frames (ADU; windows (F, T, H, W) for a network that sees T frames, the truth that of
    their middle frames) and their ground truth, spanning the training density range."""

    adu: torch.Tensor
    truth: Localizations
    counted: np.ndarray

    @classmethod
    def build(cls, sim: Simulator, cfg: SimulationConfig) -> ValidationSet:
        """``training.validation_frames`` frames of ``sim`` (the training field's simulator; ``cfg`` its
        config) in up to 8 groups of densities over the training range, seeded by the training seed."""
        gen = torch.Generator().manual_seed(cfg.training.seed + 1_000_003)
        lo, hi = density_range(cfg)
        n = cfg.training.validation_frames
        densities = np.linspace(lo, hi, min(n, 8))
        counts = np.diff(np.linspace(0, n, len(densities) + 1).round().astype(int))
        parts, rows, counted, first = [], [], [], 0
        for d, count in zip(densities, counts):
            sampler = EmitterSampler(training_emitters(cfg, float(d)), cfg.frame)
            if cfg.model.frames > 1:
                batch = window_batch(sim, int(count), cfg.model.frames, gen, sampler)
            else:
                batch = sim.sample(int(count), gen, sampler)
            table = ground_truth_table(batch, cfg.frame.pixel_size_nm)
            table["frame"] += first
            rows.append(table)
            counted.append(labelled(cfg, batch.emitters.photons).numpy())
            parts.append(batch.adu)
            first += int(count)
        meta = Metadata(pixel_size_nm=cfg.frame.pixel_size_nm, image_shape=(cfg.frame.height, cfg.frame.width),
                        n_frames=first)
        table = pd.concat(rows, ignore_index=True)
        if not cfg.localizes_z():
            table = table.drop(columns="z_nm")  # a 2D model is scored laterally
        return cls(torch.cat(parts), Localizations(table, meta), np.concatenate(counted))


def validation_efficiency(m: dict) -> float:
    """What the threshold is chosen by: the SMLM-2016 lateral efficiency, averaged with the axial one in 3D."""
    values = [m["efficiency_lateral"]] + ([m["efficiency_axial"]] if m.get("efficiency_axial") is not None else [])
    return -1e9 if values[0] is None else float(np.mean(values))


@dataclass
class ValidationScorer:
    """Scores a network on ``frames`` by the run's config ``cfg`` (its camera, normalisation, head,
    tolerances; its σ uncalibrated, so that a resumed run refits the calibration), on ``device``:
    ``scorer(net, step)`` is the validation record of that step."""

    frames: ValidationSet
    cfg: SimulationConfig
    device: torch.device

    def __post_init__(self) -> None:
        self.cfg = updated(self.cfg, {"model.sigma_scale": RAW_SIGMA})

    def __call__(self, net: nn.Module, step: int) -> dict:
        """The record: ``step``, ``jaccard`` and ``threshold`` (the chosen one), RMSE, recall, precision and
        efficiency, the z-score SD of each axis when the network predicts σ (3D: axial figures and recall by
        depth too; multicolour: colour accuracy)."""
        everything = build_predictor(self.cfg, net, self.device).localize_frames(self.frames.adu,
                                                                                 threshold=THRESHOLDS[0])
        _, thr, m = max(self.scores(everything), key=lambda s: s[0])
        record = {"step": step, "jaccard": m["jaccard"] or 0.0, "threshold": thr,
                  "rmse_lateral_nm": m["rmse_lateral_nm"], "recall": m["recall"], "precision": m["precision"],
                  "efficiency_lateral": m["efficiency_lateral"]}
        record.update({k: v for k, v in m.items() if k.startswith("zscore_sd_") and v is not None})
        t = self.cfg.training
        if self.cfg.localizes_z():
            record.update(rmse_axial_nm=m["rmse_axial_nm"], efficiency_axial=m["efficiency_axial"],
                          recall_by_depth=recall_by_depth(
                              self.frames.truth, self.detections(everything, thr), self.cfg.emitters.z_range_nm,
                              t.lateral_tol_nm, t.axial_tol_nm, self.frames.counted))
        if self.cfg.model.colors > 1:
            record.update(color_accuracy=m.get("color_accuracy"))
        return record

    def detections(self, everything: pd.DataFrame, threshold: float) -> Localizations:
        """The detections of the lowest threshold's pass that pass ``threshold`` (a detection passes a higher
        threshold when its confidence does: confidence = window mass, capped at 1; thresholds ≤ 1)."""
        kept = everything[everything.prob >= threshold].reset_index(drop=True)
        return Localizations(kept, self.frames.truth.meta)

    def scores(self, everything: pd.DataFrame) -> list[tuple[float, float, dict]]:
        """(efficiency, threshold, metrics) at each threshold worth scoring: the threshold balances detections
        against precision; an untrained net's far too many detections are not matched."""
        truth, t = self.frames.truth, self.cfg.training
        scores = []
        for thr in THRESHOLDS:
            pred = self.detections(everything, thr)
            if len(pred) > 4 * max(len(truth), 1):
                continue
            m = evaluate(truth, pred, t.lateral_tol_nm, t.axial_tol_nm, counted=self.frames.counted)
            scores.append((validation_efficiency(m), thr, m))
        return scores or [(-1e9, THRESHOLDS[-1], dict(NOTHING_FOUND))]


def kept_config(cfg: SimulationConfig, record: dict) -> SimulationConfig:
    """The config a kept model is saved with: the record's threshold and, when its network predicts σ, the
    post-hoc σ calibration ``model.sigma_scale``: each axis' factor the z-score SD of the record (of the raw
    σ), so that the saved model's z-scores have SD 1 on the validation set."""
    scale = tuple(record.get(f"zscore_sd_{axis}") or 1.0 for axis in "xyz")
    return updated(cfg, {"model.threshold": record["threshold"], "model.sigma_scale": scale})


def validation_line(record: dict) -> str:
    """One line of a validation record: its step, Jaccard, threshold and RMSE (axial too in 3D), nm, and the
    raw σ's z-score SDs when the network predicts σ."""
    axial = f", axial {record['rmse_axial_nm'] or 0:.1f} nm" if "rmse_axial_nm" in record else ""
    sds = [f"{a} {record[f'zscore_sd_{a}']:.2f}" for a in "xyz" if f"zscore_sd_{a}" in record]
    calibration = f", σ z-score SD {', '.join(sds)}" if sds else ""
    return (f"step {record['step']}: val Jaccard {record['jaccard']:.3f} (threshold {record['threshold']}), "
            f"RMSE {record['rmse_lateral_nm'] or 0:.1f} nm" + axial + calibration)
