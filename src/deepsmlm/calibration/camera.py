"""Camera calibration by the photon-transfer (mean–variance) method, from dark frames, flat stacks or a movie.

A pixel recording μ photoelectrons per frame on average reads, in ADU (physics/camera.py),

    mean = o + g·μ,     var = F²·g·(mean − o) + σ_r² + 1/12

with o the offset (baseline, ADU), g the gain in ADU per photoelectron (EM gain included: g = G/(e⁻ per ADU)),
F² the excess noise factor squared (2 for an EMCCD's EM register, 1 otherwise), σ_r the read noise (ADU) and
1/12 ADU² the rounding to whole ADU. Temporal variance against temporal mean is therefore a line of slope
F²·g; what the data identify is g, so for an EMCCD only the product G/(e⁻ per ADU): one of the two must be
known. QE is not separable from the photon flux without a calibrated light source; it stays as given.

Every stack is streamed in chunks into per-pixel running sums (memory flat in the number of frames):
:class:`Moments` holds the per-pixel temporal mean, variance and successive-difference variance (half the
mean squared difference of successive frames, blind to slow drifts: a wandering baseline or lamp, bleaching
background, a bead stack's focus scan), a histogram of whole-ADU values and the fraction of clipped
samples. A movie is read again (:func:`quiet_moments`) leaving out, per pixel, the frames an emitter lights.
Per-pixel (mean, difference variance) pairs are grouped into equal-count bins of their neighbours' mean,
outlier pixels (hot pixels, leftover emitters) rejected by a median/MAD clip, and a line fitted to the bin
averages by robust (soft-L1) weighted least squares. On the shared EPFL 2016 bead stacks (focus scans, no
dark frames) this gives 6.58, 6.51 and 6.69 ADU/e⁻ (2D, AS, DH) against the nominal 300/45 = 6.67.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import convolve, maximum_filter1d
from scipy.optimize import curve_fit, least_squares

from deepsmlm.config import CameraConfig, updated
from deepsmlm.errors import UserInputError
from deepsmlm.io.images import ImageStack, check_finite
from deepsmlm.physics.camera import ADU_MAX, ROUNDING_VARIANCE

EXCESS_NOISE_SQ = {"emccd": 2.0, "ccd": 1.0, "scmos": 1.0}  # F²: Gamma EM register doubles the shot noise
BINS_PER_STACK = 16
CHUNK_PIXELS = 1 << 22  # pixels read at a time (32 MiB of float64)
MAX_CLIPPED = 1e-3  # fraction of samples allowed at the ADU ceiling (or at 0) before the stack is refused
MIN_DARK_MASS = 1e-3  # fraction of a movie's samples the zero-signal peak must hold
QUIET_SCORE = 3.0  # neighbours' summed z-score (in standard deviations) above which a movie frame is left out
QUIET_PASSES = 3  # passes over a movie that leave out its emitters (3 reach < 1 % at 0.5 emitters/µm²)
_HIST_BINS = int(ADU_MAX) + 1


@dataclass
class Moments:
    """Per-pixel temporal statistics of one stack, (H, W) float64 arrays in ADU / ADU².

    ``diff_variance`` is Σ(x_t − x_{t−1})²/(2(n − 1)), the white-noise variance without slow trends;
    ``histogram`` counts samples per whole ADU (0 … 65535); ``saturated`` and ``zeros`` are the fractions of
    samples at the ceiling of the pixel type (65535 for floats) and at 0.
    """

    label: str
    n: int
    mean: np.ndarray
    variance: np.ndarray
    diff_variance: np.ndarray
    histogram: np.ndarray
    saturated: float
    zeros: float

    @property
    def signal(self) -> float:
        """Median over pixels of the temporal mean, ADU."""
        return float(np.median(self.mean))


def _ceiling(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else ADU_MAX


def stack_moments(stack: ImageStack, label: str, on_frames: Callable[[int], None] | None = None) -> Moments:
    """Stream ``stack`` once into :class:`Moments` (shifted running sums, so no cancellation at high means);
    ``on_frames(k)`` hears of each chunk of k frames. One-line error for fewer than 2 frames or NaN/inf."""
    n, (h, w) = stack.n_frames, stack.shape
    if n < 2:
        raise UserInputError(f"{label}: {n} frame; the temporal variance needs at least 2 (ideally 50 or more)")
    ceiling = _ceiling(stack.dtype)
    shift = last = None
    s1, s2, sd = np.zeros((h, w)), np.zeros((h, w)), np.zeros((h, w))
    hist = np.zeros(_HIST_BINS, np.int64)
    high = low = 0
    for start, chunk in stack.iter_chunks(max(1, CHUNK_PIXELS // (h * w))):
        check_finite(chunk, label, start)
        x = chunk.astype(np.float64)
        if shift is None:
            shift = last = x[0].copy()
        d = x - shift
        s1 += d.sum(axis=0)
        s2 += (d * d).sum(axis=0)
        steps = np.diff(np.concatenate([last[None], x]), axis=0)
        sd += (steps * steps).sum(axis=0)
        last = x[-1]
        hist += np.bincount(np.clip(np.rint(x), 0, ADU_MAX).astype(np.int64).ravel(), minlength=_HIST_BINS)
        high += int((x >= ceiling).sum())
        low += int((x <= 0).sum())
        if on_frames is not None:
            on_frames(len(x))
    variance = np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1)
    return Moments(label, n, shift + s1 / n, variance, sd / (2 * (n - 1)), hist, high / (n * h * w),
                   low / (n * h * w))


def check_unclipped(m: Moments, role: str) -> None:
    """Refuse a stack whose samples pile up at the ADU ceiling (saturated) or at 0 (baseline removed and
    clipped): both cut the noise and bias the variance."""
    if m.saturated > MAX_CLIPPED:
        raise UserInputError(f"{m.label}: {100 * m.saturated:.2g} % of the {role}'s samples are saturated "
                             f"(at the camera's ceiling); record it with less light")
    if m.zeros > MAX_CLIPPED:
        raise UserInputError(f"{m.label}: {100 * m.zeros:.2g} % of the {role}'s samples are 0 (baseline "
                             f"subtracted and clipped?); calibrate on raw frames")


def dark_level(dark: Moments) -> tuple[float, float]:
    """(offset ADU, read-noise variance ADU²) of a dark stack: the median over pixels of the temporal mean
    (robust to hot pixels) and the mean successive-difference variance (blind to a drifting baseline) less
    the rounding's 1/12 ADU²."""
    return dark.signal, max(float(dark.diff_variance.mean()) - ROUNDING_VARIANCE, 0.0)


def _quiet_pass(stack: ImageStack, reference: Moments, on_frames: Callable[[int], None] | None) -> Moments:
    """One pass of :func:`quiet_moments`, z-scores against ``reference``'s mean and ``diff_variance``."""
    ring = np.ones((1, 3, 3)) / np.sqrt(8.0)
    ring[0, 1, 1] = 0.0
    centre = np.nan_to_num(reference.mean)
    scale = np.sqrt(np.maximum(np.nan_to_num(reference.diff_variance, nan=np.inf), 1e-12))
    count, pairs, s1, s2, sd = (np.zeros_like(centre) for _ in range(5))
    last = last_quiet = None
    h, w = stack.shape
    for _, chunk in stack.iter_chunks(max(1, CHUNK_PIXELS // (h * w))):
        d = chunk.astype(np.float64) - centre
        quiet = convolve(d / scale, ring, mode="mirror") < QUIET_SCORE
        held, held_quiet = (d, quiet) if last is None else (np.concatenate([last[None], d]),
                                                            np.concatenate([last_quiet[None], quiet]))
        both = held_quiet[1:] & held_quiet[:-1]
        sd += np.where(both, np.diff(held, axis=0) ** 2, 0.0).sum(axis=0)
        pairs += both.sum(axis=0)
        last, last_quiet = d[-1], quiet[-1]
        d = np.where(quiet, d, 0.0)
        count += quiet.sum(axis=0)
        s1 += d.sum(axis=0)
        s2 += (d * d).sum(axis=0)
        if on_frames is not None:
            on_frames(len(chunk))
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = np.where(count > 1, (s2 - s1 * s1 / count) / (count - 1), np.nan)
        diff_variance = np.where(pairs > 0, sd / (2 * pairs), np.nan)
        mean = centre + s1 / count
    return replace(reference, n=int(count.min()), mean=mean, variance=variance, diff_variance=diff_variance)


def quiet_moments(stack: ImageStack, first: Moments, on_frames: Callable[[int], None] | None = None) -> Moments:
    """A movie's per-pixel temporal statistics over the frames in which the pixel's eight neighbours are
    quiet: their summed z-score is below :data:`QUIET_SCORE` (``diff_variance`` over pairs of successive
    quiet frames). Emitters light several pixels, so a frame with one over or near the pixel is left out;
    the choice never looks at the pixel's own value (camera noise is independent between pixels), so its
    noise statistics stay unbiased. The z-scores start from the first pass and are sharpened by
    :data:`QUIET_PASSES` passes, each against the previous one (dense emitters inflate the first pass)."""
    reference = first
    for _ in range(QUIET_PASSES):
        reference = _quiet_pass(stack, reference, on_frames)
    return reference


def _gaussian(x: np.ndarray, a: float, mu: float, sigma: float) -> np.ndarray:
    return a * np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def movie_dark_mode(movie: Moments) -> float:
    """Offset (ADU) of a movie without dark frames: the centre of the lowest peak of its value histogram.

    The zero-signal level is where pixels or frames that caught no photoelectron pile up (unlit margins or
    masked pixels; an EMCCD at low light, whose zero-electron events sit exactly at the baseline). Only read
    noise widens that peak on its low side (photoelectrons add signal, never remove it), so a Gaussian is
    fitted to the peak's low half. The mode is unbiased, unlike the per-pixel temporal minima, which sit
    ≈ σ_r·√(2 ln n) below the offset and drift with the frame count. A movie in which every pixel is lit
    has no zero-signal peak; its lowest peak is then the dimmest pixels' level and too high: record dark
    frames for such data.
    """
    hist = movie.histogram.astype(np.float64)
    smooth = np.convolve(hist, np.ones(3) / 3.0, mode="same")
    total = hist.sum()
    mass = np.convolve(hist, np.ones(7), mode="same")
    peaks = np.flatnonzero((smooth == maximum_filter1d(smooth, 11)) & (mass >= MIN_DARK_MASS * total))
    if not len(peaks):
        raise UserInputError(f"{movie.label}: no zero-signal peak in the movie's values; give dark frames")
    p = int(peaks[0])
    below = np.flatnonzero(smooth[:p] < 0.5 * smooth[p])
    half_width = p - below[-1] if len(below) else 1
    sigma0 = max(half_width / 1.1774, 0.5)
    lo = max(0, int(p - 4 * sigma0) - 1)
    x = np.arange(lo, p + 2, dtype=np.float64)
    try:
        (_, mu, _), _ = curve_fit(_gaussian, x, hist[lo:p + 2], p0=(hist[p], p, sigma0), maxfev=2000)
    except RuntimeError:
        raise UserInputError(f"{movie.label}: the movie's zero-signal peak cannot be fitted; give dark frames") from None
    return float(mu) if abs(mu - p) < 3 * sigma0 + 1 else float(p)


def neighbour_mean(mean: np.ndarray) -> np.ndarray:
    """Mean of each pixel's four neighbours (mirrored at the border), without the pixel itself: a key for
    the pixel's light level that is independent of its own noise."""
    return convolve(mean, np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]) / 4.0, mode="mirror")


def binned_points(mean: np.ndarray, variance: np.ndarray, bins: int = BINS_PER_STACK) -> np.ndarray:
    """(K, 3) rows (mean ADU, variance ADU², standard error ADU²) of equal-count bins of pixels.

    Pixels are sorted by their neighbours' mean, not their own: the sample mean and variance of a skewed
    (EMCCD) pixel are correlated, so sorting on the pixel's own mean would tilt the line within each level.
    In each bin, pixels over 4 robust standard deviations (1.4826·MAD) from the median variance are dropped
    (hot pixels, pixels an emitter blinked on).
    """
    key = neighbour_mean(mean)
    measured = np.flatnonzero(np.isfinite(key) & np.isfinite(variance))
    order = measured[np.argsort(key.flat[measured])]
    rows = []
    for group in np.array_split(order, min(bins, max(1, order.size // 8))):
        m, v = mean.flat[group], variance.flat[group]
        med = np.median(v)
        spread = 1.4826 * np.median(np.abs(v - med))
        keep = np.abs(v - med) <= 4 * spread if spread > 0 else np.ones(v.shape, bool)
        m, v = m[keep], v[keep]
        se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else abs(float(v[0]))
        rows.append((m.mean(), v.mean(), max(se, 1e-6 * max(abs(v.mean()), 1.0))))
    return np.asarray(rows)


def fit_line(points: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of variance = slope·mean + intercept over (mean, variance, se) rows: weighted
    least squares started from the linear solution, then a soft-L1 loss so stray bins do not pull it."""
    m, v, se = points.T
    start = np.polyfit(m, v, 1, w=1.0 / se)
    fit = least_squares(lambda p: (p[0] * m + p[1] - v) / se, start, loss="soft_l1", f_scale=3.0)
    return float(fit.x[0]), float(fit.x[1])


class PixelGains:
    """Per-pixel gain (ADU/e⁻) of an sCMOS from a dark stack and flats (plain temporal variances, the most
    efficient estimate for a per-pixel figure from a stable source): for each pixel the slope through the
    origin of (variance − dark variance) against (mean − dark mean) over the flats, each flat weighted by the
    inverse variance of its sample variance, (n − 1)/(2·var²), with the flat's median variance for var (a
    pixel's own would weigh its noise and bias the slope low)."""

    def __init__(self, dark: Moments):
        self.dark = dark
        self._xy = np.zeros_like(dark.mean)
        self._xx = np.zeros_like(dark.mean)

    def add(self, flat: Moments) -> None:
        x = flat.mean - self.dark.mean
        y = flat.variance - self.dark.variance
        w = (flat.n - 1) / (2.0 * max(float(np.median(flat.variance)), 1e-12) ** 2)
        self._xy += w * x * y
        self._xx += w * x * x

    def maps(self) -> tuple[dict[str, np.ndarray], int]:
        """({'offset' ADU, 'variance' ADU², 'gain' ADU/e⁻} maps as the camera reads them, the number of pixels
        whose gain could not be measured (no signal, non-positive slope), set to the median gain)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = self._xy / self._xx
        bad = ~(np.isfinite(gain) & (gain > 0))
        if bad.all():
            raise UserInputError(f"{self.dark.label}: no pixel's variance grows with its signal; no sCMOS gain")
        gain[bad] = np.median(gain[~bad])
        variance = np.maximum(self.dark.variance - ROUNDING_VARIANCE, 0.0)
        return {"offset": self.dark.mean.copy(), "variance": variance, "gain": gain}, int(bad.sum())


def held_scale(base: CameraConfig, camera_type: str, em_gain: float | None = None,
               e_per_adu: float | None = None) -> tuple[str, float]:
    """The known half of the measured gain G/(e⁻ per ADU): ('em_gain', G) or ('e_per_adu', e⁻/ADU).

    An EMCCD needs ``em_gain`` or ``e_per_adu`` (default: the base's EM gain when > 1); other cameras have
    G = 1, so their e⁻ per ADU is what is measured.
    """
    if em_gain is not None and e_per_adu is not None:
        raise UserInputError("give the EM gain or the e⁻ per ADU, not both: the data fix their ratio")
    if camera_type != "emccd":
        if em_gain is not None or e_per_adu is not None:
            raise UserInputError(f"{camera_type}: the EM gain / e⁻ per ADU are for an EMCCD; a {camera_type}'s "
                                 f"e⁻ per ADU is what is measured")
        return "em_gain", 1.0
    if e_per_adu is not None:
        if not e_per_adu > 0:
            raise UserInputError(f"--e-per-adu {e_per_adu:g}: must be positive")
        return "e_per_adu", e_per_adu
    em_gain = em_gain if em_gain is not None else base.em_gain
    if not em_gain > 1.0:
        raise UserInputError("EMCCD: give the EM gain the frames were recorded with (--em-gain, > 1) or its "
                             "e⁻ per ADU (--e-per-adu); the data fix only their ratio")
    return "em_gain", em_gain


def calibrated_camera(base: CameraConfig, camera_type: str, gain: float, offset: float, read_variance: float,
                      held: tuple[str, float], scmos_maps: str | None = None) -> CameraConfig:
    """``base`` with the measured gain (ADU/e⁻), offset (ADU) and read variance (ADU²) in its fields, the EM
    gain and e⁻ per ADU split by ``held`` (:func:`held_scale`). QE, spurious charge, ``baseline_subtracted``
    and the read-noise map length are the base's (not measured here)."""
    name, value = held
    em_gain, e_per_adu = (value, value / gain) if name == "em_gain" else (gain * value, value)
    changes = {"type": camera_type, "em_gain": em_gain, "e_per_adu": e_per_adu, "baseline_adu": offset,
               "read_noise_e": float(np.sqrt(read_variance)) * e_per_adu, "scmos_maps": scmos_maps}
    return updated(base, changes, "camera calibration")
