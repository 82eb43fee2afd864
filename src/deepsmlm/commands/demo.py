"""`deepsmlm demo`: the main job on shipped defaults.

Until the 2D network lands (issue 4) it simulates a dense bundled-filament movie at the EPFL 2013
conditions, writes its widefield sum, and draws the Tetrapod PSF montage and its CRLB curve.
"""

from __future__ import annotations

from pathlib import Path

import tifffile

from deepsmlm.analysis.render import save_widefield, widefield_sum
from deepsmlm.commands.optics import run_crlb, run_psf
from deepsmlm.commands.simulate import apply_overrides, simulate_to_folder
from deepsmlm.config import load_config
from deepsmlm.optics.masks import shared_data_root


def run_demo(out: Path) -> None:
    cfg = apply_overrides(load_config("epfl2013_bundled_tubes"), frames=100, seed=1, density=None, emitters=None)
    summary = simulate_to_folder(cfg, out / "simulation")
    frames = tifffile.imread(out / "simulation" / "frames.tif")
    save_widefield(widefield_sum(frames), out / "widefield.png", cfg.frame.pixel_size_nm,
                   title=f"widefield sum of {len(frames)} frames")
    print(f"simulated {summary['frames']} frames, {summary['emitters']} emitters in {summary['seconds']:.1f} s")
    if shared_data_root() is not None:
        run_psf("tetrapod_paper", out / "tetrapod_psf.png", planes=10)
        run_crlb("tetrapod_paper", None, out / "tetrapod_crlb.json", None, None, None, planes=21)
    else:
        run_psf("epfl2016_2d", out / "psf.png", planes=10)
    print(f"demo outputs in {out}")
