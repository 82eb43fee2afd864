"""The classic 3D baseline ``psf-mle``: gaussian-mle's spot detection, then a batched maximum-likelihood fit
of x, y, z, photons and background per spot with any PSF model (``optics.psf.PSF``: a pupil's cached
z-stack, an astigmatic Gaussian, a measured bead stack) under the camera noise model of
``inference.poisson_fit``, with Cramér–Rao uncertainties at the fit. For sparse data: one spot per box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.spatial import cKDTree
from torch.func import jvp, vmap
from torch.nn import functional as F

from deepsmlm.inference.gaussian_mle import (EDGE_MARGIN_PX, GaussianMLE, detection_prob, likelihood_ratio)
from deepsmlm.inference.poisson_fit import deviance, fit_boxes, scaled_counts
from deepsmlm.inference.tiling import Footprint, Tile, TileResult
from deepsmlm.localizations import pixel_centre_px
from deepsmlm.optics.cubic_stack import CubicZStackPSF
from deepsmlm.optics.psf import PSF
from deepsmlm.optics.stack import ZStackPSF
from deepsmlm.physics.camera import Camera

Z_SCAN_PLANES = 16  # z starts scored over the axial range (the likelihood at each, photons and bg by least squares)
Z_SCAN_GAP = 2  # a second start: the best local minimum of the scan more than this many planes from the best,
SECOND_START_NLL = 25.0  # when its NLL is within this of the best plane's (a refined fit gains a few units)
SETTLE_DECREMENT = 1e-3  # a box stops when its step's predicted NLL decrease is below this (NLL units)
DUPLICATE_PX = 1.0  # fits of one frame closer than this are one spot (a lobed PSF detected twice): the stronger kept
MAX_BOXES_PER_FIT = 1024  # boxes fitted together, so their memory is bounded
BYTES_PER_PX = 80  # detection's working memory per pixel of a pass (as gaussian-mle's)
FIT_BYTES = 160 << 20  # working memory of fitting MAX_BOXES_PER_FIT boxes from two starts (13 px boxes)
MAX_FRAMES_PER_PASS = 256


def centre_crop(patches: torch.Tensor, box_px: int) -> torch.Tensor:
    """The central ``box_px`` × ``box_px`` pixels of (E, P, P) patches (P ≥ box_px, both odd)."""
    a = (patches.shape[-1] - box_px) // 2
    return patches[:, a:a + box_px, a:a + box_px]


class PSFMLE:
    """Detection + Levenberg–Marquardt likelihood fit of (x, y, photons, bg, z) per spot with any PSF.

    Detection and boxes are gaussian-mle's (difference of Gaussians at σ₀ = ``psf_sigma_nm``, threshold
    ``threshold`` noise standard deviations, a ``box_px`` box around each candidate). Model in a box:
    μ = b + crop(``psf.patches``((x, y)·px, z, N)), the PSF rendered about the box's centre pixel and cut
    to the box (``psf.patch_px`` ≥ ``box_px``), blurred by ``blur_px`` (camera px; the mean model-mismatch
    blur); a z-stack PSF is interpolated in z by cubic splines (``optics.cubic_stack``). The Jacobian in
    x, y, z comes by forward-mode autograd through the PSF (∂/∂N = μ_signal/N, ∂/∂b = 1), so any
    differentiable PSF works; a z-stack PSF's comes analytically from its Fourier-domain splines
    (forward-mode autograd through complex spectra costs ~20 ms of fixed overhead per step).

    Starts: x, y at the box's background-subtracted centroid (the centre of a lobed PSF too); z from a scan
    of Z_SCAN_PLANES planes over ``z_range_nm`` (photons and background by least squares at each plane,
    scored by the likelihood) — its best plane, and where the scan has another local minimum more than
    Z_SCAN_GAP planes away within SECOND_START_NLL of the best (the other side of an astigmatic focus,
    a double helix's other turn, a faint spot), that one too; the higher likelihood is kept. z stays
    within ``z_range_nm``; with z_range_nm[0] == z_range_nm[1] (a 2D config) z is held there and only
    x, y, photons and background are fitted.

    A fit is reported when it converged (Newton decrement < 1e-3 over the parameters not at a bound), its
    bounds are finite, its centre lies in its box and at least half a pixel inside the frame; fits in one
    frame (of one tile) closer than DUPLICATE_PX are one spot, reported by the fit of the larger
    likelihood ratio Λ against a flat box. ``prob`` = Φ(√Λ − k) as gaussian-mle's.
    """

    upsampling = 1
    context_frames = 0  # it fits each frame alone

    def __init__(self, psf: PSF, camera: Camera, pixel_nm: float, psf_sigma_nm: float, threshold: float,
                 z_range_nm: Sequence[float], box_px: int = 13, blur_px: float = 0.0, iterations: int = 30,
                 device: str | torch.device = "cpu"):
        if psf.patch_px < box_px:
            raise ValueError(f"the PSF's {psf.patch_px} px patch is smaller than the {box_px} px fit box")
        if abs(psf.pixel_nm / pixel_nm - 1) > 1e-6:
            raise ValueError(f"the PSF's {psf.pixel_nm:g} nm pixel differs from the data's {pixel_nm:g} nm")
        self.detector = GaussianMLE(camera, pixel_nm, psf_sigma_nm, threshold, box_px=box_px, device=device)
        self.device = self.detector.device
        if isinstance(psf, ZStackPSF) and not isinstance(psf, CubicZStackPSF):
            psf = CubicZStackPSF.of(psf)  # a continuous z derivative: no kinks at the planes to stall on
        self.psf = psf.to(self.device)
        self.pixel_nm, self.box_px, self.threshold = pixel_nm, box_px, threshold
        self.z_range_nm = (float(z_range_nm[0]), float(z_range_nm[1]))
        self.fit_z = self.z_range_nm[1] > self.z_range_nm[0]
        self.blur_px = blur_px
        self.iterations = iterations
        self.scale = self.detector.spot_fit.scale

    def footprint(self, height: int, width: int) -> Footprint:
        """Working memory per pixel and reach for tiling: the detector's, with the fit's fixed memory."""
        reach = self.detector.footprint(height, width).reach_px
        return Footprint(BYTES_PER_PX, reach, 1, MAX_FRAMES_PER_PASS, FIT_BYTES)

    def photons(self, adu: torch.Tensor) -> torch.Tensor:
        """(B, H, W) ADU → photons on the fitter's device, by the camera model."""
        return self.detector.photons(adu)

    def signal(self, theta: torch.Tensor) -> torch.Tensor:
        """(E, 5) parameters x, y (px from the box's centre pixel centre), N, b, z (nm) -> (E, P, P) photons
        of the spot alone in its box."""
        offset = torch.stack([theta[:, 0] * self.pixel_nm, theta[:, 1] * self.pixel_nm, theta[:, 4]], dim=-1)
        blur = None if self.blur_px == 0 else torch.full_like(theta[:, 0], self.blur_px)
        return centre_crop(self.psf.patches(offset, theta[:, 2], blur), self.box_px)

    def expected(self, theta: torch.Tensor, jacobian: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(E, 5) parameters -> expected photons (E, P, P) and, when asked, ∂/∂(x, y, N, b[, z]) (E, 4|5, P, P)."""
        b = theta[:, 3, None, None]
        if not jacobian:
            return self.signal(theta) + b, None
        if isinstance(self.psf, CubicZStackPSF):
            return self.stack_expected(theta)
        picks = [0, 1, 4] if self.fit_z else [0, 1]
        tangents = torch.eye(5, dtype=theta.dtype, device=theta.device)[picks, None, :].expand(-1, len(theta), 5)
        mu, d = vmap(lambda v: jvp(self.signal, (theta,), (v,)), out_dims=(None, 0))(tangents)
        parts = [d[0], d[1], mu / theta[:, 2, None, None], torch.ones_like(mu), *d[2:]]
        return mu + b, torch.stack(parts, dim=1)

    def stack_expected(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`expected` with its Jacobian, for a z-stack PSF by its analytic derivatives (the same as
        forward-mode autograd's, many times faster: no dual numbers through the complex spectra)."""
        px, box = self.pixel_nm, self.box_px
        offset = torch.stack([theta[:, 0] * px, theta[:, 1] * px, theta[:, 4]], dim=-1)
        blur = None if self.blur_px == 0 else torch.full_like(theta[:, 0], self.blur_px)
        mu, d = self.psf.patches_and_derivatives(offset, theta[:, 2], blur)
        mu, d = centre_crop(mu, box), centre_crop(d.flatten(0, 1), box).view(3, len(theta), box, box)
        parts = [d[0] * px, d[1] * px, mu / theta[:, 2, None, None], torch.ones_like(mu)]
        return mu + theta[:, 3, None, None], torch.stack(parts + ([d[2]] if self.fit_z else []), dim=1)

    def z_scan(self, boxes: torch.Tensor, v0: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The scan's planes z (Z,) and per box (E, Z) the least-squares photons and background of the spot at
        (x0, y0) and each z, and the deviance there."""
        e, p = boxes.shape[0], self.box_px
        z = torch.linspace(*self.z_range_nm, Z_SCAN_PLANES, dtype=boxes.dtype, device=boxes.device)
        zs = z.repeat(e)
        theta = torch.stack([x0.repeat_interleave(len(z)), y0.repeat_interleave(len(z)), torch.ones_like(zs),
                             torch.zeros_like(zs), zs], -1)
        u = self.signal(theta).reshape(e, len(z), p * p)  # unit-photon shapes
        d = boxes.reshape(e, 1, p * p)
        uc = u - u.mean(-1, keepdim=True)
        n = ((uc * d).sum(-1) / (uc * uc).sum(-1).clamp_min(1e-12)).clamp_min(1.0)
        b = (d.mean(-1) - n * u.mean(-1)).clamp_min(1e-3)
        m = (n[..., None] * u + b[..., None]) / self.scale + (v0 / self.scale**2).reshape(e, 1, p * p)
        data = scaled_counts(d, v0.reshape(e, 1, p * p), self.scale).expand_as(m)
        return z, n, b, deviance(m.reshape(e, len(z), p, p), data.reshape(e, len(z), p, p))

    def starts(self, boxes: torch.Tensor, v0: torch.Tensor, bg0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Starting values (M, 5) of (E, P, P) photon boxes (class docstring) and the box of each (M,): one
        per box (the first E rows), then a second where the z scan has another competitive basin."""
        e, p = boxes.shape[0], self.box_px
        grid = torch.arange(p, dtype=boxes.dtype, device=boxes.device) - p // 2
        weight = (boxes - bg0[:, None, None]).clamp_min(0) + 1e-6
        total = weight.sum((-2, -1))
        x0, y0 = (weight * grid).sum((-2, -1)) / total, (weight * grid[:, None]).sum((-2, -1)) / total
        rows = torch.arange(e, device=boxes.device)
        if not self.fit_z:
            n0 = (boxes - bg0[:, None, None]).sum((-2, -1)).clamp_min(1.0)
            return torch.stack([x0, y0, n0, bg0, torch.full_like(x0, self.z_range_nm[0])], -1), rows
        z, n, b, dev = self.z_scan(boxes, v0, x0, y0)
        best = dev.argmin(-1)
        # another basin: a local minimum of the scan more than Z_SCAN_GAP planes from the best, nearly as good
        lower = torch.minimum(F.pad(dev, (1, 0), value=torch.inf)[:, :-1], F.pad(dev, (0, 1), value=torch.inf)[:, 1:])
        far = (torch.arange(len(z), device=boxes.device) - best[:, None]).abs() > Z_SCAN_GAP
        second = torch.where(far & (dev <= lower), dev, torch.inf).argmin(-1)
        other = torch.nonzero(dev[rows, second] - dev[rows, best] < SECOND_START_NLL)[:, 0]
        box = torch.cat([rows, other])
        plane = torch.cat([best, second[other]])
        return torch.stack([x0[box], y0[box], n[box, plane], b[box, plane], z[plane]], -1), box

    def fit(self, boxes: torch.Tensor, v0: torch.Tensor, bg0: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fit (E, P, P) photon boxes from every start; per box the better fit (converged first, then the
        lower deviance): parameters (E, 5), Fisher information (E, K, K) of x, y, N, b[, z] in photon units,
        the converged flag (E,) and the deviance (E,)."""
        start, box = self.starts(boxes, v0, bg0)
        e, h = len(boxes), self.box_px // 2
        (z0, z1), inf = self.z_range_nm, float("inf")
        lo, hi = boxes.new_tensor([-h, -h, 1.0, 1e-3, z0]), boxes.new_tensor([h, h, inf, inf, z1])
        fits = fit_boxes(self.expected, boxes[box], v0[box], start, self.scale, (lo, hi), 5 if self.fit_z else 4,
                         self.iterations, SETTLE_DECREMENT)
        score = torch.where(fits[2], fits[3], torch.inf)
        pick = torch.arange(e, device=boxes.device)
        second = torch.arange(e, len(box), device=boxes.device)
        pick[box[second]] = torch.where(score[second] < score[box[second]], second, box[second])
        return tuple(t[pick] for t in fits)

    @torch.inference_mode()
    def localize(self, adu: torch.Tensor, first_frame: int = 0) -> pd.DataFrame:
        """(B, H, W) camera frames in ADU -> canonical localization table.

        frame = batch index + ``first_frame``; x_nm, y_nm absolute (pixel (r, c) covers x ∈ [c·px, (c+1)·px));
        z_nm (nm from the nominal focal plane; 0 for a 2D fit); photons (the PSF's total); bg (photons/px);
        prob (class docstring); sigma_x_nm, sigma_y_nm, sigma_z_nm = √CRLB at the fit under the camera's
        noise model (sigma_z_nm NaN for a 2D fit).
        """
        photons = self.photons(adu)
        return self.localize_tile(photons, first_frame, Tile.whole(*photons.shape[-2:])).table

    @torch.inference_mode()
    def localize_tile(self, photons: torch.Tensor, first_frame: int, tile: Tile, superres: bool = False
                      ) -> TileResult:
        """``localize`` of the spots whose candidate pixel lies in the core of ``tile`` of frames (B, H, W)
        in photons. No image."""
        cand = self.detector.candidates(photons, tile)
        n = MAX_BOXES_PER_FIT
        fits = [self.fit(cand.boxes[i:i + n], cand.v0[i:i + n], cand.bg0[i:i + n])
                for i in range(0, len(cand.boxes), n)]
        if not fits:
            none = cand.boxes.new_zeros(0, 5)
            return TileResult(self.table(cand.f, none, none, none[:, 0], first_frame), np.zeros(0, np.int64), None)
        theta, info, converged, dev = (torch.cat(parts) for parts in zip(*fits))
        var = torch.diagonal(torch.linalg.inv_ex(info)[0], dim1=-2, dim2=-1)
        ratio = likelihood_ratio(scaled_counts(cand.boxes, cand.v0, self.scale), dev)
        h = self.box_px // 2
        height, width = tile.frame
        col_px = pixel_centre_px(cand.left + tile.cols.start + h) + theta[:, 0]
        row_px = pixel_centre_px(cand.top + tile.rows.start + h) + theta[:, 1]
        m = EDGE_MARGIN_PX
        keep = converged & (var > 0).all(-1) & torch.isfinite(var).all(-1) & (theta[:, :2].abs() < h).all(-1)
        keep &= (col_px >= m) & (col_px <= width - m) & (row_px >= m) & (row_px <= height - m)
        keep = torch.nonzero(keep)[:, 0].cpu().numpy()
        keep = keep[strongest(cand.f[keep].cpu().numpy(), col_px[keep].cpu().numpy(), row_px[keep].cpu().numpy(),
                              ratio[keep].cpu().numpy())]
        positions = torch.stack([col_px, row_px], -1)[keep]
        table = self.table(cand.f[keep], torch.cat([positions, theta[keep, 2:]], -1), var[keep],
                           detection_prob(ratio[keep], self.threshold), first_frame)
        pixel = (cand.r[keep] + tile.rows.start) * width + cand.c[keep] + tile.cols.start
        return TileResult(table, pixel.cpu().numpy(), None)

    def table(self, frame: torch.Tensor, fitted: torch.Tensor, var: torch.Tensor, prob: torch.Tensor,
              first_frame: int) -> pd.DataFrame:
        """Canonical rows of fits: (E, 5) column, row (camera px), N, b, z and CRLB variances (E, 4|5) in px²,
        px², photons², (photons/px)², nm²."""
        px = self.pixel_nm

        def col(t: torch.Tensor) -> np.ndarray:
            return t.double().cpu().numpy()

        return pd.DataFrame({
            "frame": frame.cpu().numpy().astype(np.int64) + first_frame,
            "x_nm": col(fitted[:, 0] * px), "y_nm": col(fitted[:, 1] * px), "z_nm": col(fitted[:, 4]),
            "photons": col(fitted[:, 2]), "bg": col(fitted[:, 3]), "prob": col(prob),
            "sigma_x_nm": col(var[:, 0].sqrt() * px), "sigma_y_nm": col(var[:, 1].sqrt() * px),
            "sigma_z_nm": col(var[:, 4].sqrt()) if self.fit_z else np.nan,
        })


def strongest(frame: np.ndarray, x_px: np.ndarray, y_px: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """Indices of the fits to keep: of fits in one frame closer than DUPLICATE_PX, only the one of the
    largest ``strength`` (a lobed PSF's spot detected at two lobes and fitted from both)."""
    if len(frame) < 2:
        return np.arange(len(frame))
    points = np.stack([x_px, y_px, frame * 2 * DUPLICATE_PX], -1)  # frames apart along a third axis
    pairs = cKDTree(points).query_pairs(DUPLICATE_PX, output_type="ndarray")
    weaker = np.where(strength[pairs[:, 0]] < strength[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
    return np.setdiff1d(np.arange(len(frame)), weaker)
