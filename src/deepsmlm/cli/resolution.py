"""`deepsmlm drift` and `deepsmlm frc`: drift correction and FRC resolution of localization files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from deepsmlm.cli.common import guard

LocsArg = typer.Argument(..., help="localization file (any supported format)")
PixelSizeOpt = typer.Option(None, "--pixel-size-nm", help="camera pixel size for pixel-unit formats")


def drift(
    locs: Path = LocsArg,
    out: Path = typer.Option(..., "-o", "--out", help="corrected localizations (.csv ThunderSTORM, .hdf5, .parquet)"),
    method: str = typer.Option("rcc", "--method", help="rcc: redundant cross-correlation of segment images; "
                               "aim: adaptive intersection maximization against the growing corrected reference"),
    segment_frames: int = typer.Option(1000, "--segment-frames", min=1,
                                       help="frames per segment (rcc: at most 40 segments, aim: 1000; longer "
                                       "for long movies)"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="drift-vs-frame plot (default: -o with .png)"),
    pixel_size_nm: Optional[float] = PixelSizeOpt,
    pixel_nm: float = typer.Option(20.0, "--pixel-nm", help="pixel of the segment images (nm; aim: the "
                                   "intersection radius is 2 pixels)"),
    max_drift_nm: float = typer.Option(1000.0, "--max-drift-nm", help="largest drift between segments sought (nm)"),
) -> None:
    """Estimate the stage drift (x, y, and z for 3D) and write the corrected table and a drift plot."""
    from deepsmlm.commands.drift import run_drift

    guard(run_drift, locs, out, method, segment_frames, plot, pixel_size_nm, pixel_nm, max_drift_nm)


def frc(
    locs: Path = LocsArg,
    pixel_nm: float = typer.Option(5.0, "--pixel-nm", help="pixel of the two half images (nm)"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="FRC curve plot (PNG)"),
    block_frames: int = typer.Option(100, "--block-frames", min=1,
                                     help="frames per block; alternate blocks make the two halves"),
    pixel_size_nm: Optional[float] = PixelSizeOpt,
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the curve and resolution as JSON"),
) -> None:
    """Fourier ring correlation resolution (1/7 threshold) from two halves of alternating frame blocks."""
    from deepsmlm.commands.frc import run_frc

    guard(run_frc, locs, pixel_nm, plot, block_frames, pixel_size_nm, json_out)
