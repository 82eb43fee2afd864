"""`deepsmlm calibrate camera`: offset, gain and read noise from dark and flat frames or a movie."""

from __future__ import annotations

from pathlib import Path

from deepsmlm.api.camera_calibration import calibrate_camera
from deepsmlm.commands.progress_bars import LOCALIZING, progress_bar


def run_calibrate_camera(dark: Path | None, flats: list[Path], movie: Path | None, camera_type: str | None,
                         config: str | None, out: Path, em_gain: float | None, e_per_adu: float | None) -> None:
    with progress_bar(LOCALIZING, transient=True) as progress:
        r = calibrate_camera(dark, flats, movie, camera_type, config, out, em_gain=em_gain, e_per_adu=e_per_adu,
                             progress=progress)
    cam = r["camera"]
    em = f", EM gain {cam['em_gain']:g}" if cam["type"] == "emccd" else ""
    print(f"{cam['type']}: offset {r['offset_adu']:.2f} ADU (from {r['offset_from']}), gain "
          f"{r['gain_adu_per_e']:.4g} ADU/e⁻ = {cam['e_per_adu']:.4g} e⁻/ADU{em}, {r['adu_per_photon']:.4g} ADU/photon "
          f"at QE {cam['qe']:g}, read noise {r['read_noise_e']:.3g} e⁻ ({r['read_noise_adu']:.3g} ADU); wrote {out}")
