"""Reference vs physical pupil PSF for every pupil preset (issue 18), as one JSON document.

For each preset, three image formations of the same optics: the reference (DeepSTORM3D's: scalar pupil,
supercritical light cut, point sampling, Zernike on NA, the grid before issue 18; what the models shipped
before issue 18 were trained with), the scalar pupil with the physical options (evanescent supercritical
light, pixel integration, Zernike on the open aperture, computed grid), and the preset as it states it
(those options and the vectorial PSF of a freely rotating dipole): the relative L2 difference per plane
from the reference over the preset's z range, the fitted σ of an integrated Gaussian near focus, and the
convergence of the preset's grid (refined 3×). Also the scalar supercritical share of the collected light
against direct angular integration, and the render cost of tetrapod_paper in each formation.

    python benchmarks/physics_fidelity.py [--planes 9] [--emitters 64] --out benchmarks/results/physics_fidelity.json
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from scipy.integrate import quad
from scipy.optimize import least_squares

import harness
from deepsmlm.config import PUPIL_MODELS, DipoleConfig, SimulationConfig, load_config, preset_names, updated
from deepsmlm.optics.factory import build_pupil_psf, pupil_grid_for, refined_grid, with_physical_psf, with_reference_psf
from deepsmlm.optics.psf import GaussianPSF
from deepsmlm.optics.pupil import PupilGrid, PupilPSF, supercritical_fraction
from deepsmlm.optics.stack import StackPSF

FIT_PX = 15  # side of the central crop the Gaussian is fitted to


def planes(cfg: SimulationConfig, count: int) -> np.ndarray:
    z0, z1 = cfg.emitters.z_range_nm
    return np.linspace(z0, z1, count) if z1 > z0 else np.array([z0])


def stack(cfg: SimulationConfig, z: np.ndarray, chunk: int = 3) -> np.ndarray:
    """Unit-photon patches of a centred emitter at each z (float64), ``chunk`` planes at a time (memory)."""
    psf = build_pupil_psf(cfg)
    off = torch.zeros(len(z), 3)
    off[:, 2] = torch.as_tensor(z, dtype=torch.float32)
    with torch.no_grad():
        return np.concatenate([psf.patches(off[i:i + chunk], torch.ones(len(off[i:i + chunk]))).double().numpy()
                               for i in range(0, len(z), chunk)])


def fitted_sigma_nm(patch: np.ndarray, pixel_nm: float) -> float:
    """σ (nm) of the pixel-integrated isotropic Gaussian that fits the central crop best (least squares)."""
    c, h = patch.shape[0] // 2, FIT_PX // 2
    crop = torch.as_tensor(patch[c - h:c + h + 1, c - h:c + h + 1])

    def residual(p: np.ndarray) -> np.ndarray:
        model = GaussianPSF(pixel_nm, FIT_PX, float(p[0])).patches(
            torch.tensor([[p[1], p[2], 0.0]], dtype=torch.float64), torch.tensor([p[3]], dtype=torch.float64))[0]
        return (model - crop).numpy().ravel()

    bounds = ([1.0, -pixel_nm, -pixel_nm, 0.0], [50 * pixel_nm, pixel_nm, pixel_nm, np.inf])
    fit = least_squares(residual, x0=[pixel_nm, 0.0, 0.0, float(crop.sum())], bounds=bounds)
    return float(fit.x[0])


def scalar_physical(cfg: SimulationConfig) -> SimulationConfig:
    """``cfg``'s physical options with the scalar pupil in place of its vectorial PSF."""
    return updated(with_physical_psf(cfg, vectorial=False), {"psf.model": "pupil", "psf.dipole": DipoleConfig()})


def compare_preset(name: str, count: int) -> dict:
    cfgs = {"reference": with_reference_psf(load_config(name)), "scalar_physical": scalar_physical(load_config(name)),
            "preset": load_config(name)}
    z = planes(cfgs["preset"], count)
    psfs = {key: stack(cfg, z) for key, cfg in cfgs.items()}
    ref, phys = psfs["reference"], psfs["preset"]
    fine = stack(refined_grid(cfgs["preset"]), z)
    focus = int(np.argmin(np.abs(z)))
    px = cfgs["preset"].frame.pixel_size_nm
    norm = lambda a: np.linalg.norm(a, axis=(1, 2))  # noqa: E731
    return {
        "z_nm": z.tolist(),
        "model": cfgs["preset"].psf.model,
        "grid": {key: pupil_grid_for(cfg).n for key, cfg in cfgs.items()},
        "oversample_preset": pupil_grid_for(cfgs["preset"]).oversample,
        "rel_l2_vs_reference": {key: (norm(a - ref) / norm(a)).round(4).tolist()
                                for key, a in psfs.items() if key != "reference"},
        "patch_sum": {key: a.sum(axis=(1, 2)).round(4).tolist() for key, a in psfs.items()},
        "fit_plane_z_nm": float(z[focus]),
        "fitted_sigma_nm": {key: round(fitted_sigma_nm(a[focus], px), 2) for key, a in psfs.items()},
        "peak": {key: round(float(a[focus].max()), 5) for key, a in psfs.items()},
        "convergence_3x_refined": {
            "grid_refined": pupil_grid_for(refined_grid(cfgs["preset"])).n,
            "rel_l2_per_plane": (norm(phys - fine) / norm(fine)).round(5).tolist(),
            "patch_sum_change": (np.abs(phys.sum(axis=(1, 2)) / fine.sum(axis=(1, 2)) - 1)).round(5).tolist(),
        },
    }


def supercritical_shares(depths_nm: list[float]) -> dict:
    """Scalar share of |P|² past the critical angle (NA 1.45, oil 1.518 / water 1.33, 670 nm): grid vs quadrature."""
    wl, na, n_imm, n_s = 670.0, 1.45, 1.518, 1.33
    psf = PupilPSF(PupilGrid(609, 110.0, wl, na, n_imm, n_s), 21, 0.0)
    k0, f_c, f_na = 2 * math.pi / wl, n_s / wl, na / wl
    out = {}
    for d in depths_nm:
        beyond = quad(lambda f: math.exp(-2 * k0 * n_s * d * math.sqrt(max((wl * f / n_s) ** 2 - 1, 0))) * f,
                      f_c, f_na)[0]
        out[f"{d:g}"] = {"grid": round(supercritical_fraction(psf, d), 5),
                         "angular_integration": round(beyond / (f_c**2 / 2 + beyond), 5)}
    return out


def render_cost(cfg: SimulationConfig, emitters: int) -> dict:
    """FFT size and emitters per second of the differentiable path and the cached fast path."""
    psf = build_pupil_psf(cfg)
    gen = torch.Generator().manual_seed(0)
    off = torch.rand(emitters, 3, generator=gen)
    off[:, :2] = (off[:, :2] - 0.5) * cfg.frame.pixel_size_nm
    z0, z1 = cfg.emitters.z_range_nm
    off[:, 2] = z0 + off[:, 2] * (z1 - z0)
    ph = torch.full((emitters,), 1000.0)
    with torch.no_grad():
        t0 = time.perf_counter()
        psf.patches(off, ph)
        direct = time.perf_counter() - t0
        t0 = time.perf_counter()
        fast = StackPSF(psf, z0, z1, cfg.psf.cache_z_step_nm, cache=False)
        cache = time.perf_counter() - t0
        t0 = time.perf_counter()
        fast.patches(off, ph)
        cached = time.perf_counter() - t0
    return {"fft_size": psf.grid.n, "oversample": psf.grid.oversample,
            "pupil_emitters_per_s": round(emitters / direct, 1), "stack_cache_build_s": round(cache, 1),
            "stack_emitters_per_s": round(emitters / cached, 1)}


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--planes", type=int, default=9)
    parser.add_argument("--emitters", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = [n for n in preset_names() if load_config(n).psf.model in PUPIL_MODELS]
    tetrapod = load_config("tetrapod_paper")
    report = {
        "benchmark": "physics_fidelity", "issue": 18, "torch_threads": 1,
        "machine": harness.machine(),
        "reference": "DeepSTORM3D's: scalar pupil, supercritical cut, point sampling, Zernike on NA, grid before "
                     "issue 18 (the models shipped before issue 18)",
        "scalar_physical": "scalar pupil with the schema defaults: evanescent supercritical light, pixel integration, "
                           "Zernike on the open aperture, computed grid (mask oversampled q×)",
        "preset": "the preset as stated: those options and the vectorial PSF of a freely rotating dipole",
        "presets": {n: compare_preset(n, args.planes) for n in names},
        "supercritical_share_scalar_na1.45_water_on_oil": supercritical_shares([0.0, 100.0, 300.0, 1000.0]),
        "cost_tetrapod_paper": {"reference": render_cost(with_reference_psf(tetrapod), args.emitters),
                                "scalar_physical": render_cost(scalar_physical(tetrapod), args.emitters),
                                "preset": render_cost(tetrapod, args.emitters)},
    }
    harness.report(report, args.out, indent=1)


if __name__ == "__main__":
    main()
