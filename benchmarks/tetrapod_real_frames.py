"""Tetrapod models on the real Tetrapod frames (shared data: 50 min-subtracted STORM frames of mitochondria,
332×492 px of 110 nm, no ground truth): what can be said without ground truth, side by side.

For each ``--model label=NAME``: localizations per frame, the z distribution (percentiles) and the share
of localizations within 150 nm of either end of the model's z range (a model whose PSF does not match
the microscope piles its answers up at the range ends), the median detection confidence, and frames/s.
For each pair of models: how many localizations they share (Hungarian within 100 nm laterally and
200 nm axially, as a Jaccard of the two sets), and the median z difference of the shared ones.
``--plot`` draws the depth-coloured renders (40 nm pixels, the same z colour range) side by side.
Prints one JSON document.

    python benchmarks/tetrapod_real_frames.py --model shipped=tetrapod-3d --model physical=DIR [--plot out.png]
        [--out FILE]
"""

from __future__ import annotations

import itertools

import numpy as np
from matplotlib.figure import Figure

import deepsmlm
import harness
from deepsmlm.io.images import open_stack
from deepsmlm.localizations import Localizations

EDGE_NM = 150.0
RENDER_PX_NM = 40.0


def describe(locs: Localizations, z_range: tuple[float, float], n_frames: int, fps: float) -> dict:
    z = locs.table["z_nm"].to_numpy()
    at_edge = (z < z_range[0] + EDGE_NM) | (z > z_range[1] - EDGE_NM)
    return {"n_localizations": len(locs), "per_frame": round(len(locs) / n_frames, 1),
            "z_percentiles_nm": dict(zip(("5", "25", "50", "75", "95"),
                                         np.percentile(z, [5, 25, 50, 75, 95]).round(0).tolist())),
            "share_at_z_range_ends": round(float(at_edge.mean()), 4),
            "median_prob": round(float(locs.table["prob"].median()), 3), "frames_per_s": round(fps, 2)}


def agreement(a: Localizations, b: Localizations) -> dict:
    m = deepsmlm.evaluate(a, b, 100.0, 200.0)
    return {"jaccard": round(m["jaccard"], 4), "n_shared": m["n_tp"], "rmse_lateral_nm": round(m["rmse_lateral_nm"], 1),
            "rmse_axial_nm": round(m["rmse_axial_nm"], 1)}


def plot(results: dict[str, Localizations], z_range: tuple[float, float], path: str) -> None:
    from deepsmlm.analysis.render import depth_rgb, field_nm

    extent = field_nm(next(iter(results.values())), RENDER_PX_NM)
    fig = Figure(figsize=(6 * len(results), 4.6))
    axes = fig.subplots(1, len(results), squeeze=False)
    for ax, (label, locs) in zip(axes[0], results.items()):
        rgb = depth_rgb(locs, RENDER_PX_NM, z_range, extent_nm=extent)
        ax.imshow(np.clip(rgb / np.percentile(rgb.sum(axis=2), 99.5), 0, 1))
        ax.set_title(f"{label}: {len(locs)} localizations")
        ax.axis("off")
    fig.suptitle(f"real Tetrapod frames, colour = z from {z_range[0]:g} to {z_range[1]:g} nm")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = harness.parser(__doc__)
    harness.add_labelled_models(ap)
    ap.add_argument("--plot", default=None)
    args = ap.parse_args()
    path = harness.shared_data("deepstorm3d_tetrapod", "real_frames.tif")
    models = dict(args.model)
    results, described, z_range = {}, {}, None
    with open_stack(path) as stack:
        for label, name in models.items():
            run = deepsmlm.load_model(name).stream(stack, batch_size=4, pixel_size_nm=110.0, superres=True)
            results[label] = run.localizations
            z_range = z_range or tuple(run.config.emitters.z_range_nm)
            described[label] = describe(results[label], run.config.emitters.z_range_nm, len(stack), run.result.fps)
    agreements = {f"{la}|{lb}": agreement(a, b) for (la, a), (lb, b) in itertools.combinations(results.items(), 2)}
    if args.plot:
        plot(results, z_range, args.plot)
    harness.report({"benchmark": "tetrapod_real_frames", "data": str(path), "models": models,
                    "machine": harness.machine(), "results": described, "agreement": agreements}, args.out)


if __name__ == "__main__":
    main()
