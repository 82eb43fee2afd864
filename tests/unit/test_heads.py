"""The output-head seam: the output grid's conversions, and a second head plugged in by its registry line
alone, used by the predictor, the tiled stream and the training step unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from deepsmlm.assembly.predictors import build_head, build_predictor
from deepsmlm.config import ModelConfig, TrainingConfig, updated
from deepsmlm.heads import registry
from deepsmlm.heads.density import DensityHead
from deepsmlm.heads.grid import OutputGrid
from deepsmlm.inference.stream import run_stack
from deepsmlm.inference.tiling import Plan
from deepsmlm.io.images import open_stack
from deepsmlm.io.tiff import write_stack
from tests.unit.test_deepstorm2d import tiny_config


def test_fine_pixel_centres_and_planes_go_to_nm_and_back():
    grid = OutputGrid(pixel_nm=100.0, upsampling=4, z_range_nm=(-400.0, 600.0), planes=10)
    assert grid.fine_nm == 25.0 and grid.plane_nm == 100.0
    assert grid.fine_shape(3, 5) == (12, 20) and grid.fine_index(3) == 12
    assert grid.voxels(3, 5) == 10 * 12 * 20
    centres = torch.arange(8) + 0.5  # fine pixel j covers [j, j + 1)
    np.testing.assert_array_equal(grid.fine_px_to_nm(centres).numpy(), 12.5 + 25.0 * np.arange(8))
    torch.testing.assert_close(grid.fine_px(grid.fine_px_to_nm(centres)), centres)
    assert grid.fine_px(100.0) == 4.0  # a camera pixel's right edge is its 4th fine pixel's
    plane_centres = np.arange(10) + 0.5
    np.testing.assert_allclose(grid.plane_to_z(plane_centres), -350.0 + 100.0 * np.arange(10))
    np.testing.assert_allclose(grid.plane(grid.plane_to_z(plane_centres)), plane_centres)
    assert grid.plane(-400.0) == 0.0 and grid.plane(600.0) == 10.0


def test_each_model_kind_has_the_density_head_with_its_settings():
    for kind in ("deepstorm2d", "deepstorm3d"):
        assert registry.head_for(ModelConfig(kind=kind)) is DensityHead
    cfg = tiny_config()
    head = build_head(updated(cfg, {"model.window_px": 3, "training.dice_weight": 0.5}))
    assert head.grid == OutputGrid(100.0, 4, tuple(cfg.emitters.z_range_nm), 1, 1)
    assert (head.window_px, head.window_planes, head.loss_settings.dice_weight) == (3, 0, 0.5)


@dataclass(frozen=True)
class BrightestPixelHead:
    """A second head: one output channel on the fine grid; a detection is a pixel above the threshold,
    placed at its centre."""

    grid: OutputGrid
    threshold: float = 0.5
    calls: list[str] = field(default_factory=list, compare=False)  # what the trainer asked of it

    @classmethod
    def from_config(cls, grid: OutputGrid, model: ModelConfig, training: TrainingConfig) -> BrightestPixelHead:
        return cls(grid, model.threshold)

    reach_px = 0
    bytes_per_px = 64.0

    def targets(self, xyz_nm, frame, color, labelled, n_frames, height, width, *, photons=None, background=None):
        self.calls.append("targets")
        out = torch.zeros(n_frames, 1, *self.grid.fine_shape(height, width))
        col, row = (self.grid.fine_px(xyz_nm[labelled, i]).long() for i in (0, 1))
        out[frame[labelled], 0, row, col] = 1.0
        return out

    def loss(self, raw, target):
        self.calls.append("loss")
        return (raw - target).square().mean()

    def activate(self, raw):
        return raw

    def detect(self, output, threshold=None):
        return output > (self.threshold if threshold is None else threshold)

    def decode(self, output, detections, first_frame=0, origin=(0, 0)):
        b, _, r, c = torch.nonzero(detections, as_tuple=True)
        return pd.DataFrame({"frame": b.numpy() + first_frame,
                             "x_nm": self.grid.fine_px_to_nm((c + origin[1]).numpy() + 0.5),
                             "y_nm": self.grid.fine_px_to_nm((r + origin[0]).numpy() + 0.5),
                             "prob": output[detections].numpy().astype(np.float64)})

    def image(self, output, detections):
        return (output * detections).sum(dim=(0, 1))


class FirstFinePixel(nn.Module):
    """Each camera pixel's value at the first of its u × u fine pixels."""

    def __init__(self, u: int):
        super().__init__()
        self.u = u
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(*x.shape[:2], self.u * x.shape[2], self.u * x.shape[3])
        out[..., ::self.u, ::self.u] = self.scale * x
        return out


@pytest.fixture
def second_head(monkeypatch):
    monkeypatch.setitem(registry.HEADS, "deepstorm2d", BrightestPixelHead)


def test_a_second_head_decodes_through_the_unchanged_predictor_and_tiled_stream(second_head, tmp_path):
    cfg = updated(tiny_config(), {"camera": {"type": "ideal"}, "frame.height": 64, "frame.width": 64,
                                  "model.input_offset_photons": 0.0, "model.input_scale_photons": 100.0,
                                  "model.threshold": 0.5})
    predictor = build_predictor(cfg, FirstFinePixel(4))
    assert isinstance(predictor.head, BrightestPixelHead)
    frames = np.zeros((3, 64, 64), np.uint16)
    spots = [(0, 5, 7), (1, 40, 3), (2, 33, 33), (2, 60, 61)]  # frame, row, col: the order of the rows
    for f, r, c in spots:
        frames[f, r, c] = 100
    expected = [(f, (4 * c + 0.5) * 25.0, (4 * r + 0.5) * 25.0) for f, r, c in spots]
    table = predictor.localize_frames(torch.from_numpy(frames.astype(np.float32)))
    assert list(zip(table.frame, table.x_nm, table.y_nm)) == expected
    assert (table.prob == 1.0).all()
    footprint = predictor.footprint(64, 64)
    assert footprint.bytes_per_px == 64.0 + predictor.network.bytes_per_px
    write_stack(tmp_path / "s.tif", frames, pixel_size_nm=100.0)
    with open_stack(tmp_path / "s.tif") as stack:
        whole = run_stack(stack, predictor, Plan(3, 3), superres=True)
        tiled = run_stack(stack, predictor, Plan(1, 1, 32, 28), superres=True)
    pd.testing.assert_frame_equal(tiled.table, table)
    pd.testing.assert_frame_equal(whole.table, table)
    assert tiled.superres.shape == (256, 256) and tiled.superres.sum() == pytest.approx(4.0)


def test_the_training_step_builds_targets_and_loss_of_a_second_head(second_head):
    from deepsmlm.training.trainer import Trainer

    trainer = Trainer(tiny_config(), Path("unused"))
    trainer.loop.net = FirstFinePixel(4)
    trainer.loop.optim = torch.optim.SGD(trainer.loop.net.parameters(), lr=0.1)
    trainer.loop.train_step()
    assert trainer.head.calls == ["targets", "loss"]
