"""The whole config: one physics (image formation, sample) with the network and its training recipe."""

from __future__ import annotations

from pydantic import Field, model_validator

from deepsmlm.config.base import SEED_LIMIT, StrictConfig
from deepsmlm.config.learning import ModelConfig, TrainingConfig
from deepsmlm.config.optics import CameraConfig, FrameConfig, OpticsConfig, PSFConfig
from deepsmlm.config.sample import BackgroundConfig, EmitterConfig


class SimulationConfig(StrictConfig):
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

    @model_validator(mode="after")
    def _polynomial_widths_positive(self) -> "SimulationConfig":
        z = self.psf.gaussian.poly_nonpositive_z(self.emitters.z_range_nm) if self.psf.model == "gaussian" else None
        if z is not None:
            raise ValueError(f"psf.gaussian polynomial widths are <= 0 at z = {z:.0f} nm, inside emitters.z_range_nm "
                             f"{tuple(self.emitters.z_range_nm)}: narrow the z range to where the calibration holds")
        return self

    def encodes_z_range(self) -> bool:
        """Whether the PSF encodes z (``psf.encodes_z``) over a non-empty ``emitters.z_range_nm``: what a 3D
        fitter or a 3D LocNet localizes over."""
        z0, z1 = self.emitters.z_range_nm
        return self.psf.encodes_z() and z1 > z0

    def localizes_z(self) -> bool:
        """Whether the config's model is 3D (localizes z, is scored and written with z): a LocNet when the PSF
        encodes z over the emitters' z range (:meth:`encodes_z_range`), a density network when its output
        grid has more than one plane (``model.z_planes`` > 1). The one rule for "3D" of a model."""
        return self.encodes_z_range() if self.model.kind == "locnet" else self.model.z_planes > 1
