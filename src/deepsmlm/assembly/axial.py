"""The axial range a config's PSF is shown, bounded and designed over."""

from __future__ import annotations

from deepsmlm.config import SimulationConfig

DEFAULT_2D_RANGE_NM = (-750.0, 750.0)


def axial_range(cfg: SimulationConfig) -> tuple[float, float]:
    """The emitters' z range (nm), or ±750 nm for a 2D config (to show the defocus)."""
    z0, z1 = cfg.emitters.z_range_nm
    return (z0, z1) if z1 > z0 else DEFAULT_2D_RANGE_NM
