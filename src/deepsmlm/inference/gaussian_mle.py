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
from scipy import ndimage
from torch.nn import functional as F

from deepsmlm.config import SimulationConfig
from deepsmlm.inference.tiling import Footprint, Tile, TileResult
from deepsmlm.physics.camera import Camera

PARAMS = ("x", "y", "photons", "bg", "sigma")  # camera px, px, photons, photons/px, px
SIGMA_BOUNDS_PX = (0.5, 3.0)
PEAK_WINDOW_PX = 5  # local maxima of the filtered image in a 5×5 neighbourhood
BACKGROUND_SCALE = 3.0  # σ of the DoG's background Gaussian, in PSF σ
MAX_SHIFT_PX = 1.0  # a single-spot fit may move at most this far (per axis) from its detection pixel's centre
MAX_SPLIT_PX = 3.0  # each spot of a multi-spot fit at most this far (per axis): inside the default box
EDGE_MARGIN_PX = 0.5  # spots centred nearer the frame edge are not reported: much of them is off the sensor
DECREMENT_TOL = 1e-3  # converged when gᵀ I⁻¹ g (NLL units) is below this
SETTLED_TOL = 1e-6  # a box stops iterating when an accepted step lowers its NLL by less than this
MAX_FRAMES_PER_PASS = 256  # frames detected and fitted together
MAX_BOXES_PER_FIT = 4096  # boxes fitted together, so their memory is bounded; more gain no speed
BYTES_PER_PX = 80  # working memory of a pass per pixel (photons, filters, noise, candidate map); ~60 measured
FIT_BYTES = 96 << 20  # working memory of fitting MAX_BOXES_PER_FIT boxes; ~60 MB measured on dense spots


def gaussian_kernel(sigma_px: float, radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """1D Gaussian of std ``sigma_px`` on [−radius, radius] px, normalised to unit sum."""
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    g = torch.exp(-0.5 * (t / sigma_px) ** 2)
    return g / g.sum()


def smooth(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable correlation of (B, H, W) images with a 1D kernel along rows, then columns (edges
    replicated). Runs in scipy.ndimage on the CPU: 3× faster there than torch's one-channel convolution."""
    k = kernel.cpu().numpy()
    x = ndimage.correlate1d(image.cpu().numpy(), k, axis=1, mode="nearest")
    return torch.from_numpy(ndimage.correlate1d(x, k, axis=2, mode="nearest")).to(image.device)


def local_maxima(image: torch.Tensor, f: torch.Tensor, r: torch.Tensor, c: torch.Tensor, size: int) -> torch.Tensor:
    """Whether pixels (f, r, c) of (B, H, W) images are the maximum of their size × size neighbourhood
    within the image: ``max_pool2d`` (−inf padding) at these pixels only. Indices past an edge are
    clamped onto it, which repeats a pixel already in the neighbourhood and so leaves its maximum."""
    offsets = torch.arange(size, device=image.device) - size // 2
    rows = (r[:, None] + offsets).clamp(0, image.shape[1] - 1)
    cols = (c[:, None] + offsets).clamp(0, image.shape[2] - 1)
    windows = image[f[:, None, None], rows[:, :, None], cols[:, None, :]]
    return windows.flatten(1).amax(dim=1) == image[f, r, c]


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


def deviance(m: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Poisson NLL of data z (E, P, P) at mean m minus that of the saturated model, per box (E,)."""
    return (m - z + torch.xlogy(z, z / m)).sum((-2, -1))


def integrated_gaussian(theta: torch.Tensor, box_px: int, jacobian: bool = True
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """K spots sharing background and σ in one box.

    (E, 3K + 2) parameters (x₁, y₁, N₁, …, x_K, y_K, N_K, bg, σ; for K = 1 the order of PARAMS) ->
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


class GaussianMLE:
    """Detection + Levenberg–Marquardt Poisson MLE of (x, y, photons, bg, σ) per spot, batched over spots.

    Detection: photons are filtered by a difference of Gaussians D = G(σ₀) ∗ d − G(3σ₀) ∗ d (σ₀: the
    config's PSF σ); G(3σ₀) ∗ d also estimates the local background b̂. A pixel is a candidate when it is
    the maximum of its 5×5 neighbourhood and D ≥ k·√(var(b̂)·Σw²), i.e. k standard deviations of the
    filtered background noise (w: the DoG kernel, var: the camera's variance), k = ``threshold``
    (default: the config's ``model.gaussian_mle_threshold``, 6; ``localize --threshold``).
    σ₀ is ``psf.gaussian.sigma_nm`` for a Gaussian PSF, else 0.21·λ/NA, with the mean model-mismatch
    blur added in quadrature. The default k = 6 gave no candidate in 2,000 64×64 frames of pure
    background (2–100 photons/px) on an ideal camera and 3 at 20 photons/px on the EPFL 2016 EMCCD,
    whose EM register has a heavier tail (more at 2 photons/px); spots of ≳ 200 photons are found there.

    Fit: Fisher scoring with Marquardt damping on the likelihood in the module docstring, from a box of
    ``box_px`` (odd) pixels around each candidate (moved inwards at frame edges), for ``iterations``
    steps per spot; σ ∈ [0.5, 3] px, or fixed at σ₀ when ``fit_sigma`` is False. Overlapping spots:
    after a converged K-spot fit a (K + 1)-th spot is started at the largest residual and kept when
    the likelihood ratio 2·(NLL_K − NLL_{K+1}) ≥ ``split_threshold`` (up to ``max_spots``); this
    separates pairs closer than the 5×5 detection window and keeps a neighbour's flank out of the fit.
    A fit counts when it converged (Newton decrement over the parameters not held at a bound < 1e-3).
    A box reports a spot when the spot is nearer its candidate than any other candidate in the box and
    within 1 px (one spot) or 3 px (several) per axis of it, so each spot is reported once, and when
    the spot's centre is at least half a pixel inside the frame (nearer the edge, most of the spot
    is off the sensor and the Gaussian model's mismatch dominates). The default threshold 25 was chosen
    on simulated data of the sparse benchmark with another seed (16 split too eagerly on pupil PSFs;
    25 and 40 scored the same).

    Output ``photons`` are the spot's total over the whole plane (also outside the box), ``bg`` is
    photons per pixel. ``prob`` = Φ(√Λ − k): Λ = 2·(NLL of a flat box − NLL of the fit) is the
    likelihood-ratio statistic of "spot vs no spot" (√Λ its significance in noise standard deviations),
    so prob is 0.5 for a spot exactly at the detection threshold and tends to 1 for bright spots.
    """

    upsampling = 1  # its pixels are the camera's (it makes no super-resolved image)

    def __init__(self, cfg: SimulationConfig, box_px: int = 7, threshold: float | None = None, fit_sigma: bool = True,
                 iterations: int = 20, split_threshold: float = 25.0, max_spots: int = 3,
                 device: str | torch.device = "cpu"):
        if box_px % 2 == 0 or box_px < 3:
            raise ValueError(f"box_px must be odd and >= 3, got {box_px}")
        self.pixel_nm = cfg.frame.pixel_size_nm
        self.box_px = box_px
        self.threshold = cfg.model.gaussian_mle_threshold if threshold is None else threshold
        self.fit_sigma = fit_sigma
        self.iterations = iterations
        self.split_threshold = split_threshold
        self.max_spots = max_spots
        self.device = torch.device(device)
        self.camera = Camera(cfg.camera).to(self.device)
        if cfg.psf.model == "gaussian":
            sigma_nm = cfg.psf.gaussian.sigma_nm
        else:
            sigma_nm = 0.21 * cfg.optics.wavelength_nm / cfg.optics.na
        blur_nm = 0.5 * sum(cfg.psf.blur_sigma_px) * self.pixel_nm  # mean model-mismatch blur
        self.sigma_px = math.hypot(sigma_nm, blur_nm) / self.pixel_nm
        self.scale = self.camera.excess_noise_factor / self.camera.qe  # s: photon variance per photon
        self._v0: torch.Tensor | None = None

    @property
    def filter_radius_px(self) -> int:
        """Half-width of the detection filters' kernels."""
        return math.ceil(3 * BACKGROUND_SCALE * self.sigma_px)

    def footprint(self, height: int, width: int) -> Footprint:
        """Working memory per pixel and reach for tiling: a box's fit reads its box and the candidates in
        it, whose detection reads the peak window and the filters' support around them."""
        reach = self.filter_radius_px + PEAK_WINDOW_PX // 2 + self.box_px // 2
        return Footprint(BYTES_PER_PX, reach, 1, MAX_FRAMES_PER_PASS, FIT_BYTES)

    def photons(self, adu: torch.Tensor) -> torch.Tensor:
        """(B, H, W) ADU → photons on the fitter's device, by the camera model."""
        return self.camera.adu_to_photons(adu.to(self.device))

    def zero_signal_variance(self, shape: tuple[int, int]) -> torch.Tensor:
        """(H, W) photon variance at zero signal (read noise, spurious charge; per pixel with sCMOS maps),
        kept for the next call with the same frame shape."""
        if self._v0 is None or tuple(self._v0.shape) != tuple(shape):
            self._v0 = self.camera.variance_photons(torch.zeros(shape, device=self.device))
        return self._v0

    def detect(self, photons: torch.Tensor, v0: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, H, W) photons -> frame, row, col of candidates and the (H, W) zero-signal variance v₀
        (computed when not given)."""
        if v0 is None:
            v0 = self.camera.variance_photons(torch.zeros_like(photons[0]))
        radius = self.filter_radius_px
        g1 = gaussian_kernel(self.sigma_px, radius, photons.dtype, photons.device)
        g2 = gaussian_kernel(BACKGROUND_SCALE * self.sigma_px, radius, photons.dtype, photons.device)
        # Σ of the squared 2D kernel g1⊗g1 − g2⊗g2
        w2 = (g1 @ g1) ** 2 - 2 * (g1 @ g2) ** 2 + (g2 @ g2) ** 2
        bg = smooth(photons, g2)
        dog = smooth(photons, g1) - bg
        noise = torch.sqrt((self.scale * bg.clamp_min(0) + v0) * w2)
        f, r, c = torch.nonzero(dog >= self.threshold * noise, as_tuple=True)
        peak = local_maxima(dog, f, r, c, PEAK_WINDOW_PX)
        return f[peak], r[peak], c[peak], v0

    def fit(self, boxes: torch.Tensor, v0: torch.Tensor, theta: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fit (E, P, P) photon boxes (zero-signal variance v0, same shape) from (E, 3K + 2) starting values.

        Returns the parameters (E, 3K + 2), the Fisher information of the fitted ones (E, F, F) in photon
        units (F = 3K + 2, or 3K + 1 with σ fixed), the converged flag (E,) and the deviance (E,).
        """
        s, p, n = self.scale, self.box_px, theta.shape[1]
        k = n if self.fit_sigma else n - 1
        gamma = v0 / s**2
        z = self.scaled_counts(boxes, v0)
        h = p // 2 + 1.5  # a spot may sit just outside the box, fitted by its flank
        spots = (n - 2) // 3
        lo = theta.new_tensor([-h, -h, 1.0] * spots + [1e-3, SIGMA_BOUNDS_PX[0]])
        hi = theta.new_tensor([h, h, math.inf] * spots + [math.inf, SIGMA_BOUNDS_PX[1]])

        def score(t: torch.Tensor, z: torch.Tensor, gamma: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            mu, jac = integrated_gaussian(t, p)
            m = mu / s + gamma
            j = jac[:, :k].flatten(2) / s  # (E, K, P²): batched matrix products, far faster than einsum here
            grad = torch.bmm(j, (1 - z / m).flatten(1)[:, :, None])[..., 0]
            info = torch.bmm(j / m.flatten(1)[:, None, :], j.transpose(1, 2))
            return grad, info, deviance(m, z)

        theta = theta.clone()
        lam = torch.full_like(theta[:, 0], 1e-3)
        active = torch.arange(len(theta), device=theta.device)  # boxes still moving
        for _ in range(self.iterations * spots):  # more parameters, more steps
            if len(active) == 0:
                break
            t, za, ga, la = theta[active], z[active], gamma[active], lam[active]
            grad, info, dev = score(t, za, ga)
            damped = info + la[:, None, None] * torch.diag_embed(torch.diagonal(info, dim1=-2, dim2=-1))
            step = torch.linalg.solve_ex(damped, -grad)[0]
            cand = torch.minimum(torch.maximum(t + F.pad(step, (0, n - k)), lo), hi)
            new_dev = deviance(integrated_gaussian(cand, p, jacobian=False)[0] / s + ga, za)
            better = new_dev < dev
            theta[active] = torch.where(better[:, None], cand, t)
            lam[active] = torch.where(better, la * 0.1, la * 10).clamp(1e-7, 1e7)
            # settled: an accepted step that gained almost nothing, or damping at its ceiling
            settled = (better & (dev - new_dev < SETTLED_TOL)) | (lam[active] >= 1e7)
            active = active[~settled]
        grad, info, dev = score(theta, z, gamma)
        # converged: the Newton decrement over the parameters not held at a bound is small
        held = ((theta[:, :k] <= lo[:k]) & (grad > 0)) | ((theta[:, :k] >= hi[:k]) & (grad < 0))
        grad = torch.where(held, 0.0, grad)
        eye = torch.eye(k, dtype=info.dtype, device=info.device)
        free = torch.where(held[:, :, None] | held[:, None, :], eye, info)
        decrement = (grad * torch.linalg.solve_ex(free, grad)[0]).sum(-1)
        return theta, info, decrement < DECREMENT_TOL, dev

    def scaled_counts(self, boxes: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
        """The fit's Poisson-like data z (module docstring) of (E, P, P) photon boxes."""
        return (boxes / self.scale + v0 / self.scale**2).clamp_min(0)

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

    @torch.inference_mode()
    def localize(self, adu: torch.Tensor, first_frame: int = 0) -> pd.DataFrame:
        """(B, H, W) camera frames in ADU -> canonical localization table (plus ``psf_sigma_nm``).

        frame = batch index + ``first_frame``; x_nm, y_nm absolute (pixel (r, c) covers
        x ∈ [c·px, (c+1)·px)); photons; bg (photons/px); prob (see the class docstring);
        sigma_x_nm, sigma_y_nm = √CRLB at the fit under the camera's noise model; psf_sigma_nm fitted σ.
        """
        photons = self.photons(adu)
        return self.localize_tile(photons, first_frame, Tile.whole(*photons.shape[-2:])).table

    @torch.inference_mode()
    def localize_tile(self, photons: torch.Tensor, first_frame: int, tile: Tile, superres: bool = False
                      ) -> TileResult:
        """``localize`` of the spots whose candidate pixel lies in the core of ``tile`` of frames (B, H, W)
        in photons; candidates in the halo only keep their neighbours' fits apart. No image."""
        height, width = tile.frame
        p, h = self.box_px, self.box_px // 2
        if height < p or width < p:
            raise ValueError(f"frames of {height}×{width} px are smaller than the {p}×{p} px fit box")
        v0 = self.zero_signal_variance(tile.frame)[tile.rows, tile.cols]
        photons = photons[:, tile.rows, tile.cols]
        f, r, c, _ = self.detect(photons, v0)
        ids = torch.full(photons.shape, -1, dtype=torch.int64, device=photons.device)
        ids[f, r, c] = torch.arange(len(f), device=photons.device)
        core_rows, core_cols = tile.core_in_tile()
        index = torch.nonzero((r >= core_rows.start) & (r < core_rows.stop) & (c >= core_cols.start)
                              & (c < core_cols.stop))[:, 0]
        f, r, c = f[index], r[index], c[index]
        top, left = (r - h).clamp(0, photons.shape[1] - p), (c - h).clamp(0, photons.shape[2] - p)
        span = torch.arange(p, device=photons.device)
        rows, cols = (top[:, None] + span)[:, :, None], (left[:, None] + span)[:, None, :]
        boxes, v0 = photons[f[:, None, None], rows, cols], v0[rows, cols]
        bg0 = boxes.flatten(1).median(-1).values.clamp_min(1e-3)  # the spot covers few of the box's pixels
        start = torch.stack([(c - left - h).to(photons.dtype), (r - top - h).to(photons.dtype),
                             (boxes - bg0[:, None, None]).sum((-2, -1)).clamp_min(1.0), bg0,
                             torch.full_like(bg0, self.sigma_px)], dim=-1)
        n = MAX_BOXES_PER_FIT
        fits = [self.fit_spots(boxes[i:i + n], v0[i:i + n], start[i:i + n]) for i in range(0, max(len(boxes), 1), n)]
        spots, crlb, count, bg, sigma, dev = (torch.cat(parts) for parts in zip(*fits))
        z = self.scaled_counts(boxes, v0)
        flat = deviance(z.mean((-2, -1), keepdim=True).expand_as(z), z)
        ratio = (2 * (flat - dev)).clamp_min(0)
        keep = self.owned(spots[..., :2], count, ids, f, top, left, start[:, :2], index)
        keep &= (torch.arange(self.max_spots, device=keep.device) < count[:, None]) & (crlb > 0).all(-1)
        top, left = top + tile.rows.start, left + tile.cols.start  # in the frame
        col_px = left[:, None] + h + 0.5 + spots[..., 0]
        row_px = top[:, None] + h + 0.5 + spots[..., 1]
        m = EDGE_MARGIN_PX
        keep &= (col_px >= m) & (col_px <= width - m) & (row_px >= m) & (row_px <= height - m)
        box, slot = torch.nonzero(keep, as_tuple=True)
        spot, bound = spots[box, slot], crlb[box, slot]
        prob = 0.5 * (1 + torch.erf((ratio[box].sqrt() - self.threshold) / math.sqrt(2)))
        px = self.pixel_nm

        def col(t: torch.Tensor) -> np.ndarray:
            return t.double().cpu().numpy()

        table = pd.DataFrame({
            "frame": f[box].cpu().numpy().astype(np.int64) + first_frame,
            "x_nm": col(col_px[box, slot] * px),
            "y_nm": col(row_px[box, slot] * px),
            "z_nm": 0.0,
            "photons": col(spot[:, 2]), "bg": col(bg[box]), "prob": col(prob),
            "sigma_x_nm": col(bound[:, 0].sqrt() * px), "sigma_y_nm": col(bound[:, 1].sqrt() * px),
            "sigma_z_nm": np.nan,
            "psf_sigma_nm": col(sigma[box] * px),
        })
        pixel = (r[box] + tile.rows.start) * width + c[box] + tile.cols.start
        return TileResult(table, (pixel * self.max_spots + slot).cpu().numpy(), None)

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

    def owned(self, xy: torch.Tensor, count: torch.Tensor, ids: torch.Tensor, f: torch.Tensor, top: torch.Tensor,
              left: torch.Tensor, own: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(E, S, 2) spot positions (box px) -> (E, S) whether each is reported by its box: within
        MAX_SHIFT_PX (one spot) or MAX_SPLIT_PX (several) per axis of the box's candidate and nearer to it
        than to any other candidate in the box, so a neighbour's spot, fitted only to keep it out of this
        one, is reported once, by its own box. ``ids`` (B, H, W) holds each candidate pixel's number (−1
        elsewhere), ``index`` (E,) that of each box's own candidate."""
        p, h = self.box_px, self.box_px // 2
        span = torch.arange(p, device=xy.device)
        box_ids = ids[f[:, None, None], (top[:, None] + span)[:, :, None], (left[:, None] + span)[:, None, :]]
        grid = (span - h).to(xy.dtype)
        d2 = ((xy[..., 0, None, None] - grid[None, None, None, :]) ** 2
              + (xy[..., 1, None, None] - grid[None, None, :, None]) ** 2)
        d2 = torch.where(box_ids[:, None] >= 0, d2, torch.inf).flatten(2)
        nearest = box_ids.flatten(1).gather(1, d2.argmin(-1))
        limit = torch.where(count > 1, MAX_SPLIT_PX, MAX_SHIFT_PX).to(xy.dtype)
        near_own = ((xy - own[:, None]).abs() <= limit[:, None, None]).all(-1)
        return (nearest == index[:, None]) & near_own
