"""The pixel-integrated Gaussian spot model and its batched Poisson maximum-likelihood fit (Fisher scoring
with Marquardt damping), with Cramér–Rao uncertainties at the fit; the solver of ``gaussian-mle``.

Noise model and solver: ``inference.poisson_fit`` (the camera's variance, scaled Poisson data).

Model in a P×P box (camera px, offsets from the centre of the box's centre pixel):
μ_ij = b + N·Ey_i·Ex_j,  Ex_j = Φ((j + ½ − x)/σ) − Φ((j − ½ − x)/σ), N photons over the whole plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from deepsmlm.inference.poisson_fit import fit_boxes, scaled_counts

SIGMA_BOUNDS_PX = (0.5, 3.0)


def _spots(x: torch.Tensor, y: torch.Tensor, n: torch.Tensor, s: torch.Tensor, box_px: int, jacobian: bool = True
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(M,) spot parameters -> their photons without background (M, P, P) and, when asked,
    ∂/∂(x, y, N, σ) (M, 4, P, P)."""
    h = box_px // 2
    edges = torch.arange(-h, h + 2, dtype=x.dtype, device=x.device) - 0.5

    def axis(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u = (edges - c[:, None]) / s[:, None]
        cdf = 0.5 * torch.erf(u / math.sqrt(2))
        pdf = torch.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)
        updf = u * pdf
        return (cdf[:, 1:] - cdf[:, :-1], -(pdf[:, 1:] - pdf[:, :-1]) / s[:, None],
                -(updf[:, 1:] - updf[:, :-1]) / s[:, None])

    ex, dex, sex = axis(x)
    ey, dey, sey = axis(y)
    n2 = n[:, None, None]
    shape = ey[:, :, None] * ex[:, None, :]
    if not jacobian:
        return n2 * shape, None
    jac = torch.stack([n2 * ey[:, :, None] * dex[:, None, :], n2 * dey[:, :, None] * ex[:, None, :], shape,
                       n2 * (sey[:, :, None] * ex[:, None, :] + ey[:, :, None] * sex[:, None, :])], dim=1)
    return n2 * shape, jac


def integrated_gaussian(theta: torch.Tensor, box_px: int, jacobian: bool = True
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """K spots sharing background and σ in one box.

    (E, 3K + 2) parameters x₁, y₁, N₁, …, x_K, y_K, N_K, bg, σ (box px, px, photons, …, photons/px, px) ->
    expected photons (E, P, P) and, when asked, their Jacobian (E, 3K + 2, P, P).
    """
    e, k = theta.shape[0], (theta.shape[1] - 2) // 3
    b, s = theta[:, -2], theta[:, -1]
    xyn = theta[:, :3 * k].reshape(e * k, 3)
    mu, jac = _spots(xyn[:, 0], xyn[:, 1], xyn[:, 2], s.repeat_interleave(k), box_px, jacobian)
    mu = mu.view(e, k, box_px, box_px)
    if jac is None:
        return b[:, None, None] + mu.sum(1), None
    jac = jac.view(e, k, 4, box_px, box_px)
    full = torch.cat([jac[:, :, :3].reshape(e, 3 * k, box_px, box_px), torch.ones_like(mu[:, :1]),
                      jac[:, :, 3].sum(1, keepdim=True)], dim=1)
    return b[:, None, None] + mu.sum(1), full


@dataclass(frozen=True)
class SpotFitter:
    """The likelihood fit of one or more spots per P×P box of photons (P = ``box_px``, odd).

    ``scale`` is s = F²/QE (module docstring); ``sigma_px`` the PSF's σ, held there when not ``fit_sigma``
    (else σ ∈ [0.5, 3] px) and the σ a multi-spot fit restarts from. ``iterations`` steps per spot.
    After a converged K-spot fit a (K + 1)-th spot is started at the largest residual and kept when the
    likelihood ratio 2·(NLL_K − NLL_{K+1}) ≥ ``split_threshold`` (up to ``max_spots``).
    """

    box_px: int
    scale: float
    sigma_px: float
    fit_sigma: bool
    iterations: int
    split_threshold: float
    max_spots: int

    def scaled_counts(self, boxes: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
        """The fit's Poisson-like data z (``poisson_fit``) of (E, P, P) photon boxes."""
        return scaled_counts(boxes, v0, self.scale)

    def fit(self, boxes: torch.Tensor, v0: torch.Tensor, theta: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fit (E, P, P) photon boxes (zero-signal variance v0, same shape) from (E, 3K + 2) starting values.

        Returns the parameters (E, 3K + 2), the Fisher information of the fitted ones (E, F, F) in photon
        units (F = 3K + 2, or 3K + 1 with σ fixed), the converged flag (E,) and the deviance (E,).
        """
        p, n = self.box_px, theta.shape[1]
        h = p // 2 + 1.5  # a spot may sit just outside the box, fitted by its flank
        spots = (n - 2) // 3
        lo = theta.new_tensor([-h, -h, 1.0] * spots + [1e-3, SIGMA_BOUNDS_PX[0]])
        hi = theta.new_tensor([h, h, math.inf] * spots + [math.inf, SIGMA_BOUNDS_PX[1]])
        return fit_boxes(lambda t, jacobian: integrated_gaussian(t, p, jacobian), boxes, v0, theta, self.scale,
                         (lo, hi), n if self.fit_sigma else n - 1, self.iterations * spots)  # more spots, more steps

    def next_spot_starts(self, boxes: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Two starting values (2, E, 3K + 5) of a (K + 1)-spot fit from K-spot fits (E, 3K + 2): the new
        spot at the largest 3×3 sum of the residual with the photons of that sum, taken from the brightest
        spot, which stays (a neighbour's flank) or moves half as far the other way (a merged pair); σ back
        to the PSF's."""
        p, h = self.box_px, self.box_px // 2
        k = (theta.shape[1] - 2) // 3
        mu, _ = integrated_gaussian(theta, p, jacobian=False)
        residual = F.avg_pool2d((boxes - mu)[:, None], 3, 1, 1, count_include_pad=False)[:, 0] * 9
        flat = residual.flatten(1).argmax(-1)
        spots = theta[:, :3 * k].reshape(-1, k, 3).clone()
        brightest = spots[..., 2].argmax(-1)
        old = spots.gather(1, brightest[:, None, None].expand(-1, 1, 3))[:, 0]
        n_new = torch.minimum((residual.flatten(1).gather(1, flat[:, None])[:, 0] * 1.5).clamp_min(1.0),
                              0.5 * old[:, 2])
        new = torch.stack([(flat % p - h).to(theta.dtype), (flat // p - h).to(theta.dtype), n_new], dim=-1)
        rest = torch.cat([theta[:, -2:-1], torch.full_like(n_new[:, None], self.sigma_px)], dim=-1)
        starts = []
        for move in (0.0, 0.5):
            moved = torch.cat([old[:, :2] - move * (new[:, :2] - old[:, :2]), (old[:, 2] - n_new)[:, None]], -1)
            both = spots.scatter(1, brightest[:, None, None].expand(-1, 1, 3), moved[:, None])
            starts.append(torch.cat([both.flatten(1), new, rest], dim=-1))
        return torch.stack(starts)

    def fit_spots(self, boxes: torch.Tensor, v0: torch.Tensor, start: torch.Tensor
                  ) -> tuple[torch.Tensor, ...]:
        """Fit one spot per box, then add spots while the likelihood ratio of K + 1 against K spots is at
        least ``split_threshold`` (up to ``max_spots``). Returns spots (E, S, 3) as x, y (box px) and
        photons, their CRLB of x, y (E, S, 2) in px², the number of spots (E,) (0 when the single-spot fit
        did not converge), and per box bg, σ (px) and the deviance of the accepted fit (E,)."""
        e, s = len(boxes), self.max_spots
        theta, info, converged, dev = self.fit(boxes, v0, start)
        dev_all = dev.clone()
        spots = boxes.new_zeros(e, s, 3)
        crlb = boxes.new_zeros(e, s, 2)
        count = converged.long()
        bg, sigma = theta[:, 3].clone(), theta[:, 4].clone()

        def accept(rows: torch.Tensor, theta: torch.Tensor, info: torch.Tensor, k: int) -> None:
            spots[rows, :k] = theta[:, :3 * k].view(-1, k, 3)
            var = torch.diagonal(torch.linalg.inv_ex(info)[0], dim1=-2, dim2=-1)[:, :3 * k]
            crlb[rows, :k] = var.view(-1, k, 3)[..., :2]
            bg[rows], sigma[rows] = theta[:, -2], theta[:, -1]

        rows = torch.arange(e, device=boxes.device)
        accept(rows, theta, info, 1)
        for k in range(2, s + 1):
            # a further spot only where the fit is worse than its expected deviance (pixels − parameters)
            converged &= dev > self.box_px**2 - theta.shape[1]
            rows, theta, prev = rows[converged], theta[converged], dev[converged]
            if len(rows) == 0:
                break
            starts = self.next_spot_starts(boxes[rows], theta)
            n = len(rows)
            fits = self.fit(boxes[rows].repeat(2, 1, 1), v0[rows].repeat(2, 1, 1), starts.flatten(0, 1))
            # per box the better of the two starts: converged first, then the lower deviance
            score = torch.where(fits[2], fits[3], torch.inf).view(2, n)
            pick = torch.arange(n, device=boxes.device) + n * (score[1] < score[0]).long()
            theta, info, converged, dev = (t[pick] for t in fits)
            converged &= 2 * (prev - dev) >= self.split_threshold
            accept(rows[converged], theta[converged], info[converged], k)
            count[rows[converged]] = k
            dev_all[rows[converged]] = dev[converged]
        return spots, crlb, count, bg, sigma, dev_all
