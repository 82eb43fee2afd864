"""PSF models share one interface: emitters -> (E, P, P) photon patches, and one renderer into frames.

Patch convention: a patch is P×P camera pixels (P odd) centred on the pixel that holds the emitter;
``offset_nm`` = (dx, dy, z) where (dx, dy) is the emitter's position relative to the centre of that
pixel (|dx|, |dy| <= px/2) and z is relative to the nominal focal plane (nm, + into the sample).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import nn

from deepsmlm.localizations import pixel_centre_nm, pixel_index


class PSF(nn.Module):
    """Base class: subclasses implement ``patches``; everything is batched over emitters and differentiable."""

    def __init__(self, pixel_nm: float, patch_px: int):
        super().__init__()
        if patch_px % 2 == 0:
            raise ValueError(f"patch_px must be odd, got {patch_px}")
        self.pixel_nm = float(pixel_nm)
        self.patch_px = int(patch_px)

    def patches(self, offset_nm: torch.Tensor, photons: torch.Tensor,
                blur_px: torch.Tensor | None = None) -> torch.Tensor:
        """(E, 3) offsets in nm and (E,) photons -> (E, P, P) expected photons per pixel."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """Where the PSF's tensors live (CPU for a PSF that holds none)."""
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def z_stack(self, z_nm: torch.Tensor) -> torch.Tensor:
        """Unit-photon PSFs of a centred emitter at each z (nm, any device): (Z, P, P) on the PSF's device."""
        offs = torch.zeros(len(z_nm), 3, dtype=torch.float32, device=self.device)
        offs[:, 2] = z_nm.to(self.device)
        return self.patches(offs, torch.ones(len(z_nm), device=self.device))


def patch_frequencies(patch_px: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row (fftfreq) and column (rfftfreq) frequencies of a P×P patch in cycles per pixel."""
    return (torch.fft.fftfreq(patch_px, device=device), torch.fft.rfftfreq(patch_px, device=device))


def shift_and_blur_factor(dx_px: torch.Tensor, dy_px: torch.Tensor, blur_px: torch.Tensor | None,
                          patch_px: int, scale: torch.Tensor | None = None) -> torch.Tensor:
    """(E, P, P//2+1) rfft2-domain factor that shifts patches by (dx, dy) px and blurs them by a Gaussian.

    scale · exp(-2πi(fx·dx + fy·dy)) · exp(-2π²σ²(fx² + fy²)); exact for band-limited patches.
    """
    fy, fx = patch_frequencies(patch_px, dx_px.device)
    ramp_x = torch.exp(-2j * math.pi * fx[None, :] * dx_px[:, None])
    if scale is not None:
        ramp_x = ramp_x * scale[:, None]
    ramp_y = torch.exp(-2j * math.pi * fy[None, :] * dy_px[:, None])
    if blur_px is not None:
        s2 = (2 * math.pi**2) * blur_px[:, None] ** 2
        ramp_x = ramp_x * torch.exp(-s2 * fx[None, :] ** 2)
        ramp_y = ramp_y * torch.exp(-s2 * fy[None, :] ** 2)
    return ramp_y[:, :, None] * ramp_x[:, None, :]


def blur_patches(patches: torch.Tensor, blur_px: torch.Tensor) -> torch.Tensor:
    """Convolve each (P, P) patch with its own Gaussian of std ``blur_px`` (camera px), periodically."""
    p = patches.shape[-1]
    zero = torch.zeros_like(blur_px)
    factor = shift_and_blur_factor(zero, zero, blur_px, p)
    return torch.fft.irfft2(torch.fft.rfft2(patches) * factor, s=(p, p))


class GaussianPSF(PSF):
    """Pixel-integrated (erf) 2D Gaussian, astigmatic when ``astig_focus_offset_nm`` != 0 or ``widths`` is given.

    σx(z) = σ0·√(1 + ((z − c)/d)²),  σy(z) = σ0·√(1 + ((z + c)/d)²), or ``widths`` (a config's polynomial
    widths, :meth:`GaussianPSFConfig.poly_widths_nm`: z tensor (nm) -> (σx, σy) nm); an extra blur adds in
    quadrature. Photons are normalised over the infinite plane; what falls outside the patch is lost.
    """

    def __init__(self, pixel_nm: float, patch_px: int, sigma_nm: float,
                 astig_focus_offset_nm: float = 0.0, astig_depth_nm: float = 400.0,
                 widths: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None):
        super().__init__(pixel_nm, patch_px)
        self.sigma_nm = float(sigma_nm)
        self.c = float(astig_focus_offset_nm)
        self.d = float(astig_depth_nm)
        self.widths = widths

    def sigmas_nm(self, z_nm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lateral standard deviations (nm) at axial positions z (nm)."""
        if self.widths is not None:
            return self.widths(z_nm)
        if self.c == 0.0:
            s = torch.full_like(z_nm, self.sigma_nm)
            return s, s
        sx = self.sigma_nm * torch.sqrt(1 + ((z_nm - self.c) / self.d) ** 2)
        sy = self.sigma_nm * torch.sqrt(1 + ((z_nm + self.c) / self.d) ** 2)
        return sx, sy

    def patches(self, offset_nm, photons, blur_px=None):
        sx, sy = self.sigmas_nm(offset_nm[:, 2])
        if blur_px is not None:
            extra = (blur_px * self.pixel_nm) ** 2
            sx, sy = torch.sqrt(sx**2 + extra), torch.sqrt(sy**2 + extra)
        h = self.patch_px // 2
        edges = (torch.arange(-h, h + 2, dtype=offset_nm.dtype, device=offset_nm.device) - 0.5) * self.pixel_nm
        px = _erf_pixel_weights(edges, offset_nm[:, 0], sx)
        py = _erf_pixel_weights(edges, offset_nm[:, 1], sy)
        return photons[:, None, None] * py[:, :, None] * px[:, None, :]


def _erf_pixel_weights(edges: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Fraction of a 1D Gaussian (mean mu, std sigma) falling in each interval between ``edges``."""
    cdf = 0.5 * torch.erf((edges[None, :] - mu[:, None]) / (math.sqrt(2) * sigma[:, None]))
    return cdf[:, 1:] - cdf[:, :-1]


def split_positions(xyz_nm: torch.Tensor, pixel_nm: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Absolute positions -> (row, col) of the pixel holding each emitter and its offset from that pixel's centre."""
    col = pixel_index(xyz_nm[:, 0], pixel_nm)
    row = pixel_index(xyz_nm[:, 1], pixel_nm)
    offset = torch.stack(
        [xyz_nm[:, 0] - pixel_centre_nm(col, pixel_nm), xyz_nm[:, 1] - pixel_centre_nm(row, pixel_nm), xyz_nm[:, 2]],
        dim=1,
    )
    return row.long(), col.long(), offset


def place_patches(patches: torch.Tensor, frame: torch.Tensor, row: torch.Tensor, col: torch.Tensor,
                  n_frames: int, height: int, width: int, chunk_elems: int = 1 << 23) -> torch.Tensor:
    """Sum (E, P, P) patches centred at pixel (row, col) of frame ``frame`` into (F, H, W); differentiable.

    Patches whose centre lies more than P//2 pixels outside the frame are dropped; parts outside are cropped.
    Without autograd the patches are added slice by slice (fast); with it, by one index_add per chunk.
    """
    p = patches.shape[-1]
    h = p // 2
    hp, wp = height + 2 * p, width + 2 * p
    keep = (row >= -h) & (row <= height - 1 + h) & (col >= -h) & (col <= width - 1 + h)
    patches, frame, top, left = patches[keep], frame[keep], row[keep] + p - h, col[keep] + p - h
    if not (torch.is_grad_enabled() and patches.requires_grad):
        out = patches.new_zeros(n_frames, hp, wp)
        for i, (f, r, c) in enumerate(zip(frame.tolist(), top.tolist(), left.tolist())):
            out[f, r:r + p, c:c + p] += patches[i]
        return out[:, p:p + height, p:p + width]
    rel = (torch.arange(p, device=patches.device)[:, None] * wp + torch.arange(p, device=patches.device)).reshape(-1)
    base = frame * (hp * wp) + top * wp + left
    out = patches.new_zeros(n_frames * hp * wp)
    step = max(1, chunk_elems // (p * p))
    for s in range(0, len(patches), step):
        idx = (base[s:s + step, None] + rel[None, :]).reshape(-1)
        out = out.index_add(0, idx, patches[s:s + step].reshape(-1))
    return out.view(n_frames, hp, wp)[:, p:p + height, p:p + width]


def render(psf: PSF, xyz_nm: torch.Tensor, photons: torch.Tensor, frame: torch.Tensor, n_frames: int,
           height: int, width: int, blur_px: torch.Tensor | None = None) -> torch.Tensor:
    """Noise-free expected signal photons per pixel, (F, H, W), of emitters at absolute positions (nm)."""
    row, col, offset = split_positions(xyz_nm, psf.pixel_nm)
    patches = psf.patches(offset, photons, blur_px)
    return place_patches(patches, frame, row, col, n_frames, height, width)
