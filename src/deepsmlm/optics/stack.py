"""Fast path for a fixed PSF: a cached z-stack of patch spectra, interpolated in z and shifted in Fourier space.

Per emitter it costs one small batched inverse FFT of the patch (no pupil, no N×N FFT). Sub-pixel
placement by a phase ramp is exact for a band-limited (Nyquist-sampled) PSF; z is linear between
cached planes ``z_step_nm`` apart and clamped to the cached range.
"""

from __future__ import annotations

import torch

from deepsmlm.optics.psf import PSF, shift_and_blur_factor


class StackPSF(PSF):
    """Cached version of any PSF over [z_min, z_max]; differentiable in x, y, z (piecewise linear) and photons."""

    def __init__(self, base: PSF, z_min_nm: float, z_max_nm: float, z_step_nm: float, chunk: int = 32):
        super().__init__(base.pixel_nm, base.patch_px)
        n_planes = max(2, int(round((z_max_nm - z_min_nm) / z_step_nm)) + 1)
        z = torch.linspace(z_min_nm, z_max_nm, n_planes)
        with torch.no_grad():
            stack = torch.cat([base.z_stack(z[i:i + chunk]) for i in range(0, n_planes, chunk)])
        self.z_min_nm, self.z_max_nm = float(z_min_nm), float(z_max_nm)
        self.z_step_nm = (self.z_max_nm - self.z_min_nm) / (n_planes - 1) if n_planes > 1 else 1.0
        self.register_buffer("z_nm", z)
        self.register_buffer("spectra", torch.fft.rfft2(stack))

    def patches(self, offset_nm, photons, blur_px=None):
        zi = ((offset_nm[:, 2] - self.z_min_nm) / self.z_step_nm).clamp(0, len(self.z_nm) - 1)
        i0 = torch.floor(zi).long().clamp(max=len(self.z_nm) - 2)
        w = (zi - i0)[:, None, None]
        spec = self.spectra[i0] * (1 - w) + self.spectra[i0 + 1] * w
        factor = shift_and_blur_factor(offset_nm[:, 0] / self.pixel_nm, offset_nm[:, 1] / self.pixel_nm,
                                       blur_px, self.patch_px)
        p = self.patch_px
        return photons[:, None, None] * torch.fft.irfft2(spec * factor, s=(p, p))
