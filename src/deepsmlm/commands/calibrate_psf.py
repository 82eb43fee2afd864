"""`deepsmlm calibrate psf`: the pupil of the microscope from a bead z-stack (:mod:`deepsmlm.api.calibration`)."""

from __future__ import annotations

from pathlib import Path

from deepsmlm.api.calibration import calibrate_psf
from deepsmlm.commands.progress_bars import DESIGNING, progress_bar


def run_calibrate_psf(beads: Path, config: str, out: Path, z_step_nm: float, z_first_nm: float | None,
                      positions: str, max_noll: int, pupil: str = "auto", wobble: bool = True,
                      blur: bool = True, halo: bool = True, loo: bool = True) -> None:
    """Fit, write the calibration folder and print one line: median relative L2 error before → after (and the
    leave-one-bead-out z accuracy)."""
    with progress_bar(DESIGNING, transient=True) as progress:
        r = calibrate_psf(beads, config, out, z_step_nm=z_step_nm, z_first_nm=z_first_nm, positions=positions,
                          max_noll=max_noll, pupil=pupil, wobble=wobble, blur=blur, halo=halo, loo=loo,
                          progress=progress)
    b, a = r["before"], r["after"]
    blurred = f", blur σ {r['blur_sigma_px']:.2f} px" if r["blur_sigma_px"] is not None else ""
    if r["halo"] is not None and r["halo"]["halo_fraction"] > 0:
        blurred += f", halo {r['halo']['halo_fraction']:.0%} over {r['halo']['halo_length_px']:.1f} px"
    phase = ", pupil_phase.npz" if r["pupil"] == "pixels" else ""
    flag = "; POOR FIT: the model does not explain these beads (wrong base config or modality?)" if r["poor_fit"] else ""
    print(f"{len(r['beads'])} beads, median relative L2 error ±500 nm {b['median_rel_l2_pm500']:.1%} → "
          f"{a['median_rel_l2_pm500']:.1%}, ±750 nm {b['median_rel_l2_pm750']:.1%} → {a['median_rel_l2_pm750']:.1%} "
          f"(reduced χ² {a['median_chi2_pm500']:.2f}{blurred}) in {r['seconds']:.0f} s{flag}; wrote calibrated.yaml, "
          f"calibration.json, beads_vs_model.png, zernike.png{phase} in {out}")
    if "leave_one_out" in r:
        loo_fit = r["leave_one_out"]
        print(f"leave one bead out (psf-mle, ±{loo_fit['range_nm']:.0f} nm): z RMSE {loo_fit['z_rmse_nm']} nm, "
              f"{loo_fit['z_rmse_after_offset_nm']} nm after each bead's offset, lateral RMSE "
              f"{loo_fit['lateral_rmse_nm']} nm; wrote z_accuracy.png")
