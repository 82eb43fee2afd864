"""The camera noise model of the classic fitters and their batched likelihood solver (Fisher scoring with
Marquardt damping), for any spot model that gives expected photons and their Jacobian per box.

Noise model (PHYSICS.md, "Camera"). In photons the camera's variance at mean μ is s·μ + v₀ with
s = F²/QE (F² = 2 for a high-gain EMCCD) and v₀ the read-noise/spurious-charge part
(``Camera.variance_photons``). The fit treats z = d/s + v₀/s² (d: photons per pixel; z < 0, from read
noise, counts as 0) as Poisson with mean m = μ/s + v₀/s²: exact in mean and variance, not in shape.
For an ideal camera this is the Poisson likelihood itself; for an EMCCD it is the standard Poisson
approximation on photon-scaled data; for sCMOS it is Huang et al. (2013). Its Fisher information,
Σ ∂μ ∂μᵀ / (s·μ + v₀), is the camera's (``physics.crlb``), so the fit's own curvature gives the CRLB.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

DECREMENT_TOL = 1e-3  # converged when gᵀ I⁻¹ g (NLL units) is below this
SETTLED_TOL = 1e-6  # a box stops iterating when an accepted step lowers its NLL by less than this

# (E, n) parameters, whether the Jacobian is wanted -> expected photons (E, P, P) and, when asked,
# their derivatives (E, k', P, P) by at least the k fitted (leading) parameters
SpotModel = Callable[[torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor | None]]


def scaled_counts(boxes: torch.Tensor, v0: torch.Tensor, scale: float) -> torch.Tensor:
    """The fit's Poisson-like data z (module docstring) of (E, P, P) photon boxes."""
    return (boxes / scale + v0 / scale**2).clamp_min(0)


def deviance(m: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Poisson NLL of data z (E, P, P) at mean m minus that of the saturated model, per box (E,)."""
    return (m - z + torch.xlogy(z, z / m)).sum((-2, -1))


def flat_deviance(z: torch.Tensor) -> torch.Tensor:
    """Deviance (E,) of (E, P, P) scaled data under a flat box (background only, at its ML level)."""
    return deviance(z.mean((-2, -1), keepdim=True).expand_as(z), z)


def score(model: SpotModel, theta: torch.Tensor, z: torch.Tensor, gamma: torch.Tensor, scale: float, k: int
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient (E, k) of the NLL in the first ``k`` parameters, their Fisher information (E, k, k) and
    the deviance (E,), for scaled data z and γ = v₀/s² (E, P, P)."""
    mu, jac = model(theta, True)
    m = mu / scale + gamma
    j = jac[:, :k].flatten(2) / scale  # (E, K, P²): batched matrix products, far faster than einsum here
    grad = torch.bmm(j, (1 - z / m).flatten(1)[:, :, None])[..., 0]
    info = torch.bmm(j / m.flatten(1)[:, None, :], j.transpose(1, 2))
    return grad, info, deviance(m, z)


def fit_boxes(model: SpotModel, boxes: torch.Tensor, v0: torch.Tensor, theta: torch.Tensor, scale: float,
              bounds: tuple[torch.Tensor, torch.Tensor], k: int, steps: int, settle_decrement: float | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maximum-likelihood fit of ``model`` to (E, P, P) photon boxes (zero-signal variance v0, same shape)
    from (E, n) starting values, within ``bounds`` (lo, hi) of shape (n,); the first ``k`` parameters are
    fitted, the rest held. At most ``steps`` damped Fisher-scoring steps per box; a box stops early when
    an accepted step gains < SETTLED_TOL, its damping reaches its ceiling, or (with ``settle_decrement``)
    the step's predicted NLL decrease −gᵀδ falls below that value.

    Returns the parameters (E, n), the Fisher information of the fitted ones (E, k, k) in photon units,
    the converged flag (E,) (Newton decrement over the parameters not held at a bound < DECREMENT_TOL)
    and the deviance (E,).
    """
    lo, hi = bounds
    n = theta.shape[1]
    gamma = v0 / scale**2
    z = scaled_counts(boxes, v0, scale)
    theta = theta.clone()
    lam = torch.full_like(theta[:, 0], 1e-3)
    active = torch.arange(len(theta), device=theta.device)  # boxes still moving
    for _ in range(steps):
        if len(active) == 0:
            break
        t, za, ga, la = theta[active], z[active], gamma[active], lam[active]
        grad, info, dev = score(model, t, za, ga, scale, k)
        damped = info + la[:, None, None] * torch.diag_embed(torch.diagonal(info, dim1=-2, dim2=-1))
        step = torch.linalg.solve_ex(damped, -grad)[0]
        cand = torch.minimum(torch.maximum(t + F.pad(step, (0, n - k)), lo), hi)
        new_dev = deviance(model(cand, False)[0] / scale + ga, za)
        better = new_dev < dev
        theta[active] = torch.where(better[:, None], cand, t)
        lam[active] = torch.where(better, la * 0.1, la * 10).clamp(1e-7, 1e7)
        # settled: an accepted step that gained almost nothing, or damping at its ceiling
        settled = (better & (dev - new_dev < SETTLED_TOL)) | (lam[active] >= 1e7)
        if settle_decrement is not None:
            settled |= -(grad * step).sum(-1) < settle_decrement
        active = active[~settled]
    grad, info, dev = score(model, theta, z, gamma, scale, k)
    # converged: the Newton decrement over the parameters not held at a bound is small
    held = ((theta[:, :k] <= lo[:k]) & (grad > 0)) | ((theta[:, :k] >= hi[:k]) & (grad < 0))
    grad = torch.where(held, 0.0, grad)
    eye = torch.eye(k, dtype=info.dtype, device=info.device)
    free = torch.where(held[:, :, None] | held[:, None, :], eye, info)
    decrement = (grad * torch.linalg.solve_ex(free, grad)[0]).sum(-1)
    return theta, info, decrement < DECREMENT_TOL, dev
