"""Many stacks and whole-chip frames on Dask distributed (a 2-worker LocalCluster of processes): the rows
equal a single-process run's exactly, frame numbers and metadata kept; a worker killed mid-run or a run
interrupted and started again ends with every frame once; bad input in one line."""

from __future__ import annotations

import logging
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")

import deepsmlm  # noqa: E402
from deepsmlm.api.batch import localize_batch  # noqa: E402
from deepsmlm.api.model import plan_stack  # noqa: E402
from deepsmlm.assembly.simulators import build_simulator  # noqa: E402
from deepsmlm.cli import app  # noqa: E402
from deepsmlm.commands.simulate import apply_overrides  # noqa: E402
from deepsmlm.config import load_config, updated  # noqa: E402
from deepsmlm.io.images import open_stack  # noqa: E402
from deepsmlm.io.localization_files import read_localizations  # noqa: E402
from deepsmlm.io.tiff import write_stack  # noqa: E402
from deepsmlm.simulation.movies import simulate_to_folder  # noqa: E402

MODEL = "default-2d"
LENGTHS = (10, 7, 12, 9)  # frames of the four stacks; chunks of CHUNK frames end mid-stack and at its end
CHUNK = 4


def simulated(folder, frames: int, size: int, seed: int):
    """A movie of ``frames`` frames of size² px at default-2d's conditions (100 nm pixels)."""
    cfg = updated(load_config("epfl2013_bundled_tubes"), {"frame.height": size, "frame.width": size})
    simulate_to_folder(apply_overrides(cfg, frames=frames, seed=seed, density=1.5, emitters=None), folder,
                       build_simulator(cfg))
    with open_stack(folder / "frames.tif") as stack:
        return stack[:]


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """Four small stacks (64×64 px, 100 nm) cut from one simulated movie."""
    folder = tmp_path_factory.mktemp("stacks")
    frames = simulated(folder / "movie", sum(LENGTHS), 64, 5)
    ends = np.cumsum((0, *LENGTHS))
    paths = [folder / f"stack{i}.tif" for i in range(len(LENGTHS))]
    for path, a, b in zip(paths, ends[:-1], ends[1:]):
        write_stack(path, frames[a:b], pixel_size_nm=100.0)
    return paths


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread each; the address the tests pass as the scheduler."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as local, Client(local) as client:
        yield local.scheduler_address, client


@pytest.fixture(scope="module")
def reference(stacks):
    """Each stack localized in this process (one torch thread, as a Dask worker runs) in passes of CHUNK frames,
    as the workers run chunks of CHUNK frames: convolutions over other batch sizes round differently in the
    last bit of float32 (≤ 0.0004 nm here), in one process as well."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = deepsmlm.load_model(MODEL)
    yield {path.stem: model.localize(path, batch_size=CHUNK) for path in stacks}
    torch.set_num_threads(threads)


def assert_same_as_reference(out, reference, names) -> None:
    for name in names:
        locs = read_localizations(out / f"{name}.parquet")
        ref = reference[name]
        assert len(locs) > 0
        pd.testing.assert_frame_equal(locs.table, ref.table, check_exact=True)
        assert locs.meta == ref.meta  # pixel size, frame shape and count, source, config


def test_four_stacks_on_two_workers_equal_one_process(stacks, cluster, reference, tmp_path):
    address, _ = cluster
    events = []
    result = localize_batch(str(stacks[0].parent / "stack*.tif"), MODEL, tmp_path, scheduler=address, chunk_frames=CHUNK,
                            progress=events.append)
    assert result.workers == 2 and not result.refused
    assert result.frames_run == sum(LENGTHS) and result.frames_skipped == 0
    assert_same_as_reference(tmp_path, reference, [p.stem for p in stacks])
    assert sorted(os.listdir(tmp_path)) == [f"{p.stem}.parquet" for p in stacks]  # parts gone once joined
    assert events[-1].done == events[-1].total == sum(LENGTHS)
    assert result.outputs[tmp_path / "stack0.parquet"] == len(reference["stack0"])


def test_a_killed_worker_and_an_interrupted_run_leave_every_frame_once(stacks, cluster, reference, tmp_path):
    address, client = cluster
    pids = list(client.run(os.getpid).values())

    class Interrupted(Exception):
        pass

    def kill_then_interrupt(event):
        if event.done >= 8 and pids:  # parts exist: one worker process dies mid-run (its nanny restarts it)
            os.kill(pids.pop(), signal.SIGKILL)
        elif event.done >= 24:  # then the client itself stops
            raise Interrupted

    with pytest.raises(Interrupted):
        localize_batch([str(p) for p in stacks], MODEL, tmp_path, scheduler=address, chunk_frames=CHUNK,
                       progress=kill_then_interrupt)
    parts = [[int(n) for n in p.stem.split("-")] for p in tmp_path.glob("*.parts/*.parquet")]
    assert len(parts) >= 6  # (with the files of the stacks joined before the interruption)
    client.wait_for_workers(2, timeout=60)
    result = localize_batch([str(p) for p in stacks], MODEL, tmp_path, scheduler=address, chunk_frames=CHUNK)
    assert result.frames_skipped >= sum(b - a for a, b in parts)  # the parts done are not redone
    assert result.frames_skipped + result.frames_run == sum(LENGTHS)
    assert_same_as_reference(tmp_path, reference, [p.stem for p in stacks])
    assert not list(tmp_path.glob("*.parts"))


def test_a_whole_chip_tiled_on_the_workers_equals_one_process(cluster, tmp_path):
    """512×512 frames with a per-worker budget that forces tiles (the 2048² chip is benchmarks/dask_batch.py);
    ``force``: the data check reads this field's dense tubes as brighter spots than the model knows."""
    address, _ = cluster
    simulated(tmp_path / "chip", 2, 512, 7)
    path = tmp_path / "chip" / "frames.tif"
    model = deepsmlm.load_model(MODEL)
    budget_gb = 0.2  # GiB: 9 tiles of 184² px (+ 28 px halo)
    with open_stack(path) as stack:
        plan = plan_stack(stack, model.localizer(), model.default_batch_size, budget_gb, False, "test")
    assert plan.core_px is not None and len(plan.tiles(512, 512)) >= 4
    result = localize_batch(path, MODEL, tmp_path / "out", scheduler=address, chunk_frames=1,
                            max_memory_gb=budget_gb, force=True)
    assert result.frames_run == 2
    ref = model.localize(path, force=True).table  # whole frames, 2 per pass
    got = read_localizations(tmp_path / "out" / "frames.parquet").table
    assert len(got) == len(ref) > 100
    np.testing.assert_array_equal(got["frame"], ref["frame"])
    for c in ("x_nm", "y_nm"):
        assert np.abs(got[c] - ref[c]).max() <= 0.1  # nm
    pd.testing.assert_frame_equal(got, ref, check_exact=False, rtol=1e-6)


def one_line_error(res, *words: str) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def test_a_glob_that_matches_nothing_is_one_line(runner, tmp_path):
    res = runner.invoke(app, ["batch", str(tmp_path / "nothing*.tif"), "--model", MODEL, "-o", str(tmp_path)])
    one_line_error(res, "nothing*.tif", "no stack matches")


def test_a_scheduler_that_does_not_answer_fails_within_seconds(runner, stacks, tmp_path):
    t0 = time.perf_counter()
    res = runner.invoke(app, ["batch", str(stacks[0]), "--model", MODEL, "-o", str(tmp_path),
                              "--scheduler", "tcp://127.0.0.1:9"])
    one_line_error(res, "--scheduler tcp://127.0.0.1:9", "no Dask scheduler answered")
    assert time.perf_counter() - t0 < 10


def test_a_stack_of_another_pixel_size_is_refused_by_name_the_others_localized(runner, stacks, cluster, reference,
                                                                               tmp_path):
    address, _ = cluster
    with open_stack(stacks[1]) as stack:
        write_stack(tmp_path / "other_px.tif", stack[:], pixel_size_nm=160.0)
    res = runner.invoke(app, ["batch", str(stacks[1]), str(tmp_path / "other_px.tif"), "--model", MODEL,
                              "-o", str(tmp_path / "out"), "--scheduler", address, "--chunk-frames", str(CHUNK)])
    assert res.exit_code == 3, res.stderr
    refused = [line for line in res.stderr.splitlines() if line.startswith("refused:")]
    assert len(refused) == 1 and "other_px.tif" in refused[0] and "pixel size 160 nm" in refused[0]
    assert sorted(os.listdir(tmp_path / "out")) == ["stack1.parquet"]
    assert_same_as_reference(tmp_path / "out", reference, ["stack1"])


def test_a_temporal_model_reads_each_chunks_neighbouring_frames(stacks, cluster, tmp_path):
    """A LocNet of three frames in (untrained, seeded): a chunk's first and last frames see the frames of the
    chunks beside it, as in one process (``force``: an untrained model's data check means nothing)."""
    import torch

    from deepsmlm.models.registry import build_network, load_model, save_model

    address, _ = cluster
    cfg = updated(load_model("locnet-2d")[0], {"model.frames": 3})  # the shipped one's normalisation
    torch.manual_seed(0)
    save_model(tmp_path / "t3", cfg, build_network(cfg.model).eval())
    model = deepsmlm.load_model(tmp_path / "t3")
    assert model.localizer().context_frames == 1
    result = localize_batch(stacks[2], tmp_path / "t3", tmp_path / "out", scheduler=address, chunk_frames=CHUNK,
                            force=True)
    assert result.frames_run == LENGTHS[2]
    got = read_localizations(tmp_path / "out" / "stack2.parquet").table
    ref = model.localize(stacks[2], batch_size=CHUNK, force=True).table
    assert len(ref) > 0 and set(ref["frame"]) >= {3, 4, 7, 8}  # rows beside the chunks' ends
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
