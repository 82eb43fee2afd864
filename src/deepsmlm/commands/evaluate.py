"""`deepsmlm evaluate`: match predictions to ground truth and print/write the SMLM-2016 metrics."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deepsmlm.analysis.matching import check_method
from deepsmlm.api import evaluate
from deepsmlm.errors import check_positive
from deepsmlm.io.atomic import write_text_atomic
from deepsmlm.io.outputs import check_outputs

ROWS = (  # key, label, format
    ("n_gt", "GT emitters", "{:d}"), ("n_pred", "predictions", "{:d}"),
    ("n_tp", "true positives", "{:d}"), ("n_fp", "false positives", "{:d}"), ("n_fn", "false negatives", "{:d}"),
    ("jaccard", "Jaccard", "{:.4f}"), ("recall", "recall", "{:.4f}"), ("precision", "precision", "{:.4f}"),
    ("rmse_lateral_nm", "RMSE lateral (nm)", "{:.2f}"), ("rmse_axial_nm", "RMSE axial (nm)", "{:.2f}"),
    ("rmse_volume_nm", "RMSE volume (nm)", "{:.2f}"),
    ("bias_x_nm", "bias x (nm)", "{:+.2f}"), ("bias_y_nm", "bias y (nm)", "{:+.2f}"),
    ("bias_z_nm", "bias z (nm)", "{:+.2f}"),
    ("efficiency_lateral", "efficiency lateral (%)", "{:.2f}"), ("efficiency_axial", "efficiency axial (%)", "{:.2f}"),
    *((f"zscore_sd_{a}", f"σ z-score SD {a} (1: calibrated)", "{:.3f}") for a in "xyz"),
)


def metrics_table(result: dict) -> Table:
    """A two-column rich table of the metrics; undefined figures show as '—'."""
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label, fmt in ROWS:
        value = result.get(key)  # z-scores of z only in 3D
        table.add_row(label, "—" if value is None else fmt.format(value))
    if "color_accuracy" in result:  # both tables carry dyes
        accuracy = result["color_accuracy"]
        table.add_row("dye correct (%)", "—" if accuracy is None else f"{100 * accuracy:.2f}")
        for dye, row in enumerate(result["color_confusion"]):
            table.add_row(f"true dye {dye} → assigned", " ".join(str(n) for n in row))
    return table


def run_evaluate(gt: Path, pred: Path, lateral_tol: float, axial_tol: float, match: str, border_nm: float,
                 json_out: Path | None, pixel_size_nm: float | None) -> None:
    check_method(match)
    check_positive(pixel_size_nm, "--pixel-size-nm")
    check_outputs({"--json": json_out}, {"--gt": gt, "--pred": pred})
    result = evaluate(gt, pred, lateral_tol, axial_tol, match=match, border_nm=border_nm, pixel_size_nm=pixel_size_nm)
    for label, path, key in (("ground truth", gt, "n_gt_duplicates"), ("predictions", pred, "n_pred_duplicates")):
        if result[key]:
            Console(stderr=True).print(f"[yellow]warning:[/yellow] {path}: {result[key]} of the {label} rows repeat "
                                       f"an earlier row exactly (same frame and position); they are scored as "
                                       f"separate localizations", highlight=False)
    axial = f", axial ±{axial_tol:g} nm" if result["axial_tol_nm"] is not None else ""
    console = Console()
    console.print(f"{pred} vs {gt}: {match} matching, lateral ±{lateral_tol:g} nm{axial}", highlight=False, markup=False)
    console.print(metrics_table(result))
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(result, indent=2))
        print(f"wrote {json_out}")
