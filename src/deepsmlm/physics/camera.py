"""Camera model: expected incident photons per pixel -> ADU, its inverse and its noise.

EMCCD / CCD (PHYSICS.md, "Camera"):

    e  ~ Poisson(QE·λ + c)                       photoelectrons, c = spurious charge
    e' ~ Gamma(shape=e, scale=G) if e > 0 else 0  EM register (EMCCD with G > 1 only)
    r  ~ Normal(0, σ_read)                        electrons
    ADU = round((e' + r) / (e⁻ per ADU) + baseline), clipped to [0, 65535]

sCMOS pixel i: ADU = round(g_i·Poisson(QE·λ_i) + Normal(o_i, √v_i)), clipped (g_i ADU/e⁻, o_i ADU,
v_i ADU²). ``ideal``: ADU = Poisson(λ) with unit QE and gain, zero baseline, no read noise.

``baseline_subtracted`` cameras record ADU − baseline, as software that removes the baseline and
stores unsigned integers does: the frame is made as above, then the nominal baseline (the offset map for
sCMOS) is subtracted and the result rounded and clipped at 0 — the negative read-noise tail of dark
pixels is lost, as in real baseline-subtracted uint16 data, so training frames and the data the model
reads look alike and ``adu_to_photons`` (which then skips the baseline) inverts them.

Internally every type is one affine model: ``adu_per_e`` (ADU per photoelectron, EM gain included),
``offset`` (ADU), ``read_std`` (ADU), scalars or per-pixel (H, W) tensors. A baseline or read noise given
as a (low, high) range varies in simulation (one baseline per frame; a smooth per-frame read-noise map
from low to high); the deterministic methods use its middle.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from deepsmlm.config import CameraConfig, value_range
from deepsmlm.errors import UserInputError
from deepsmlm.physics import emccd
from deepsmlm.sampling import smooth_field, standard_gamma

ADU_MAX = 65535.0
ROUNDING_VARIANCE = 1.0 / 12.0  # ADU²: rounding to whole ADU, uniform on ±½ ADU
_MAP_KEYS = ("offset", "variance", "gain")
_EXPECTED_MAPS = ".npz holding 2D arrays 'offset' (ADU), 'variance' (ADU²) and 'gain' (ADU/e⁻)"

Scalar = float | torch.Tensor


def _load_scmos_maps(path: Path, shape: tuple[int, int] | None) -> dict[str, torch.Tensor]:
    """Read and check the 'offset' (ADU), 'variance' (ADU²) and 'gain' (ADU/e⁻) maps of an .npz."""
    if not path.is_file():
        raise UserInputError(f"{path}: sCMOS maps file not found")
    try:
        loaded = np.load(path)
    except Exception as exc:  # garbage, pickles, truncated archives: numpy raises many kinds
        raise UserInputError(f"{path}: not readable as sCMOS maps ({type(exc).__name__}); expected an "
                             f"{_EXPECTED_MAPS}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise UserInputError(f"{path}: a single array, not sCMOS maps; expected an {_EXPECTED_MAPS}")
    try:
        with loaded as npz:
            arrays = {k: np.asarray(npz[k], dtype=np.float64) for k in _MAP_KEYS if k in npz.files}
    except Exception as exc:  # a damaged member, or one that is not numeric
        raise UserInputError(f"{path}: cannot read sCMOS maps ({type(exc).__name__}); expected an "
                             f"{_EXPECTED_MAPS}") from None
    missing = [k for k in _MAP_KEYS if k not in arrays]
    if missing:
        raise UserInputError(f"{path}: missing sCMOS map(s) {', '.join(missing)}; expected an {_EXPECTED_MAPS}")
    expected = tuple(shape) if shape is not None else arrays["offset"].shape
    for key, value in arrays.items():
        if value.ndim != 2 or value.shape != expected:
            want = expected if len(expected) == 2 else "a 2D (rows, columns) map"
            raise UserInputError(f"{path}: sCMOS map '{key}' has shape {value.shape}, expected {want}")
        if not np.isfinite(value).all():
            raise UserInputError(f"{path}: sCMOS map '{key}' contains NaN or inf")
    if (arrays["gain"] <= 0).any() or (arrays["variance"] < 0).any():
        raise UserInputError(f"{path}: sCMOS 'gain' must be > 0 and 'variance' >= 0 everywhere")
    return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in arrays.items()}


class Camera(torch.nn.Module):
    """Photon -> ADU conversion for one camera; methods broadcast over leading dims (..., H, W)."""

    def __init__(self, cfg: CameraConfig, shape: tuple[int, int] | None = None):
        """``shape`` (H, W), when given, must match the sCMOS maps file; other cameras ignore it."""
        super().__init__()
        self.type = cfg.type
        self.baseline_subtracted = cfg.baseline_subtracted
        self.qe = 1.0 if cfg.type == "ideal" else cfg.qe
        self.em_gain = cfg.em_gain if cfg.type == "emccd" else 1.0
        self.spurious_charge = cfg.spurious_charge if cfg.type in ("emccd", "ccd") else 0.0
        self.baseline_span: tuple[float, float] | None = None  # (low, high) ADU, only for a true range
        self.read_std_span: tuple[float, float] | None = None  # (low, high) ADU, only for a true range
        self.read_map_length_px = 0.0
        self.adu_per_e: Scalar
        self.offset: Scalar
        self.read_std: Scalar
        if cfg.type == "ideal":
            self.adu_per_e, self.offset, self.read_std = 1.0, 0.0, 0.0
        elif cfg.type == "scmos" and cfg.scmos_maps is not None:
            maps = _load_scmos_maps(Path(cfg.scmos_maps), shape)
            self.register_buffer("adu_per_e", maps["gain"], persistent=False)
            self.register_buffer("offset", maps["offset"], persistent=False)
            self.register_buffer("read_std", maps["variance"].sqrt(), persistent=False)
        else:
            self.adu_per_e = self.em_gain / cfg.e_per_adu
            low, high = value_range(cfg.baseline_adu)
            self.offset = 0.5 * (low + high)
            self.baseline_span = (low, high) if low < high else None
            low, high = value_range(cfg.read_noise_e)
            self.read_std = 0.5 * (low + high) / cfg.e_per_adu
            self.read_std_span = (low / cfg.e_per_adu, high / cfg.e_per_adu) if low < high else None
            self.read_map_length_px = cfg.read_noise_map_length_px

    @property
    def excess_noise_factor(self) -> float:
        """F²: 2 for an EMCCD with EM gain > 1 (Gamma EM register), else 1."""
        return 2.0 if self.em_gain > 1.0 else 1.0

    @property
    def adu_per_photon(self) -> Scalar:
        """Expected ADU per incident photon, QE·G/(e⁻ per ADU) (per-pixel tensor for sCMOS maps)."""
        return self.adu_per_e * self.qe

    @staticmethod
    def _like(value: Scalar, x: torch.Tensor) -> Scalar:
        return value.to(device=x.device, dtype=x.dtype) if isinstance(value, torch.Tensor) else value

    @staticmethod
    def _float(x: torch.Tensor) -> torch.Tensor:
        return x if x.is_floating_point() else x.to(torch.float32)

    def forward(self, photons: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noisy frames in ADU (float32 holding integers in [0, 65535]), the baseline removed when
        ``baseline_subtracted``.

        photons: expected incident photons per pixel, background included, (..., H, W); negative
        values (numerical noise) count as 0. ``generator`` (on photons' device) makes it
        reproducible; None uses torch's default RNG.
        """
        lam = self._float(photons).clamp_min(0.0)
        electrons = torch.poisson(self.qe * lam + self.spurious_charge, generator=generator)
        if self.em_gain > 1.0:
            lit = electrons > 0
            electrons = electrons.to(torch.float64)
            electrons[lit] = standard_gamma(electrons[lit], generator).to(electrons.dtype)
        adu = electrons * self._like(self.adu_per_e, electrons) + self._frame_offset(electrons, generator)
        read_std = self._frame_read_std(adu, generator)
        if isinstance(read_std, torch.Tensor) or read_std > 0:
            noise = torch.randn(adu.shape, generator=generator, device=adu.device, dtype=adu.dtype)
            adu = adu + noise * read_std
        adu = torch.round(adu).clamp(0.0, ADU_MAX)
        if self.baseline_subtracted:
            adu = torch.round(adu - self._like(self.offset, adu)).clamp_min(0.0)
        return adu.to(torch.float32)

    def _frame_offset(self, x: torch.Tensor, generator: torch.Generator | None) -> Scalar:
        """Baseline in ADU: the configured one, or with a range one uniform draw per frame (..., 1, 1)."""
        if self.baseline_span is None:
            return self._like(self.offset, x)
        low, high = self.baseline_span
        u = torch.rand((*x.shape[:-2], 1, 1), generator=generator, device=x.device, dtype=x.dtype)
        return low + (high - low) * u

    def _frame_read_std(self, x: torch.Tensor, generator: torch.Generator | None) -> Scalar:
        """Read noise std in ADU: the configured one, or with a range a fresh smooth map per frame that
        spans the range (low where the field is lowest, high where it is highest)."""
        if self.read_std_span is None:
            return self._like(self.read_std, x)
        low, high = self.read_std_span
        *lead, height, width = x.shape
        n = math.prod(lead)
        field = smooth_field(n, height, width, self.read_map_length_px, generator, device=x.device)
        lowest, highest = field.amin(dim=(1, 2), keepdim=True), field.amax(dim=(1, 2), keepdim=True)
        unit = (field - lowest) / (highest - lowest).clamp_min(torch.finfo(field.dtype).tiny)
        return (low + (high - low) * unit).to(x.dtype).reshape(x.shape)

    def expected_adu(self, photons: torch.Tensor) -> torch.Tensor:
        """Noiseless mean ADU: offset (0 when ``baseline_subtracted``) + (ADU/e⁻)·(QE·λ + c), without
        rounding or clipping."""
        x = self._float(photons)
        signal = self._like(self.adu_per_e, x) * (self.qe * x + self.spurious_charge)
        return signal if self.baseline_subtracted else self._like(self.offset, x) + signal

    def adu_to_photons(self, adu: torch.Tensor, baseline_subtracted: bool | None = None) -> torch.Tensor:
        """Incident photons from ADU, the inverse of ``expected_adu``: ((ADU − offset)/(ADU/e⁻) − c)/QE.

        baseline_subtracted (default: the config's) skips the offset. Integer input gives float32.
        """
        x = self._float(adu)
        if baseline_subtracted is None:
            baseline_subtracted = self.baseline_subtracted
        if not baseline_subtracted:
            x = x - self._like(self.offset, x)
        return (x / self._like(self.adu_per_e, x) - self.spurious_charge) / self.qe

    def variance_photons(self, mean_photons: torch.Tensor) -> torch.Tensor:
        """Noise variance of ``adu_to_photons(forward(λ))`` in incident-photon² units at mean λ.

        F²·(λ/QE + c/QE²) + (σ_read² + 1/12)/(ADU/e⁻ · QE)² with σ_read in ADU and 1/12 ADU² the rounding
        to whole ADU (exact when the noise before rounding is smooth on the ADU scale, σ ≳ 0.5 ADU),
        i.e. F²·λ/QE + (σ_e² + (e⁻/ADU)²/12)/(G·QE)² for EMCCD/CCD, λ/QE + (v_i + 1/12)/(g_i·QE)² for
        sCMOS and λ for ``ideal`` (whole counts, nothing rounded).
        """
        x = self._float(mean_photons)
        shot = self.excess_noise_factor * (x / self.qe + self.spurious_charge / self.qe**2)
        if self.type == "ideal":
            return shot
        read = self._like(self.read_std, x) ** 2 + ROUNDING_VARIANCE
        return shot + read / (self._like(self.adu_per_e, x) * self.qe) ** 2

    def fisher_variance_photons(self, mean_photons: torch.Tensor) -> torch.Tensor:
        """1/(Fisher information about a pixel's mean λ), photons²: the variance to put in the CRLB.

        Equal to ``variance_photons`` (Poisson; Gaussian read noise as a shifted Poisson, Huang et al.
        2013) except for an EMCCD with gain, whose exact Poisson–Gamma–Normal, ADU-quantised likelihood
        carries more information than the excess-noise model below ~25 e⁻/px (physics/emccd.py): with
        μ = QE·λ + c electrons and I(μ) its tabulated information, 1/(QE²·I(μ)); 0 at μ = 0, where the
        pixel is a photon counter that is never wrong about an empty pixel.
        """
        x = self._float(mean_photons)
        if self.excess_noise_factor == 1.0:
            return self.variance_photons(x)
        mu = self.qe * x + self.spurious_charge
        log_mu, log_info = self._information_table(x)
        step = log_mu[1] - log_mu[0]
        t = (torch.log(mu.clamp_min(torch.finfo(x.dtype).tiny)) - log_mu[0]) / step
        i = t.detach().floor().clamp(0, len(log_mu) - 2).long()  # outside the table: its end segments
        info = torch.exp(log_info[i] + (t - i) * (log_info[i + 1] - log_info[i]))
        exact = torch.where(mu > 0, 1.0 / (self.qe**2 * info), torch.zeros_like(x))
        return torch.where(mu > emccd.MU_MAX, self.variance_photons(x), exact)

    def _information_table(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log μ, log I(μ)) of this EMCCD's pixel (physics/emccd.py) on ``like``'s device and dtype."""
        s = float(self.read_std) / float(self.adu_per_e)  # read noise, input-referred electrons
        q = 1.0 / float(self.adu_per_e)  # one ADU step, input-referred electrons
        log_mu, log_info = emccd.information_table(s, q)
        return (torch.as_tensor(log_mu, dtype=like.dtype, device=like.device),
                torch.as_tensor(log_info, dtype=like.dtype, device=like.device))

    def reparameterized(self, photons: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Differentiable noisy image in photon units: λ + √(variance_photons(λ))·ε, ε ~ N(0, 1).

        Gaussian stand-in for the camera so gradients reach ``photons`` (end-to-end design); the
        variance is floored at 1e-12 photon² so λ = 0 gives a finite (zero) gradient.
        """
        eps = torch.randn(photons.shape, generator=generator, device=photons.device, dtype=photons.dtype)
        return photons + torch.sqrt(self.variance_photons(photons).clamp_min(1e-12)) * eps
