"""Vectorial pupil PSF of a dipole emitter in the sample, imaged through the sample/immersion interface
by an aplanatic high-NA objective (PHYSICS.md; Richards & Wolf 1959, Hellen & Axelrod 1987, Aguet 2009).

Geometry: the emitter sits at depth d (nm) in the sample (index n_s) above the interface with the
immersion medium (n_imm, no separate coverslip layer: coverslip and immersion matched); the light
travels towards the objective, along −z. A pupil point at frequency f (1/nm), |f| = n_imm·sinθ_imm/λ,
azimuth φ = atan2(fy, fx), is the plane wave that leaves the emitter at θ_imm in the immersion and
θ_s in the sample (n_s·sinθ_s = n_imm·sinθ_imm); beyond the critical angle
cosθ_s = i·√(sin²θ_s − 1) and the wave is evanescent in the sample.

Per unit dipole moment μ (μ_z > 0 points into the sample, away from the objective) the six pupil
fields (image polarisations x, y from the dipole components x, y, z) are, with c = cosθ_s, s = sinθ_s,

    τ_s = 2 n_imm cosθ_imm / (n_s c + n_imm cosθ_imm)         s transmission
    τ_p = 2 n_imm cosθ_imm / (n_imm c + n_s cosθ_imm)         p transmission
    E_x = (τ_s sin²φ + τ_p c cos²φ) μ_x + (τ_p c − τ_s) sinφ cosφ μ_y − τ_p s cosφ μ_z
    E_y = (τ_p c − τ_s) sinφ cosφ μ_x + (τ_s cos²φ + τ_p c sin²φ) μ_y − τ_p s sinφ μ_z

τ_s, τ_p are the Fresnel coefficients sample → immersion times n_imm cosθ_imm/(n_s cosθ_s) (the
1/k_z,s of the dipole's angular spectrum and the k_z,imm of the far field), i.e. the transmission
immersion → sample by reciprocity; they stay finite at the critical angle (principal root of cosθ_s).
The s field keeps its direction ŝ = (−sinφ, cosφ); the aplanatic objective turns the p field into the
radial direction; the tube lens has low NA, so the image-plane field is transverse. The image is
upright (DESIGN.md): the pupil point f carries the light leaving the emitter towards −f, which sets the
sign of the μ_z terms (it matters only for tilted fixed dipoles).

Aplanatic factor: the objective obeys the sine condition (pupil radius ∝ sinθ_imm), so the cone
dΩ = sinθ dθ dφ lands on the pupil area ∝ sinθ cosθ dθ dφ; energy conservation gives the pupil
amplitude |E|/√cosθ_imm on our uniform frequency grid (the √cosθ of the Richards–Wolf θ integral).

Every field is multiplied by the scalar pupil of :class:`PupilPSF` (aperture, phase mask, Zernike
aberrations, focus and depth phases, the evanescent decay, sub-pixel placement), so masks, index
mismatch and learning act on all six alike. Image of a fixed dipole: I = Σ_pol |FFT{Σ_j μ_j E_pol,j}|²;
of a freely rotating one, the incoherent mean over μ = x, y, z: I = ⅓ Σ_pol,j |FFT{E_pol,j}|² (E_x,y
and E_y,x are equal, so five FFTs). Photons are detected photons: each emitter's image is normalised
to its photon count over the whole N×N field (Parseval: Σ_u I = N² Σ_f Σ_k w_k |E_k(f)|²), which
absorbs how a dipole's collected power depends on its orientation and depth; then it is cropped.
"""

from __future__ import annotations

import math

import torch

from deepsmlm.optics.pupil import PupilGrid, PupilPSF


def dipole_fields(grid: PupilGrid) -> torch.Tensor:
    """(2, 3, N, N) complex pupil fields E_pol,dipole per unit moment (module docstring), with the
    aplanatic factor 1/√cosθ_imm, zero outside the aperture."""
    n_i, n_s = grid.n_immersion, grid.n_sample
    inside = grid.aperture > 0
    cos_i = torch.where(inside, grid.cos_imm, torch.ones_like(grid.cos_imm)).to(torch.complex128)
    c = torch.where(inside, grid.cos_s, torch.ones_like(grid.cos_s))  # complex: i·√(…) beyond the critical angle
    s = torch.sqrt(1 - c**2)  # sinθ_s, real and ≥ 0 (also beyond the critical angle)
    tau_s = 2 * n_i * cos_i / (n_s * c + n_i * cos_i)
    tau_p = 2 * n_i * cos_i / (n_i * c + n_s * cos_i)
    cp, sp = torch.cos(grid.theta), torch.sin(grid.theta)  # azimuth φ of the pupil point
    cross = (tau_p * c - tau_s) * sp * cp
    fields = torch.stack([
        torch.stack([tau_s * sp**2 + tau_p * c * cp**2, cross, -tau_p * s * cp]),
        torch.stack([cross, tau_s * cp**2 + tau_p * c * sp**2, -tau_p * s * sp]),
    ])
    return fields * (grid.aperture / torch.sqrt(cos_i))


def dipole_moment(polar_rad: float, azimuth_rad: float) -> torch.Tensor:
    """Unit dipole μ = (sinΘ cosΦ, sinΘ sinΦ, cosΘ): Θ from the optical axis (+z, into the sample),
    Φ from +x towards +y."""
    return torch.tensor([math.sin(polar_rad) * math.cos(azimuth_rad), math.sin(polar_rad) * math.sin(azimuth_rad),
                         math.cos(polar_rad)], dtype=torch.float64)


class VectorialPSF(PupilPSF):
    """Differentiable vectorial pupil PSF (module docstring) of a freely rotating dipole
    (``orientation_rad`` None) or a fixed one at (polar, azimuth) radians; learnable mask as PupilPSF."""

    def __init__(self, grid: PupilGrid, patch_px: int, nominal_focal_plane_nm: float,
                 mask_phase: torch.Tensor | None = None, zernike_rad: dict[int, float] | None = None,
                 learnable_mask: bool = False, pixel_integration: bool = True,
                 orientation_rad: tuple[float, float] | None = None, pupil_amplitude: dict[int, float] | None = None,
                 focus_scan: bool = False, halo: tuple[float, float] = (0.0, 0.0)):
        super().__init__(grid, patch_px, nominal_focal_plane_nm, mask_phase=mask_phase, zernike_rad=zernike_rad,
                         learnable_mask=learnable_mask, pixel_integration=pixel_integration,
                         pupil_amplitude=pupil_amplitude, focus_scan=focus_scan, halo=halo)
        self.orientation_rad = orientation_rad
        e = dipole_fields(grid)
        if orientation_rad is None:  # E_xx, E_xy (= E_yx, counted twice), E_xz, E_yy, E_yz; mean over 3 dipoles
            fields = torch.stack([e[0, 0], e[0, 1], e[0, 2], e[1, 1], e[1, 2]])
            weights = torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0], dtype=torch.float64) / 3
        else:
            fields = torch.einsum("pjab,j->pab", e, dipole_moment(*orientation_rad).to(e.dtype))
            weights = torch.ones(2, dtype=torch.float64)
        self.register_buffer("dipole_fields", fields.to(torch.complex64))
        self.register_buffer("weights", weights.to(torch.float32))
        # Σ_k w_k |E_k|²: the pupil's power density for a unit scalar pupil (normalisation)
        self.register_buffer("power", torch.einsum("k,kab->ab", weights, fields.abs() ** 2).to(torch.float32))

    def pupil_energy(self, offset_nm: torch.Tensor) -> torch.Tensor:
        """(E, N, N) collected power per pupil pixel, Σ_k w_k |P·E_k|² (arbitrary units)."""
        scalar = self.pupil_field(offset_nm)
        return (scalar.real**2 + scalar.imag**2) * self.power

    def image_fft_order(self, offset_nm: torch.Tensor) -> torch.Tensor:
        """(E, N, N) image of each emitter over the whole FFT field, normalised to unit sum, in FFT order (as
        :meth:`PupilPSF.image_fft_order`: the centred pupil transformed as it lies)."""
        scalar = self.pupil_field(offset_nm)
        total = self.grid.n ** 2 * torch.einsum("eab,ab->e", scalar.real**2 + scalar.imag**2, self.power)
        img = torch.fft.fft2(scalar[:, None] * self.dipole_fields[None])
        inten = torch.einsum("k,ekab->eab", self.weights, img.real**2 + img.imag**2)
        return inten / total[:, None, None]
