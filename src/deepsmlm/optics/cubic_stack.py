"""A z-stack PSF interpolated in z by cubic Hermite (Catmull–Rom) splines instead of linearly: its
derivative in z is continuous, so a likelihood fit of z has no kinks at the cached planes to stall on
(with linear interpolation the optimum often sits on a plane, where the gradient jumps)."""

from __future__ import annotations

import math

import torch

from deepsmlm.optics.psf import patch_frequencies, shift_and_blur_factor
from deepsmlm.optics.stack import ZStackPSF


class CubicZStackPSF(ZStackPSF):
    """The planes of a :class:`ZStackPSF`, interpolated in z by Catmull–Rom splines (tangents from the
    neighbouring planes, the end planes repeated), clamped to their range; laterally as the stack."""

    @classmethod
    def of(cls, stack: ZStackPSF) -> "CubicZStackPSF":
        """The same planes as ``stack`` (a linear z-stack PSF), cubic in z."""
        planes = torch.cat([stack.spectra, stack.spectra[-1:] + stack.increments[-1:]])
        return cls(planes, stack.z_nm, stack.z_min_nm, stack.z_step_nm, stack.pixel_nm, stack.patch_px)

    def __init__(self, spectra: torch.Tensor, z_nm: torch.Tensor, z_min_nm: float, z_step_nm: float,
                 pixel_nm: float, patch_px: int):
        super().__init__(spectra, z_nm, z_min_nm, z_step_nm, pixel_nm, patch_px)
        self.register_buffer("planes", spectra)

    def spectra_at(self, z_nm: torch.Tensor, derivative: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(E,) depths (nm) -> the interpolated plane spectra (E, Q, Q//2+1) and, when asked, their
        derivative in z (per nm; 0 outside the planes' range, where z is clamped)."""
        n = len(self.z_nm)
        zi = (z_nm - self.z_min_nm) / self.z_step_nm
        inside = (zi > 0) & (zi < n - 1)
        zi = zi.clamp(0, n - 1)
        i = torch.floor(zi).long().clamp(max=n - 2)
        t = (zi - i)[:, None]
        t2, t3 = t * t, t * t * t
        # Hermite weights of p_i, m_i, p_{i+1}, m_{i+1} (m: the tangents (p_{k+1} − p_{k−1})/2) and their slopes
        h = [torch.cat([2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, 3 * t2 - 2 * t3, t3 - t2], -1)]
        if derivative:
            h.append(torch.cat([6 * t2 - 6 * t, 3 * t2 - 4 * t + 1, 6 * t - 6 * t2, 3 * t2 - 2 * t], -1)
                     * (inside[:, None] / self.z_step_nm))
        h = torch.stack(h, 1)  # (E, 1 | 2, 4)
        # … as weights of the planes i − 1, i, i + 1, i + 2
        w = torch.stack([-0.5 * h[..., 1], h[..., 0] - 0.5 * h[..., 3], h[..., 2] + 0.5 * h[..., 1],
                         0.5 * h[..., 3]], -1)
        planes = self.planes[(i[:, None] + torch.arange(-1, 3, device=i.device)).clamp(0, n - 1)]  # (E, 4, Q, Q')
        mixed = torch.bmm(w.to(planes.dtype), planes.flatten(2)).view(len(z_nm), -1, *planes.shape[-2:])
        return mixed[:, 0], (mixed[:, 1] if derivative else None)

    def patches(self, offset_nm, photons, blur_px=None):
        p, q = self.patch_px, self.fft_px
        if len(offset_nm) == 0:
            return self.spectra.real.new_zeros(0, p, p)
        factor = shift_and_blur_factor(offset_nm[:, 0] / self.pixel_nm, offset_nm[:, 1] / self.pixel_nm,
                                       blur_px, q, scale=photons)
        return torch.fft.irfft2(self.spectra_at(offset_nm[:, 2])[0] * factor, s=(q, q))[:, :p, :p]

    def patches_and_derivatives(self, offset_nm: torch.Tensor, photons: torch.Tensor,
                                blur_px: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``patches`` (E, P, P) and their derivatives in x, y, z (3, E, P, P) per nm, analytically: the
        shift's phase ramp and the splines' slope in the Fourier domain, one inverse FFT for all (E ≥ 1)."""
        p, q = self.patch_px, self.fft_px
        spec, slope = self.spectra_at(offset_nm[:, 2], derivative=True)
        factor = shift_and_blur_factor(offset_nm[:, 0] / self.pixel_nm, offset_nm[:, 1] / self.pixel_nm,
                                       blur_px, q, scale=photons)
        fy, fx = patch_frequencies(q, offset_nm.device)
        shifted = spec * factor
        ramp = -2j * math.pi / self.pixel_nm
        out = torch.fft.irfft2(torch.stack([shifted, shifted * (ramp * fx), shifted * (ramp * fy[:, None]),
                                            slope * factor]), s=(q, q))[..., :p, :p]
        return out[0], out[1:]
