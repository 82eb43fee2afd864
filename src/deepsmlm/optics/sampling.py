"""Pupil-grid sampling: how large the FFT field must be so that defocused light does not wrap into the patch.

The image of an N-point pupil grid is periodic with period L = N·Δ/s (Δ camera pixel, s oversampling,
nm). A ray leaving the pupil at sinθ_imm lands r(f) = |NFP·tanθ_imm − d·tanθ_s| from the emitter
(stationary phase of −k0·n_imm·NFP·cosθ_imm + k0·n_s·d·cosθ_s; evanescent light has no d term), and
the pupil phase changes by 2π·r·δf per pupil pixel. PHYSICS.md's condition, plus a guard band for the
diffraction tails of the defocused pupil's hard edge:

    N·Δ/s ≥ P·Δ + 2·r_max + G·λ/NA        (r_max over the transmitted pupil and emitter depths d)

tanθ_s diverges at the critical angle, where a scalar pupil's grazing rays carry little light: r uses
sinθ_s ≤ SIN_MAX. A dipole's p-polarised light is brightest right there (the vectorial PSF's power per
solid angle peaks at the critical angle), so the vectorial model holds rays up to SIN_MAX_VECTORIAL.
The caps and G were set by the grid-convergence test (tests/physics/test_pupil_sampling.py: refining the
grid 3× changes no plane by > 1 % nor the patch's photons by ≥ 0.5 %; the Tetrapod preset's vectorial
PSF at +2.5 µm moved 0.59 % with the scalar cap, 0.13 % with the vectorial one); pixel edges of the hard
pupil leave a floor of ~0.5 % (L2).
"""

from __future__ import annotations

import math

from deepsmlm.optics.stack import smooth_size

SIN_MAX = 0.97  # largest sinθ_s whose geometric spread the grid must hold (scalar pupil)
SIN_MAX_VECTORIAL = 0.99  # the same for the vectorial PSF, whose light crowds towards the critical angle
GUARD_AIRY = 18.0  # extra margin beyond the patch and the spread, in λ/NA


def lateral_spread_nm(wavelength_nm: float, na: float, n_immersion: float, n_sample: float, nfp_nm: float,
                      depths_nm: tuple[float, float], evanescent: bool, samples: int = 2001,
                      sin_max: float = SIN_MAX) -> float:
    """Largest geometric distance (nm) from the emitter at which its light meets the image plane, over the
    pupil up to NA (or the critical angle when supercritical light is cut, sinθ_s ≤ ``sin_max``) and
    depths d ∈ ``depths_nm``."""
    top = na if evanescent else min(na, n_sample)
    worst = 0.0
    for i in range(samples):
        sin_imm = top / n_immersion * i / (samples - 1)
        sin_s = min(sin_imm * n_immersion / n_sample, sin_max)
        tan_imm = sin_imm / math.sqrt(1 - sin_imm**2)
        tan_s = 0.0 if sin_imm * n_immersion >= n_sample else sin_s / math.sqrt(1 - sin_s**2)
        worst = max([worst, *(abs(nfp_nm * tan_imm - d * tan_s) for d in depths_nm)])
    return worst


def min_grid_size(patch_px: int, pixel_nm: float, oversample: int, spread_nm: float, wavelength_nm: float,
                  na: float) -> int:
    """Smallest odd N with N·Δ/s ≥ P·Δ + 2·spread + GUARD_AIRY·λ/NA."""
    need = oversample * (patch_px + (2 * spread_nm + GUARD_AIRY * wavelength_nm / na) / pixel_nm)
    n = math.ceil(need)
    return n if n % 2 else n + 1


def fft_friendly_odd(n: int) -> int:
    """Smallest odd N' ≥ n with no prime factor above 7 (fast for pocketfft/cuFFT)."""
    return smooth_size(n if n % 2 else n + 1, 2, (3, 5, 7))


def mask_oversample_for(mask_grid_n: int, needed_n: int) -> int:
    """Smallest odd q with q·N_mask ≥ N_needed: each mask pixel becomes q×q grid pixels. q is odd so the
    grid's samples sit at the centres of a mask pixel's q×q sub-cells and the optical axis stays on one."""
    q = max(1, math.ceil(needed_n / mask_grid_n))
    return q if q % 2 else q + 1
