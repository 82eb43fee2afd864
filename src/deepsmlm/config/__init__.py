"""Typed configuration: frozen pydantic models loaded from YAML presets or files.

Every length is in nm, every intensity in photons, unless a field name says otherwise.
Unknown keys are rejected; errors name the file and the offending key in one line.
Configs are read-only once loaded: a variant is a new config, ``updated(cfg, {"frame.height": 32})``.
"""

from deepsmlm.config.base import value_range
from deepsmlm.config.learning import ModelConfig, TrainingConfig
from deepsmlm.config.loading import config_from_dict, dump_config, load_config, preset_names
from deepsmlm.config.optics import (PUPIL_MODELS, CameraConfig, DipoleConfig, FrameConfig, GaussianPSFConfig,
                                    MaskConfig, MeasuredPSFConfig, OpticsConfig, PSFConfig)
from deepsmlm.config.sample import (BackgroundConfig, BlinkingConfig, DyeConfig, EmitterConfig, PhotonConfig,
                                    StructureConfig)
from deepsmlm.config.simulation import SimulationConfig
from deepsmlm.config.variants import updated

__all__ = [
    "PUPIL_MODELS", "BackgroundConfig", "BlinkingConfig", "CameraConfig", "DipoleConfig", "DyeConfig", "EmitterConfig",
    "FrameConfig", "GaussianPSFConfig", "MaskConfig", "MeasuredPSFConfig", "ModelConfig", "OpticsConfig", "PSFConfig",
    "PhotonConfig", "SimulationConfig", "StructureConfig", "TrainingConfig", "config_from_dict", "dump_config",
    "load_config", "preset_names", "updated", "value_range",
]
