"""LocNet's training target and loss: the Gaussian-mixture likelihood of the true emitter set under the
per-pixel predictions (DECODE, Speiser et al. 2021), plus a background term; derivation in docs/models.md.

Quantities are in the network's units: positions in camera px (pixel (r, c) centred at (c + ½, r + ½)),
z scaled to ±1 over the axial range, photons in photon units, background in the network's input units.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

ROW = 5  # a target emitter: valid (1/0), x px, y px, z (±1 over the range), photons (photon units)
SIGMA_FLOOR = 0.01
SIGMA_MAX = 1.0  # x, y: camera px; z: half the axial range
PHOTON_SIGMA_MAX = 4.0  # photon units
COUNT_VARIANCE_FLOOR = 1e-2  # emitters²: keeps the count term finite when every p is 0 or 1
WINDOW_PX = 4  # mixture components: pixels within this Chebyshev distance of an emitter's pixel


def pack_target(rows: torch.Tensor, background: torch.Tensor | None, height: int, width: int) -> torch.Tensor:
    """(F, H·W + ROW·K): per frame the true background (H·W, network input units; NaN when unknown), then
    K emitter rows (``rows`` (F, K, ROW), padded with invalid rows)."""
    n = rows.shape[0]
    if background is None:
        background = torch.full((n, height, width), math.nan, device=rows.device)
    return torch.cat([background.reshape(n, height * width).to(rows), rows.reshape(n, -1)], dim=1)


def unpack_target(target: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(background (F, H, W), emitter rows (F, K, ROW)) of a packed target."""
    n, pixels = target.shape[0], height * width
    return target[:, :pixels].view(n, height, width), target[:, pixels:].reshape(n, -1, ROW)


def emitter_rows(values: torch.Tensor, frame: torch.Tensor, n_frames: int) -> torch.Tensor:
    """(F, K, ROW) rows of emitters ``values`` (E, ROW − 1), sorted by ``frame``, K the most in a frame."""
    counts = torch.bincount(frame, minlength=n_frames)
    k = int(counts.max()) if len(frame) else 0
    first = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(frame), device=frame.device) - first[frame]
    rows = torch.zeros(n_frames, k, ROW, device=values.device)
    rows[frame, slot, 0] = 1.0
    rows[frame, slot, 1:] = values.to(rows)
    return rows


def normalised_outputs(raw: torch.Tensor, axial: bool) -> dict[str, torch.Tensor]:
    """The raw output (B, C, H, W) in the network's units: ``logp`` (log-probability of an emitter in the
    pixel), ``mean`` (B, Q, H, W): offsets from the pixel centre x, y (−1 … 1 px), z (±1) for ``axial``,
    photons (≥ 0); ``sigma`` (B, Q, H, W) of each; ``background`` (B, H, W). Channels: logit, Q means,
    background, Q σ (Q = 4 with z, else 3)."""
    q = 4 if axial else 3
    means = raw[:, 1:1 + q]
    offsets = torch.tanh(means[:, :q - 1])
    photons = F.softplus(means[:, q - 1:])
    scale = torch.tensor([SIGMA_MAX] * (q - 1) + [PHOTON_SIGMA_MAX], device=raw.device, dtype=raw.dtype)
    sigma = SIGMA_FLOOR + scale[None, :, None, None] * torch.sigmoid(raw[:, 2 + q:2 + 2 * q])
    return {"logp": F.logsigmoid(raw[:, 0]), "mean": torch.cat([offsets, photons], dim=1),
            "background": raw[:, 1 + q], "sigma": sigma}


def count_nll(logp: torch.Tensor, n_true: torch.Tensor) -> torch.Tensor:
    """(F,) −log N(K; Σp, Σp(1 − p)): the Gaussian approximation of the Poisson-binomial count of
    emitters, K = ``n_true`` per frame."""
    p = logp.exp().flatten(1)
    mean = p.sum(1)
    var = (p * (1 - p)).sum(1) + COUNT_VARIANCE_FLOOR
    return 0.5 * torch.log(2 * math.pi * var) + (n_true - mean) ** 2 / (2 * var)


def mixture_nll(out: dict[str, torch.Tensor], rows: torch.Tensor, axial: bool,
                window_px: int = WINDOW_PX) -> torch.Tensor:
    """(F,) −Σ_emitters log Σ_k (p_k / Σp) · Π_d N(t_d; μ_kd, σ_kd²) per frame: each true emitter's
    likelihood under the mixture of the frame's pixels k, weighted by their probabilities; μ = the
    pixel centre + offset for x, y. Pixels farther than ``window_px`` (Chebyshev) from the emitter's
    pixel are left out (with offsets < 1 px and σ ≤ 1 px their weight is below e⁻⁶)."""
    n_frames, height, width = out["logp"].shape
    frame, slot = torch.nonzero(rows[..., 0] > 0, as_tuple=True)
    truth = rows[frame, slot, 1:][:, [0, 1, 2, 3] if axial else [0, 1, 3]]
    ri, ci, inside = _window(truth[:, 0], truth[:, 1], height, width, window_px)
    fi = frame[:, None]
    mean = out["mean"].permute(0, 2, 3, 1)[fi, ri, ci]  # (n, window, Q)
    sigma = out["sigma"].permute(0, 2, 3, 1)[fi, ri, ci]
    centre = torch.stack([ci, ri], dim=-1).to(mean) + 0.5
    mean = torch.cat([mean[..., :2] + centre, mean[..., 2:]], dim=-1)
    z = (truth[:, None, :] - mean) / sigma
    log_normal = (-0.5 * z**2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_mass = torch.logsumexp(out["logp"].flatten(1), dim=1)
    log_weight = out["logp"][fi, ri, ci] - log_mass[frame][:, None]
    terms = torch.where(inside, log_weight + log_normal, torch.full_like(log_normal, -math.inf))
    per_emitter = torch.logsumexp(terms, dim=1)
    return -torch.zeros(n_frames, device=rows.device, dtype=per_emitter.dtype).index_add(0, frame, per_emitter)


def _window(x_px: torch.Tensor, y_px: torch.Tensor, height: int, width: int,
            window_px: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, col, inside) (n, (2w + 1)²) of the pixels within ``window_px`` of each position's pixel,
    clamped into the frame, ``inside`` False where clamped."""
    shifts = torch.arange(-window_px, window_px + 1, device=x_px.device)
    side = len(shifts)
    rows = (y_px.floor().long().clamp(0, height - 1)[:, None, None] + shifts[None, :, None]).expand(-1, side, side)
    cols = (x_px.floor().long().clamp(0, width - 1)[:, None, None] + shifts[None, None, :]).expand(-1, side, side)
    rows, cols = rows.flatten(1), cols.flatten(1)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    return rows.clamp(0, height - 1), cols.clamp(0, width - 1), inside


def background_sse(out: dict[str, torch.Tensor], background: torch.Tensor) -> torch.Tensor:
    """(F,) Σ_pixels (b̂ − b)² against the true background (input units); 0 where it is unknown (NaN)."""
    known = torch.isfinite(background)
    diff = torch.where(known, out["background"] - torch.nan_to_num(background), torch.zeros_like(background))
    return diff.square().flatten(1).sum(1)


def locnet_loss(raw: torch.Tensor, target: torch.Tensor, axial: bool, background_weight: float = 1.0,
                window_px: int = WINDOW_PX) -> torch.Tensor:
    """Mean over frames of count NLL + mixture NLL + ``background_weight`` · background SSE."""
    height, width = raw.shape[-2:]
    background, rows = unpack_target(target, height, width)
    out = normalised_outputs(raw, axial)
    n_true = (rows[..., 0] > 0).sum(1).to(raw.dtype)
    loss = count_nll(out["logp"], n_true) + mixture_nll(out, rows, axial, window_px)
    return (loss + background_weight * background_sse(out, background)).mean()
