"""Image formation: the camera frame, the optics, the PSF model (Gaussian, scalar or vectorial pupil, phase
mask) and the camera's photon -> ADU conversion. Lengths in nm, unless a field name says otherwise."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from deepsmlm.config.base import StrictConfig, value_range

MAX_NOLL = 231  # Zernike radial order <= 20; higher orders are numerical noise on a float32 pupil
MAX_AMPLITUDE_ORDER = 6  # pupil apodisation exp(Σ a_k ρ^(2k)), k ≤ 6: smooth


class FrameConfig(StrictConfig):
    """Camera frame geometry in the sample plane."""

    height: int = Field(64, ge=1, description="rows (pixels)")
    width: int = Field(64, ge=1, description="columns (pixels)")
    pixel_size_nm: float = Field(100.0, gt=0, description="camera pixel size in the sample plane")

    @field_validator("height", "width", mode="before")
    @classmethod
    def _not_a_bool(cls, value):
        if isinstance(value, bool):  # YAML's yes/no/true would otherwise pass as 1 or 0 pixels
            raise ValueError(f"{value}: need a whole number of pixels")
        return value


class OpticsConfig(StrictConfig):
    """Objective and relay optics."""

    wavelength_nm: float = Field(670.0, gt=0)
    na: float = Field(1.45, gt=0)
    n_immersion: float = Field(1.518, gt=1.0)
    n_sample: float = Field(1.518, gt=1.0)
    nominal_focal_plane_nm: float = Field(
        0.0, description="focus displacement into the sample (DeepSTORM3D's NFP); z = depth - NFP"
    )
    z_scan: Literal["emitter", "focus"] = Field(
        "emitter", description="what z moves: the emitter in the sample (depth = z + NFP), or the focus with the "
        "emitter on the coverslip (focal plane at NFP - z, NFP the focus at z = 0: a bead z-stack, emitters at the "
        "coverslip, data simulated from bead stacks)")
    magnification: float = Field(100.0, gt=0)
    fourier_focal_length_mm: float = Field(100.0, gt=0, description="focal length of the 4f relay lenses")

    @model_validator(mode="after")
    def _na_below_immersion(self) -> "OpticsConfig":
        if self.na >= self.n_immersion:
            raise ValueError(f"na {self.na} must be below n_immersion {self.n_immersion}")
        return self


class MaskConfig(StrictConfig):
    """A pupil phase mask given as a pixel array (radians) in a .mat/.npy/.tif file.

    ``file`` may start with ``data:``, meaning a path inside the shared reference-data folder
    (environment variable ``DEEPSMLM_DATA``, else the nearest ``shared/data`` above the current
    directory or the package).
    """

    file: str
    key: str | None = Field(None, description="variable name inside a .mat/.npz file")
    pixel_pitch_um: float = Field(..., gt=0, description="SLM / plate pixel pitch")
    design_wavelength_nm: float | None = Field(
        None, gt=0, description="wavelength the phase values refer to; default: optics wavelength"
    )
    dispersion_per_nm: float = Field(
        0.0, description="relative change of the relief's (n − 1) per nm of wavelength (0: no dispersion)"
    )
    transpose: bool = False


class GaussianPSFConfig(StrictConfig):
    """Integrated Gaussian PSF; astigmatic when ``astig_focus_offset_nm`` is non-zero or widths are polynomials.

    sigma_x(z) = sigma_nm * sqrt(1 + ((z - c) / d)^2),  sigma_y(z) = sigma_nm * sqrt(1 + ((z + c) / d)^2)
    with c = astig_focus_offset_nm and d = astig_depth_nm; or, when ``sigma_x_poly_nm`` and ``sigma_y_poly_nm``
    are set (an imported calibration: ``deepsmlm calibrate import``), sigma(z) = Σ_k a_k z^(n-k) in nm, z in nm,
    coefficients highest power first (numpy.polyval's order); ``sigma_nm`` is then only informational.
    """

    sigma_nm: float = Field(110.0, gt=0)
    astig_focus_offset_nm: float = 0.0
    astig_depth_nm: float = Field(400.0, gt=0)
    sigma_x_poly_nm: tuple[float, ...] | None = Field(
        None, min_length=1, description="σx(z) polynomial (nm; z in nm; highest power first); with sigma_y_poly_nm")
    sigma_y_poly_nm: tuple[float, ...] | None = Field(
        None, min_length=1, description="σy(z) polynomial (nm; z in nm; highest power first); with sigma_x_poly_nm")

    @model_validator(mode="after")
    def _polynomials_in_pairs(self) -> "GaussianPSFConfig":
        if (self.sigma_x_poly_nm is None) != (self.sigma_y_poly_nm is None):
            raise ValueError("sigma_x_poly_nm and sigma_y_poly_nm go together: set both or neither")
        if self.sigma_x_poly_nm is not None and self.astig_focus_offset_nm != 0:
            raise ValueError("polynomial widths replace astig_focus_offset_nm: set it to 0 or drop the polynomials")
        if not all(math.isfinite(a) for a in (*(self.sigma_x_poly_nm or ()), *(self.sigma_y_poly_nm or ()))):
            raise ValueError("sigma_x_poly_nm and sigma_y_poly_nm must be finite numbers")
        return self

    @property
    def polynomial(self) -> bool:
        """Whether the widths are the polynomials (an imported calibration) rather than the parametric model."""
        return self.sigma_x_poly_nm is not None

    def poly_widths_nm(self, z_nm):
        """(σx, σy) in nm of the polynomials at z (nm) by Horner's rule: a float, array or tensor alike."""
        return horner(self.sigma_x_poly_nm, z_nm), horner(self.sigma_y_poly_nm, z_nm)

    def focus_sigma_nm(self, z_range_nm: tuple[float, float]) -> float:
        """The in-focus σ (nm): ``sigma_nm``, or for polynomial widths the least √(σx·σy) over ``z_range_nm``."""
        if not self.polynomial:
            return self.sigma_nm
        widths = [self.poly_widths_nm(z) for z in _z_grid(z_range_nm)]
        return min(math.sqrt(a * b) for a, b in widths if a > 0 and b > 0)

    def poly_nonpositive_z(self, z_range_nm: tuple[float, float]) -> float | None:
        """A z (nm) in ``z_range_nm`` where a polynomial width is ≤ 0, or None (parametric widths: always None)."""
        if not self.polynomial:
            return None
        return next((z for z in _z_grid(z_range_nm) if min(self.poly_widths_nm(z)) <= 0), None)


def horner(coefficients, z):
    """Σ_k a_k z^(n-k) for coefficients a highest power first; z a float, NumPy array or torch tensor."""
    value = z * 0 + coefficients[0]
    for a in coefficients[1:]:
        value = value * z + a
    return value


def _z_grid(z_range_nm: tuple[float, float], n: int = 401) -> list[float]:
    """``n`` evenly spaced depths (nm) over the range, ends included (one for an empty range)."""
    z0, z1 = (float(v) for v in z_range_nm)
    return [z0] if z1 <= z0 else [z0 + (z1 - z0) * i / (n - 1) for i in range(n)]


class DipoleConfig(StrictConfig):
    """The emitter's dipole for ``psf.model: vectorial``: freely rotating (the incoherent mean over x, y, z
    dipoles, the physical default for dyes on flexible linkers) or fixed at (polar, azimuth) radians."""

    free: bool = True
    polar_rad: float = Field(0.0, ge=0, le=math.pi, description="fixed dipole: angle from +z (into the sample)")
    azimuth_rad: float = Field(0.0, description="fixed dipole: angle from +x towards +y")

    @model_validator(mode="after")
    def _angles_for_fixed(self) -> "DipoleConfig":
        if self.free and (self.polar_rad or self.azimuth_rad):
            raise ValueError("dipole polar_rad/azimuth_rad describe a fixed dipole: set free: false")
        return self

    def orientation_rad(self) -> tuple[float, float] | None:
        """(polar, azimuth) of a fixed dipole, None for a freely rotating one."""
        return None if self.free else (self.polar_rad, self.azimuth_rad)


class MeasuredPSFConfig(StrictConfig):
    """A measured-stack PSF (``psf.model: measured``): the aligned, averaged bead stack that
    ``calibration.measured_stack.write_measured_psf`` writes, a .npz of ``stack`` (Z, P, P) float32 unit-photon
    planes, ``z_nm`` (Z,) evenly spaced depths and ``pixel_nm``; cubic in z, Fourier-shifted in x, y.

    ``file`` may start with ``data:`` (the shared reference-data folder), or be relative to the config's folder.
    """

    file: str


PUPIL_MODELS = ("pupil", "vectorial")  # PSF models built on the pupil function (masks, design, cached z-stack)


class PSFConfig(StrictConfig):
    """Which PSF model renders emitters, and its numerical parameters."""

    model: Literal["gaussian", "pupil", "vectorial", "measured"] = Field(
        "gaussian", description="gaussian; pupil: scalar pupil function; vectorial: dipole emission with Fresnel "
        "transmission and the aplanatic factor (optics/vectorial.py); measured: a bead stack (psf.measured)"
    )
    measured: MeasuredPSFConfig | None = None
    dipole: DipoleConfig = DipoleConfig()
    gaussian: GaussianPSFConfig = GaussianPSFConfig()
    pupil_grid: int | None = Field(
        None, ge=16, description="pupil/FFT grid size N; default: the mask's scale (× mask_oversample), else the "
        "smallest odd N whose periodic field holds the patch and the defocused PSF over emitters.z_range_nm"
    )
    mask_oversample: int | None = Field(
        None, ge=1, description="grid pixels per mask pixel and axis, q (odd) when the mask's pixel sets the grid; "
        "default: the smallest q meeting the sampling condition; 1: the grid before issue 18 (reference: one grid "
        "pixel per mask pixel, 2·patch_px·s + 1 without a mask)"
    )
    supercritical: Literal["evanescent", "cut"] = Field(
        "evanescent", description="light beyond the critical angle (n_s < NA): evanescent, decaying as "
        "exp(−k0·n_s·d·√(sin²θ_s − 1)) with depth d (physics), or cut (DeepSTORM3D reference)"
    )
    pixel_integration: bool = Field(
        True, description="integrate intensity over each camera pixel (physics); false: sample it at the pixel "
        "centre (DeepSTORM3D reference)"
    )
    zernike_aperture: Literal["open", "na"] = Field(
        "open", description="disk on which the Zernike polynomials are orthonormal: open (the transmitted pupil, "
        "NA/λ with evanescent light, min(NA, n_s)/λ when it is cut) or na (NA/λ always, reference)"
    )
    patch_px: int = Field(31, ge=3, description="side of the square patch an emitter is rendered into (odd)")
    mask: MaskConfig | None = None
    zernike_rad: dict[int, float] = Field(
        default_factory=dict, description="Noll index -> coefficient (radians RMS-normalised Zernike)"
    )
    pupil_amplitude: dict[int, float] = Field(
        default_factory=dict, description="apodisation: k -> a_k of the pupil amplitude exp(Σ_k a_k·ρ^(2k)) on the "
        "Zernike radius ρ (psf.zernike_aperture), k = 1 … 6; empty: a uniform pupil"
    )
    blur_sigma_px: tuple[float, float] = Field(
        (0.0, 0.0), description="range of the extra per-emitter Gaussian blur (model mismatch), camera px"
    )
    halo_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="share of each emitter's light spread into a halo (stray light, "
        "scattering; 1: all of it, an exponential blur): the image convolved with (1 − f)·δ + f·exp(−r/L)/(2πL²); "
        "pupil models only"
    )
    halo_length_px: float = Field(0.0, ge=0.0, description="decay length L of the halo, camera px")
    cache_z_step_nm: float = Field(10.0, gt=0, description="z sampling of the fast-path PSF stack")
    pupil_angle_scale: float = Field(
        1.0, gt=0.9, lt=1.1,
        description="calibration of sinθ against the lateral frequency grid (1 = exact Fourier optics)",
    )

    @model_validator(mode="after")
    def _odd_patch(self) -> "PSFConfig":
        if self.patch_px % 2 == 0:
            raise ValueError(f"patch_px must be odd, got {self.patch_px}")
        lo, hi = self.blur_sigma_px
        if lo < 0 or hi < lo:
            raise ValueError(f"blur_sigma_px must be 0 <= low <= high, got {self.blur_sigma_px}")
        if self.halo_fraction > 0 and (self.halo_length_px <= 0 or self.model not in PUPIL_MODELS):
            raise ValueError(f"halo_fraction {self.halo_fraction} needs halo_length_px > 0 and a pupil model "
                             f"({' or '.join(PUPIL_MODELS)}), got {self.halo_length_px} px and {self.model}")
        if self.mask_oversample is not None and self.mask_oversample % 2 == 0:
            raise ValueError(f"mask_oversample must be odd (the axis on a grid sample), got {self.mask_oversample}")
        if self.mask is None and (self.mask_oversample or 1) > 1:
            raise ValueError(f"mask_oversample {self.mask_oversample} needs psf.mask (1 or unset without a mask)")
        return self

    @model_validator(mode="after")
    def _dipole_for_vectorial(self) -> "PSFConfig":
        if self.model != "vectorial" and self.dipole != DipoleConfig():
            raise ValueError(f"psf.dipole applies to model: vectorial, not {self.model}")
        return self

    @model_validator(mode="after")
    def _file_for_measured(self) -> "PSFConfig":
        if (self.model == "measured") != (self.measured is not None):
            raise ValueError("psf.model: measured needs psf.measured.file (a bead-stack .npz), and psf.measured "
                             f"applies to it only (model is {self.model})")
        if self.model == "measured" and (self.mask is not None or self.zernike_rad or self.pupil_amplitude):
            raise ValueError("a measured PSF is a recorded stack: it takes no psf.mask, psf.zernike_rad or "
                             "psf.pupil_amplitude")
        return self

    def encodes_z(self) -> bool:
        """Whether the PSF's shape changes with z (a pupil, a measured stack or an astigmatic Gaussian)."""
        return self.model != "gaussian" or self.gaussian.astig_focus_offset_nm != 0 or self.gaussian.polynomial

    @field_validator("zernike_rad")
    @classmethod
    def _noll_indices(cls, value: dict[int, float]) -> dict[int, float]:
        return _keys_within(value, MAX_NOLL, "Noll index {}")

    @field_validator("pupil_amplitude")
    @classmethod
    def _radial_orders(cls, value: dict[int, float]) -> dict[int, float]:
        return _keys_within(value, MAX_AMPLITUDE_ORDER, "pupil_amplitude order {}", " (the term ρ^(2k))")


def _keys_within(value: dict[int, float], high: int, what: str, note: str = "") -> dict[int, float]:
    """``value`` when every key lies in 1 … ``high``; else ValueError naming the first key outside."""
    bad = [k for k in value if not 1 <= k <= high]
    if bad:
        raise ValueError(f"{what.format(bad[0])}: must be 1 … {high}{note}")
    return value


class CameraConfig(StrictConfig):
    """Photon -> ADU conversion. ``ideal`` is Poisson only with unit gain and zero baseline."""

    type: Literal["emccd", "scmos", "ccd", "ideal"] = "emccd"
    qe: float = Field(0.9, gt=0, le=1)
    em_gain: float = Field(1.0, ge=1.0, description="EM gain (EMCCD only)")
    e_per_adu: float = Field(1.0, gt=0, description="electrons per ADU")
    baseline_adu: float | tuple[float, float] = Field(
        100.0, description="ADU; a (low, high) range draws one baseline per frame (the nominal is its middle)"
    )
    read_noise_e: float | tuple[float, float] = Field(
        0.0, description="read noise std, electrons; a (low, high) range gives each frame a smooth map between them"
    )
    read_noise_map_length_px: float = Field(
        30.0, gt=0, description="correlation length of the per-frame read-noise map (camera px)"
    )
    spurious_charge: float = Field(0.0, ge=0, description="mean clock-induced electrons per pixel")
    scmos_maps: str | None = Field(
        None, description=".npz with per-pixel 'offset' (ADU), 'variance' (ADU^2), 'gain' (ADU/e-)"
    )
    baseline_subtracted: bool = Field(
        False, description="frames hold ADU − baseline, clipped at 0: data read that way, and frames simulated "
        "(for training too) that way"
    )

    @model_validator(mode="after")
    def _valid_ranges(self) -> "CameraConfig":
        for key in ("baseline_adu", "read_noise_e"):
            low, high = value_range(getattr(self, key))
            if low < 0 or high < low:
                raise ValueError(f"{key} must be >= 0, or a range 0 <= low <= high; got {getattr(self, key)}")
            if low < high and self.type == "scmos" and self.scmos_maps is not None:
                raise ValueError(f"{key} as a range does not apply to a camera with sCMOS maps")
        return self
