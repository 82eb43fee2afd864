"""LocNet temporal context: models that see T = 1 or 3 frames, trained for the same wall time, on movies whose
molecules blink over several frames and on the real EPFL 2013 Bundled Tubes HD stack (independent frames).

The simulated movies are locnet_2d's microscope and filaments with two-state blinking (per frame, on → off
with probability ``--p-off``, so a molecule stays on 1 / p_off frames on average), at two densities of
molecules on per frame. Prints one JSON document: per model and test set, Jaccard / recall / precision /
lateral RMSE at 250 and 100 nm (Hungarian) and frames per second.

    python benchmarks/locnet_temporal.py --model t1=runs/locnet2d_t1 --model t3=runs/locnet2d_t3 [--threads 2]
"""

from __future__ import annotations

import deepsmlm
import harness
from deepsmlm.assembly.simulators import build_simulator
from deepsmlm.config import updated
from deepsmlm.io.images import array_stack, open_stack

KEYS = ("jaccard", "recall", "precision", "rmse_lateral_nm")
DENSITIES = (2.0, 5.5)  # molecules on per frame per µm²


def blinking_movie(density: float, p_off: float, frames: int, seed: int):
    """A locnet_2d filament movie (ADU) whose molecules blink, with its ground truth."""
    cfg = updated(deepsmlm.load_config("locnet_2d"), {
        "emitters.density_per_um2": density, "emitters.blinking.enabled": True,
        "emitters.blinking.p_on_to_off": p_off, "emitters.blinking.p_off_to_on": 0.02})
    return harness.test_set(build_simulator(cfg), frames, seed, cfg.frame.pixel_size_nm)


def scored(model: deepsmlm.Model, stack, truth, simulated: bool) -> dict:
    """Scores and rate of ``model`` on an open stack (ADU) against ``truth`` (the data checks, meant for
    recorded data, skipped on ``simulated`` frames)."""
    run = model.stream(stack, force=simulated)
    row = {"frames_per_s": run.result.fps, "n_pred": len(run.localizations)}
    for tol in (250.0, 100.0):
        row[f"tol_{tol:.0f}nm"] = harness.scores(deepsmlm.evaluate(truth, run.localizations, tol, None), KEYS)
    return row


def main() -> None:
    ap = harness.parser(__doc__)
    harness.add_labelled_models(ap)
    harness.add_threads(ap)
    ap.add_argument("--p-off", type=float, default=0.5, help="per-frame on → off probability of the movies")
    ap.add_argument("--frames", type=int, default=200, help="frames per simulated movie")
    args = ap.parse_args()
    models = {label: deepsmlm.load_model(name) for label, name in args.model}
    sets = {}
    for k, density in enumerate(DENSITIES):
        batch, truth = blinking_movie(density, args.p_off, args.frames, seed=20261205 + k)
        stack = array_stack(batch.adu.numpy())
        sets[f"blinking {density:g}/µm²"] = {label: scored(m, stack, truth, True) for label, m in models.items()}
    data = harness.shared_data("epfl2013_bundled_tubes_hd")
    truth = deepsmlm.read_localizations(data / "ground_truth.csv")
    with open_stack(data / "frames.tif") as stack:
        sets["epfl2013 real"] = {label: scored(m, stack, truth, False) for label, m in models.items()}
    harness.report({"benchmark": "locnet_temporal", "p_off": args.p_off, "frames": args.frames,
                    "models": {label: {"name": name, "frames_seen": models[label].config.model.frames}
                               for label, name in args.model},
                    "sets": sets, "machine": harness.machine()}, args.out)


if __name__ == "__main__":
    main()
