"""Fisher information and Cramér–Rao lower bounds of any PSF model, by forward-mode autograd.

For expected counts μ_k(θ) and per-pixel variances v_k(μ), 1/(information per unit mean) in photons²
(Poisson: v = μ; a camera's ``Camera.fisher_variance_photons``: CCD/sCMOS μ/QE + (σ_k² + 1/12)/(g_k·QE)²,
EMCCD the exact Poisson–Gamma–Normal value, → 2μ/QE + … at high counts; PHYSICS.md),
I_ij = Σ_k ∂_i μ_k ∂_j μ_k / v_k,  CRLB_i = (I⁻¹)_ii.
θ = (x, y, z, photons, background): x, y, z in nm (x, y relative to the patch-centre pixel), photons
in total signal photons, background in photons per pixel.

A pixel with v_k = 0 (μ_k = 0 under Poisson noise: no background, no signal) is never wrong: it adds
nothing to a parameter whose derivative vanishes there (every signal parameter: μ ≥ 0 is at its minimum,
the b → 0 limit of (∂μ)²/μ is 0), and infinite information to one whose derivative does not
(∂μ/∂background = 1 at background 0, the limit of Σ 1/μ_k). A parameter with infinite information is
known exactly: its bound is 0 and the others are bounded as if it were given, which is the b → 0 limit
of the inverse (for a Gaussian PSF, Mortensen's σ_a²/N). A parameter with no information has an
infinite bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.func import jvp

from deepsmlm.optics.psf import PSF, place_patches, split_positions

PARAMS = ("x", "y", "z", "photons", "background")
Variance = Callable[[torch.Tensor], torch.Tensor]
CERTAIN_DERIVATIVE = 1e-6  # relative size of a derivative at a zero-variance pixel that counts as non-zero


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
    # the weights depend on the PSF too: keep them in the graph (mask design)
    return _information(j.flatten(-2), variance(mu).flatten(-2))


def _information(jac: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Σ_n J_in J_jn / v_n of (..., K, N) derivatives and (..., N) variances, pixels of zero variance
    left out, and an infinite diagonal for a parameter whose derivative is there above the rounding
    level (a relative 1e-6 of its largest): the background; a signal derivative that is not exactly 0
    where μ = 0 is rounding."""
    noisy = var > 0
    weight = torch.where(noisy, 1.0 / torch.where(noisy, var, torch.ones_like(var)), torch.zeros_like(var))
    info = torch.einsum("...kn,...ln,...n->...kl", jac, jac, weight)
    size = jac.detach().abs()
    certain = ((size > CERTAIN_DERIVATIVE * size.amax(dim=-1, keepdim=True)) & ~noisy[..., None, :]).any(dim=-1)
    return info + torch.diag_embed(torch.where(certain, float("inf"), 0.0).to(info.dtype))


def _bound_variances(info: torch.Tensor) -> torch.Tensor:
    """diag(I⁻¹) of (..., K, K) information matrices: inf for a parameter with no information, 0 for one
    with infinite information; the others from the matrix without both kinds."""
    diag = torch.diagonal(info, dim1=-2, dim2=-1)
    known = torch.isinf(diag)
    scale = torch.where(known, torch.zeros_like(diag), diag).amax(dim=-1, keepdim=True)
    blind = diag <= 1e-12 * scale
    out = blind | known
    both = out[..., :, None] | out[..., None, :]
    eye = torch.eye(info.shape[-1], dtype=info.dtype, device=info.device).expand_as(info)
    var = torch.diagonal(torch.linalg.inv(torch.where(both, eye, info)), dim1=-2, dim2=-1)
    var = torch.where(known, torch.zeros_like(var), var)
    return torch.where(blind, torch.full_like(var, float("inf")), var)


def crlb(psf: PSF, theta: torch.Tensor, variance: Variance = poisson_variance,
         params: Sequence[str] = PARAMS) -> torch.Tensor:
    """(E, K) Cramér–Rao bounds as standard deviations (nm for positions, photons for the rest)."""
    # a parameter the image does not depend on (e.g. z at focus of a symmetric PSF) has an infinite bound
    return torch.sqrt(_bound_variances(fisher_information(psf, theta, variance, params)))


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
    bounds as standard deviations (nm, photons); inf for a parameter the PSF does not encode.
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
    var = variance(signal + bg[:, None, None])
    k = len(params)
    out = torch.full((len(frame), k), float("nan"), dtype=theta.dtype)
    for f in torch.unique(frame).tolist():
        idx = torch.nonzero(frame == f)[:, 0]
        n = len(idx)
        slots = torch.arange(n * k)
        images = place_patches(deriv[idx].flatten(0, 1), slots, row[idx].repeat_interleave(k),
                               col[idx].repeat_interleave(k), n * k, height, width)
        jac = torch.cat([images, torch.ones_like(images[:1])])
        info = _information(jac.flatten(-2), var[f].flatten())
        out[idx] = _bound_variances(info)[:-1].sqrt().view(n, k)
    return out
