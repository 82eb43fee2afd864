"""`deepsmlm demo`: the main job on shipped defaults.

Until the 2D network lands (issue 4) it simulates a dense bundled-filament movie at the EPFL 2013
conditions, writes its widefield sum, and draws the Tetrapod PSF montage and its CRLB curve.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import tifffile

from deepsmlm.commands.optics import run_crlb, run_psf
from deepsmlm.commands.simulate import apply_overrides, simulate_to_folder
from deepsmlm.config import load_config
from deepsmlm.optics.masks import shared_data_root
from deepsmlm.plots import add_scale_bar, save_figure


def widefield_png(stack_path: Path, pixel_nm: float, out: Path) -> None:
    """Sum of a stack, the diffraction-limited view, with a scale bar."""
    total = tifffile.imread(stack_path).astype(np.float64).sum(axis=0)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(total, cmap="gray")
    ax.axis("off")
    add_scale_bar(ax, pixel_nm, total.shape[-1])
    ax.set_title(f"widefield sum of {len(tifffile.TiffFile(stack_path).pages)} frames", fontsize=9)
    save_figure(fig, out)


def run_demo(out: Path) -> None:
    cfg = apply_overrides(load_config("epfl2013_bundled_tubes"), frames=100, seed=1, density=None, emitters=None)
    summary = simulate_to_folder(cfg, out / "simulation")
    widefield_png(out / "simulation" / "frames.tif", cfg.frame.pixel_size_nm, out / "widefield.png")
    print(f"simulated {summary['frames']} frames, {summary['emitters']} emitters in {summary['seconds']:.1f} s")
    if shared_data_root() is not None:
        run_psf("tetrapod_paper", out / "tetrapod_psf.png", planes=10)
        run_crlb("tetrapod_paper", None, out / "tetrapod_crlb.json", None, None, None, planes=21)
    else:
        run_psf("epfl2016_2d", out / "psf.png", planes=10)
    print(f"demo outputs in {out}")
