"""The output grid, defined once: camera pixels split u × u into fine pixels, D planes over the axial range,
C colour volumes; positions between nm and continuous pixel / plane coordinates.

Coordinates follow DESIGN.md: pixel j covers [j, j + 1) of the continuous coordinate, so its centre is at
j + ½ and x = coordinate · pixel size; plane k covers z ∈ z₀ + [k, k + 1)·(z₁ − z₀)/D.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

Values = TypeVar("Values")  # a float, a numpy array or a torch tensor


@dataclass(frozen=True)
class OutputGrid:
    """``pixel_nm``: camera pixel; ``upsampling``: fine pixels per camera pixel per axis; ``planes`` axial
    planes over ``z_range_nm`` (1: no z); ``colors``: one volume per dye (1 unless multicolour)."""

    pixel_nm: float
    upsampling: int = 1
    z_range_nm: tuple[float, float] = (0.0, 0.0)
    planes: int = 1
    colors: int = 1

    @property
    def fine_nm(self) -> float:
        """The fine pixel (nm)."""
        return self.pixel_nm / self.upsampling

    @property
    def plane_nm(self) -> float:
        """The thickness of one plane (nm)."""
        return (self.z_range_nm[1] - self.z_range_nm[0]) / self.planes

    def fine_shape(self, height: int, width: int) -> tuple[int, int]:
        """(rows, cols) of the fine grid of ``height`` × ``width`` camera px."""
        return height * self.upsampling, width * self.upsampling

    def voxels(self, height: int, width: int) -> int:
        """Output voxels of one frame of ``height`` × ``width`` camera px (colours × planes × fine pixels)."""
        return self.colors * self.planes * height * width * self.upsampling ** 2

    def fine_index(self, camera_px: int) -> int:
        """Camera pixel index → index of its first fine pixel."""
        return self.upsampling * camera_px

    def fine_px(self, nm: Values) -> Values:
        """nm → continuous fine-pixel coordinate (fine pixel j covers [j, j + 1))."""
        return nm / self.fine_nm

    def fine_px_to_nm(self, fine_px: Values) -> Values:
        """Continuous fine-pixel coordinate → nm."""
        return fine_px * self.fine_nm

    def plane(self, z_nm: Values) -> Values:
        """z (nm) → continuous plane coordinate (plane k covers [k, k + 1))."""
        return (z_nm - self.z_range_nm[0]) / self.plane_nm

    def plane_to_z(self, plane: Values) -> Values:
        """Continuous plane coordinate → z (nm)."""
        z0, z1 = self.z_range_nm
        return z0 + plane * (z1 - z0) / self.planes
