"""`deepsmlm.calibrate_camera`: offset, gain and read noise of a camera (and an sCMOS's per-pixel maps) by the
photon-transfer method (:mod:`deepsmlm.calibration.camera`), as the ``camera:`` section of a config."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import yaml

from deepsmlm.api.inputs import ConfigLike, Frames, as_config, opened
from deepsmlm.calibration.camera import (EXCESS_NOISE_SQ, QUIET_PASSES, Moments, PixelGains, binned_points,
                                         calibrated_camera, check_unclipped, dark_level, fit_line, held_scale,
                                         movie_dark_mode, quiet_moments, stack_moments)
from deepsmlm.config import CameraConfig, SimulationConfig, dump_config, updated
from deepsmlm.errors import UserInputError
from deepsmlm.io.atomic import write_atomic, write_text_atomic
from deepsmlm.io.images import ARRAY, ImageStack
from deepsmlm.io.outputs import check_output_folder
from deepsmlm.physics.camera import ROUNDING_VARIANCE
from deepsmlm.plots import mean_variance_plot
from deepsmlm.progress import ProgressCallback, ProgressEvent, ignore

CAMERA_YAML, PLOT, MAPS = "camera.yaml", "mean_variance.png", "scmos_maps.npz"
CAMERA_TYPES = tuple(EXCESS_NOISE_SQ)
MIN_LEVEL_SPREAD = 0.2  # lit signal range / highest signal the gain fit needs (one level gives ~0)


def _check_request(dark: Frames | None, flats: Sequence[Frames], movie: Frames | None, camera_type: str) -> None:
    if camera_type not in CAMERA_TYPES:
        raise UserInputError(f"--type {camera_type!r}: choose one of {', '.join(CAMERA_TYPES)}")
    if camera_type == "scmos" and (dark is None or not flats):
        raise UserInputError("scmos: the per-pixel maps need a dark stack (--dark) and flats (--flat)")
    if not flats and movie is None:
        raise UserInputError("no frames to measure the gain: give flat stacks at two or more light levels "
                             "(--flat) or a movie (--movie)")
    if dark is None and movie is None:
        raise UserInputError("no frames to measure the offset: give dark frames (--dark) or a movie with unlit "
                             "pixels (--movie)")


def _label(stack: ImageStack, role: str) -> str:
    """How messages name a stack: its path, or its option (and number, for flats) when given as an array."""
    return f"{role} ({ARRAY})" if stack.path == ARRAY else str(stack.path)


def _read(stacks: list[tuple[str, str, ImageStack]], progress: ProgressCallback) -> dict[str, list[Moments]]:
    """Each stack's moments by role, after checking that every frame has one shape."""
    shape = stacks[0][2].shape
    for _, label, stack in stacks:
        if stack.shape != shape:
            raise UserInputError(f"{label}: frames of {stack.shape[0]}×{stack.shape[1]} px, but "
                                 f"{stacks[0][1]} has {shape[0]}×{shape[1]}; all stacks must come from one "
                                 f"camera region")
    total = sum(s.n_frames * (1 + QUIET_PASSES * (role == "--movie")) for role, _, s in stacks)
    done = 0
    read: dict[str, list[Moments]] = {"--dark": [], "--movie": [], "--flat": []}
    for role, label, stack in stacks:
        def step(k: int, label: str = label) -> None:
            nonlocal done
            done += k
            progress(ProgressEvent("calibrating camera", done, total, label))

        moments = stack_moments(stack, label, step)
        check_unclipped(moments, role.lstrip("-"))
        if role == "--movie":
            moments = quiet_moments(stack, moments, step)
        read[role].append(moments)
    return read


def _offset(read: dict[str, list[Moments]]) -> tuple[float, float | None, str]:
    """(offset ADU, read variance ADU² or None when the fit must give it, where the offset came from)."""
    if read["--dark"]:
        offset, read_var = dark_level(read["--dark"][0])
        return offset, read_var, "dark frames"
    return movie_dark_mode(read["--movie"][0]), None, "the movie's zero-signal peak"


def _points(read: dict[str, list[Moments]], offset: float, read_var: float | None) -> dict[str, np.ndarray]:
    """Binned (mean, variance, se) rows per stack; one-line errors for a flat no brighter than the offset
    or lit data at a single light level."""
    noise = np.sqrt((read_var or 0.0) + ROUNDING_VARIANCE)
    for flat in read["--flat"]:
        if flat.signal - offset <= 3 * noise:
            raise UserInputError(f"{flat.label}: the flat (median {flat.signal:.1f} ADU) is no brighter than the "
                                 f"dark level ({offset:.1f} ADU); record it with light on the camera")
    points = {m.label: binned_points(m.mean, m.diff_variance) for ms in read.values() for m in ms}
    lit = np.concatenate([p[:, 0] for p in points.values()]) - offset
    lit = lit[lit > 3 * noise]
    if not len(lit) or lit.max() - lit.min() < MIN_LEVEL_SPREAD * lit.max():
        level = f" ({np.median(lit):.0f} ADU above the offset)" if len(lit) else ""
        raise UserInputError(f"all lit pixels are at one light level{level}: the gain fit needs two or more, "
                             f"e.g. flats at 2× and 4× the light")
    return points


def _write(folder: Path, cfg: SimulationConfig | None, cam: CameraConfig, result: dict, points: dict) -> None:
    """camera.yaml (the base config with ``cam``, or a ``camera:`` section), mean_variance.png and the
    sCMOS maps."""
    maps = result.get("maps")
    if maps is not None:
        def save(p: Path) -> None:
            with open(p, "wb") as fh:
                np.savez(fh, **{k: v.astype(np.float32) for k, v in maps.items()})

        write_atomic(folder / MAPS, save)
    text = (dump_config(updated(cfg, {"camera": cam}, "camera calibration")) if cfg is not None
            else yaml.safe_dump({"camera": cam.model_dump(mode="json")}, sort_keys=False))
    write_text_atomic(folder / CAMERA_YAML, text)
    title = (f"{cam.type}: {result['gain_adu_per_e']:.4g} ADU/e⁻ (slope {result['slope']:.4g} = F² "
             f"{result['excess_noise_factor_sq']:g} × gain), offset {result['offset_adu']:.1f} ADU, read noise "
             f"{result['read_noise_adu']:.3g} ADU")
    mean_variance_plot(points, result["slope"], result["intercept"], result["offset_adu"], folder / PLOT, title)


def _read_inputs(dark: Frames | None, flats: Sequence[Frames], movie: Frames | None,
                 progress: ProgressCallback) -> dict[str, list[Moments]]:
    """Open every stack (a file opened here is closed after), then stream each into its moments."""
    sources = [("--dark", "--dark", dark)] * (dark is not None) + [("--movie", "--movie", movie)] * (
        movie is not None) + [("--flat", f"--flat #{k + 1}", f) for k, f in enumerate(flats)]
    with ExitStack() as files:
        stacks = [(role, files.enter_context(opened(frames)), name) for role, name, frames in sources]
        return _read([(role, _label(s, name), s) for role, s, name in stacks], progress)


def _measure(read: dict[str, list[Moments]], camera_type: str, qe: float) -> tuple[dict, dict[str, np.ndarray]]:
    """The figures :func:`calibrate_camera` returns (but ``camera``), and the binned points per stack."""
    offset, read_var, offset_from = _offset(read)
    points = _points(read, offset, read_var)
    slope, intercept = fit_line(np.concatenate(list(points.values())))
    if slope <= 0:
        raise UserInputError("the variance does not grow with the signal: check the flats are lit and unsaturated")
    gain = slope / EXCESS_NOISE_SQ[camera_type]
    if read_var is None:
        read_var = max(slope * offset + intercept - ROUNDING_VARIANCE, 0.0)
    result = {"gain_adu_per_e": gain, "adu_per_photon": gain * qe, "offset_adu": offset,
              "read_noise_adu": float(np.sqrt(read_var)), "excess_noise_factor_sq": EXCESS_NOISE_SQ[camera_type],
              "offset_from": offset_from, "slope": slope, "intercept": intercept}
    if camera_type == "scmos":
        gains = PixelGains(read["--dark"][0])
        for flat in read["--flat"]:
            gains.add(flat)
        result["maps"], result["unmeasured_pixels"] = gains.maps()
    return result, points


def calibrate_camera(dark: Frames | None = None, flats: Sequence[Frames] = (), movie: Frames | None = None,
                     camera_type: str | None = None, base_config: ConfigLike | None = None,
                     out: str | os.PathLike | None = None, *, em_gain: float | None = None,
                     e_per_adu: float | None = None, progress: ProgressCallback | None = None) -> dict:
    """Offset, gain and read noise of a camera by the photon-transfer (mean–variance) method.

    ``dark``: frames without light (the offset, the read noise; for ``scmos`` the per-pixel offset and
    variance); ``flats``: stacks of even light at two or more levels (the gain; for ``scmos`` per pixel);
    ``movie``: a raw movie, whose per-pixel temporal mean/variance pairs give the gain and, without dark
    frames, whose zero-signal peak gives the offset (it needs unlit pixels). ``camera_type``: emccd, ccd or
    scmos (default: the base config's, else emccd). The data fix an EMCCD's G/(e⁻ per ADU) only: ``em_gain``
    (default the base's) or ``e_per_adu`` gives the other. QE is the base's (not measurable without a
    calibrated source). With ``out`` a folder gets camera.yaml (the base config with the measured camera, or
    a ``camera:`` section), mean_variance.png and, for scmos, scmos_maps.npz.

    Returns ``camera`` (CameraConfig fields), ``gain_adu_per_e``, ``adu_per_photon`` (QE·gain),
    ``offset_adu``, ``read_noise_adu``, ``read_noise_e``, ``excess_noise_factor_sq``, ``offset_from``, the
    fitted ``slope`` (ADU) and ``intercept`` (ADU²) of variance against mean, and for scmos ``maps``
    (offset ADU, variance ADU², gain ADU/e⁻ arrays) and ``unmeasured_pixels``.
    """
    cfg = as_config(base_config) if base_config is not None else None
    base = cfg.camera if cfg is not None else CameraConfig()
    camera_type = camera_type or (base.type if cfg is not None else "emccd")
    _check_request(dark, flats, movie, camera_type)
    held = held_scale(base, camera_type, em_gain, e_per_adu)
    folder = Path(out) if out is not None else None
    if folder is not None:
        names = [CAMERA_YAML, PLOT] + ([MAPS] if camera_type == "scmos" else [])
        inputs = {"--dark": dark, "--movie": movie, "--config": base_config,
                  **{f"--flat #{k + 1}": f for k, f in enumerate(flats)}}
        check_output_folder(folder, names, {k: v for k, v in inputs.items() if isinstance(v, (str, os.PathLike))})
    result, points = _measure(_read_inputs(dark, flats, movie, progress or ignore), camera_type, base.qe)
    scmos = "maps" in result
    cam = calibrated_camera(base, camera_type, result["gain_adu_per_e"], result["offset_adu"],
                            result["read_noise_adu"] ** 2, held, MAPS if scmos and folder is not None else None)
    result["read_noise_e"] = cam.read_noise_e
    if folder is not None:
        _write(folder, cfg, cam, result, points)
        cam = updated(cam, {"scmos_maps": str(folder / MAPS)} if scmos else {}, "camera calibration")
    result["camera"] = cam.model_dump(mode="json")
    return result
