"""Write and read seconds for each localization file format, on one table of random localizations.

Prints one JSON document. The table (seeded) has every canonical column, 3D, with known uncertainties,
over a 256×256 px field of 100 nm pixels and 10,000 frames; files go to a temporary folder.

    python benchmarks/localization_io_speed.py [--rows 1000000] [--seed 0] [--out FILE]
"""

from __future__ import annotations

import time

import numpy as np

import deepsmlm
import harness
from deepsmlm.localizations import Localizations, Metadata

FILES = {"thunderstorm": "locs.csv", "picasso": "locs.hdf5", "challenge": "activations.csv",
         "parquet": "locs.parquet"}


def random_locs(n: int, seed: int) -> Localizations:
    """``n`` localizations: uniform positions, Gamma photons, uncertainties from 5 to 40 nm."""
    rng = np.random.default_rng(seed)
    sigma_xy = rng.uniform(5.0, 20.0, n)
    return Localizations.from_arrays(
        frame=np.sort(rng.integers(0, 10_000, n)), x_nm=rng.uniform(0, 25_600, n), y_nm=rng.uniform(0, 25_600, n),
        z_nm=rng.uniform(-750, 750, n), photons=rng.gamma(3.0, 1000.0, n), bg=rng.uniform(5, 50, n),
        prob=rng.uniform(0.5, 1.0, n), sigma_x_nm=sigma_xy, sigma_y_nm=sigma_xy, sigma_z_nm=2 * sigma_xy,
        meta=Metadata(pixel_size_nm=100.0, image_shape=(256, 256), n_frames=10_000))


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    locs = random_locs(args.rows, args.seed)
    figures = {}
    with harness.scratch() as tmp:
        for fmt, name in FILES.items():
            path = tmp / name
            t0 = time.perf_counter()
            deepsmlm.write_localizations(path, locs, format=fmt)
            t1 = time.perf_counter()
            back = deepsmlm.read_localizations(path)
            t2 = time.perf_counter()
            assert len(back) == args.rows
            figures[fmt] = {"write_s": round(t1 - t0, 3), "read_s": round(t2 - t1, 3),
                            "write_rows_per_s": round(args.rows / (t1 - t0)),
                            "read_rows_per_s": round(args.rows / (t2 - t1)),
                            "file_mb": round(sum(p.stat().st_size for p in tmp.glob(path.stem + ".*")) / 1e6, 1)}
            for p in tmp.iterdir():
                p.unlink()
    harness.report({"benchmark": "localization_io_speed", "rows": args.rows, "seed": args.seed,
                    "machine": harness.machine(), "formats": figures}, args.out)


if __name__ == "__main__":
    main()
