"""Emitters rendered per second at the tetrapod_paper set-up: fast path and differentiable path vs a naive loop.

Prints one JSON document. All three render the same emitters into the same 121×121 frames on this
machine in one run; ratios are against the naive one-FFT-per-emitter Python loop.

    python benchmarks/psf_render_speed.py [--emitters 300] [--threads N] [--out FILE]
"""

from __future__ import annotations

import torch

import harness
from deepsmlm.config import load_config, updated
from deepsmlm.optics.factory import build_pupil_psf, with_reference_psf
from deepsmlm.optics.psf import render, split_positions
from deepsmlm.optics.stack import StackPSF
from deepsmlm.simulation.emitters import sample_emitters


def naive_loop(psf, xyz, photons, frame, n_frames, h, w) -> torch.Tensor:
    """One pupil evaluation and one N×N FFT per emitter, added by slicing into a padded frame."""
    p = psf.patch_px
    out = torch.zeros(n_frames, h + 2 * p, w + 2 * p)
    row, col, offset = split_positions(xyz, psf.pixel_nm)
    for i in range(len(xyz)):
        patch = psf.patches(offset[i:i + 1], photons[i:i + 1])[0]
        r, c = int(row[i]) + p - p // 2, int(col[i]) + p - p // 2
        out[int(frame[i]), r:r + p, c:c + p] += patch
    return out[:, p:p + h, p:p + w]


def measure(patch_px: int, n_emitters: int) -> dict:
    """Render the same emitters three ways at the tetrapod_paper set-up with a given patch size."""
    # the scalar N = 203 grid (physics_fidelity: the rest)
    reference = with_reference_psf(load_config("tetrapod_paper"))
    cfg = updated(reference, {"psf.patch_px": patch_px, "emitters.count": (30, 30)})
    h, w = cfg.frame.height, cfg.frame.width
    em = sample_emitters(cfg.emitters, cfg.frame, max(1, n_emitters // 30), torch.Generator().manual_seed(0))
    n_frames, n = int(em.frame.max()) + 1, len(em)
    pupil = build_pupil_psf(cfg)
    t_build, fast = harness.best_seconds(
        lambda: StackPSF(pupil, *cfg.emitters.z_range_nm, cfg.psf.cache_z_step_nm, cache=False), 1)

    with torch.inference_mode():
        t_naive, ref = harness.best_seconds(
            lambda: naive_loop(pupil, em.xyz_nm, em.photons, em.frame, n_frames, h, w), 2)
        t_fast, img_fast = harness.best_seconds(
            lambda: render(fast, em.xyz_nm, em.photons, em.frame, n_frames, h, w), 3)

    learn = build_pupil_psf(cfg, learnable_mask=True)
    xyz = em.xyz_nm.clone().requires_grad_(True)

    def diff_step():
        learn.zero_grad()
        img = render(learn, xyz, em.photons, em.frame, n_frames, h, w)
        img.square().mean().backward()
        return img.detach()

    t_diff, img_diff = harness.best_seconds(diff_step, 2)
    rel = lambda a: float((a - ref).norm() / ref.norm())  # noqa: E731
    return {
        "patch_px": patch_px,
        "fft_px": fast.fft_px,
        "emitters": n,
        "naive_loop_emitters_per_s": n / t_naive,
        "fast_path_emitters_per_s": n / t_fast,
        "differentiable_with_backward_emitters_per_s": n / t_diff,
        "fast_vs_naive": t_naive / t_fast,
        "differentiable_vs_naive": t_naive / t_diff,
        "fast_path_cache_build_s": t_build,
        "fast_path_planes": len(fast.z_nm),
        "fast_path_rel_error_vs_full": rel(img_fast),
        "differentiable_rel_error_vs_naive": rel(img_diff),
    }


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--emitters", type=int, default=300)
    ap.add_argument("--patches", type=int, nargs="+", default=[121, 61], help="patch sizes to measure (odd px)")
    harness.add_threads(ap)
    args = ap.parse_args()
    runs = [measure(p, args.emitters) for p in args.patches]
    harness.report({
        "benchmark": "psf_render_speed",
        "setup": "tetrapod_paper: 121x121 frames, N=203 pupil grid, 30 emitters/frame, z -1.5..+2.5 um",
        "machine": harness.machine(),
        "runs": runs,
    }, args.out)


if __name__ == "__main__":
    main()
