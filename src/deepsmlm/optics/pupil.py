"""Scalar pupil-function PSF with refractive-index mismatch and a phase mask (PHYSICS.md, scalar pupil PSF).

P(f) = A(f)·exp(i[φ_mask + φ_zernike − k0·n_imm·NFP·cosθ_imm + k0·n_s·d·cosθ_s + 2π f·r])
I(u) = |FFT{P}|², normalised to the photon count over the whole N×N field, then cropped to the patch.
An N-point grid of spacing δf = 1/(N·Δ/s) gives image pixels of Δ/s; s×s bins make one camera pixel.
"""

from __future__ import annotations

import math

import torch

from deepsmlm.optics.psf import PSF, blur_patches
from deepsmlm.optics.zernike import zernike_phase


class PupilGrid:
    """Frequency-plane grids (1/nm) of an N×N pupil for a camera pixel Δ (nm) and odd oversampling s."""

    def __init__(self, n: int, pixel_nm: float, wavelength_nm: float, na: float, n_immersion: float,
                 n_sample: float, oversample: int = 1, angle_scale: float = 1.0):
        if oversample < 1 or oversample % 2 == 0:
            raise ValueError(f"oversample must be a positive odd integer, got {oversample}")
        self.n, self.oversample = int(n), int(oversample)
        self.pixel_nm, self.wavelength_nm = float(pixel_nm), float(wavelength_nm)
        self.na, self.n_immersion, self.n_sample = float(na), float(n_immersion), float(n_sample)
        self.freq_step = oversample / (n * pixel_nm)  # 1/nm per pupil pixel
        if na / wavelength_nm > (n // 2) * self.freq_step:
            raise ValueError(
                f"pupil (NA/λ = {na / wavelength_nm * 1e3:.3f} µm⁻¹) does not fit an N={n} grid at "
                f"{pixel_nm / oversample:.1f} nm sampling; increase oversampling"
            )
        k = (torch.arange(n, dtype=torch.float64) - n // 2) * self.freq_step
        fy, fx = torch.meshgrid(k, k, indexing="ij")  # x along columns, y along rows
        self.fx, self.fy = fx, fy
        fr = torch.hypot(fx, fy)
        # angle_scale calibrates sinθ against the lateral frequency grid (1 = exact Fourier optics)
        sin_imm = angle_scale * wavelength_nm * fr / n_immersion
        sin_s = sin_imm * n_immersion / n_sample
        self.aperture = ((angle_scale * fr <= na / wavelength_nm) & (sin_s < 1)).to(torch.float64)
        self.cos_imm = torch.sqrt(torch.clamp(1 - sin_imm**2, min=0)) * self.aperture
        self.cos_s = torch.sqrt(torch.clamp(1 - sin_s**2, min=0)) * self.aperture
        self.rho = fr / (na / wavelength_nm)  # 1 at the NA edge (Zernike coordinates)
        self.theta = torch.atan2(fy, fx)

    @property
    def pupil_radius_px(self) -> float:
        """NA/λ in grid pixels."""
        return self.na / self.wavelength_nm / self.freq_step


class PupilPSF(PSF):
    """Differentiable scalar pupil PSF; the mask phase (radians, N×N) may be a learnable parameter."""

    def __init__(self, grid: PupilGrid, patch_px: int, nominal_focal_plane_nm: float,
                 mask_phase: torch.Tensor | None = None, zernike_rad: dict[int, float] | None = None,
                 learnable_mask: bool = False):
        super().__init__(grid.pixel_nm, patch_px)
        if patch_px * grid.oversample > grid.n:
            raise ValueError(f"patch of {patch_px} px × {grid.oversample} does not fit the N={grid.n} grid")
        self.grid = grid
        self.nfp_nm = float(nominal_focal_plane_nm)
        n = grid.n
        k0 = 2 * math.pi / grid.wavelength_nm
        f32 = dict(dtype=torch.float32)
        self.register_buffer("aperture", grid.aperture.to(**f32))
        self.register_buffer("fx", grid.fx.to(**f32))
        self.register_buffer("fy", grid.fy.to(**f32))
        # per-nm-of-depth phase in the sample, and the fixed phase: focus displacement + Zernike aberrations
        self.register_buffer("depth_phase", (k0 * grid.n_sample * grid.cos_s).to(**f32))
        fixed = -k0 * grid.n_immersion * self.nfp_nm * grid.cos_imm
        if zernike_rad:
            fixed = fixed + zernike_phase(zernike_rad, grid.rho, grid.theta)
        self.register_buffer("fixed_phase", (fixed * grid.aperture).to(**f32))
        mask = torch.zeros(n, n, **f32) if mask_phase is None else mask_phase.to(**f32)
        if learnable_mask:
            self.mask_phase = torch.nn.Parameter(mask.clone())
        else:
            self.register_buffer("mask_phase", mask)
        # Parseval: Σ|FFT P|² = N²·Σ|P|²
        self.norm = float(n * n * grid.aperture.sum())

    def mask(self) -> torch.Tensor:
        """(N, N) phase mask (radians) on this PSF's pupil grid."""
        return self.mask_phase

    def pupil_field(self, offset_nm: torch.Tensor) -> torch.Tensor:
        """(E, N, N) complex pupil functions for emitters at (dx, dy, z) nm from the patch centre."""
        depth = offset_nm[:, 2] + self.nfp_nm
        phase = (self.mask() + self.fixed_phase)[None] + depth[:, None, None] * self.depth_phase[None]
        phase = phase + 2 * math.pi * (offset_nm[:, 0, None, None] * self.fx + offset_nm[:, 1, None, None] * self.fy)
        return torch.polar(self.aperture.expand_as(phase), phase)

    def patches(self, offset_nm, photons, blur_px=None):
        n, s = self.grid.n, self.grid.oversample
        if len(offset_nm) == 0:  # an empty FFT batch is an error in some FFT back-ends
            return self.aperture.new_zeros(0, self.patch_px, self.patch_px)
        field = self.pupil_field(offset_nm)
        img = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(field, dim=(-2, -1))), dim=(-2, -1))
        inten = (img.real**2 + img.imag**2) / self.norm
        half = (self.patch_px * s) // 2
        c = n // 2
        crop = inten[:, c - half:c + half + 1, c - half:c + half + 1]
        if s > 1:
            crop = torch.nn.functional.avg_pool2d(crop[:, None], s)[:, 0] * (s * s)
        out = photons[:, None, None] * crop
        return out if blur_px is None else blur_patches(out, blur_px)
