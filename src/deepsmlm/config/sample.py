"""The sample: which emitters each frame holds (rate, placement, photons, blinking, dyes) and the
background. Lengths in nm, intensities in photons."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from deepsmlm.config.base import StrictConfig, check_range


class PhotonConfig(StrictConfig):
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


class BlinkingConfig(StrictConfig):
    """Two-state on/off Markov blinking with a total photon budget per molecule."""

    enabled: bool = False
    p_on_to_off: float = Field(0.5, ge=0, le=1, description="per-frame probability to switch off")
    p_off_to_on: float = Field(0.01, ge=0, le=1, description="per-frame probability to switch on")
    photon_budget: float | None = Field(None, gt=0, description="mean total photons before bleaching")


class StructureConfig(StrictConfig):
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


class DyeConfig(StrictConfig):
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


class EmitterConfig(StrictConfig):
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

    @model_validator(mode="before")
    @classmethod
    def _default_rate(cls, data: object) -> object:
        """Neither a density nor a count: one emitter per µm²."""
        if isinstance(data, dict) and data.get("density_per_um2") is None and data.get("count") is None:
            return {**data, "density_per_um2": 1.0}
        return data

    @model_validator(mode="after")
    def _one_rate(self) -> "EmitterConfig":
        if self.density_per_um2 is not None and self.count is not None:
            raise ValueError("give either density_per_um2 or count, not both")
        if self.z_range_nm[1] < self.z_range_nm[0]:
            raise ValueError(f"z_range_nm must be (low, high), got {self.z_range_nm}")
        return self


class BackgroundConfig(StrictConfig):
    """Background photons per pixel: uniform in a range, plus an optional smooth modulation."""

    photons_per_px: tuple[float, float] = (20.0, 20.0)
    nonuniform_amplitude: float = Field(0.0, ge=0, le=1, description="relative amplitude of smooth variation")
    nonuniform_length_nm: float = Field(3000.0, gt=0, description="correlation length of the variation")

    @field_validator("photons_per_px")
    @classmethod
    def _level_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        check_range(value)
        return value
