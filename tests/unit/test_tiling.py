"""Tiling large frames: receptive radii, tile geometry and alignment, pass planning, the rate display."""

from __future__ import annotations

import pytest
import torch

from deepsmlm.config import ModelConfig
from deepsmlm.errors import UserInputError
from deepsmlm.inference.stream import rate_text
from deepsmlm.inference.tiling import Footprint, Plan, plan_passes
from deepsmlm.models.footprint import downsampling_px, receptive_radius_px
from deepsmlm.models.registry import build_network

ARCHITECTURES = {
    "2d cpu": {},
    "2d cpu u2": {"upsampling": 2},
    "2d paper": {"architecture": "paper", "upsampling": 4},
    "2d paper u2": {"architecture": "paper", "upsampling": 2},
    "3d cpu": {"kind": "deepstorm3d", "z_planes": 3, "upsampling": 2, "dilations": (1, 2, 4)},
    "3d paper": {"kind": "deepstorm3d", "z_planes": 3, "upsampling": 4, "dilations": (1, 2, 4),
                 "architecture": "paper"},
    "locnet": {"kind": "locnet", "upsampling": 1},
    "locnet 3 levels": {"kind": "locnet", "upsampling": 1, "levels": 3},
}


def reach_of_one_pixel(m: ModelConfig, size: int = 96) -> int:
    """Largest distance (camera px, per axis) of an output pixel that changes when one input pixel does,
    over the input pixel's places in the pooling grid (random network, float64)."""
    torch.manual_seed(0)
    net = build_network(m).double().eval()
    x = torch.rand(1, 1, size, size, dtype=torch.float64)
    reach = 0
    with torch.no_grad():
        before = net(x)
        for p in range(40, 48):
            poked = x.clone()
            poked[..., p, p] += 100.0
            rows, cols = torch.nonzero((net(poked) - before).abs().amax(dim=(0, 1)) > 0, as_tuple=True)
            reach = max(reach, int((rows // m.upsampling - p).abs().max()), int((cols // m.upsampling - p).abs().max()))
    return reach


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_receptive_radius_bounds_what_one_pixel_reaches(name):
    m = ModelConfig(channels=4, head_channels=2, **ARCHITECTURES[name])
    reach = reach_of_one_pixel(m)
    assert receptive_radius_px(m) - 1 <= reach <= receptive_radius_px(m)


@pytest.mark.parametrize("offset,identical", [(8, True), (6, False)])
def test_aligned_tiles_give_the_whole_frames_density_exactly(offset, identical):
    """A tile starting on the 4-px pooling grid of the U-Net sees its pooling windows as the whole frame
    does: beyond the receptive radius from the tile's edges its output is bit for bit the same; one
    starting off the grid is not."""
    m = ModelConfig(channels=4, head_channels=2)
    assert downsampling_px(m) == 4
    torch.manual_seed(1)
    net = build_network(m).eval()
    x = torch.rand(1, 1, 120, 120)
    r, u = receptive_radius_px(m), m.upsampling
    with torch.no_grad():
        whole = net(x)
        tile = net(x[..., offset:, offset:])
    inner = slice(u * (offset + r), u * 90)
    shifted = slice(u * r, u * (90 - offset))
    assert torch.equal(tile[..., shifted, shifted], whole[..., inner, inner]) == identical


def test_tiles_partition_the_frame_with_aligned_clipped_halos():
    height, width, core, halo = 300, 170, 64, 28
    tiles = Plan(1, 1, core, halo).tiles(height, width)
    owner = torch.zeros(height, width, dtype=torch.int64)
    for t in tiles:
        owner[t.core_rows, t.core_cols] += 1
        assert t.rows.start == max(0, t.core_rows.start - halo) and t.rows.stop == min(height, t.core_rows.stop + halo)
        assert t.cols.start == max(0, t.core_cols.start - halo) and t.cols.stop == min(width, t.core_cols.stop + halo)
        assert t.rows.start % 4 == 0 and t.cols.start % 4 == 0
        assert not t.is_whole
    assert bool((owner == 1).all())  # every pixel belongs to exactly one core
    assert Plan(8, 8).tiles(height, width)[0].is_whole


FOOTPRINT = Footprint(bytes_per_px=3000.0, reach_px=26, align_px=4, max_frames_per_pass=24)
GIB = 1 << 30


def test_small_frames_are_batched_within_the_budget():
    plan = plan_passes((64, 64), 2, FOOTPRINT, 4 * GIB, 32, "test")
    assert plan.core_px is None and plan.frames_per_pass == 24 and plan.frames_per_chunk == 32
    tight = plan_passes((64, 64), 2, FOOTPRINT, 100 << 20, 32, "test")  # 12 MB per frame: 8 fit
    assert tight.core_px is None and tight.frames_per_pass * 64 * 64 * 3000 <= 100 << 20
    assert 1 <= tight.frames_per_pass <= tight.frames_per_chunk <= 32


def test_large_frames_that_need_no_tiles_are_read_a_few_at_a_time():
    light = Footprint(bytes_per_px=80.0, reach_px=17, align_px=1, max_frames_per_pass=256, fixed_bytes=96 << 20)
    plan = plan_passes((2048, 2048), 2, light, 8 * GIB, 32, "test")
    frame_in = 2048 * 2048 * 14
    assert plan.core_px is None and plan.frames_per_chunk == (256 << 20) // frame_in == 4
    assert plan.frames_per_pass == GIB // (2048 * 2048 * 80) == 3


def test_large_frames_are_tiled_to_fit_the_budget():
    budget = 200 << 20
    plan = plan_passes((2048, 2048), 2, FOOTPRINT, budget, 32, "test", fixed_bytes=10 << 20)
    assert plan.frames_per_chunk == plan.frames_per_pass == 1
    assert plan.core_px % 4 == 0 and plan.halo_px == 28
    side = plan.core_px + 2 * plan.halo_px
    held = (10 << 20) + 2048 * 2048 * 14  # fixed, and the frame as read, as float32 and as photons
    assert held + side * side * 3000 <= budget
    assert held + (side + 4) ** 2 * 3000 > budget  # the largest tile that fits


def test_a_budget_below_one_tile_names_what_is_needed(one_line):
    with pytest.raises(UserInputError) as err:
        plan_passes((2048, 2048), 2, FOOTPRINT, 60 << 20, 32, "localizing 2048×2048 px frames with model m")
    needed = (2048 * 2048 * 14 + 88 * 88 * 3000) / GIB  # the frame, and a tile of 32 px with its halos
    line = one_line(str(err.value))
    assert f"localizing 2048×2048 px frames with model m needs about {needed:.3g} GiB" in line
    assert f"{60 / 1024:.3g} GiB" in line


@pytest.mark.parametrize("frames,seconds,text", [
    (7, 20.0, "0.35 frames/s"), (3, 1.25, "2.4 frames/s"), (1200, 10.0, "120 frames/s"),
    (199, 2.0, "100 frames/s"), (2, 30.0, "15 s/frame"), (1, 2500.0, "2500 s/frame"), (0, 1.0, ""),
])
def test_rate_keeps_slow_runs_readable(frames, seconds, text):
    assert rate_text(frames, seconds) == text
