"""The classic baseline ``gaussian-mle``: spot detection plus a batched maximum-likelihood fit of the
pixel-integrated Gaussian, with Cramér–Rao uncertainties at the fit.

Noise model (PHYSICS.md, "Camera"). In photons the camera's variance at mean μ is s·μ + v₀ with
s = F²/QE (F² = 2 for a high-gain EMCCD) and v₀ the read-noise/spurious-charge part
(``Camera.variance_photons``). The fit treats z = d/s + v₀/s² (d: photons per pixel; z < 0, from read
noise, counts as 0) as Poisson with mean m = μ/s + v₀/s²: exact in mean and variance, not in shape.
For an ideal camera this is the Poisson likelihood itself; for an EMCCD it is the standard Poisson
approximation on photon-scaled data; for sCMOS it is Huang et al. (2013). Its Fisher information,
Σ ∂μ ∂μᵀ / (s·μ + v₀), is the camera's (``physics.crlb``), so the fit's own curvature gives the CRLB.

Model in a P×P box (camera px, offsets from the centre of the box's centre pixel):
μ_ij = b + N·Ey_i·Ex_j,  Ex_j = Φ((j + ½ − x)/σ) − Φ((j − ½ − x)/σ), N photons over the whole plane.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from deepsmlm.config import SimulationConfig
from deepsmlm.physics.camera import Camera

PARAMS = ("x", "y", "photons", "bg", "sigma")  # camera px, px, photons, photons/px, px
SIGMA_BOUNDS_PX = (0.5, 3.0)
PEAK_WINDOW_PX = 5  # local maxima of the filtered image in a 5×5 neighbourhood
BACKGROUND_SCALE = 3.0  # σ of the DoG's background Gaussian, in PSF σ
MAX_SHIFT_PX = 1.0  # a fit may move at most this far (per axis) from its detection pixel's centre
DECREMENT_TOL = 1e-3  # converged when gᵀ I⁻¹ g (NLL units) is below this


def gaussian_kernel(sigma_px: float, radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """1D Gaussian of std ``sigma_px`` on [−radius, radius] px, normalised to unit sum."""
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (t / sigma_px) ** 2)
    return g / g.sum()


def smooth(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable convolution of (B, H, W) images with a 1D kernel along both axes (edges replicated)."""
    r = kernel.numel() // 2
    x = F.pad(image[:, None], (r, r, r, r), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return F.conv2d(x, kernel.view(1, 1, 1, -1))[:, 0]


def integrated_gaussian(theta: torch.Tensor, box_px: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, 5) parameters (see PARAMS) -> expected photons (E, P, P) and their Jacobian (E, 5, P, P)."""
    x, y, n, b, s = theta.unbind(-1)
    h = box_px // 2
    edges = torch.arange(-h, h + 2, dtype=theta.dtype, device=theta.device) - 0.5

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
    jac = torch.stack([n2 * ey[:, :, None] * dex[:, None, :], n2 * dey[:, :, None] * ex[:, None, :], shape,
                       torch.ones_like(shape),
                       n2 * (sey[:, :, None] * ex[:, None, :] + ey[:, :, None] * sex[:, None, :])], dim=1)
    return b[:, None, None] + n2 * shape, jac


class GaussianMLE:
    """Detection + Levenberg–Marquardt Poisson MLE of (x, y, photons, bg, σ) per spot, batched over spots.

    Detection: photons are filtered by a difference of Gaussians D = G(σ₀) ∗ d − G(3σ₀) ∗ d (σ₀: the
    config's PSF σ); G(3σ₀) ∗ d also estimates the local background b̂. A pixel is a candidate when it is
    the maximum of its 5×5 neighbourhood and D ≥ k·√(var(b̂)·Σw²), i.e. k standard deviations of the
    filtered background noise (w: the DoG kernel, var: the camera's variance), k = ``threshold``.
    σ₀ is ``psf.gaussian.sigma_nm`` for a Gaussian PSF, else 0.21·λ/NA, with the mean model-mismatch
    blur added in quadrature. The default k = 6 gave no candidate in 2,000 64×64 frames of pure
    background (2–100 photons/px) on an ideal camera and 3 at 20 photons/px on the EPFL 2016 EMCCD,
    whose EM register has a heavier tail (more at 2 photons/px); spots of ≳ 200 photons are found there.

    Fit: Fisher scoring with Marquardt damping on the likelihood in the module docstring, from a box of
    ``box_px`` (odd) pixels around each candidate (moved inwards at frame edges), for ``iterations``
    steps; σ ∈ [0.5, 3] px, or fixed at σ₀ when ``fit_sigma`` is False. A fit is kept when it
    converged (Newton decrement gᵀI⁻¹g < 1e-3) and lies within 1 px per axis of its detection pixel's
    centre (so no two fits share a spot).

    Output ``photons`` are the spot's total over the whole plane (also outside the box), ``bg`` is
    photons per pixel. ``prob`` = Φ(√Λ − k): Λ = 2·(NLL of a flat box − NLL of the fit) is the
    likelihood-ratio statistic of "spot vs no spot" (√Λ its significance in noise standard deviations),
    so prob is 0.5 for a spot exactly at the detection threshold and tends to 1 for bright spots.
    """

    def __init__(self, cfg: SimulationConfig, box_px: int = 7, threshold: float = 6.0, fit_sigma: bool = True,
                 iterations: int = 20, device: str | torch.device = "cpu"):
        if box_px % 2 == 0 or box_px < 3:
            raise ValueError(f"box_px must be odd and >= 3, got {box_px}")
        self.pixel_nm = cfg.frame.pixel_size_nm
        self.box_px = box_px
        self.threshold = threshold
        self.fit_sigma = fit_sigma
        self.iterations = iterations
        self.device = torch.device(device)
        self.camera = Camera(cfg.camera).to(self.device)
        if cfg.psf.model == "gaussian":
            sigma_nm = cfg.psf.gaussian.sigma_nm
        else:
            sigma_nm = 0.21 * cfg.optics.wavelength_nm / cfg.optics.na
        blur_nm = 0.5 * sum(cfg.psf.blur_sigma_px) * self.pixel_nm  # mean model-mismatch blur
        self.sigma_px = math.hypot(sigma_nm, blur_nm) / self.pixel_nm
        self.scale = self.camera.excess_noise_factor / self.camera.qe  # s: photon variance per photon

    def detect(self, photons: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, H, W) photons -> frame, row, col of candidates and the (H, W) zero-signal variance v₀."""
        v0 = self.camera.variance_photons(torch.zeros_like(photons[0]))
        radius = math.ceil(3 * BACKGROUND_SCALE * self.sigma_px)
        g1 = gaussian_kernel(self.sigma_px, radius, photons.dtype, photons.device)
        g2 = gaussian_kernel(BACKGROUND_SCALE * self.sigma_px, radius, photons.dtype, photons.device)
        # Σ of the squared 2D kernel g1⊗g1 − g2⊗g2
        w2 = (g1 @ g1) ** 2 - 2 * (g1 @ g2) ** 2 + (g2 @ g2) ** 2
        bg = smooth(photons, g2)
        dog = smooth(photons, g1) - bg
        noise = torch.sqrt((self.scale * bg.clamp_min(0) + v0) * w2)
        peak = dog == F.max_pool2d(dog[:, None], PEAK_WINDOW_PX, 1, PEAK_WINDOW_PX // 2)[:, 0]
        f, r, c = torch.nonzero(peak & (dog >= self.threshold * noise), as_tuple=True)
        return f, r, c, v0

    def fit(self, boxes: torch.Tensor, v0: torch.Tensor, theta: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fit (E, P, P) photon boxes (zero-signal variance v0, same shape) from (E, 5) starting values.

        Returns the parameters (E, 5), the Fisher information of the fitted ones (E, K, K) in photon
        units (K = 5, or 4 with σ fixed), the converged flag (E,) and the likelihood ratio Λ (E,).
        """
        s, p, k = self.scale, self.box_px, 5 if self.fit_sigma else 4
        gamma = v0 / s**2
        z = (boxes / s + gamma).clamp_min(0)
        h = p // 2 + 0.5
        lo = theta.new_tensor([-h, -h, 1.0, 1e-3, SIGMA_BOUNDS_PX[0]])
        hi = theta.new_tensor([h, h, math.inf, math.inf, SIGMA_BOUNDS_PX[1]])

        def scaled(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mu, jac = integrated_gaussian(t, p)
            return mu / s + gamma, jac[:, :k] / s

        def deviance(m: torch.Tensor) -> torch.Tensor:  # NLL minus that of the saturated model (precise)
            return (m - z + torch.xlogy(z, z / m)).sum((-2, -1))

        def score(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            m, j = scaled(t)
            return (torch.einsum("ekpq,epq->ek", j, 1 - z / m), torch.einsum("ekpq,elpq,epq->ekl", j, j, 1 / m),
                    deviance(m))

        lam = torch.full_like(theta[:, 0], 1e-3)
        for _ in range(self.iterations):
            grad, info, dev = score(theta)
            damped = info + lam[:, None, None] * torch.diag_embed(torch.diagonal(info, dim1=-2, dim2=-1))
            step = torch.linalg.solve_ex(damped, -grad)[0]
            cand = torch.minimum(torch.maximum(theta + F.pad(step, (0, 5 - k)), lo), hi)
            better = deviance(scaled(cand)[0]) < dev
            theta = torch.where(better[:, None], cand, theta)
            lam = torch.where(better, lam * 0.1, lam * 10).clamp(1e-7, 1e7)
        grad, info, dev = score(theta)
        decrement = (grad * torch.linalg.solve_ex(info, grad)[0]).sum(-1)
        flat = z.mean((-2, -1), keepdim=True)
        ratio = 2 * (deviance(flat.expand_as(z)) - dev)
        return theta, info, decrement < DECREMENT_TOL, ratio.clamp_min(0)

    @torch.inference_mode()
    def localize(self, adu: torch.Tensor, first_frame: int = 0) -> pd.DataFrame:
        """(B, H, W) camera frames in ADU -> canonical localization table (plus ``psf_sigma_nm``).

        frame = batch index + ``first_frame``; x_nm, y_nm absolute (pixel (r, c) covers
        x ∈ [c·px, (c+1)·px)); photons; bg (photons/px); prob (see the class docstring);
        sigma_x_nm, sigma_y_nm = √CRLB at the fit under the camera's noise model; psf_sigma_nm fitted σ.
        """
        photons = self.camera.adu_to_photons(adu.to(self.device))
        _, height, width = photons.shape
        p, h = self.box_px, self.box_px // 2
        if height < p or width < p:
            raise ValueError(f"frames of {height}×{width} px are smaller than the {p}×{p} px fit box")
        f, r, c, v0 = self.detect(photons)
        top, left = (r - h).clamp(0, height - p), (c - h).clamp(0, width - p)
        span = torch.arange(p, device=photons.device)
        rows, cols = (top[:, None] + span)[:, :, None], (left[:, None] + span)[:, None, :]
        boxes, v0 = photons[f[:, None, None], rows, cols], v0[rows, cols]
        bg0 = boxes.flatten(1).median(-1).values.clamp_min(1e-3)  # the spot covers few of the box's pixels
        start = torch.stack([(c - left - h).to(photons.dtype), (r - top - h).to(photons.dtype),
                             (boxes - bg0[:, None, None]).sum((-2, -1)).clamp_min(1.0), bg0,
                             torch.full_like(bg0, self.sigma_px)], dim=-1)
        theta, info, converged, ratio = self.fit(boxes, v0, start)
        crlb = torch.diagonal(torch.linalg.inv_ex(info)[0], dim1=-2, dim2=-1)
        keep = (converged & ((theta[:, :2] - start[:, :2]).abs() <= MAX_SHIFT_PX).all(-1)
                & (crlb[:, :2] > 0).all(-1))
        theta, crlb, ratio = theta[keep], crlb[keep], ratio[keep]
        prob = 0.5 * (1 + torch.erf((ratio.sqrt() - self.threshold) / math.sqrt(2)))
        px = self.pixel_nm

        def col(t: torch.Tensor) -> np.ndarray:
            return t.double().cpu().numpy()

        return pd.DataFrame({
            "frame": f[keep].cpu().numpy().astype(np.int64) + first_frame,
            "x_nm": col((left[keep] + h + 0.5 + theta[:, 0]) * px),
            "y_nm": col((top[keep] + h + 0.5 + theta[:, 1]) * px),
            "z_nm": 0.0,
            "photons": col(theta[:, 2]), "bg": col(theta[:, 3]), "prob": col(prob),
            "sigma_x_nm": col(crlb[:, 0].sqrt() * px), "sigma_y_nm": col(crlb[:, 1].sqrt() * px),
            "sigma_z_nm": np.nan,
            "psf_sigma_nm": col(theta[:, 4] * px),
        })
