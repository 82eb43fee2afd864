"""`--backend torch-bf16`: the network in bfloat16 gives float32's localizations within a few nm (the same
emitters, a bounded shift), and classic fitters refuse it in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

import deepsmlm
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import updated
from deepsmlm.errors import UserInputError


def simulated_adu(model: deepsmlm.Model, frames: int, size: int) -> np.ndarray:
    cfg = updated(model.config, {"frame.height": size, "frame.width": size})
    return build_simulator(cfg).sample(frames, torch.Generator().manual_seed(3)).adu.numpy()


@pytest.mark.parametrize("name", ["locnet-2d", "default-2d"])
def test_bf16_localizes_as_float32(name, one_thread):
    exact, fast = deepsmlm.load_model(name), deepsmlm.load_model(name, backend="torch-bf16")
    assert {p.dtype for p in fast._net.parameters()} == {torch.bfloat16}
    adu = simulated_adu(exact, 6, 96)
    a, b = exact.localize(adu).table, fast.localize(adu).table
    assert len(a) > 50 and abs(len(b) - len(a)) <= 0.03 * len(a)
    distance, _ = cKDTree(b[["x_nm", "y_nm"]].to_numpy()).query(a[["x_nm", "y_nm"]].to_numpy())
    assert np.mean(distance < 10.0) > 0.97  # the same emitters …
    near = distance[distance < 10.0]
    assert np.median(near) < 1.0 and np.percentile(near, 95) < 2.0  # … nearly where float32 puts them


def test_classic_fitters_refuse_bf16():
    with pytest.raises(UserInputError, match="classic fitter"):
        deepsmlm.load_model("gaussian-mle", config="epfl2016_2d", backend="torch-bf16")
