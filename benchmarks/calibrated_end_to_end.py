"""End to end on your own microscope (issue 20): models trained on a calibrated vs an uncalibrated config,
scored on frames made with an independent PSF — the measured-stack PSF of the same beads (their aligned,
averaged stack), not the fitted pupil.

The frames: the bead stack (default the shared EPFL 2016 astigmatic beads) averaged by
``deepsmlm.measured_psf`` with ``--config`` (default ``epfl2016_3d``: the EPFL 2016 camera, the challenge's
low-density emitters: 4–40 per 64×64 frame, photons log-normal ~500–10,000, background 70–150 photons/px,
z over the stack's range within ±750 nm), ``--frames`` frames seeded by ``--seed``. Each ``--model
label=MODEL`` localizes them (``psf-mle`` with a config: ``--model mle=psf-mle:CONFIG``); scored as the SMLM
2016 challenge (250 nm laterally, 500 nm axially) and strictly (100 nm, 100 nm).

    python benchmarks/calibrated_end_to_end.py --model calibrated=DIR --model uncalibrated=DIR \
        [--model mle=psf-mle:cal/calibrated.yaml] [--frames 200] [--out FILE]
"""

from __future__ import annotations

import time

import deepsmlm
import harness

TOLERANCES = {"challenge": (250.0, 500.0), "strict": (100.0, 100.0)}


def loaded(name: str) -> deepsmlm.Model:
    """A model folder or shipped name; ``psf-mle:CONFIG`` the 3D fitter with that config's PSF."""
    if name.startswith("psf-mle:"):
        return deepsmlm.load_model("psf-mle", config=name.split(":", 1)[1], fitter_options={"box_px": 19})
    return deepsmlm.load_model(name)


def main() -> None:
    ap = harness.parser(__doc__)
    harness.add_labelled_models(ap)
    harness.add_threads(ap)
    ap.add_argument("--beads", default=None, help="bead z-stack (default: the shared EPFL 2016 AS beads)")
    ap.add_argument("--config", default="epfl2016_3d", help="the microscope's base config (camera, emitters)")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--seed", type=int, default=2016)
    args = ap.parse_args()
    beads = args.beads or harness.shared_data("epfl2016_beads", "beads_AS.tif")
    with harness.scratch() as folder:
        stack = deepsmlm.measured_psf(beads, args.config, folder / "stack")
        sim = deepsmlm.simulate(folder / "stack" / "measured.yaml", frames=args.frames, seed=args.seed)
    truth = sim.truth
    results = {}
    for label, name in args.model:
        model = loaded(name)
        t0 = time.perf_counter()
        locs = model.localize(sim.frames, force=True)
        seconds = time.perf_counter() - t0
        results[label] = {"model": name, "frames_per_s": round(args.frames / seconds, 2),
                          **{rule: harness.scores(deepsmlm.evaluate(truth, locs, lat, ax), harness.SCORES_3D)
                             for rule, (lat, ax) in TOLERANCES.items()}}
    harness.report({"benchmark": "calibrated_end_to_end", "beads": str(beads), "config": args.config,
                    "frames": args.frames, "seed": args.seed, "emitters": len(truth),
                    "stack_z_range_nm": stack["z_range_nm"], "results": results, "machine": harness.machine()},
                   args.out)


if __name__ == "__main__":
    main()
