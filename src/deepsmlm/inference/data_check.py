"""Does a stack fit the model? A cheap check of a few frames against the physics the model was trained on.

A network applied to data unlike its training data returns confident, wrong localizations, so before
localizing we measure, on up to ``SAMPLE_FRAMES`` frames spread over the stack (a central region of at
most ``REGION_PX``² pixels), in photons by the run's camera model:

- background level and noise per frame from the 10th and 25th percentiles of the pixels (spots only
  raise the upper quantiles): level = q25 + 0.674·s, s = (q25 − q10)/0.607. The level must lie within
  the trained range (background range, widened by a non-uniform modulation and by a baseline drawn per
  frame) ± ``LEVEL_TOL_NOISE`` noise σ; the noise must not exceed ``NOISE_RATIO_MAX`` × what the camera
  model predicts at that level (more noise than modelled: a different gain or camera; less is harmless).
- photons per spot: spots are the candidates of the classic fitter's detector (difference of Gaussians
  ≥ ``DETECTION_SIGMA`` noise σ); a spot's DoG peak over the DoG peak of the model's unit-photon PSF
  (over its z range, dyes, model-mismatch blur and sub-pixel offsets) bounds its photons from below
  (largest peak fraction) and above (smallest). The medians of both bounds over the spots must overlap
  the 0.1–99.9 % range of the trained photon distribution, widened by ``PHOTON_TOL``.
- spot width, for compact PSFs only (the fitted Gaussian σ of the model's PSF varies by less than
  ``COMPACT_RATIO`` over its z range and dyes): the median σ of the classic Gaussian MLE fit (which splits
  overlapping spots) must lie within the model PSF's fitted σ range widened by ``WIDTH_TOL``. Engineered
  3D PSFs (Tetrapod, learned masks) change shape over z by far more than a wrong pixel size would, so
  their width is not judged.

The tolerances were set on our own simulations of the shipped presets (8 frames, 3 seeds; epfl2013 at 1,
5.5 and 9 emitters/µm², the trained density range): default-2d spot σ 1.12–1.16 px (0.77–0.83 px at 150 nm
pixels; accepted 0.96–1.35); median photon lower bound 800–3,420 (≥ 7,740 at 10× photons; limit 4,760);
noise ≤ 1.35× the camera model's; background of the 3D presets ≤ 9 (tetrapod) and ≤ 58 (learned)
photons/px against limits of 41.5 and 118, ≥ 600 with 600 ADU added. The real EPFL 2013 and Tetrapod
stacks pass (σ 1.09 px, photons ≥ 1,460; background 16.8 photons/px). Engineered PSFs give a loose
photon bound (their peak changes 3× over z), so 10× photons there are not caught (median lower bound
22,000–40,000 against a limit of 67,000).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch.nn import functional as F

from deepsmlm.config import PhotonConfig, SimulationConfig
from deepsmlm.errors import UserInputError
from deepsmlm.inference.gaussian_fit import SIGMA_BOUNDS_PX
from deepsmlm.inference.gaussian_mle import BACKGROUND_SCALE, GaussianMLE, gaussian_kernel, smooth
from deepsmlm.io.images import ImageStack
from deepsmlm.localizations import pixel_centre_nm
from deepsmlm.optics.factory import build_dye_psfs, build_psf
from deepsmlm.physics.camera import Camera

SAMPLE_FRAMES = 8
REGION_PX = 256
Q_LOW, Q_HIGH = 0.10, 0.25
LEVEL_TOL_NOISE = 3.0
NOISE_RATIO_MAX = 2.0
PHOTON_QUANTILES = (0.001, 0.999)
PHOTON_TOL = 2.0
WIDTH_TOL = 1.15
COMPACT_RATIO = 1.5
DETECTION_SIGMA = 6.0  # the classic fitter's default detection threshold, whatever a run sets
MIN_SPOTS = 10  # fewer spots in the sample: photons and width are not judged
WIDTH_SPOTS = 100  # fit frames until this many spots are fitted
REF_PHOTONS, REF_BACKGROUND = 5000.0, 10.0  # the noiseless spot the model PSF's σ is fitted on
Z_SAMPLES = 11


@dataclass(frozen=True)
class DataStats:
    """What the sample of a stack shows, in photons of the run's camera model."""

    background: float  # photons/px, median over the sampled frames
    background_adu: float  # median pixel of the sample, ADU
    noise: float  # photons/px, std of background pixels
    noise_expected: float  # photons/px, the camera model's std at ``background``
    n_spots: int
    photons: tuple[float, float] | None  # median lower and upper bound of the photons per spot
    sigma_px: float | None  # median fitted Gaussian σ of spots (compact PSFs)


@dataclass(frozen=True)
class ModelExpectation:
    """What the model was trained on (``photons`` None: no trained range, as for the classic fitter)."""

    background: tuple[float, float]  # photons/px, the level in the network's input units
    photons: tuple[float, float] | None  # photons per emitter, 0.1–99.9 % of the trained distribution
    dog_peak: tuple[float, float] | None  # DoG peak of a unit-photon spot, smallest and largest
    sigma_px: tuple[float, float] | None  # fitted Gaussian σ of the PSF (None: not a compact PSF)


def sample_frames(stack: ImageStack) -> tuple[np.ndarray, tuple[slice, slice]]:
    """(F, h, w) float32 ADU: up to SAMPLE_FRAMES frames spread over the stack, its central region of
    at most REGION_PX² pixels; and that region's (rows, cols) slices."""
    n = len(stack)
    index = np.unique(np.linspace(0, n - 1, min(SAMPLE_FRAMES, n)).round().astype(int))
    rows, cols = (slice(max(0, (size - REGION_PX) // 2), max(0, (size - REGION_PX) // 2) + min(size, REGION_PX))
                  for size in stack.shape)
    frames = np.stack([stack[int(i)][rows, cols] for i in index]).astype(np.float32)
    return frames, (rows, cols)


def cropped_camera(camera: Camera, region: tuple[slice, slice]) -> Camera:
    """The camera restricted to a region of the frame (per-pixel sCMOS maps cropped; scalars kept)."""
    out = copy.deepcopy(camera)
    for name in ("adu_per_e", "offset", "read_std"):
        value = getattr(camera, name)
        if isinstance(value, torch.Tensor) and value.ndim == 2:
            setattr(out, name, value[region])
    return out


def noise_at(camera: Camera, level: float) -> float:
    """The camera model's noise std (photons/px) at a mean of ``level`` photons/px (median over sCMOS pixels)."""
    return float(camera.variance_photons(torch.tensor(max(level, 0.0))).sqrt().median())


def background_and_noise(photons: torch.Tensor) -> tuple[float, float]:
    """Median over frames of each frame's background level and noise std from its 10th/25th percentiles."""
    q = torch.quantile(photons.flatten(1).double(), torch.tensor([Q_LOW, Q_HIGH], dtype=torch.float64), dim=1)
    z_low, z_high = stats.norm.ppf(Q_LOW), stats.norm.ppf(Q_HIGH)
    noise = (q[1] - q[0]) / (z_high - z_low)
    level = q[1] - z_high * noise
    return float(level.median()), float(noise.median())


def dog_radius(sigma_px: float) -> int:
    """Half-width (px) of the detection filter's kernels for a PSF of σ px."""
    return math.ceil(3 * BACKGROUND_SCALE * sigma_px)


def dog(photons: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """The classic fitter's detection filter on (B, H, W) photons: G(σ) ∗ d − G(3σ) ∗ d."""
    radius = dog_radius(sigma_px)
    g1 = gaussian_kernel(sigma_px, radius, photons.dtype, photons.device)
    g2 = gaussian_kernel(BACKGROUND_SCALE * sigma_px, radius, photons.dtype, photons.device)
    return smooth(photons, g1) - smooth(photons, g2)


def photon_range(cfg: PhotonConfig) -> tuple[float, float]:
    """The 0.1 % and 99.9 % quantiles of a photon distribution (emitters/simulation ``sample_photons``)."""
    q = np.asarray(PHOTON_QUANTILES)
    if cfg.distribution == "gamma":
        lo, hi = stats.gamma.ppf(q, cfg.shape, scale=cfg.scale)
    elif cfg.distribution == "uniform":
        lo, hi = cfg.low + q * (cfg.high - cfg.low)
    elif cfg.distribution == "lognormal":
        lo, hi = np.exp(math.log(cfg.mean) - cfg.sigma**2 / 2 + cfg.sigma * stats.norm.ppf(q))
    else:
        lo = hi = cfg.low
    return float(lo), float(hi)


def trained_background(cfg: SimulationConfig, camera: Camera) -> tuple[float, float]:
    """Background level range (photons/px) of the training frames in the network's input units: the
    background range widened by its non-uniform modulation, shifted by a per-frame baseline draw around
    the baseline the camera model subtracts."""
    b0, b1 = cfg.background.photons_per_px
    a = cfg.background.nonuniform_amplitude
    lo, hi = b0 * (1 - a), b1 * (1 + a)
    if camera.baseline_span is not None:
        base0, base1 = camera.baseline_span
        per_photon = float(camera.adu_per_photon)
        lo, hi = lo + (base0 - camera.offset) / per_photon, hi + (base1 - camera.offset) / per_photon
    return lo, hi


def _model_psfs(cfg: SimulationConfig) -> list:
    return build_dye_psfs(cfg, fast=False) or [build_psf(cfg, fast=False)]


def _psf_patches(cfg: SimulationConfig) -> torch.Tensor:
    """(E, P, P) unit-photon patches of the model's PSF over its z range, dyes, blur range and sub-pixel
    offsets (centre of a pixel and its corner)."""
    z0, z1 = cfg.emitters.z_range_nm
    z = torch.linspace(z0, z1, Z_SAMPLES if z1 > z0 else 1)
    half = pixel_centre_nm(0, cfg.frame.pixel_size_nm)  # a pixel's corner from its centre
    blurs = sorted(set(cfg.psf.blur_sigma_px))
    grid = [(d, zz, b) for d in (0.0, half) for zz in z.tolist() for b in blurs]
    offsets = torch.tensor([[d, d, zz] for d, zz, _ in grid], dtype=torch.float32)
    blur = torch.tensor([b for *_, b in grid], dtype=torch.float32)
    with torch.no_grad():
        return torch.cat([psf.patches(offsets, torch.ones(len(grid)), blur if blur.any() else None).cpu()
                          for psf in _model_psfs(cfg)])


def model_expectation(cfg: SimulationConfig, camera: Camera, fitter: GaussianMLE, trained: bool
                      ) -> ModelExpectation:
    """The model's background range and, when its PSF can be built, its spot peak fractions and σ range.

    ``trained`` False (the classic fitter): no trained background or photon range; the background only
    has to be above the baseline."""
    background = trained_background(cfg, camera) if trained else (0.0, math.inf)
    photons = photon_range(cfg.emitters.photons) if trained else None
    try:
        patches = _psf_patches(cfg)
    except UserInputError:  # a mask file not at hand: the network runs without it, the PSF checks cannot
        return ModelExpectation(background, photons, None, None)
    pad = (dog_radius(fitter.sigma_px),) * 4
    peaks = dog(F.pad(patches.double(), pad), fitter.sigma_px).amax(dim=(-2, -1))
    sigma = psf_sigma_px(patches, fitter)
    compact = sigma.max() <= COMPACT_RATIO * sigma.min() and sigma.max() < SIGMA_BOUNDS_PX[1]
    return ModelExpectation(background, photons, (float(peaks.min()), float(peaks.max())),
                            (float(sigma.min()), float(sigma.max())) if compact else None)


def psf_sigma_px(patches: torch.Tensor, fitter: GaussianMLE) -> torch.Tensor:
    """(E,) σ (px) of the classic fitter's Gaussian on noiseless spots of the model PSF patches (E, P, P)."""
    p, c = fitter.box_px, patches.shape[-1] // 2
    h = min(p // 2, c)
    boxes = patches[:, c - h:c + h + 1, c - h:c + h + 1].double() * REF_PHOTONS + REF_BACKGROUND
    boxes = F.pad(boxes, (p // 2 - h,) * 4, value=REF_BACKGROUND)
    start = torch.tensor([0.0, 0.0, REF_PHOTONS, REF_BACKGROUND, fitter.sigma_px], dtype=torch.float64)
    return fitter.spot_fit.fit(boxes, torch.zeros_like(boxes), start.expand(len(boxes), -1))[0][:, -1]


def fitted_sigma_px(adu: torch.Tensor, fitter: GaussianMLE) -> float | None:
    """Median σ (px) of the classic fitter's spots in (F, H, W) ADU frames, fitted frame by frame until
    WIDTH_SPOTS spots are in; None below MIN_SPOTS."""
    sigmas: list[float] = []
    for frame in adu:
        sigmas.extend(fitter.localize(frame[None])["psf_sigma_nm"].tolist())
        if len(sigmas) >= WIDTH_SPOTS:
            break
    return float(np.median(sigmas)) / fitter.pixel_nm if len(sigmas) >= MIN_SPOTS else None


def measure(adu: torch.Tensor, fitter: GaussianMLE, expected: ModelExpectation) -> DataStats:
    """The statistics of (F, H, W) ADU frames under the fitter's camera model (module docstring)."""
    camera = fitter.camera
    photons = camera.adu_to_photons(adu)
    level, noise = background_and_noise(photons)
    f, r, c, _ = fitter.detect(photons)
    m = fitter.box_px // 2
    height, width = adu.shape[-2:]
    inside = (r >= m) & (r < height - m) & (c >= m) & (c < width - m)
    f, r, c = f[inside], r[inside], c[inside]
    judged = len(f) >= MIN_SPOTS
    bounds = sigma = None
    if judged and expected.dog_peak is not None:
        peak = dog(photons.double(), fitter.sigma_px)[f, r, c]
        low, high = expected.dog_peak
        bounds = (float((peak / high).median()), float((peak / low).median()))
    if judged and expected.sigma_px is not None:
        sigma = fitted_sigma_px(adu, fitter)
    return DataStats(level, float(adu.median()), noise, noise_at(camera, level), len(f), bounds, sigma)


def baseline_text(camera: Camera) -> str:
    """The baseline the camera model subtracts, for messages (ADU)."""
    if camera.baseline_subtracted:
        return "0 ADU (baseline-subtracted)"
    if isinstance(camera.offset, torch.Tensor):
        return "the sCMOS offset map"
    if camera.baseline_span is not None:
        return f"{camera.baseline_span[0]:g} … {camera.baseline_span[1]:g} ADU"
    return f"{camera.offset:g} ADU"


def _num(x: float) -> str:
    """A number to 3 significant digits without an exponent below a million (1.88e+04 → 18800)."""
    return f"{float(f'{x:.3g}'):g}"


def mismatch(data: DataStats, expected: ModelExpectation, camera: Camera, source: str, pixel_nm: float,
             pixel_declared: bool) -> str | None:
    """The first way the data do not fit the model, as a message with its override; None if they fit."""
    lo, hi = expected.background
    force = "or run anyway with --force"
    camera_fix = f"give the data's camera with --config CONFIG, {force}"
    level = f"background {_num(data.background)} photons/px (median {_num(data.background_adu)} ADU)"
    base = baseline_text(camera)
    if data.background < lo - LEVEL_TOL_NOISE * noise_at(camera, lo):
        if data.background < -LEVEL_TOL_NOISE * noise_at(camera, 0.0) or not math.isfinite(hi):
            return f"{level} lies below the baseline {base} of {source}'s camera; {camera_fix}"
        return f"{level} lies below the {_num(lo)} … {_num(hi)} photons/px {source} was trained on; {camera_fix}"
    if data.background > hi + LEVEL_TOL_NOISE * noise_at(camera, hi):
        return (f"{level} lies above the {_num(lo)} … {_num(hi)} photons/px over a baseline of {base} that "
                f"{source} was trained on (frames not baseline-subtracted? another camera?); {camera_fix}")
    if data.noise > NOISE_RATIO_MAX * data.noise_expected:
        return (f"background noise {_num(data.noise)} photons/px is {data.noise / data.noise_expected:.1f}× the "
                f"{_num(data.noise_expected)} photons/px of {source}'s camera at that background (at most "
                f"{NOISE_RATIO_MAX:g}×); {camera_fix}")
    if data.sigma_px is not None and expected.sigma_px is not None:
        s0, s1 = expected.sigma_px[0] / WIDTH_TOL, expected.sigma_px[1] * WIDTH_TOL
        if not s0 <= data.sigma_px <= s1:
            fix = force if pixel_declared else \
                f"if the pixels are not {pixel_nm:g} nm, declare their size with --pixel-size-nm, {force}"
            return (f"spots are {data.sigma_px:.2f} px wide (Gaussian σ), outside the {s0:.2f} … {s1:.2f} px of "
                    f"{source}'s PSF at {pixel_nm:g} nm pixels; {fix}")
    if data.photons is not None and expected.photons is not None:
        p0, p1 = expected.photons
        least, most = data.photons
        if least > PHOTON_TOL * p1 or most < p0 / PHOTON_TOL:
            side = f"more than {PHOTON_TOL:g}× " if least > PHOTON_TOL * p1 else f"less than 1/{PHOTON_TOL:g} of "
            return (f"spots carry {_num(least)} … {_num(most)} photons (median bounds over {data.n_spots} spots), "
                    f"{side}the {_num(p0)} … {_num(p1)} photons per emitter {source} was trained on; {camera_fix}")
    return None


def check_data(stack: ImageStack, cfg: SimulationConfig, source: str, *, psf_sigma_nm: float, trained: bool = True,
               pixel_declared: bool = True) -> DataStats | None:
    """Raise a one-line UserInputError naming the stack when its sampled frames do not fit ``cfg`` (module
    docstring); return what was measured (None when the sample holds NaN/inf pixels: the stream reports
    those with their frame). ``trained`` False: ``cfg`` describes the data for the classic fitter, so
    only the camera baseline, the noise and the PSF width are checked. ``psf_sigma_nm``: the Gaussian σ
    (nm) the classic fitter takes for the model's PSF. ``pixel_declared``: the pixel size came from the
    file or the user (else the model's was assumed)."""
    frames, region = sample_frames(stack)
    if not np.isfinite(frames).all():
        return None
    camera = cropped_camera(Camera(cfg.camera, stack.shape), region)
    fitter = GaussianMLE(camera, cfg.frame.pixel_size_nm, psf_sigma_nm, DETECTION_SIGMA)
    expected = model_expectation(cfg, camera, fitter, trained)
    with torch.inference_mode():
        data = measure(torch.from_numpy(frames), fitter, expected)
    problem = mismatch(data, expected, camera, source, cfg.frame.pixel_size_nm, pixel_declared)
    if problem is not None:
        raise UserInputError(f"{stack.path}: {problem}")
    return data
