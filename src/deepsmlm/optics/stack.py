"""Fast path for a fixed PSF: a cached z-stack of patch spectra, interpolated in z and shifted in Fourier space.

Per emitter it costs one small batched inverse FFT (no pupil, no N×N FFT). Patches are zero-padded to
an FFT-friendly size Q ≥ P before caching, so the sub-pixel phase ramp (exact for a band-limited,
Nyquist-sampled PSF) does not wrap the patch edge. z is linear between cached planes
``z_step_nm`` apart and clamped to the cached range.
"""

from __future__ import annotations

import torch

from deepsmlm.optics.psf import PSF, shift_and_blur_factor
from deepsmlm.optics.stack_cache import cache_dir, load_spectra, save_spectra, stack_key


def smooth_size(start: int, step: int, primes: tuple[int, ...]) -> int:
    """The first of ``start``, ``start + step``, … whose prime factors all lie in ``primes`` (FFT sizes
    that pocketfft/cuFFT transform fast)."""
    m = start
    while True:
        r = m
        for p in primes:
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += step


def fft_size(n: int) -> int:
    """Smallest multiple of 8 that is ≥ n and has no prime factor above 5 (fast for pocketfft/cuFFT)."""
    return smooth_size(-(-n // 8) * 8, 8, (2, 3, 5))


class ZStackPSF(PSF):
    """A PSF given by unit-photon planes of a centred emitter at evenly spaced z (from any source: a model's
    z-stack, or an aligned, averaged bead stack), linear in z between planes, clamped to their range, and
    shifted laterally in Fourier space; differentiable in x, y, z and photons."""

    def __init__(self, spectra: torch.Tensor, z_nm: torch.Tensor, z_min_nm: float, z_step_nm: float,
                 pixel_nm: float, patch_px: int):
        super().__init__(pixel_nm, patch_px)
        self.fft_px = fft_size(self.patch_px)
        self.z_min_nm = float(z_min_nm)
        self.z_step_nm = float(z_step_nm)
        self.register_buffer("z_nm", z_nm)
        # plane i and its increment to plane i+1, so interpolation is one fused multiply-add
        self.register_buffer("spectra", spectra[:-1])
        self.register_buffer("increments", spectra[1:] - spectra[:-1])

    @classmethod
    def from_stack(cls, stack: torch.Tensor, z_nm: torch.Tensor, pixel_nm: float) -> "ZStackPSF":
        """The PSF of ``stack`` (Z, P, P): expected photons per pixel of a one-photon emitter at each of the
        increasing, evenly spaced depths ``z_nm`` (Z ≥ 2, P odd), camera pixels of ``pixel_nm``."""
        stack, z_nm = torch.as_tensor(stack, dtype=torch.float32), torch.as_tensor(z_nm, dtype=torch.float32)
        if stack.ndim != 3 or stack.shape[1] != stack.shape[2] or len(stack) < 2:
            raise ValueError(f"a z-stack PSF needs (Z ≥ 2, P, P) planes, got shape {tuple(stack.shape)}")
        if z_nm.shape != (len(stack),):
            raise ValueError(f"{len(stack)} planes need {len(stack)} depths, got shape {tuple(z_nm.shape)}")
        steps = torch.diff(z_nm.double())
        if steps.min() <= 0 or (steps.max() - steps.min()) > 1e-3 * steps.mean():
            raise ValueError("the planes' depths must increase in equal steps")
        z_min, z_step = float(z_nm[0]), float(z_nm[-1] - z_nm[0]) / (len(z_nm) - 1)
        return cls(patch_spectra(stack), z_nm, z_min, z_step, pixel_nm, stack.shape[-1])


    def patches(self, offset_nm, photons, blur_px=None):
        p, q = self.patch_px, self.fft_px
        if len(offset_nm) == 0:  # an empty FFT batch is an error in some FFT back-ends
            return self.spectra.real.new_zeros(0, p, p)
        zi = ((offset_nm[:, 2] - self.z_min_nm) / self.z_step_nm).clamp(0, len(self.z_nm) - 1)
        i0 = torch.floor(zi).long().clamp(max=len(self.z_nm) - 2)
        spec = torch.addcmul(self.spectra[i0], self.increments[i0], (zi - i0)[:, None, None])
        factor = shift_and_blur_factor(offset_nm[:, 0] / self.pixel_nm, offset_nm[:, 1] / self.pixel_nm,
                                       blur_px, self.fft_px, scale=photons)
        return torch.fft.irfft2(spec * factor, s=(q, q))[:, :p, :p]


def patch_spectra(stack: torch.Tensor) -> torch.Tensor:
    """Half spectra of (Z, P, P) planes zero-padded to Q = fft_size(P) (so shifts do not wrap the edge)."""
    p = stack.shape[-1]
    q = fft_size(p)
    return torch.fft.rfft2(torch.nn.functional.pad(stack, (0, q - p, 0, q - p)))


class StackPSF(ZStackPSF):
    """Cached version of any PSF over [z_min, z_max] (its z-stack every ``z_step_nm``). With ``cache`` the
    z-stack is read from / written to the on-disk cache (optics/stack_cache.py)."""

    def __init__(self, base: PSF, z_min_nm: float, z_max_nm: float, z_step_nm: float, chunk: int = 32,
                 cache: bool = True):
        n_planes = max(2, int(round((z_max_nm - z_min_nm) / z_step_nm)) + 1)
        z = torch.linspace(z_min_nm, z_max_nm, n_planes)
        key = stack_key(base, z, fft_size(base.patch_px)) if cache and cache_dir() is not None else None
        spectra = None if key is None else load_spectra(key)
        if spectra is None:
            with torch.no_grad():
                spectra = patch_spectra(torch.cat([base.z_stack(z[i:i + chunk]) for i in range(0, n_planes, chunk)]))
            if key is not None:
                save_spectra(key, spectra)
        z_step = (float(z_max_nm) - float(z_min_nm)) / (n_planes - 1)
        super().__init__(spectra.to(base.device), z, z_min_nm, z_step, base.pixel_nm, base.patch_px)
