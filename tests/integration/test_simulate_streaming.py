"""`simulate` streams frames and ground truth to disk: the same movie as ever for a config and seed, memory
flat in the number of frames, jobs that cannot fit refused before any work, and no output after a failure."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch

import deepsmlm.simulation.movies as simulate_command
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.cli import app
from deepsmlm.config import BackgroundConfig, FrameConfig, config_from_dict
from deepsmlm.errors import UserInputError
from deepsmlm.io.images import open_stack
from deepsmlm.simulation.background import background_chunks, sample_background
from deepsmlm.simulation.movies import simulate_to_folder

# every random part at once: blinking, per-emitter blur, an EMCCD with per-frame baseline and read-noise
# maps, a modulated background; 70 frames = three chunks of which the last is partial
PINNED = {
    "name": "pinned",
    "frame": {"height": 16, "width": 20, "pixel_size_nm": 100.0},
    "psf": {"model": "gaussian", "patch_px": 7, "blur_sigma_px": [0.0, 0.8]},
    "camera": {"type": "emccd", "em_gain": 30.0, "baseline_adu": [95.0, 105.0], "read_noise_e": [1.0, 4.0]},
    "emitters": {"density_per_um2": 1.5, "blinking": {"enabled": True}},
    "background": {"photons_per_px": [5.0, 25.0], "nonuniform_amplitude": 0.4, "nonuniform_length_nm": 400.0},
    "frames": 70,
    "seed": 12,
}
# digests of what simulate wrote for PINNED before frames were streamed (whole movie in memory)
PINNED_PIXELS_SHA256 = "795f69b3e96a82be8d79f1d7bb01df6d9ba163eb50327e7ee3330bd78fed2deb"
PINNED_TRUTH_SHA256 = "ead326914fbbbee24653d59ae9abeddda44639f2a5f1432b4f7756e9b7122b57"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_config_and_seed_give_the_same_movie_as_before_streaming(tmp_path):
    cfg = config_from_dict(PINNED)
    simulate_to_folder(cfg, tmp_path / "sim", build_simulator(cfg))
    with tifffile.TiffFile(tmp_path / "sim" / "frames.tif") as tif:
        pixels = tif.asarray()
        assert tif.is_imagej and tif.series[0].dataoffset is not None  # contiguous pages: memory-mappable
    assert pixels.shape == (70, 16, 20) and pixels.dtype == np.uint16
    assert sha256(pixels.tobytes()) == PINNED_PIXELS_SHA256
    assert sha256((tmp_path / "sim" / "ground_truth.csv").read_bytes()) == PINNED_TRUTH_SHA256
    with open_stack(tmp_path / "sim" / "frames.tif") as stack:
        assert stack.pixel_size_nm == pytest.approx(100.0) and np.array_equal(stack[:], pixels)


def test_background_chunks_are_the_whole_background_and_leave_the_generator_alike():
    cfg = BackgroundConfig(photons_per_px=(5.0, 25.0), nonuniform_amplitude=0.4, nonuniform_length_nm=400.0)
    frame = FrameConfig(height=16, width=20)
    whole_gen, chunk_gen = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    whole = sample_background(cfg, frame, 70, whole_gen)
    chunks = background_chunks(cfg, frame, 70, 32, chunk_gen)
    # the caller's generator is already past every background draw, before any chunk is made
    assert torch.equal(torch.rand(5, generator=whole_gen), torch.rand(5, generator=chunk_gen))
    parts = list(chunks)
    assert [len(p) for p in parts] == [32, 32, 6]
    assert torch.equal(torch.cat(parts), whole)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_memory_stays_flat_while_frames_stream(tmp_path, monkeypatch):
    """1,500 frames of 128 × 128 px are 49 MB as uint16 (98 MB of float32 background before streaming);
    the resident memory after the last chunk stays within 20 MB of that after the fourth."""
    cfg = config_from_dict({"frame": {"height": 128, "width": 128}, "psf": {"patch_px": 7},
                            "camera": {"type": "ideal"}, "emitters": {"count": [2, 2]}, "frames": 1500})
    resident = []
    to_uint16 = simulate_command.to_uint16

    def measured(adu):
        resident.append(_resident_bytes())
        return to_uint16(adu)

    monkeypatch.setattr(simulate_command, "to_uint16", measured)
    simulate_to_folder(cfg, tmp_path / "sim", build_simulator(cfg))
    assert len(resident) == 47
    assert resident[-1] - resident[3] < 20e6, [r / 1e6 for r in resident]
    assert (tmp_path / "sim" / "frames.tif").stat().st_size > 1500 * 128 * 128 * 2


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--density", "1e6"), "of memory, more than"),
        (("--frames", "100000000"), "of memory, more than"),
        (("--frames", "100000000", "--emitters", "0"), "of disk, more than"),
    ],
)
def test_jobs_that_cannot_fit_are_refused_before_any_work(runner, uniform_gaussian_config, tmp_path, one_line,
                                                         args, fragment):
    out = tmp_path / "new" / "sim"
    res = runner.invoke(app, ["simulate", str(uniform_gaussian_config), "-o", str(out), *args])
    assert res.exit_code == 2
    assert fragment in one_line(res.stderr)
    assert not (tmp_path / "new").exists()


def test_a_huge_frame_is_refused_naming_its_size(write_yaml, tmp_path, runner, one_line):
    config = write_yaml({"frame": {"height": 200000, "width": 200000}})
    res = runner.invoke(app, ["simulate", str(config), "-o", str(tmp_path / "sim")])
    assert res.exit_code == 2
    line = one_line(res.stderr)
    assert "200000×200000 px" in line and "GiB of memory" in line
    assert not (tmp_path / "sim").exists()


def test_disk_space_is_checked_against_the_expected_files(uniform_gaussian_config, tmp_path, monkeypatch):
    from deepsmlm.config import load_config

    cfg = load_config(uniform_gaussian_config)  # 5 frames of 32 × 32 px: 10 kB of pixels
    monkeypatch.setattr(simulate_command.shutil, "disk_usage", lambda path: SimpleNamespace(free=8_000))
    with pytest.raises(UserInputError, match="GiB of disk"):
        simulate_to_folder(cfg, tmp_path / "sim", build_simulator(cfg))
    assert not (tmp_path / "sim").exists()


class Interrupted(Exception):
    pass


def _fail_on_second_chunk(monkeypatch):
    calls = []
    to_uint16 = simulate_command.to_uint16

    def failing(adu):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted
        return to_uint16(adu)

    monkeypatch.setattr(simulate_command, "to_uint16", failing)


def test_a_failed_run_removes_the_folders_it_created(uniform_gaussian_config, tmp_path, monkeypatch):
    from deepsmlm.config import load_config, updated

    cfg = updated(load_config(uniform_gaussian_config), {"frames": 70})
    _fail_on_second_chunk(monkeypatch)
    with pytest.raises(Interrupted):
        simulate_to_folder(cfg, tmp_path / "a" / "b" / "sim", build_simulator(cfg))
    assert list(tmp_path.iterdir()) == [uniform_gaussian_config]


def test_a_failed_run_leaves_an_existing_folder_as_it_was(uniform_gaussian_config, tmp_path, monkeypatch):
    from deepsmlm.config import load_config, updated

    out = tmp_path / "sim"
    first = load_config(uniform_gaussian_config)
    simulate_to_folder(first, out, build_simulator(first))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cfg = updated(load_config(uniform_gaussian_config), {"frames": 70, "seed": 9})
    _fail_on_second_chunk(monkeypatch)
    with pytest.raises(Interrupted):
        simulate_to_folder(cfg, out, build_simulator(cfg))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
