"""The stage's lateral wobble of a bead z-stack, slice by slice: with the pupil and the beads held, slice k's
shift s_k (x, y camera px, shared by all beads) is the maximum-likelihood fit of all the beads' crops in that
slice under the camera noise model. One small independent fit per slice, so every slice of the stack gets
its wobble for the price of a few renders (an L-BFGS over all slices at once would take many more).

The solver is the classic fitters' (``inference.poisson_fit.fit_boxes``: Fisher scoring with Marquardt
damping), with the B crops of a slice as one "box" and the Jacobian in s_k by forward-mode autograd through
the scan model. The result goes back into the model as its wobble (mean zero; the beads' xy take the mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.func import jvp, vmap

from deepsmlm.calibration.pupil_fit import ScanData, ScanModel
from deepsmlm.inference.poisson_fit import fit_boxes
from deepsmlm.progress import ProgressCallback, ProgressEvent

MAX_SHIFT_PX = 3.0  # a slice's shift stays within this of the beads' mean position
SLICES_PER_FIT = 4  # slices fitted together (their forward-mode Jacobians bound the memory)
SETTLE_DECREMENT = 1e-3  # a slice stops when its step's predicted deviance decrease is below this


def slice_model(model: ScanModel, slice_index: torch.Tensor):
    """The spot model of ``fit_boxes`` for whole slices: parameters (E, 3) = shift x, y (px) and the row of
    ``slice_index`` (held) -> the slice's B crops stacked as one (E, B·P, P) box and ∂/∂(x, y) (E, 2, B·P, P)."""

    def expected(theta: torch.Tensor, jacobian: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        slices = slice_index[theta[:, 2].round().long()].tolist()

        def render(shift: torch.Tensor) -> torch.Tensor:
            mu = model(slices, shift).transpose(0, 1)
            return mu.reshape(len(slices), -1, mu.shape[-1])

        shift = theta[:, :2]
        if not jacobian:
            return render(shift), None
        tangents = torch.eye(2, dtype=shift.dtype)[:, None, :].expand(2, len(shift), 2)
        mu, d = vmap(lambda v: jvp(render, (shift,), (v,)), out_dims=(None, 0))(tangents)
        return mu, d.transpose(0, 1)

    return expected


@torch.no_grad()
def fit_wobble(model: ScanModel, data: ScanData, slices: Sequence[int], steps: int = 2,
               progress: ProgressCallback | None = None) -> None:
    """Fit the wobble of ``slices`` slice by slice (module docstring), from the model's current wobble, at most
    ``steps`` Fisher-scoring steps each, and set it in ``model`` (:meth:`ScanModel.set_wobble`)."""
    slices = list(slices)
    b, _, p, _ = data.photons.shape
    index = torch.as_tensor(slices)
    v0 = torch.broadcast_to(data.v0, (b, 1, p, p))
    inf = float("inf")
    bounds = (torch.tensor([-MAX_SHIFT_PX, -MAX_SHIFT_PX, -inf]), torch.tensor([MAX_SHIFT_PX, MAX_SHIFT_PX, inf]))
    start = model.wobble_px().detach()
    expected = slice_model(model, index)
    shifts = []
    for first in range(0, len(slices), SLICES_PER_FIT):
        rows = torch.arange(first, min(first + SLICES_PER_FIT, len(slices)))
        boxes = data.photons[:, index[rows]].transpose(0, 1).reshape(len(rows), b * p, p)
        noise = v0.expand(b, len(rows), p, p).transpose(0, 1).reshape(len(rows), b * p, p)
        theta = torch.cat([start[index[rows]], rows[:, None].float()], 1)
        fitted = fit_boxes(expected, boxes, noise, theta, data.scale, bounds, 2, steps, SETTLE_DECREMENT)[0]
        shifts.append(fitted[:, :2])
        if progress is not None:
            progress(ProgressEvent("fitting the stage wobble", int(rows[-1]) + 1, len(slices), status="slices"))
    model.set_wobble(slices, torch.cat(shifts))
