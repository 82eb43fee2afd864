"""The axial range a config's PSF is shown, bounded and designed over."""

from __future__ import annotations

from deepsmlm.config import SimulationConfig
from deepsmlm.optics.masks import resolve_data_path
from deepsmlm.optics.measured import read_measured_stack

DEFAULT_2D_RANGE_NM = (-750.0, 750.0)


def axial_range(cfg: SimulationConfig) -> tuple[float, float]:
    """The emitters' z range (nm), or for a 2D config ±750 nm (to show the defocus), within the depths of
    a measured PSF's stack."""
    z0, z1 = cfg.emitters.z_range_nm
    if z1 > z0:
        return z0, z1
    if cfg.psf.measured is None:
        return DEFAULT_2D_RANGE_NM
    z = read_measured_stack(resolve_data_path(cfg.psf.measured.file)).z_nm
    return max(DEFAULT_2D_RANGE_NM[0], float(z[0])), min(DEFAULT_2D_RANGE_NM[1], float(z[-1]))
