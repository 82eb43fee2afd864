"""Zernike polynomials on the unit pupil, Noll-indexed and RMS-normalised (Noll 1976), optionally made
orthonormal over the pixels of a sampled pupil."""

from __future__ import annotations

from math import factorial, sqrt

import torch


def noll_to_nm(j: int) -> tuple[int, int]:
    """Noll index j >= 1 -> (radial order n, signed azimuthal order m); even j are cosines (m > 0)."""
    if j < 1:
        raise ValueError(f"Noll index must be >= 1, got {j}")
    n = 0
    while j > (n + 1) * (n + 2) // 2:
        n += 1
    k = j - n * (n + 1) // 2 - 1
    m_abs = n % 2 + 2 * ((k + (n + 1) % 2) // 2)
    return n, (m_abs if (m_abs == 0 or j % 2 == 0) else -m_abs)


def radial(n: int, m_abs: int, rho: torch.Tensor) -> torch.Tensor:
    """Radial polynomial R_n^|m|(rho)."""
    out = torch.zeros_like(rho)
    for s in range((n - m_abs) // 2 + 1):
        c = (-1) ** s * factorial(n - s) / (
            factorial(s) * factorial((n + m_abs) // 2 - s) * factorial((n - m_abs) // 2 - s)
        )
        out = out + c * rho ** (n - 2 * s)
    return out


def zernike(j: int, rho: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Z_j(rho, theta) with unit RMS over the unit disk (zero outside is the caller's business)."""
    n, m = noll_to_nm(j)
    r = radial(n, abs(m), rho)
    if m == 0:
        return sqrt(n + 1) * r
    ang = torch.cos(m * theta) if m > 0 else torch.sin(-m * theta)
    return sqrt(2 * (n + 1)) * r * ang


def zernike_phase(coeffs: dict[int, float], rho: torch.Tensor, theta: torch.Tensor,
                  inside: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of c_j Z_j (radians) over the pupil coordinates.

    With ``inside`` (bool, the pupil pixels that transmit), Z_1 … Z_J are first made exactly orthonormal
    over those pixels (Gram–Schmidt in Noll order, Z' = L⁻¹Z with G = L·Lᵀ their Gram matrix), so each
    c_j is RMS radians and independent on the sampled pupil, not only on the continuous disk.
    """
    if not coeffs:
        return torch.zeros_like(rho)
    if inside is None:
        phase = torch.zeros_like(rho)
        for j, c in coeffs.items():
            phase = phase + c * zernike(int(j), rho, theta)
        return phase
    top = max(int(j) for j in coeffs)
    c = torch.zeros(top, dtype=rho.dtype)
    for j, v in coeffs.items():
        c[int(j) - 1] = v
    modes = torch.stack([zernike(j, rho[inside], theta[inside]) for j in range(1, top + 1)])  # (J, M)
    try:
        chol = torch.linalg.cholesky(modes @ modes.T / modes.shape[1])
    except torch.linalg.LinAlgError:
        raise ValueError(f"Zernike modes up to Noll {top} are not independent on the pupil's "
                         f"{modes.shape[1]} pixels; use a finer pupil grid") from None
    weights = torch.linalg.solve_triangular(chol.T, c[:, None], upper=True)[:, 0]  # Σ c_j Z'_j = Σ (L⁻ᵀc)_k Z_k
    phase = torch.zeros_like(rho)
    phase[inside] = weights @ modes
    return phase
