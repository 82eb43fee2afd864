"""`deepsmlm calibrate stack`: a measured-stack PSF from a bead z-stack (:mod:`deepsmlm.api.measured_stack`)."""

from __future__ import annotations

from pathlib import Path

from deepsmlm.api.measured_stack import OUTPUTS, measured_psf


def run_calibrate_stack(beads: Path, config: str, out: Path, z_step_nm: float, z_first_nm: float | None,
                        positions: str) -> None:
    """Average the beads, write the stack and its config, print one line."""
    r = measured_psf(beads, config, out, z_step_nm=z_step_nm, z_first_nm=z_first_nm, positions=positions)
    z0, z1 = r["z_range_nm"]
    print(f"{r['beads']} beads averaged over z {z0:.0f}…{z1:.0f} nm in {r['seconds']:.0f} s; wrote "
          f"{' and '.join(OUTPUTS)} in {out} (simulate, train, psf, crlb and psf-mle read measured.yaml)")
