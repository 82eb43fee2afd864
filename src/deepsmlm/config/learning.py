"""What is learned and how: the network and its post-processing (saved with the weights) and the
on-the-fly training recipe."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from deepsmlm.config.base import SEED_LIMIT, StrictConfig, check_range


class ModelConfig(StrictConfig):
    """Network and post-processing settings saved with the weights (a model folder is self-describing)."""

    kind: Literal["deepstorm2d", "deepstorm3d", "locnet"] = "deepstorm2d"
    architecture: Literal["cpu", "paper"] = "cpu"
    upsampling: int = Field(4, ge=1, le=16, description="super-resolution factor per axis")
    channels: int = Field(24, ge=4)
    frames: int = Field(1, ge=1, le=7, description="locnet: consecutive frames the network sees, the one it "
                                                   "localizes in their middle (odd: 1, 3, …)")
    split_mass: float | None = Field(None, gt=1, description="locnet: a detection whose 3×3 probability mass reaches "
                                     "this holds two emitters in neighbouring pixels (None: one per maximum)")
    levels: int = Field(2, ge=2, le=3, description="locnet: U-Net levels below camera resolution (3: 4c at 1/8, "
                                                   "for PSFs wider than ±19 px)")
    head_channels: int = Field(8, ge=1)
    z_planes: int = Field(1, ge=1, description="axial planes of the output voxel grid over emitters.z_range_nm")
    colors: int = Field(1, ge=1, le=8, description="deepstorm3d: one occupancy volume per dye of emitters.dyes")
    dilations: tuple[int, ...] = Field((1, 2, 4, 8, 12), description="deepstorm3d: one residual block per entry")
    input_offset_photons: float | None = Field(None, description="subtracted from photons before the net")
    input_scale_photons: float | None = Field(None, gt=0, description="photons are divided by this")
    photon_unit_photons: float | None = Field(
        None, gt=0, description="locnet: photons per unit of the photon output (set when training starts: the "
                                "emitters' mean photons; unset: input_scale_photons, as models trained before it)")
    threshold: float = Field(0.3, ge=0, le=1, description="minimum summed density of a detection (≈ probability)")
    gaussian_mle_threshold: float = Field(
        6.0, gt=0, description="gaussian-mle: detection threshold, standard deviations of the filtered background noise"
    )
    window_px: int = Field(2, ge=1, description="half-width of the centroid window, fine pixels")
    window_planes: int = Field(1, ge=0, description="half-width of the centroid window along z, planes")
    sigma_scale: tuple[float, float, float] = Field(
        (1.0, 1.0, 1.0), description="locnet: factors on the predicted σ of x, y, z (post-hoc calibration: the "
                                     "z-score SDs of the kept model's validation, set by training)")

    @model_validator(mode="after")
    def _planes_match_kind(self) -> "ModelConfig":
        if self.kind == "deepstorm2d" and self.z_planes != 1:
            raise ValueError("deepstorm2d predicts one plane: z_planes must be 1")
        if min(self.sigma_scale) <= 0:
            raise ValueError("sigma_scale: factors must be > 0")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError("dilations must be a non-empty list of positive integers")
        if self.colors > 1 and self.kind != "deepstorm3d":
            raise ValueError("per-dye outputs (colors > 1) need kind: deepstorm3d (z_planes: 1 for 2D)")
        if self.levels != 2 and self.kind != "locnet":
            raise ValueError("levels: only kind locnet has a choice of U-Net depth")
        if self.frames != 1 and (self.kind != "locnet" or self.frames % 2 == 0):
            raise ValueError(f"frames {self.frames}: only kind locnet sees neighbouring frames, an odd number "
                             "of them (the localized frame in the middle)")
        locnet_grid = (self.upsampling, self.z_planes, self.colors, self.architecture)
        if self.kind == "locnet" and locnet_grid != (1, 1, 1, "cpu"):
            raise ValueError("locnet predicts at camera resolution (architecture cpu): upsampling, z_planes and "
                             "colors must be 1")
        if self.kind == "deepstorm3d" and self.architecture == "paper" and self.upsampling & (self.upsampling - 1):
            raise ValueError(f"upsampling {self.upsampling}: the deepstorm3d paper architecture needs a power of 2")
        return self


class TrainingConfig(StrictConfig):
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
