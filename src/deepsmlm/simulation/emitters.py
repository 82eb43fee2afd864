"""Emitter sets: positions (nm), photons and frame indices, as torch tensors."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Emitters:
    """A set of emitter appearances, one row per (molecule, frame) in which it is on.

    xyz_nm: (E, 3) float, x along columns, y along rows, origin at the top-left corner of pixel
    (0, 0); z relative to the nominal focal plane, positive into the sample.
    photons: (E,) signal photons collected in that frame.
    frame: (E,) int64, 0-based frame index.
    molecule: (E,) int64, identity of the molecule (equal across the frames it blinks in).
    color: (E,) int64 dye index, or None.
    """

    xyz_nm: torch.Tensor
    photons: torch.Tensor
    frame: torch.Tensor
    molecule: torch.Tensor
    color: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.photons.shape[0])

    @classmethod
    def empty(cls, dtype: torch.dtype = torch.float32) -> "Emitters":
        z = torch.zeros(0, dtype=torch.int64)
        return cls(torch.zeros(0, 3, dtype=dtype), torch.zeros(0, dtype=dtype), z, z.clone())

    def select(self, keep: torch.Tensor) -> "Emitters":
        """Rows where the boolean mask (or index tensor) ``keep`` selects."""
        return Emitters(**{f.name: (getattr(self, f.name)[keep] if getattr(self, f.name) is not None else None)
                           for f in fields(self)})

    def to(self, device: torch.device | str) -> "Emitters":
        return Emitters(**{f.name: (getattr(self, f.name).to(device) if getattr(self, f.name) is not None else None)
                           for f in fields(self)})

    @staticmethod
    def cat(parts: list["Emitters"]) -> "Emitters":
        """Concatenate emitter sets (colors kept only when every part has them)."""
        if not parts:
            return Emitters.empty()
        colors = [p.color for p in parts]
        return Emitters(
            xyz_nm=torch.cat([p.xyz_nm for p in parts]),
            photons=torch.cat([p.photons for p in parts]),
            frame=torch.cat([p.frame for p in parts]),
            molecule=torch.cat([p.molecule for p in parts]),
            color=torch.cat(colors) if all(c is not None for c in colors) else None,
        )
