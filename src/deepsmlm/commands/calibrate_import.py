"""`deepsmlm calibrate import`: a calibration made elsewhere (Picasso's 3D calibration) as a calibrated config."""

from __future__ import annotations

from pathlib import Path

from deepsmlm.api.calibration_import import import_calibration


def run_calibrate_import(file: Path, config: str, out: Path, picasso_fit: str, magnification: float | None) -> None:
    r = import_calibration(file, config, out, picasso_fit=picasso_fit, magnification=magnification)
    cfg, w = r.config, r.widths
    g = cfg.psf.gaussian
    z0, z1 = w.z_range_nm
    (sx0, sy0), (sx1, sy1) = g.poly_widths_nm(z0), g.poly_widths_nm(z1)
    refit = f", refitted within {100 * w.refit_error:.2g} %" if picasso_fit == "lq" else ""
    print(f"{file.name}: Picasso 3D calibration ({picasso_fit.upper()} widths{refit}), magnification factor "
          f"{r.magnification:g}; widths in camera pixels of {cfg.frame.pixel_size_nm:g} nm (the pixel size of "
          f"--config {config})")
    print(f"astigmatic Gaussian over z {z0:.0f} … {z1:.0f} nm: σx {sx0:.0f} → {sx1:.0f} nm, σy {sy0:.0f} → "
          f"{sy1:.0f} nm, in focus {g.sigma_nm:.0f} nm")
    if r.unused_keys:
        print(f"not imported: {', '.join(r.unused_keys)}")
    print(f"wrote {out}")
