"""The classic baseline ``gaussian-mle``: difference-of-Gaussians spot detection, then the batched
likelihood fit of pixel-integrated Gaussians (``inference.gaussian_fit``) in a box around each candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from deepsmlm.inference.gaussian_fit import SpotFitter
from deepsmlm.inference.poisson_fit import flat_deviance
from deepsmlm.inference.tiling import Footprint, Tile, TileResult
from deepsmlm.localizations import pixel_centre_px
from deepsmlm.physics.camera import Camera

PEAK_WINDOW_PX = 5  # local maxima of the filtered image in a 5×5 neighbourhood
BACKGROUND_SCALE = 3.0  # σ of the DoG's background Gaussian, in PSF σ
MAX_SHIFT_PX = 1.0  # a single-spot fit may move at most this far (per axis) from its detection pixel's centre
MAX_SPLIT_PX = 3.0  # each spot of a multi-spot fit at most this far (per axis): inside the default box
EDGE_MARGIN_PX = 0.5  # spots centred nearer the frame edge are not reported: much of them is off the sensor
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


def likelihood_ratio(z: torch.Tensor, dev: torch.Tensor) -> torch.Tensor:
    """Λ = 2·(deviance of a flat box − ``dev``) (E,) of (E, P, P) scaled boxes and their fits' deviance: the
    likelihood-ratio statistic of "spot vs no spot" (√Λ its significance in noise standard deviations)."""
    return (2 * (flat_deviance(z) - dev)).clamp_min(0)


def detection_prob(ratio: torch.Tensor, threshold: float) -> torch.Tensor:
    """Φ(√Λ − k) of likelihood ratios Λ and the detection threshold k: 0.5 at the threshold, → 1 above."""
    return 0.5 * (1 + torch.erf((ratio.sqrt() - threshold) / math.sqrt(2)))


@dataclass(frozen=True)
class Candidates:
    """A tile's candidates in its core and their fit boxes (tile px): frame ``f``, ``r``, ``c`` (E,); the
    boxes' top-left ``top``, ``left`` (E,) (moved inwards at the tile's edges); the P×P photon ``boxes`` and
    zero-signal variance ``v0`` (E, P, P); a background estimate ``bg0`` (E,) (the box median); ``ids``
    (B, H, W) every candidate's number (−1 elsewhere, halo included) and ``index`` (E,) that of each box's."""

    f: torch.Tensor
    r: torch.Tensor
    c: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    boxes: torch.Tensor
    v0: torch.Tensor
    bg0: torch.Tensor
    ids: torch.Tensor
    index: torch.Tensor


class GaussianMLE:
    """Detection + Levenberg–Marquardt Poisson MLE of (x, y, photons, bg, σ) per spot, batched over spots.

    Detection: photons (by ``camera``, moved to ``device``) are filtered by a difference of Gaussians
    D = G(σ₀) ∗ d − G(3σ₀) ∗ d (σ₀ = ``psf_sigma_nm`` / ``pixel_nm``: the PSF's Gaussian σ, nm over the
    pixel size, nm); G(3σ₀) ∗ d also estimates the local background b̂. A pixel is a candidate when it is
    the maximum of its 5×5 neighbourhood and D ≥ k·√(var(b̂)·Σw²), i.e. k standard deviations of the
    filtered background noise (w: the DoG kernel, var: the camera's variance), k = ``threshold`` (a
    config's ``model.gaussian_mle_threshold``, 6 by default; ``localize --threshold``). k = 6 gave no
    candidate in 2,000 64×64 frames of pure background (2–100 photons/px) on an ideal camera and 3 at
    20 photons/px on the EPFL 2016 EMCCD, whose EM register has a heavier tail (more at 2 photons/px);
    spots of ≳ 200 photons are found there.

    Fit: Fisher scoring with Marquardt damping on the likelihood of ``inference.gaussian_fit``, from a
    box of ``box_px`` (odd) pixels around each candidate (moved inwards at frame edges), for ``iterations``
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
    context_frames = 0  # it fits each frame alone

    def __init__(self, camera: Camera, pixel_nm: float, psf_sigma_nm: float, threshold: float, box_px: int = 7,
                 fit_sigma: bool = True, iterations: int = 20, split_threshold: float = 25.0, max_spots: int = 3,
                 device: str | torch.device = "cpu"):
        if box_px % 2 == 0 or box_px < 3:
            raise ValueError(f"box_px must be odd and >= 3, got {box_px}")
        self.pixel_nm = pixel_nm
        self.box_px = box_px
        self.threshold = threshold
        self.device = torch.device(device)
        self.camera = camera.to(self.device)
        self.sigma_px = psf_sigma_nm / pixel_nm
        scale = self.camera.excess_noise_factor / self.camera.qe  # s: photon variance per photon
        self.spot_fit = SpotFitter(box_px, scale, self.sigma_px, fit_sigma, iterations, split_threshold, max_spots)
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
        noise = torch.sqrt((self.spot_fit.scale * bg.clamp_min(0) + v0) * w2)
        f, r, c = torch.nonzero(dog >= self.threshold * noise, as_tuple=True)
        peak = local_maxima(dog, f, r, c, PEAK_WINDOW_PX)
        return f[peak], r[peak], c[peak], v0

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
        h = self.box_px // 2
        cand = self.candidates(photons, tile)
        f, r, c, top, left, boxes, v0, bg0 = (cand.f, cand.r, cand.c, cand.top, cand.left, cand.boxes, cand.v0,
                                              cand.bg0)
        start = torch.stack([(c - left - h).to(photons.dtype), (r - top - h).to(photons.dtype),
                             (boxes - bg0[:, None, None]).sum((-2, -1)).clamp_min(1.0), bg0,
                             torch.full_like(bg0, self.sigma_px)], dim=-1)
        n = MAX_BOXES_PER_FIT
        fits = [self.spot_fit.fit_spots(boxes[i:i + n], v0[i:i + n], start[i:i + n])
                for i in range(0, max(len(boxes), 1), n)]
        spots, crlb, count, bg, sigma, dev = (torch.cat(parts) for parts in zip(*fits))
        prob = detection_prob(likelihood_ratio(self.spot_fit.scaled_counts(boxes, v0), dev), self.threshold)
        keep = self.owned(spots[..., :2], count, cand.ids, f, top, left, start[:, :2], cand.index)
        keep &= (torch.arange(self.spot_fit.max_spots, device=keep.device) < count[:, None]) & (crlb > 0).all(-1)
        top, left = top + tile.rows.start, left + tile.cols.start  # in the frame
        col_px = pixel_centre_px(left[:, None] + h) + spots[..., 0]
        row_px = pixel_centre_px(top[:, None] + h) + spots[..., 1]
        m = EDGE_MARGIN_PX
        keep &= (col_px >= m) & (col_px <= width - m) & (row_px >= m) & (row_px <= height - m)
        box, slot = torch.nonzero(keep, as_tuple=True)
        spot, bound = spots[box, slot], crlb[box, slot]
        px = self.pixel_nm

        def col(t: torch.Tensor) -> np.ndarray:
            return t.double().cpu().numpy()

        table = pd.DataFrame({
            "frame": f[box].cpu().numpy().astype(np.int64) + first_frame,
            "x_nm": col(col_px[box, slot] * px),
            "y_nm": col(row_px[box, slot] * px),
            "z_nm": 0.0,
            "photons": col(spot[:, 2]), "bg": col(bg[box]), "prob": col(prob[box]),
            "sigma_x_nm": col(bound[:, 0].sqrt() * px), "sigma_y_nm": col(bound[:, 1].sqrt() * px),
            "sigma_z_nm": np.nan,
            "psf_sigma_nm": col(sigma[box] * px),
        })
        pixel = (r[box] + tile.rows.start) * width + c[box] + tile.cols.start
        return TileResult(table, (pixel * self.spot_fit.max_spots + slot).cpu().numpy(), None)

    def candidates(self, photons: torch.Tensor, tile: Tile) -> Candidates:
        """Detect in (B, H, W) photons of ``tile`` and cut a ``box_px`` box around each candidate of its core."""
        p, h = self.box_px, self.box_px // 2
        height, width = tile.frame
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
        return Candidates(f, r, c, top, left, boxes, v0, bg0, ids, index)

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
