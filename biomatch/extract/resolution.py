"""Stage 0: the stated resolution, checked against the image's ridge period (or estimated from it).

An image given with the wrong dpi is resampled to the wrong scale: its ridges fall outside the
periods the later stages search (5-15 px at 500 dpi) and the template comes out empty, silently.
The distance between ridges of human fingers is known in millimetres, so the ridge period
measured on the image's own pixel grid tells the resolution::

    estimated dpi = period_px * 25.4 / ridge_period_typical_mm

Measuring the period without knowing the scale (short-time Fourier analysis, as in Chikkerur,
Cartwright & Govindaraju, "Fingerprint enhancement using STFT analysis", Pattern Recognition 40,
2007): 32 x 32 Hann windows, half overlapping, over a small pyramid of the image (/1, /2, /4, /8,
and x2 when the ridges are finer than 6 px; at most 192 x 192 central pixels per level).  Each
window's strongest spectral peak gives a period, and the share of the window's energy in that peak
a periodicity score (a patch of parallel ridges: 0.4-0.9; faces, text, blank paper: below 0.4 in
99% of windows).  The level at which the most windows are periodic gives the estimate: the
score-weighted median of their periods.  Windows vote by count, not by energy, so that a
high-contrast distractor (a ruler, printed text, an obliterated area) does not outvote faint
ridges.  About 2 ms CPU for a 388 x 374 image, whatever the stated dpi.

Before a stated dpi is refused, the estimate is confirmed by the extractor's own ridge-frequency
stage (:func:`~biomatch.extract.frequency.ridge_period`, an independent method: autocorrelation of
the oriented ridge signature) run on the image resampled at the estimated resolution: it must find a
periodic ridge pattern over at least ``min_ridge_fraction`` of the foreground, with a median
period that agrees with the estimate.  Its period (refined) is the one reported.  So the check only
costs the estimate when the stated dpi is plausible, and it never refuses an image on the word of
one estimator alone.

Images without a measurable ridge pattern (blank, uniform, faces, text) give no estimate: the
check passes them on to the extractor, which returns an empty template as before; ``dpi="auto"``
then falls back to ``ResolutionParams.fallback_dpi`` (500, the usual fingerprint resolution).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ResolutionError, invalid
from ..params import WORKING_DPI, ExtractionParams
from ..imaging.limits import MAX_DPI, MIN_DPI

__all__ = ["ResolutionParams", "ResolutionEstimate", "estimate_resolution", "check_resolution",
           "auto_dpi", "native_ridge_period"]

log = logging.getLogger(__name__)

MM_PER_INCH = 25.4
# Short-time Fourier analysis (see the module docstring); internal constants, not tunables.
_WINDOW_PX = 32
_STEP_PX = 16
_LEVEL_SIDE_PX = 192  # windows per level: at most 11 x 11
_LEVELS = (0, 1, 2, 3, -1)  # /1 ... /8, then x2: periods of 1.1-102 native px (the 100-2000 dpi range)
_FINE_PERIOD_PX = 6.0
_MIN_CYCLES = 2.5  # a peak needs >= 2.5 ridge periods per window ...
_MIN_PERIOD_PX = 2.2  # ... and >= 2.2 px per period (above the Nyquist limit, with margin)
_MIN_WINDOWS = 6  # a level with fewer windows does not vote
_PERIODIC_SCORE = 0.4  # share of a window's energy in its peak for the window to count as periodic


@dataclass(frozen=True)
class ResolutionParams:
    """Parameters of the resolution check and of ``dpi="auto"``.

    Kept apart from :class:`~biomatch.params.ExtractionParams` so that templates keep their
    parameter hash: the check refuses images, it never changes a template.  Immutable
    (thread-safe); JSON round trip through :func:`biomatch.params.to_json` / ``from_json``.

    Ridge period ranges.  Adult inter-ridge distance (ridge to ridge) averages 0.47 mm for men and
    0.41 mm for women (Moore, "An analysis of ridge-to-ridge distance on fingerprints", J. Forensic
    Identification 39(4), 1989; Ashbaugh, *Quantitative-Qualitative Friction Ridge Analysis*, 1999,
    p. 64); children's ridges are finer (about 0.35 mm at age 10) and infants' about half the adult
    distance (4-5 px against 9-10 px at 500 ppi; Jain et al., "Fingerprint recognition of young
    children", IEEE TIFS 12(7), 2017).  Measured on the shared sets at their stated resolutions:
    0.32 mm (FVC2002 DB4, synthetic) to 0.69 mm (a wide-ridged FVC2002 DB2 print given at 500 dpi).
    The accepted range, 0.20-0.85 mm, takes in infants (below 0.25 mm the 500 dpi working
    resolution cannot hold the ridges anyway) and the widest adult ridges with about 20% margin for
    the estimate's error (p5-p95 about +-12%); an image stated at 0.4x or 2.5x its true resolution
    falls outside it.

    Attributes
    ----------
    check : bool
        Refuse a stated dpi that puts the ridge period outside the range (default True).
    ridge_period_min_mm, ridge_period_max_mm : float
        The accepted ridge period at the stated resolution.
    ridge_period_typical_mm : float
        Period assumed when converting a measured period to a resolution (0.45 mm: the middle
        of Moore's male and female means; at 500 dpi 8.9 px, the middle of the FVC2002 sets').
    min_periodic_fraction : float
        Least fraction of periodic windows (at the best pyramid level) for an estimate to exist.
    min_ridge_fraction : float
        Confirmation: least fraction of foreground blocks in which the extractor's ridge-frequency
        stage finds a periodic pattern at the estimated resolution (0.3 is where the extractor's
        print quality becomes 0).
    max_disagreement : float
        Confirmation: the two estimators' periods may differ by at most this factor.
    fallback_dpi : float
        Resolution used by ``dpi="auto"`` when the image shows no measurable ridge pattern.
    """

    check: bool = True
    ridge_period_min_mm: float = 0.20
    ridge_period_max_mm: float = 0.85
    ridge_period_typical_mm: float = 0.45
    min_periodic_fraction: float = 0.15
    min_ridge_fraction: float = 0.3
    max_disagreement: float = 1.33
    fallback_dpi: float = 500.0

    def __post_init__(self):
        if not isinstance(self.check, bool):
            raise invalid("check", "a bool", self.check)
        for name in ("ridge_period_min_mm", "ridge_period_max_mm", "ridge_period_typical_mm",
                     "max_disagreement", "fallback_dpi"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not v > 0:
                raise invalid(name, "a finite number > 0", v)
        if not self.ridge_period_min_mm < self.ridge_period_typical_mm < self.ridge_period_max_mm:
            raise invalid("ridge_period_typical_mm", f"between ridge_period_min_mm ({self.ridge_period_min_mm}) "
                          f"and ridge_period_max_mm ({self.ridge_period_max_mm})", self.ridge_period_typical_mm)
        for name in ("min_periodic_fraction", "min_ridge_fraction"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise invalid(name, "a number in [0, 1]", v)
        if not self.max_disagreement >= 1:
            raise invalid("max_disagreement", "a number >= 1", self.max_disagreement)
        if not MIN_DPI <= self.fallback_dpi <= MAX_DPI:
            raise invalid("fallback_dpi", f"a number in [{MIN_DPI:g}, {MAX_DPI:g}]", self.fallback_dpi)


@dataclass(frozen=True)
class ResolutionEstimate:
    """The resolution an image appears to have, from its ridge period.

    Attributes
    ----------
    period_px : float
        Ridge period on the image's own pixel grid (the confirmed one when ``confirmed``).
    dpi : float
        ``period_px * 25.4 / ridge_period_typical_mm``.
    periodic_fraction : float
        Fraction of periodic windows at the pyramid level that gave the first estimate (0-1).
    confirmed : bool or None
        Whether the extractor's ridge-frequency stage found the ridge pattern at that resolution
        (None: not tried, the stated dpi was plausible).
    """

    period_px: float
    dpi: float
    periodic_fraction: float
    confirmed: bool | None = None

    def period_mm(self, dpi: float) -> float:
        """The ridge period in millimetres if the image were at ``dpi``."""
        return self.period_px / dpi * MM_PER_INCH


def native_ridge_period(grey: np.ndarray, rp: ResolutionParams | None = None) -> tuple[float, float] | None:
    """Dominant ridge period on the image's own pixel grid, by short-time Fourier analysis.

    Parameters
    ----------
    grey : uint8 (h, w)
        The image at its own resolution.
    rp : ResolutionParams, optional

    Returns
    -------
    (period_px, periodic_fraction) or None
        None when no pyramid level has ``min_periodic_fraction`` periodic windows (and at least 3).
    """
    rp = ResolutionParams() if rp is None else rp
    best = None
    for level in _LEVELS:
        # x2 only helps fine ridges (under ~6 px a 32 px window spans too much ridge curvature).
        if level < 0 and best is not None and best[0] >= _FINE_PERIOD_PX:
            continue
        found = _level_period(grey, level)
        if found is not None and (best is None or found[1] > best[1]):
            best = found
    if best is None or best[1] < rp.min_periodic_fraction:
        return None
    return best


def _level_period(grey: np.ndarray, level: int) -> tuple[float, float] | None:
    """(period in native px, fraction of periodic windows) at one pyramid level, or None."""
    import cv2

    scale = 2.0 ** -level
    h, w = grey.shape
    # The central crop that becomes at most _LEVEL_SIDE_PX square at this level.
    ch, cw = min(h, int(_LEVEL_SIDE_PX / scale)), min(w, int(_LEVEL_SIDE_PX / scale))
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    n_windows = ((size[0] - _WINDOW_PX) // _STEP_PX + 1) * ((size[1] - _WINDOW_PX) // _STEP_PX + 1)
    if min(size) < _WINDOW_PX or n_windows < _MIN_WINDOWS:
        return None
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = grey[y0:y0 + ch, x0:x0 + cw].astype(np.float32)
    if level != 0:
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC if level < 0 else cv2.INTER_AREA)
    period, score = _window_periods(crop)
    periodic = score > _PERIODIC_SCORE
    if periodic.sum() < 3:
        return None
    return _weighted_median(period[periodic], score[periodic]) / scale, float(periodic.mean())


def estimate_resolution(grey: np.ndarray, rp: ResolutionParams | None = None,
                        p: ExtractionParams | None = None) -> ResolutionEstimate | None:
    """The resolution ``grey`` appears to have, confirmed by the extractor's ridge-frequency stage.

    Returns
    -------
    ResolutionEstimate or None
        None when the image shows no measurable ridge pattern.  ``confirmed`` is False when the
        first estimate exists but the extractor finds no ridge pattern at that resolution (its
        ``dpi`` is then the first estimate's, less reliable).
    """
    rp = ResolutionParams() if rp is None else rp
    found = native_ridge_period(grey, rp)
    if found is None:
        return None
    return _confirmed(grey, found, rp, ExtractionParams() if p is None else p)


def check_resolution(grey: np.ndarray, dpi: float, rp: ResolutionParams | None = None,
                     p: ExtractionParams | None = None) -> ResolutionEstimate | None:
    """Refuse a stated resolution that puts the image's ridge period outside the human range.

    Parameters
    ----------
    grey : uint8 (h, w)
        The image at its own resolution.
    dpi : float
        The stated resolution (already validated).

    Returns
    -------
    ResolutionEstimate or None
        The estimate (None: no measurable ridge pattern, nothing to check).

    Raises
    ------
    ResolutionError
        The ridge period at ``dpi`` is outside ``[ridge_period_min_mm, ridge_period_max_mm]`` by
        both estimators; the message names the resolution the image appears to have.
    """
    rp = ResolutionParams() if rp is None else rp
    if not rp.check:
        return None
    found = native_ridge_period(grey, rp)
    if found is None:
        return None
    first = _estimate(found[0], found[1], rp)
    if _plausible(first.period_mm(dpi), rp):
        return first
    est = _confirmed(grey, found, rp, ExtractionParams() if p is None else p)
    if not est.confirmed:
        log.info("dpi %g: ridge period %.2f mm is implausible, but the extractor finds no ridge pattern at "
                 "%.0f dpi either: not refused", dpi, first.period_mm(dpi), first.dpi)
        return est
    period_mm = est.period_mm(dpi)
    if _plausible(period_mm, rp):
        return est
    raise ResolutionError(
        f"dpi: expected a resolution at which the ridges repeat every {rp.ridge_period_min_mm:g}-"
        f"{rp.ridge_period_max_mm:g} mm (human fingerprints), got {dpi:g} dpi, at which they repeat every "
        f"{period_mm:.2f} mm; the image appears to be about {_about(est.dpi)} dpi "
        f"(state its resolution, or pass dpi='auto')",
        dpi=float(dpi), estimated_dpi=float(est.dpi), period_mm=float(period_mm))


def auto_dpi(grey: np.ndarray, rp: ResolutionParams | None = None,
             p: ExtractionParams | None = None) -> tuple[float, ResolutionEstimate | None]:
    """The resolution to extract ``grey`` at when the caller passes ``dpi="auto"``.

    Returns
    -------
    (dpi, estimate)
        The estimate's dpi, clipped to 100-2000; ``fallback_dpi`` when there is no estimate.
    """
    rp = ResolutionParams() if rp is None else rp
    est = estimate_resolution(grey, rp, p)
    if est is None:
        log.info("dpi='auto': no measurable ridge pattern; using %g dpi", rp.fallback_dpi)
        return rp.fallback_dpi, None
    return float(np.clip(est.dpi, 100.0, 2000.0)), est


# --------------------------------------------------------------------------- internals

def _plausible(period_mm: float, rp: ResolutionParams) -> bool:
    return rp.ridge_period_min_mm <= period_mm <= rp.ridge_period_max_mm


def _about(dpi: float) -> int:
    return int(round(dpi / 10.0) * 10) if dpi >= 100 else int(round(dpi))


def _estimate(period_px: float, frac: float, rp: ResolutionParams, confirmed=None) -> ResolutionEstimate:
    return ResolutionEstimate(float(period_px), float(period_px * MM_PER_INCH / rp.ridge_period_typical_mm),
                              float(frac), confirmed)


def _confirmed(grey, found, rp: ResolutionParams, p: ExtractionParams) -> ResolutionEstimate:
    """Run the extractor's ridge-frequency stage at the estimated resolution; refine or flag."""
    period_px, frac = found
    first = _estimate(period_px, frac, rp, False)
    refined = _extractor_period(grey, first.dpi, p)
    if refined is None:
        return first
    ridges, period2 = refined
    agree = max(period2, period_px) / min(period2, period_px) <= rp.max_disagreement
    if ridges < rp.min_ridge_fraction or not agree:
        return first
    return _estimate(period2, frac, rp, True)


def _extractor_period(grey: np.ndarray, dpi: float, p: ExtractionParams) -> tuple[float, float] | None:
    """(ridge fraction, median block period in native px) of the extractor's stages at ``dpi``."""
    from ..imaging import MAX_DPI, MIN_DPI, to_working_resolution
    from .frequency import ridge_period
    from .orientation import orientation_field
    from .quality import ridge_fraction
    from .segmentation import normalise, segment

    if not MIN_DPI <= dpi <= MAX_DPI:
        return None
    work = to_working_resolution(grey, dpi)
    if min(work.shape) < p.min_image_side_px or max(work.shape) > p.max_image_side_px:
        return None
    mask = segment(work, p)
    if not mask.any():
        return None
    norm = normalise(work, p)
    theta, _ = orientation_field(norm, mask, p)
    _, block, _ = ridge_period(norm, theta, mask, p)
    valid = block[block > 0]
    if valid.size < 3:
        return None
    return ridge_fraction(block, mask, p.block_size_px), float(np.median(valid)) * dpi / WORKING_DPI


@lru_cache(maxsize=1)
def _spectrum_geometry():
    """Per rfft2 bin of a window: radius (cycles/px), search band, band edges, weights."""
    n = _WINDOW_PX
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    radius = np.sqrt(fx * fx + fy * fy).astype(np.float32)
    band = ((radius * n >= _MIN_CYCLES) & (radius <= 1.0 / _MIN_PERIOD_PX)).astype(np.float32)
    # A peak on the band's innermost or outermost ring is a smooth ramp or pixel noise, not ridges.
    edge = (band > 0) & ((radius * n < _MIN_CYCLES + 1.0) | (radius > 1.0 / _MIN_PERIOD_PX - 1.0 / n))
    conj = np.full(radius.shape, 2.0, np.float32)  # rfft2 keeps half the plane: count both halves
    conj[:, 0] = 1.0
    conj[:, -1] = 1.0
    total_w = np.where(radius * n >= 1.0, conj, 0.0).astype(np.float32)  # everything but the mean
    hann = np.outer(np.hanning(n), np.hanning(n)).astype(np.float32)
    return radius, band, edge, conj, total_w, hann


def _window_periods(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Period (px) and periodicity score (0-1) of each half-overlapping window of ``img``."""
    import scipy.fft  # a dependency of scikit-image

    radius, band, edge, conj, total_w, hann = _spectrum_geometry()
    n = _WINDOW_PX
    if min(img.shape) < n:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    win = np.lib.stride_tricks.sliding_window_view(img, (n, n))[::_STEP_PX, ::_STEP_PX].reshape(-1, n, n)
    if np.may_share_memory(win, img):  # one window: reshape gave a view, not a copy
        win = win.copy()
    win -= win.mean(axis=(1, 2), keepdims=True)
    win *= hann
    spec = scipy.fft.rfft2(win, workers=1, overwrite_x=True)
    power = np.square(spec.real)
    power += np.square(spec.imag)
    count = power.shape[0]
    total = np.einsum("kij,ij->k", power, total_w)
    in_band = power * band
    iy, ix = np.divmod(in_band.reshape(count, -1).argmax(axis=1), band.shape[1])
    rows = np.arange(count)
    energy = np.zeros(count, np.float32)
    moment = np.zeros(count, np.float32)
    for dy in (-1, 0, 1):
        yy = (iy + dy) % n
        for dx in (-1, 0, 1):
            xx = np.clip(ix + dx, 0, band.shape[1] - 1)
            e = in_band[rows, yy, xx] * conj[yy, xx]
            energy += e
            moment += e * radius[yy, xx]
    ok = (total > 1e-3) & ~edge[iy, ix] & (moment > 0)
    score = np.where(ok, energy / np.maximum(total, 1e-12), 0.0).astype(np.float32)
    period = np.where(ok, energy / np.maximum(moment, 1e-12), 0.0).astype(np.float32)
    return period, score


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values, kind="stable")
    v, c = values[order], np.cumsum(weights[order], dtype=np.float64)
    return float(v[min(np.searchsorted(c, c[-1] / 2.0), v.size - 1)])
