"""Typed configuration: pydantic models loaded from YAML presets or files.

Every length is in nm, every intensity in photons, unless a field name says otherwise.
Unknown keys are rejected; errors name the file and the offending key in one line.
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deepsmlm.errors import UserInputError

SEED_LIMIT = 2**63  # torch generators take seeds 0 <= seed < 2**63
MAX_NOLL = 231  # Zernike radial order <= 20; higher orders are numerical noise on a float32 pupil


class _Strict(BaseModel):
    """Unknown keys are errors; every float must be finite (no .inf / .nan anywhere)."""

    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)


def check_range(value: tuple[float, float] | None, what: str = "") -> None:
    """A (low, high) range with 0 <= low <= high (or None); ValueError naming the values otherwise."""
    if value is None:
        return
    low, high = value
    if low < 0:
        raise ValueError(f"{what}[{low:g}, {high:g}]: low {low:g} is below 0")
    if high < low:
        raise ValueError(f"{what}[{low:g}, {high:g}]: low {low:g} exceeds high {high:g}")


class FrameConfig(_Strict):
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


class OpticsConfig(_Strict):
    """Objective and relay optics."""

    wavelength_nm: float = Field(670.0, gt=0)
    na: float = Field(1.45, gt=0)
    n_immersion: float = Field(1.518, gt=1.0)
    n_sample: float = Field(1.518, gt=1.0)
    nominal_focal_plane_nm: float = Field(
        0.0, description="focus displacement into the sample (DeepSTORM3D's NFP); z = depth - NFP"
    )
    magnification: float = Field(100.0, gt=0)
    fourier_focal_length_mm: float = Field(100.0, gt=0, description="focal length of the 4f relay lenses")

    @model_validator(mode="after")
    def _na_below_immersion(self) -> "OpticsConfig":
        if self.na >= self.n_immersion:
            raise ValueError(f"na {self.na} must be below n_immersion {self.n_immersion}")
        return self


class MaskConfig(_Strict):
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


class GaussianPSFConfig(_Strict):
    """Integrated Gaussian PSF; astigmatic when ``astig_focus_offset_nm`` is non-zero.

    sigma_x(z) = sigma_nm * sqrt(1 + ((z - c) / d)^2),  sigma_y(z) = sigma_nm * sqrt(1 + ((z + c) / d)^2)
    with c = astig_focus_offset_nm and d = astig_depth_nm.
    """

    sigma_nm: float = Field(110.0, gt=0)
    astig_focus_offset_nm: float = 0.0
    astig_depth_nm: float = Field(400.0, gt=0)


class DipoleConfig(_Strict):
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


PUPIL_MODELS = ("pupil", "vectorial")  # PSF models built on the pupil function (masks, design, cached z-stack)


class PSFConfig(_Strict):
    """Which PSF model renders emitters, and its numerical parameters."""

    model: Literal["gaussian", "pupil", "vectorial"] = Field(
        "gaussian", description="gaussian; pupil: scalar pupil function; vectorial: dipole emission with Fresnel "
        "transmission and the aplanatic factor (optics/vectorial.py)"
    )
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
    blur_sigma_px: tuple[float, float] = Field(
        (0.0, 0.0), description="range of the extra per-emitter Gaussian blur (model mismatch), camera px"
    )
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

    @field_validator("zernike_rad")
    @classmethod
    def _noll_indices(cls, value: dict[int, float]) -> dict[int, float]:
        bad = [j for j in value if not 1 <= j <= MAX_NOLL]
        if bad:
            raise ValueError(f"Noll index {bad[0]}: must be 1 … {MAX_NOLL}")
        return value


class CameraConfig(_Strict):
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


def value_range(value: float | tuple[float, float]) -> tuple[float, float]:
    """(low, high) of a config value that is a number or a (low, high) range."""
    return (float(value), float(value)) if isinstance(value, (int, float)) else (float(value[0]), float(value[1]))


class PhotonConfig(_Strict):
    """Per-emitter photon count distribution (photons per frame while on)."""

    distribution: Literal["gamma", "uniform", "lognormal", "constant"] = "gamma"
    shape: float = Field(3.0, gt=0, description="gamma shape")
    scale: float = Field(3000.0, gt=0, description="gamma scale (photons)")
    low: float = Field(1000.0, ge=0, description="uniform low / constant value")
    high: float = Field(5000.0, ge=0, description="uniform high")
    mean: float = Field(2000.0, gt=0, description="log-normal mean (photons)")
    sigma: float = Field(0.3, gt=0, description="log-normal sigma of log(photons)")

    @model_validator(mode="after")
    def _uniform_range(self) -> "PhotonConfig":
        if self.distribution == "uniform":
            check_range((self.low, self.high), "uniform low, high ")
        return self

    def expected(self) -> float:
        """Expected photons per emitter under this distribution."""
        return {
            "gamma": self.shape * self.scale,
            "uniform": 0.5 * (self.low + self.high),
            "lognormal": self.mean,
            "constant": self.low,
        }[self.distribution]


class BlinkingConfig(_Strict):
    """Two-state on/off Markov blinking with a total photon budget per molecule."""

    enabled: bool = False
    p_on_to_off: float = Field(0.5, ge=0, le=1, description="per-frame probability to switch off")
    p_off_to_on: float = Field(0.01, ge=0, le=1, description="per-frame probability to switch on")
    photon_budget: float | None = Field(None, gt=0, description="mean total photons before bleaching")


class StructureConfig(_Strict):
    """Where emitters may sit: everywhere, on filaments, or on an ellipsoid surface."""

    kind: Literal["uniform", "filaments", "ellipsoid"] = "uniform"
    n_filaments: int = Field(8, ge=1)
    filament_persistence_nm: float = Field(5000.0, gt=0, description="bending persistence length")
    filament_z_amplitude_nm: float = Field(0.0, ge=0, description="axial excursion of 3D filaments")
    ellipsoid_semi_axes_nm: tuple[float, float, float] = (3000.0, 2000.0, 1500.0)

    @field_validator("ellipsoid_semi_axes_nm")
    @classmethod
    def _positive_axes(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"{list(value)}: every semi-axis must be > 0 nm")
        return value


class DyeConfig(_Strict):
    """One dye of a multicolour sample: its emission (a peak, or a spectrum sampled at a few wavelengths)."""

    wavelength_nm: float = Field(..., gt=0, description="emission peak")
    fraction: float = Field(1.0, gt=0, description="relative abundance among the dyes")
    spectrum: list[tuple[float, float]] | None = Field(
        None, description="(wavelength nm, weight) samples of the emission; default: the peak alone"
    )

    @model_validator(mode="after")
    def _positive_spectrum(self) -> "DyeConfig":
        if self.spectrum is not None and (not self.spectrum or any(w <= 0 or x <= 0 for x, w in self.spectrum)):
            raise ValueError("spectrum must hold (wavelength_nm, weight) pairs with positive values")
        return self


class EmitterConfig(_Strict):
    """Emitter sampling per frame."""

    density_per_um2: float | None = Field(None, ge=0)
    count: tuple[int, int] | None = Field(None, description="uniform range of emitters per frame, inclusive")
    z_range_nm: tuple[float, float] = (0.0, 0.0)
    margin_px: float = Field(
        0.0, ge=0, description="uniform placement keeps emitters this many camera pixels from the frame edge"
    )
    photons: PhotonConfig = PhotonConfig()
    blinking: BlinkingConfig = BlinkingConfig()
    structure: StructureConfig = StructureConfig()
    dyes: list[DyeConfig] | None = Field(None, description="multicolour: each molecule carries one of these dyes")

    @field_validator("count")
    @classmethod
    def _count_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        check_range(value)
        return value

    @model_validator(mode="after")
    def _one_rate(self) -> "EmitterConfig":
        if self.density_per_um2 is None and self.count is None:
            self.density_per_um2 = 1.0
        if self.density_per_um2 is not None and self.count is not None:
            raise ValueError("give either density_per_um2 or count, not both")
        if self.z_range_nm[1] < self.z_range_nm[0]:
            raise ValueError(f"z_range_nm must be (low, high), got {self.z_range_nm}")
        return self


class BackgroundConfig(_Strict):
    """Background photons per pixel: uniform in a range, plus an optional smooth modulation."""

    photons_per_px: tuple[float, float] = (20.0, 20.0)
    nonuniform_amplitude: float = Field(0.0, ge=0, le=1, description="relative amplitude of smooth variation")
    nonuniform_length_nm: float = Field(3000.0, gt=0, description="correlation length of the variation")

    @field_validator("photons_per_px")
    @classmethod
    def _level_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        check_range(value)
        return value


class ModelConfig(_Strict):
    """Network and post-processing settings saved with the weights (a model folder is self-describing)."""

    kind: Literal["deepstorm2d", "deepstorm3d"] = "deepstorm2d"
    architecture: Literal["cpu", "paper"] = "cpu"
    upsampling: int = Field(4, ge=1, le=16, description="super-resolution factor per axis")
    channels: int = Field(24, ge=4)
    head_channels: int = Field(8, ge=1)
    z_planes: int = Field(1, ge=1, description="axial planes of the output voxel grid over emitters.z_range_nm")
    colors: int = Field(1, ge=1, le=8, description="deepstorm3d: one occupancy volume per dye of emitters.dyes")
    dilations: tuple[int, ...] = Field((1, 2, 4, 8, 12), description="deepstorm3d: one residual block per entry")
    input_offset_photons: float | None = Field(None, description="subtracted from photons before the net")
    input_scale_photons: float | None = Field(None, gt=0, description="photons are divided by this")
    threshold: float = Field(0.3, ge=0, le=1, description="minimum summed density of a detection (≈ probability)")
    gaussian_mle_threshold: float = Field(
        6.0, gt=0, description="gaussian-mle: detection threshold, standard deviations of the filtered background noise"
    )
    window_px: int = Field(2, ge=1, description="half-width of the centroid window, fine pixels")
    window_planes: int = Field(1, ge=0, description="half-width of the centroid window along z, planes")

    @model_validator(mode="after")
    def _planes_match_kind(self) -> "ModelConfig":
        if self.kind == "deepstorm2d" and self.z_planes != 1:
            raise ValueError("deepstorm2d predicts one plane: z_planes must be 1")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError("dilations must be a non-empty list of positive integers")
        if self.colors > 1 and self.kind != "deepstorm3d":
            raise ValueError("per-dye outputs (colors > 1) need kind: deepstorm3d (z_planes: 1 for 2D)")
        if self.kind == "deepstorm3d" and self.architecture == "paper" and self.upsampling & (self.upsampling - 1):
            raise ValueError(f"upsampling {self.upsampling}: the deepstorm3d paper architecture needs a power of 2")
        return self


class TrainingConfig(_Strict):
    """On-the-fly training: batches simulated from the same config, validated on a fixed seeded set."""

    steps: int = Field(2000, ge=1)
    batch_size: int = Field(8, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="cosine: decay to 5 % of learning_rate over `steps` (or --steps)"
    )
    density_range_per_um2: tuple[float, float] | None = Field(
        None, description="per-batch emitter density drawn uniformly from this range (default: the config's)"
    )
    target_sigma_px: float = Field(1.0, gt=0, description="Gaussian σ of the loss, fine pixels")
    target_sigma_planes: float = Field(1.0, gt=0, description="Gaussian σ of the loss along z, planes (3D)")
    l1_weight: float = Field(0.0, ge=0, description="weight of the L1 sparsity term")
    dice_weight: float = Field(0.0, ge=0, description="weight of the Dice term (DeepSTORM3D)")
    label_min_photons: float = Field(0.0, ge=0, description="only emitters above this many photons are labelled")
    field_px: int | None = Field(None, ge=8, description="train on square fields of this size (counts scaled by area)")
    bfloat16: bool = Field(
        False, description="run the network in bfloat16 autocast while training (≈1.3-1.7× faster on CPUs with AVX512-BF16)"
    )
    axial_tol_nm: float | None = Field(None, gt=0, description="axial matching radius for validation (3D)")
    validation_frames: int = Field(64, ge=1)
    validate_every: int = Field(100, ge=1)
    lateral_tol_nm: float = Field(250.0, gt=0, description="matching radius for validation")
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)

    @field_validator("density_range_per_um2")
    @classmethod
    def _density_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        check_range(value)
        if value is not None and value[1] <= 0:
            raise ValueError(f"[{value[0]:g}, {value[1]:g}]: high must be > 0 (no emitters to learn from)")
        return value


class SimulationConfig(_Strict):
    """Everything the forward model needs: one physics for training, design and evaluation."""

    name: str = "custom"
    frame: FrameConfig = FrameConfig()
    optics: OpticsConfig = OpticsConfig()
    psf: PSFConfig = PSFConfig()
    camera: CameraConfig = CameraConfig()
    emitters: EmitterConfig = EmitterConfig()
    background: BackgroundConfig = BackgroundConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    frames: int = Field(100, ge=1, description="default number of frames for `simulate`")
    seed: int = Field(0, ge=0, lt=SEED_LIMIT)

    @model_validator(mode="after")
    def _margin_inside_frame(self) -> "SimulationConfig":
        if 2 * self.emitters.margin_px >= min(self.frame.height, self.frame.width):
            raise ValueError(f"emitters.margin_px {self.emitters.margin_px} leaves no room in a "
                             f"{self.frame.height}x{self.frame.width} px frame")
        return self

    @model_validator(mode="after")
    def _one_output_per_dye(self) -> "SimulationConfig":
        dyes = len(self.emitters.dyes or [])
        if self.model.colors > 1 and self.model.colors != dyes:
            raise ValueError(f"model.colors is {self.model.colors} but emitters.dyes lists {dyes} dyes")
        return self


PRESET_PACKAGE = "deepsmlm.configs"


def preset_names() -> list[str]:
    """Names of the presets shipped inside the package."""
    return sorted(p.name[:-5] for p in resources.files(PRESET_PACKAGE).iterdir() if p.name.endswith(".yaml"))


_UNION_TAGS = {"float", "int", "str", "bool"}  # pydantic names the branch of a union in an error's location


def _format_validation_error(source: str, err: ValidationError) -> str:
    """One line: the source, the dotted key, the problem and the value given (of the deepest error: in a
    union, the branch that got furthest)."""
    errors = err.errors()
    shown = errors[0] if errors[0]["type"] == "extra_forbidden" else max(errors, key=lambda e: len(e["loc"]))
    loc = ".".join(str(p) for p in shown["loc"] if not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p)))
    loc = loc or "<root>"
    if shown["type"] == "extra_forbidden":
        return f"{source}: unknown config key '{loc}'"
    msg = shown["msg"].removeprefix("Value error, ")
    value = shown.get("input")
    if shown["type"] != "value_error" and isinstance(value, (int, float, str)):
        msg += f" (got {value:g})" if isinstance(value, float) else f" (got {value!r})"
    return f"{source}: {loc}: {msg}"


def config_from_dict(data: dict, source: str = "<config>") -> SimulationConfig:
    """Validate a plain dict; raise UserInputError naming ``source`` and the key on failure."""
    if not isinstance(data, dict):
        raise UserInputError(f"{source}: top level must be a mapping of config keys")
    try:
        return SimulationConfig.model_validate(data)
    except ValidationError as err:
        raise UserInputError(_format_validation_error(source, err)) from None


def load_config(name_or_path: str | os.PathLike) -> SimulationConfig:
    """Load a preset by name (e.g. ``tetrapod_paper``) or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserInputError(f"{path}: config file not found")
        try:
            source, text = str(path), path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserInputError(f"{path}: not a YAML text file") from None
    else:
        res = resources.files(PRESET_PACKAGE) / f"{name_or_path}.yaml"
        if not res.is_file():
            raise UserInputError(
                f"{name_or_path}: neither a config file nor a preset (presets: {', '.join(preset_names())})"
            )
        source, text = f"preset {name_or_path}", res.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserInputError(f"{source}: invalid YAML{where} ({problem})") from None
    cfg = config_from_dict(data, source)
    if path.is_file():
        # files named relative to their config (a model folder's mask.npy) are found from anywhere
        folder = path.parent.resolve()
        mask = cfg.psf.mask
        if mask is not None and not mask.file.startswith(("pkg:", "data:")):
            mask.file = str(folder / Path(mask.file).expanduser())
        if cfg.camera.scmos_maps is not None:
            cfg.camera.scmos_maps = str(folder / Path(cfg.camera.scmos_maps).expanduser())
    return cfg


def dump_config(cfg: SimulationConfig) -> str:
    """The resolved config as YAML text (loads back to an equal config)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
