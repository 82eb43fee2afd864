"""Figures people look at: PSF montages over z, CRLB-vs-z curves, photon-transfer plots (PNG, written atomically).

Figures are drawn on matplotlib ``Figure`` objects, never through pyplot, so a host application's backend
(napari, Jupyter) is left as it is; matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from deepsmlm.io.atomic import write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Destination = str | os.PathLike | BinaryIO
"""Where a figure goes: a PNG file (written atomically) or an open binary file (e.g. an in-memory buffer)."""


def new_figure(figsize: tuple[float, float]) -> Figure:
    """An empty figure of ``figsize`` (width, height) inches, outside pyplot (no backend, no figure list)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def save_figure(fig: Figure, path: Destination, dpi: int = 120) -> None:
    """Save a figure as PNG (matplotlib's Agg renderer, whatever the backend): atomically to a file path, or
    into an open binary file."""
    if hasattr(path, "write"):
        fig.savefig(path, format="png", dpi=dpi, bbox_inches="tight")
    else:
        write_atomic(path, lambda p: fig.savefig(p, format="png", dpi=dpi, bbox_inches="tight"))


def finish_figure(fig: Figure, path: Destination, title: str = "", tight: bool = True) -> None:
    """Title the figure (when ``title``), lay it out tightly (``tight``) and save it (:func:`save_figure`)."""
    if title:
        fig.suptitle(title, fontsize=10)
    if tight:
        fig.tight_layout()
    save_figure(fig, path)


def add_scale_bar(ax, pixel_nm: float, n_px: int, color: str = "white", n_rows: int | None = None) -> None:
    """A scale bar of a round length near a fifth of the field width ``n_px``, bottom left.

    ``n_rows`` is the image height in pixels when it differs from the width.
    """
    target = n_px * pixel_nm / 5
    length = 10 ** math.floor(math.log10(target))
    length = max(m * length for m in (1, 2, 5) if m * length <= target)
    px = length / pixel_nm
    rows = n_px if n_rows is None else n_rows
    y = rows * 0.92
    ax.plot([n_px * 0.05, n_px * 0.05 + px], [y, y], color=color, lw=3)
    label = f"{length / 1000:g} µm" if length >= 1000 else f"{length:g} nm"
    ax.text(n_px * 0.05, y - rows * 0.03, label, color=color, fontsize=7, va="bottom")


def crop_to_support(stack: np.ndarray, level: float = 0.02, margin: int = 3) -> np.ndarray:
    """Crop (Z, P, P) images to the centred square holding every pixel above ``level`` × its plane's maximum."""
    p = stack.shape[-1]
    c = p // 2
    bright = stack >= level * stack.max(axis=(-2, -1), keepdims=True)
    _, rows, cols = np.nonzero(bright)
    h = min(c, int(max(np.abs(rows - c).max(), np.abs(cols - c).max())) + margin)
    return stack[:, c - h:c + h + 1, c - h:c + h + 1]


def psf_montage(stack: np.ndarray, z_nm: Sequence[float], pixel_nm: float, path: str | os.PathLike,
                title: str = "", row_labels: Sequence[str] = (), cols: int = 5) -> None:
    """Grid of PSF images (Z, P, P), ``cols`` per row, each labelled with its z (after the label of its
    row, e.g. a dye, when ``row_labels`` are given) and normalised to its own maximum."""
    stack = crop_to_support(stack)
    n = len(stack)
    cols = min(n, cols)
    rows = math.ceil(n / cols)
    fig = new_figure((2.0 * cols, 2.1 * rows + 0.3))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (img, z) in enumerate(zip(stack, z_nm)):
        ax = axes.flat[k]
        ax.imshow(img / max(float(img.max()), 1e-12), cmap="inferno", vmin=0, vmax=1)
        prefix = f"{row_labels[k // cols]}, " if row_labels else ""
        ax.set_title(f"{prefix}z = {z:+.0f} nm", fontsize=8)
        if k == 0:
            add_scale_bar(ax, pixel_nm, img.shape[-1])
    finish_figure(fig, path, title, tight=False)


def crlb_plot(z_nm: np.ndarray, curves: Mapping[str, Mapping[str, np.ndarray]], path: str | os.PathLike,
              title: str = "") -> None:
    """√CRLB of x, y, z against z; ``curves`` maps a label (e.g. a mask) to {'x': …, 'y': …, 'z': …} in nm."""
    fig = new_figure((11, 3.2))
    axes = fig.subplots(1, 3, sharex=True)
    for label, c in curves.items():
        for ax, key in zip(axes, ("x", "y", "z")):
            if key in c:
                ax.plot(np.asarray(z_nm), np.asarray(c[key]), label=label)
    for ax, key in zip(axes, ("x", "y", "z")):
        ax.set_xlabel("z (nm)")
        ax.set_ylabel(f"√CRLB {key} (nm)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    finish_figure(fig, path, title)


def mask_plot(phase: np.ndarray, pitch_um: float, path: str | os.PathLike) -> None:
    """A phase mask (radians in [−π, π), (N, N) pixels of ``pitch_um`` µm) on a cyclic colour map."""
    fig = new_figure((4.2, 3.6))
    ax = fig.subplots()
    im = ax.imshow(phase, cmap="twilight", vmin=-np.pi, vmax=np.pi)
    ax.set_title(f"phase mask ({phase.shape[0]}×{phase.shape[1]} px of {pitch_um:.3g} µm)", fontsize=9)
    ax.axis("off")
    fig.colorbar(im, ax=ax, label="phase (rad)")
    save_figure(fig, path)


def comparison_figure(panels: Sequence[tuple[str, np.ndarray, float, str]], path: str | os.PathLike,
                      percentile: float = 99.5) -> None:
    """Side-by-side images, each (title, image, pixel_nm, cmap) with its own scale bar; the same field of view."""
    fig = new_figure((4.2 * len(panels), 4.5))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, img, pixel_nm, cmap) in zip(axes[0], panels):
        pos = img[img > 0]
        vmax = float(np.percentile(pos, percentile)) if len(pos) else 1.0
        ax.imshow(img, cmap=cmap, vmin=0 if cmap != "gray" else None, vmax=vmax if cmap != "gray" else None)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
        add_scale_bar(ax, pixel_nm, img.shape[1], n_rows=img.shape[0])
    fig.tight_layout()
    save_figure(fig, path)


def histogram_panels(panels: Sequence[tuple[str, np.ndarray, Sequence[float]]], path: Destination,
                     title: str = "") -> None:
    """One histogram per panel (x label, values, vertical marker lines) side by side, e.g. the photons,
    background and depths a movie's fits found with the values estimated from them."""
    fig = new_figure((3.6 * len(panels), 3.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, values, marks) in zip(axes, panels):
        ax.hist(values, bins=40, color="0.55")
        for mark in marks:
            ax.axvline(mark, color="tab:red", lw=1)
        ax.set_xlabel(label, fontsize=9)
    axes[0].set_ylabel("count", fontsize=9)
    finish_figure(fig, path, title)


def training_curves(history: Sequence[Mapping], path: Destination, title: str = "") -> None:
    """Validation Jaccard and RMSE (lateral, and axial when present) against the training step, and the
    recall in each depth band when the history has it (3D)."""
    steps = [h["step"] for h in history]
    by_depth = [h.get("recall_by_depth") for h in history]
    fig = new_figure((13.5 if any(by_depth) else 9, 3.2))
    axes = fig.subplots(1, 3 if any(by_depth) else 2)
    if any(by_depth):
        bands = next(b for b in by_depth if b)
        for band in bands:
            values = [(b or {}).get(band) for b in by_depth]
            axes[2].plot(steps, [np.nan if v is None else v for v in values], "o-", ms=3, label=f"z {band} nm")
        axes[2].set_ylabel("validation recall by depth")
        axes[2].legend(fontsize=7)
    axes[0].plot(steps, [h["jaccard"] for h in history], "o-", ms=3)
    axes[0].set_ylabel("validation Jaccard")
    for key, label in (("rmse_lateral_nm", "lateral"), ("rmse_axial_nm", "axial")):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            axes[1].plot(steps, [np.nan if v is None else v for v in values], "o-", ms=3, label=label)
    axes[1].set_ylabel("validation RMSE (nm)")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    finish_figure(fig, path, title)


def mean_variance_plot(points: Mapping[str, np.ndarray], slope: float, intercept: float, offset: float,
                       path: str | os.PathLike, title: str = "") -> None:
    """Photon-transfer plot: temporal variance (ADU²) against mean (ADU), ``points`` mapping a stack's name to
    (K, 3) rows (mean, variance, standard error), with the fitted line slope·mean + intercept and the offset."""
    fig = new_figure((6.5, 4.5))
    ax = fig.subplots()
    for label, rows in points.items():
        ax.errorbar(rows[:, 0], rows[:, 1], yerr=rows[:, 2], fmt="o", ms=3, label=os.path.basename(label))
    top = max(float(rows[:, 0].max()) for rows in points.values())
    x = np.linspace(min(offset, *(float(r[:, 0].min()) for r in points.values())), top, 50)
    ax.plot(x, slope * x + intercept, "k-", lw=1, label=f"fit: {slope:.4g}·mean {intercept:+.4g}")
    ax.axvline(offset, color="gray", ls="--", lw=1, label=f"offset {offset:.1f} ADU")
    ax.set_xlabel("temporal mean (ADU)")
    ax.set_ylabel("temporal variance (ADU²)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=8)
    save_figure(fig, path)


def bead_model_montage(measured: np.ndarray, model: np.ndarray, z_nm: Sequence[float], pixel_nm: float,
                       path: str | os.PathLike, title: str = "") -> None:
    """A bead's measured crops, the model's and their difference (rows) at a few z (columns): (K, P, P)
    photons each; measured and model share each column's scale, the difference a symmetric one."""
    cols = len(measured)
    fig = new_figure((1.6 * cols, 5.2))
    axes = fig.subplots(3, cols, squeeze=False)
    for k in range(cols):
        top = max(float(measured[k].max()), float(model[k].max()), 1e-12)
        diff = measured[k] - model[k]
        axes[0, k].imshow(measured[k], cmap="inferno", vmin=0, vmax=top)
        axes[1, k].imshow(model[k], cmap="inferno", vmin=0, vmax=top)
        axes[2, k].imshow(diff, cmap="RdBu_r", vmin=-top / 4, vmax=top / 4)
        axes[0, k].set_title(f"z = {z_nm[k]:+.0f} nm", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, label in zip(axes[:, 0], ("measured", "model", "difference (±¼ max)")):
        ax.set_ylabel(label, fontsize=8)
    add_scale_bar(axes[0, 0], pixel_nm, measured.shape[-1])
    finish_figure(fig, path, title, tight=False)


def zernike_bars(noll: Sequence[int], coefficients: Mapping[str, Sequence[float]], path: str | os.PathLike,
                 title: str = "") -> None:
    """Bars of Zernike coefficients (RMS radians) against the Noll index, one series per label."""
    fig = new_figure((max(5.0, 0.3 * len(noll) + 2), 3.4))
    ax = fig.subplots()
    width = 0.8 / max(len(coefficients), 1)
    for i, (label, values) in enumerate(coefficients.items()):
        ax.bar(np.asarray(noll) + (i - (len(coefficients) - 1) / 2) * width, values, width, label=label)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(list(noll))
    ax.set_xlabel("Noll index")
    ax.set_ylabel("coefficient (rad RMS)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def z_accuracy_plot(z_stage_nm: np.ndarray, z_bias_nm: np.ndarray, lateral_nm: np.ndarray, path: str | os.PathLike,
                    title: str = "") -> None:
    """Leave-one-bead-out check of a PSF calibration against the stage z (S,): per bead (rows of the
    arrays) the bias z_fit − z_stage (B, S) and the lateral residuals (B, S, 2), NaN where not checked."""
    fig = new_figure((10.0, 3.6))
    ax_z, ax_xy = fig.subplots(1, 2)
    for b, (bias, lateral) in enumerate(zip(z_bias_nm, lateral_nm)):
        line, = ax_z.plot(z_stage_nm, bias, lw=1, label=f"bead {b + 1}")
        ax_xy.plot(z_stage_nm, lateral[:, 0], ".", ms=4, color=line.get_color())
        ax_xy.plot(z_stage_nm, lateral[:, 1], "x", ms=3, color=line.get_color())
    ax_z.set_ylabel("z_fit − z_stage (nm)")
    ax_xy.set_ylabel("lateral residual (nm): x dots, y crosses")
    for ax in (ax_z, ax_xy):
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("stage z (nm)")
        ax.grid(alpha=0.3)
    ax_z.legend(fontsize=7, ncol=2)
    finish_figure(fig, path, title, tight=False)


def reliability_plot(curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], path: str | os.PathLike,
                     title: str = "") -> None:
    """Reliability of predicted uncertainties, one panel per axis: the observed RMSE against the predicted σ
    in bins of predicted σ (nm), with the identity line a calibrated σ follows; ``curves`` maps a label
    (e.g. a density) to {axis: (predicted σ, observed RMSE)} (``analysis.uncertainty.reliability``)."""
    axes_names = sorted({a for c in curves.values() for a in c}, key="xyz".index)
    fig = new_figure((3.6 * len(axes_names), 3.4))
    axes = fig.subplots(1, len(axes_names), squeeze=False)[0]
    for ax, axis in zip(axes, axes_names):
        top = 1.05 * max(float(np.max(np.concatenate(c[axis]))) for c in curves.values() if axis in c)
        ax.plot([0, top], [0, top], color="0.5", ls="--", lw=1, label="identity (calibrated)")
        for label, c in curves.items():
            if axis in c:
                ax.plot(*c[axis], marker="o", ms=4, label=label)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_aspect("equal")
        ax.set_xlabel(f"predicted σ_{axis} (nm, RMS in bin)")
        ax.set_ylabel(f"observed RMSE {axis} (nm)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    finish_figure(fig, path, title)


def drift_plot(frames: np.ndarray, drift_nm: np.ndarray, centres: np.ndarray, segment_drift_nm: np.ndarray,
               path: Destination, title: str = "") -> None:
    """Drift against frame: the interpolated trajectory (frames, 2|3) nm per axis x, y[, z] as lines and
    the fitted segment drifts (S, 2|3) at their mean frames ``centres`` as dots."""
    fig = new_figure((7.0, 3.6))
    ax = fig.subplots()
    for k, axis in enumerate("xyz"[:drift_nm.shape[1]]):
        line, = ax.plot(frames, drift_nm[:, k], lw=1.2, label=axis)
        ax.plot(centres, segment_drift_nm[:, k], "o", ms=3, color=line.get_color())
    ax.set_xlabel("frame")
    ax.set_ylabel("drift (nm)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="lines: per frame; dots: segments", title_fontsize=7)
    finish_figure(fig, path, title)


def frc_plot(q_per_nm: np.ndarray, frc: np.ndarray, smoothed: np.ndarray, threshold: float, resolution_nm: float,
             path: Destination, title: str = "") -> None:
    """The Fourier ring correlation against spatial frequency (1/nm): raw and smoothed curves, the
    threshold and the resolution (nm) where the smoothed curve crosses it (none drawn when NaN)."""
    fig = new_figure((6.0, 3.6))
    ax = fig.subplots()
    ax.plot(q_per_nm, frc, color="0.7", lw=0.8, label="FRC")
    ax.plot(q_per_nm, smoothed, color="C0", lw=1.5, label="smoothed")
    ax.axhline(threshold, color="C3", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    if math.isfinite(resolution_nm):
        ax.axvline(1 / resolution_nm, color="k", lw=0.8, label=f"resolution {resolution_nm:.1f} nm")
    ax.set_xlabel("spatial frequency (1/nm)")
    ax.set_ylabel("FRC")
    ax.set_ylim(min(-0.1, float(np.min(smoothed))), 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    finish_figure(fig, path, title)


def detections_plot(counts: np.ndarray, path: Destination, title: str = "") -> None:
    """Localizations per frame (``counts``, index = 0-based frame) against frame, with their mean over blocks
    of about 1 % of the frames when there are over 200 (a slow fall shows bleaching, a step a change)."""
    counts = np.asarray(counts, dtype=np.float64)
    frames = np.arange(len(counts))
    fig = new_figure((7.0, 3.0))
    ax = fig.subplots()
    ax.plot(frames, counts, lw=0.6, color="0.55", label="per frame")
    block = len(counts) // 100
    if len(counts) > 200:
        n = len(counts) // block * block
        ax.plot(frames[:n].reshape(-1, block).mean(axis=1), counts[:n].reshape(-1, block).mean(axis=1),
                color="C0", lw=1.5, label=f"mean of {block} frames")
    ax.set_xlabel("frame")
    ax.set_ylabel("localizations")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    finish_figure(fig, path, title)
