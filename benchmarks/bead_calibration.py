"""PSF calibration on the shared EPFL 2016 bead z-stacks (issue 20): model fit, leave-one-bead-out z accuracy
and time of `calibrate psf` with its defaults, per modality.

Each stack (2D, astigmatic AS, double-helix DH; 151 slices, 6 beads of ~30,000 photons, z = −750 + 10·k nm)
is calibrated through the public API on the `epfl2016_3d` base (beads in water, a focus scan) with the
command's defaults (Zernike Noll 5–45, apodisation, blur, stage wobble, `--pupil auto`: the pixel-wise
phase when the Zernike fit is poor) or the options given. Reported per stack: median relative L2 error and
reduced χ² of model vs beads over ±500 and ±750 nm, uncalibrated → calibrated; the pupil chosen; the
leave-one-bead-out z and lateral RMSE over ±600 nm (psf-mle on the other five beads' refit; z also after
each bead's constant offset, its height on the coverslip); seconds. Goals: L2 ≤ 10 % (±500) and ≤ 20 %
(±750) or χ² ≤ 1.5; LOO z ≤ 15 nm (AS), ≤ 20 nm (DH), lateral ≤ 10 nm; ≤ 5 min on 2 cores.

    python benchmarks/bead_calibration.py [--stacks 2D AS DH] [--pupil auto] [--max-noll 45] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import harness

STACKS = ("2D", "AS", "DH")


def run(stack: str, pupil: str, max_noll: int) -> dict:
    """Calibrate one stack into a scratch folder; the figures of its report."""
    import deepsmlm

    with harness.scratch() as folder:
        r = deepsmlm.calibrate_psf(harness.shared_data("epfl2016_beads", f"beads_{stack}.tif"), "epfl2016_3d",
                                   folder / "cal", pupil=pupil, max_noll=max_noll)
    fit = {f"{when}_{key}": round(r[when][key], 4) for when in ("before", "after")
           for key in ("median_rel_l2_pm500", "median_rel_l2_pm750", "median_chi2_pm500", "median_chi2_pm750")}
    loo = r.get("leave_one_out", {})
    return {"stack": stack, "pupil": r["pupil"], "blur_sigma_px": r["blur_sigma_px"], **fit,
            "loo_z_rmse_nm": loo.get("z_rmse_nm"), "loo_z_rmse_after_offset_nm": loo.get("z_rmse_after_offset_nm"),
            "loo_lateral_rmse_nm": loo.get("lateral_rmse_nm"), "poor_fit": r["poor_fit"], "seconds": r["seconds"]}


def main() -> None:
    ap = harness.parser(__doc__)
    harness.add_threads(ap)
    ap.add_argument("--stacks", nargs="+", choices=STACKS, default=list(STACKS))
    ap.add_argument("--pupil", default="auto", choices=("auto", "zernike", "pixels"))
    ap.add_argument("--max-noll", type=int, default=45)
    args = ap.parse_args()
    harness.report({
        "benchmark": "bead_calibration",
        "setup": f"shared epfl2016_beads stacks, base epfl2016_3d, pupil {args.pupil}, Noll 5-{args.max_noll}, "
                 f"blur, wobble, leave-one-bead-out over +-600 nm",
        "machine": harness.machine(),
        "runs": [run(stack, args.pupil, args.max_noll) for stack in args.stacks],
    }, args.out)


if __name__ == "__main__":
    main()
