"""Fisher information and Cramér–Rao lower bounds of any PSF model, by forward-mode autograd.

For expected counts μ_k(θ) and per-pixel noise variance v_k(μ) (Poisson: v = μ; EMCCD: 2μ/QE + read;
sCMOS: μ/QE + σ_k²/g_k²; PHYSICS.md),  I_ij = Σ_k ∂_i μ_k ∂_j μ_k / v_k,  CRLB_i = (I⁻¹)_ii.
θ = (x, y, z, photons, background): x, y, z in nm (x, y relative to the patch-centre pixel), photons
in total signal photons, background in photons per pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.func import jvp

from deepsmlm.optics.psf import PSF, place_patches, split_positions

PARAMS = ("x", "y", "z", "photons", "background")
Variance = Callable[[torch.Tensor], torch.Tensor]


def poisson_variance(mu: torch.Tensor) -> torch.Tensor:
    """Shot noise only: variance equals the mean (photons)."""
    return mu


def expected_counts(psf: PSF, theta: torch.Tensor) -> torch.Tensor:
    """(E, 5) parameters -> (E, P, P) expected photons per pixel, signal plus background."""
    return psf.patches(theta[:, :3], theta[:, 3]) + theta[:, 4, None, None]


def fisher_information(psf: PSF, theta: torch.Tensor, variance: Variance = poisson_variance,
                       params: Sequence[str] = PARAMS) -> torch.Tensor:
    """(E, K, K) Fisher information of the chosen parameters (one forward-mode pass per parameter)."""
    idx = [PARAMS.index(p) for p in params]
    jac = []
    mu = None
    for i in idx:
        tangent = torch.zeros_like(theta)
        tangent[:, i] = 1.0
        mu, d = jvp(lambda t: expected_counts(psf, t), (theta,), (tangent,))
        jac.append(d)
    j = torch.stack(jac, dim=1)  # (E, K, P, P)
    w = 1.0 / variance(mu)  # the weights depend on the PSF too: keep them in the graph (mask design)
    return torch.einsum("eipq,ejpq,epq->eij", j, j, w)


def crlb(psf: PSF, theta: torch.Tensor, variance: Variance = poisson_variance,
         params: Sequence[str] = PARAMS) -> torch.Tensor:
    """(E, K) Cramér–Rao bounds as standard deviations (nm for positions, photons for the rest)."""
    info = fisher_information(psf, theta, variance, params)
    diag = torch.diagonal(info, dim1=-2, dim2=-1)
    # a parameter the image does not depend on (e.g. z at focus of a symmetric PSF) has an infinite bound;
    # the others are bounded by the information matrix without it
    blind = diag <= 1e-12 * diag.amax(dim=-1, keepdim=True)
    both = blind[..., :, None] | blind[..., None, :]
    eye = torch.eye(info.shape[-1], dtype=info.dtype, device=info.device).expand_as(info)
    safe = torch.where(both, eye, info)
    var = torch.diagonal(torch.linalg.inv(safe), dim1=-2, dim2=-1)
    return torch.where(blind, torch.full_like(var, float("inf")), torch.sqrt(var))


def crlb_vs_z(psf: PSF, z_nm: torch.Tensor, photons: float, background: float,
              variance: Variance = poisson_variance, params: Sequence[str] = PARAMS) -> dict[str, torch.Tensor]:
    """CRLB of a centred emitter at each z: {parameter: (Z,) std}, positions in nm."""
    theta = torch.zeros(len(z_nm), 5, dtype=torch.float32, device=z_nm.device)
    theta[:, 2] = z_nm
    theta[:, 3] = photons
    theta[:, 4] = background
    bounds = crlb(psf, theta, variance, params)
    return {p: bounds[:, k] for k, p in enumerate(params)}


def frame_crlb(psf: PSF, xyz_nm: torch.Tensor, photons: torch.Tensor, frame: torch.Tensor,
               background: float | torch.Tensor, n_frames: int, height: int, width: int,
               variance: Variance = poisson_variance, params: Sequence[str] = ("x", "y", "photons")) -> torch.Tensor:
    """(E, K) Cramér–Rao bounds of every emitter in H×W frames holding several emitters.

    The Fisher information is that of the whole frame: the chosen parameters of all its emitters plus
    one uniform background (photons/px; scalar or (F,)), over the frame's pixels only, so overlapping
    spots and spots cut by the frame edge are bounded as they are imaged. Absolute positions in nm;
    bounds as standard deviations (nm, photons). Each chosen parameter must be encoded by the PSF.
    """
    if not set(params) <= {"x", "y", "z", "photons"}:
        raise ValueError(f"frame_crlb params must be among x, y, z, photons; got {tuple(params)}")
    row, col, offset = split_positions(xyz_nm, psf.pixel_nm)
    theta = torch.cat([offset, photons[:, None]], dim=1)
    derivs = []
    for name in params:
        tangent = torch.zeros_like(theta)
        tangent[:, ("x", "y", "z", "photons").index(name)] = 1.0
        derivs.append(jvp(lambda t: psf.patches(t[:, :3], t[:, 3]), (theta,), (tangent,))[1])
    deriv = torch.stack(derivs, dim=1)  # (E, K, P, P)
    bg = torch.as_tensor(background, dtype=theta.dtype).expand(n_frames)
    signal = place_patches(psf.patches(offset, photons), frame, row, col, n_frames, height, width)
    weight = 1.0 / variance(signal + bg[:, None, None])
    k = len(params)
    out = torch.full((len(frame), k), float("nan"), dtype=theta.dtype)
    for f in torch.unique(frame).tolist():
        idx = torch.nonzero(frame == f)[:, 0]
        n = len(idx)
        slots = torch.arange(n * k)
        images = place_patches(deriv[idx].flatten(0, 1), slots, row[idx].repeat_interleave(k),
                               col[idx].repeat_interleave(k), n * k, height, width)
        jac = torch.cat([images, torch.ones_like(images[:1])])
        info = torch.einsum("ahw,bhw,hw->ab", jac, jac, weight[f])
        var = torch.diagonal(torch.linalg.inv(info))[:-1]
        out[idx] = var.sqrt().view(n, k)
    return out
