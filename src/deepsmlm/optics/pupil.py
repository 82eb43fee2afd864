"""Scalar pupil-function PSF with refractive-index mismatch and a phase mask (PHYSICS.md, scalar pupil PSF).

P(f) = A(f)·exp(i[φ_mask + φ_zernike − k0·n_imm·NFP·cosθ_imm + k0·n_s·d·cosθ_s + 2π f·r])
with f in 1/nm, k0 = 2π/λ (1/nm), d = z + NFP the emitter depth (nm), sinθ_imm = λ|f|/n_imm and
sinθ_s = (n_imm/n_s)·sinθ_imm. Beyond the critical angle (sinθ_s > 1) cosθ_s = i·√(sin²θ_s − 1):
with ``supercritical="evanescent"`` that light reaches the objective attenuated by
exp(−k0·n_s·d·√(sin²θ_s − 1)) (A = 1 up to NA/λ); with ``"cut"`` A = 0 there (DeepSTORM3D's model).
With ``focus_scan`` z is not the emitter's depth but the focus: the emitter sits on the coverslip (d = 0) and
the focal plane is at NFP = NFP₀ − z (a bead z-stack; NFP₀ the nominal focal plane, the stack's focus offset),
so the z phase is −k0·n_imm·NFP·cosθ_imm = −k0·n_imm·NFP₀·cosθ_imm + k0·n_imm·z·cosθ_imm.
An apodisation ``pupil_amplitude`` {k: a_k} multiplies A by exp(Σ_k a_k·ρ^(2k)) (ρ the Zernike radius).
I(u) = |FFT{P}|², normalised to the photon count over the whole N×N field (N²·Σ|P|², Parseval: the
photon count is the light the objective collects, evanescent share included), then cropped to the patch.
An N-point grid of spacing δf = 1/(N·Δ/s) gives image samples Δ/s apart (Δ the camera pixel, nm).
A camera pixel records I integrated over its Δ×Δ area (:func:`integrate_pixels`); the reference model
instead samples I at the pixel centre (s = 1) or averages s×s samples.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from deepsmlm.optics.psf import PSF, blur_patches
from deepsmlm.optics.zernike import zernike_phase

Supercritical = Literal["evanescent", "cut"]
ZernikeAperture = Literal["open", "na"]


class PupilGrid:
    """Frequency-plane grids (1/nm) of an N×N pupil for a camera pixel Δ (nm) and odd oversampling s.

    ``cos_s`` is complex (imaginary beyond the critical angle, zero outside the aperture). ``rho`` is the
    Zernike radius: 1 at NA/λ (``zernike_aperture="na"``, the reference) or at the edge of the disk the
    pupil transmits (``"open"``): NA/λ with evanescent light, min(NA, n_s)/λ when it is cut.
    """

    def __init__(self, n: int, pixel_nm: float, wavelength_nm: float, na: float, n_immersion: float,
                 n_sample: float, oversample: int = 1, angle_scale: float = 1.0,
                 supercritical: Supercritical = "evanescent", zernike_aperture: ZernikeAperture = "open"):
        if oversample < 1 or oversample % 2 == 0:
            raise ValueError(f"oversample must be a positive odd integer, got {oversample}")
        if supercritical not in ("evanescent", "cut"):
            raise ValueError(f"supercritical must be evanescent or cut, got {supercritical!r}")
        if zernike_aperture not in ("open", "na"):
            raise ValueError(f"zernike_aperture must be open or na, got {zernike_aperture!r}")
        self.n, self.oversample = int(n), int(oversample)
        self.pixel_nm, self.wavelength_nm = float(pixel_nm), float(wavelength_nm)
        self.na, self.n_immersion, self.n_sample = float(na), float(n_immersion), float(n_sample)
        self.supercritical, self.zernike_aperture = supercritical, zernike_aperture
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
        inside = angle_scale * fr <= na / wavelength_nm
        if supercritical == "cut":
            inside = inside & (sin_s < 1)
        self.aperture = inside.to(torch.float64)
        self.cos_imm = torch.sqrt(torch.clamp(1 - sin_imm**2, min=0)) * self.aperture
        # principal root: i·√(sin²θ_s − 1) beyond the critical angle
        self.cos_s = torch.sqrt((1 - sin_s**2).to(torch.complex128)) * self.aperture
        if zernike_aperture == "na":
            self.rho = fr / (na / wavelength_nm)  # 1 at the NA edge (DeepSTORM3D's normalisation)
        else:
            self.rho = angle_scale * fr / (self.open_na / wavelength_nm)
        self.theta = torch.atan2(fy, fx)

    @property
    def open_na(self) -> float:
        """n_imm·sinθ_imm at the transmitted pupil's edge: NA, or min(NA, n_s) when supercritical light is cut."""
        return self.na if self.supercritical == "evanescent" else min(self.na, self.n_sample)

    @property
    def pupil_radius_px(self) -> float:
        """NA/λ in grid pixels."""
        return self.na / self.wavelength_nm / self.freq_step


def apodisation(coefficients: dict[int, float], rho: torch.Tensor) -> torch.Tensor:
    """exp(Σ_k a_k·ρ^(2k)): the pupil's relative amplitude for radial coefficients {k: a_k}, ρ clipped at 1
    (the aperture's edge, so it stays finite outside)."""
    r2 = rho.clamp(max=1.0) ** 2
    return torch.exp(sum((a * r2**k for k, a in coefficients.items()), torch.zeros_like(r2)))


def integrate_pixels(intensity: torch.Tensor, grid: PupilGrid,
                     transfer: torch.Tensor | None = None) -> torch.Tensor:
    """Camera-pixel integral of an intensity sampled on ``grid``'s image plane (Δ/s apart, periodic N×N),
    convolved first with the kernel of ``transfer`` (N, N//2 + 1) when given (:func:`halo_transfer`).

    (…, N, N) photons per Δ/s sample → (…, N, N) photons in a Δ×Δ pixel centred on each sample:
    s²·IFFT{FFT{I}·sinc(fx·Δ)·sinc(fy·Δ)}, sinc(u) = sin(πu)/(πu), fx, fy in 1/nm. Exact for an
    intensity band-limited to 2·NA/λ when 4·(NA/λ) ≤ N·δf (no aliasing of the intensity spectrum).
    """
    n, s = grid.n, grid.oversample
    fy = torch.fft.fftfreq(n, d=1.0 / s, dtype=intensity.dtype, device=intensity.device)  # f·Δ
    fx = torch.fft.rfftfreq(n, d=1.0 / s, dtype=intensity.dtype, device=intensity.device)
    box = torch.sinc(fy)[:, None] * torch.sinc(fx)[None, :] * (s * s)
    if transfer is not None:
        box = box * transfer
    return torch.fft.irfft2(torch.fft.rfft2(intensity) * box, s=(n, n))


def halo_transfer(grid: PupilGrid, fraction: torch.Tensor | float, length_px: torch.Tensor | float) -> torch.Tensor:
    """(N, N//2 + 1) transfer function, on ``grid``'s rfft2 frequencies, of the image-plane kernel
    (1 − f)·δ + f·exp(−r/L)/(2πL²): a share f of each emitter's light spread into a halo that decays
    exponentially over L camera px (stray light, scattering). The exponential's 2D Fourier transform is
    (1 + (2πLq)²)^(−3/2), q in cycles per camera px; the kernel sums to one, so photons are kept."""
    n, s = grid.n, grid.oversample
    fy = torch.fft.fftfreq(n, d=1.0 / s, device=grid.rho.device)[:, None]
    fx = torch.fft.rfftfreq(n, d=1.0 / s, device=grid.rho.device)[None, :]
    q2 = (fx**2 + fy**2).to(torch.float32)
    length = torch.as_tensor(length_px, dtype=torch.float32)
    return (1 - fraction) + fraction * (1 + (2 * math.pi * length) ** 2 * q2) ** -1.5


class PupilPSF(PSF):
    """Differentiable scalar pupil PSF; the mask phase (radians, N×N) may be a learnable parameter.

    ``pixel_integration``: True integrates over each camera pixel (:func:`integrate_pixels`, the
    physics); False samples at pixel centres (s = 1) or averages s×s samples (the reference model).
    ``halo``: (fraction, length px) of the halo kernel (:func:`halo_transfer`), applied over the whole FFT
    field before the patch is cut, so the halo of light outside the patch reaches into it.
    """

    def __init__(self, grid: PupilGrid, patch_px: int, nominal_focal_plane_nm: float,
                 mask_phase: torch.Tensor | None = None, zernike_rad: dict[int, float] | None = None,
                 learnable_mask: bool = False, pixel_integration: bool = True,
                 pupil_amplitude: dict[int, float] | None = None, focus_scan: bool = False,
                 halo: tuple[float, float] = (0.0, 0.0)):
        super().__init__(grid.pixel_nm, patch_px)
        if patch_px * grid.oversample > grid.n:
            raise ValueError(f"patch of {patch_px} px × {grid.oversample} does not fit the N={grid.n} grid")
        if pixel_integration and 4 * grid.pupil_radius_px > grid.n:
            raise ValueError(f"pixel integration needs the intensity band 2NA/λ inside the N={grid.n} grid "
                             f"(pupil radius {grid.pupil_radius_px:.1f} px > N/4); increase oversampling")
        self.grid = grid
        self.nfp_nm = float(nominal_focal_plane_nm)
        self.pixel_integration = bool(pixel_integration)
        n, s = grid.n, grid.oversample
        # the patch's image samples in FFT order: camera-pixel centres s apart (integrated), else every sample
        steps = torch.arange(patch_px) * s - (patch_px // 2) * s if pixel_integration else \
            torch.arange(2 * ((patch_px * s) // 2) + 1) - (patch_px * s) // 2
        self.register_buffer("crop_index", steps % n, persistent=False)
        k0 = 2 * math.pi / grid.wavelength_nm
        f32 = dict(dtype=torch.float32)
        self.register_buffer("aperture", grid.aperture.to(**f32))
        amplitude = grid.aperture * apodisation(pupil_amplitude or {}, grid.rho)  # A(f) without evanescence
        self.register_buffer("amplitude", amplitude.to(**f32), persistent=False)
        self.register_buffer("fx", grid.fx.to(**f32))
        self.register_buffer("fy", grid.fy.to(**f32))
        # per-nm-of-depth phase in the sample and evanescent decay (1/nm, zero below the critical angle);
        # the fixed phase: focus displacement + Zernike aberrations. A focus scan (emitter on the coverslip,
        # NFP = NFP₀ − z): z moves the focus through the immersion and the light leaves the sample at depth 0
        self.focus_scan = bool(focus_scan)
        per_nm = grid.n_immersion * grid.cos_imm if self.focus_scan else grid.n_sample * grid.cos_s.real
        self.register_buffer("depth_phase", (k0 * per_nm).to(**f32))
        decay = torch.zeros_like(grid.cos_s.imag) if self.focus_scan else k0 * grid.n_sample * grid.cos_s.imag
        self.register_buffer("depth_decay", decay.to(**f32))
        self.evanescent = bool(grid.cos_s.imag.any())
        fixed = -k0 * grid.n_immersion * self.nfp_nm * grid.cos_imm
        if zernike_rad:
            open_disk = grid.aperture > 0 if grid.zernike_aperture == "open" else None
            fixed = fixed + zernike_phase(zernike_rad, grid.rho, grid.theta, open_disk)
        self.register_buffer("fixed_phase", (fixed * grid.aperture).to(**f32))
        mask = torch.zeros(n, n, **f32) if mask_phase is None else mask_phase.to(**f32)
        if learnable_mask:
            self.mask_phase = torch.nn.Parameter(mask.clone())
        else:
            self.register_buffer("mask_phase", mask)
        # Parseval for |P| = A: Σ|FFT P|² = N²·Σ|P|²
        self.norm: torch.Tensor | float = float(n * n * (amplitude**2).sum())
        self.register_buffer("halo", None, persistent=False)  # the halo's transfer function (set_halo)
        self.halo_params = halo
        if halo[0] > 0:
            self.set_halo(*halo)

    def mask(self) -> torch.Tensor:
        """(N, N) phase mask (radians) on this PSF's pupil grid."""
        return self.mask_phase

    def set_mask(self, phase: torch.Tensor) -> None:
        """Image through ``phase`` (radians, N×N on this PSF's pupil grid) from now on, the one way to set
        the mask. A learnable mask parameter takes the values in place, outside any autograd graph (it stays
        the optimiser's parameter); a fixed mask is replaced by ``phase`` (in the PSF's dtype, on its device)
        with its autograd graph, so a phase computed from design parameters passes gradients on to them."""
        n = self.grid.n
        if tuple(phase.shape) != (n, n):
            raise ValueError(f"mask phase must be {n}×{n} (the pupil grid), got {tuple(phase.shape)}")
        if phase is self.mask_phase:
            return
        if isinstance(self.mask_phase, torch.nn.Parameter):
            with torch.no_grad():
                self.mask_phase.copy_(phase)
        else:
            self.mask_phase = phase.to(self.aperture)

    def set_amplitude(self, amplitude: torch.Tensor) -> None:
        """Image through the pupil amplitude A (N×N, zero outside the aperture, evanescent decay excluded) from
        now on, keeping its autograd graph (a fitted apodisation passes gradients on to its coefficients)."""
        self.amplitude = amplitude.to(self.aperture)
        self.norm = self.grid.n ** 2 * self.amplitude.square().sum()

    def set_halo(self, fraction: torch.Tensor | float, length_px: torch.Tensor | float) -> None:
        """Image with the halo kernel of ``fraction`` and ``length_px`` (:func:`halo_transfer`) from now on,
        keeping their autograd graph (a fitted halo passes gradients on)."""
        self.halo_params = (fraction, length_px)
        self.halo = halo_transfer(self.grid, fraction, length_px).to(self.aperture)

    def pupil_field(self, offset_nm: torch.Tensor) -> torch.Tensor:
        """(E, N, N) complex pupil functions for emitters at (dx, dy, z) nm from the patch centre.

        Evanescent light decays with depth d ≥ 0; an emitter above the coverslip (d < 0, unphysical
        when n_s < NA) gets the d = 0 amplitude."""
        depth = offset_nm[:, 2] if self.focus_scan else offset_nm[:, 2] + self.nfp_nm  # focus scan: z phase, no decay
        phase = (self.mask() + self.fixed_phase)[None] + depth[:, None, None] * self.depth_phase[None]
        phase = phase + 2 * math.pi * (offset_nm[:, 0, None, None] * self.fx + offset_nm[:, 1, None, None] * self.fy)
        if not self.evanescent:
            return torch.polar(self.amplitude.expand_as(phase), phase)
        amplitude = self.amplitude * torch.exp(-depth.clamp(min=0)[:, None, None] * self.depth_decay)
        return torch.polar(amplitude, phase)

    def field_norm(self, field: torch.Tensor) -> torch.Tensor | float:
        """N²·Σ|P|² per emitter (Parseval), so each emitter's full N×N image sums to one photon."""
        if not self.evanescent:
            return self.norm
        return self.grid.n ** 2 * (field.real**2 + field.imag**2).sum(dim=(-2, -1))[:, None, None]

    def pupil_energy(self, offset_nm: torch.Tensor) -> torch.Tensor:
        """(E, N, N) collected power per pupil pixel, |P|² (arbitrary units)."""
        field = self.pupil_field(offset_nm)
        return field.real**2 + field.imag**2

    def image_fft_order(self, offset_nm: torch.Tensor) -> torch.Tensor:
        """(E, N, N) image of each emitter over the whole FFT field, |FFT P|², normalised to unit sum, in FFT
        order (the patch centre at index 0). The pupil is transformed as it lies, centred: a circular shift
        of the FFT's input only multiplies its output by a unit phase per image pixel, which |·|² drops."""
        field = self.pupil_field(offset_nm)
        img = torch.fft.fft2(field)
        return (img.real**2 + img.imag**2) / self.field_norm(field)

    def intensity(self, offset_nm: torch.Tensor) -> torch.Tensor:
        """(E, N, N) image of each emitter over the whole FFT field, centred, normalised to unit sum."""
        return torch.fft.fftshift(self.image_fft_order(offset_nm), dim=(-2, -1))

    def patches(self, offset_nm, photons, blur_px=None):
        s = self.grid.oversample
        if len(offset_nm) == 0:  # an empty FFT batch is an error in some FFT back-ends
            return self.aperture.new_zeros(0, self.patch_px, self.patch_px)
        inten = self.image_fft_order(offset_nm)
        if self.pixel_integration:  # the integral is a circular convolution: it commutes with the centring
            inten = integrate_pixels(inten, self.grid, self.halo)
        elif self.halo is not None:
            inten = torch.fft.irfft2(torch.fft.rfft2(inten) * self.halo, s=inten.shape[-2:])
        crop = inten[:, self.crop_index][:, :, self.crop_index]  # the patch, gathered from FFT order
        if not self.pixel_integration and s > 1:
            crop = torch.nn.functional.avg_pool2d(crop[:, None], s)[:, 0] * (s * s)
        out = photons[:, None, None] * crop
        return out if blur_px is None else blur_patches(out, blur_px)


def supercritical_fraction(psf: PupilPSF, depth_nm: float) -> float:
    """Share of the collected pupil energy (|P|², or a vectorial PSF's dipole power) beyond the critical angle
    for an emitter at depth d (nm)."""
    offset = torch.tensor([[0.0, 0.0, depth_nm - psf.nfp_nm]], device=psf.device)
    energy = psf.pupil_energy(offset)[0].cpu().double()
    beyond = psf.grid.cos_s.imag > 0
    return float(energy[beyond].sum() / energy.sum())
