"""What every degradation shares: input checks and set-up, physical scales, image operations.

:func:`set_up` is the one place where a condition's inputs are checked and brought to their
working form (uint8 image, dpi, severity parameter in its range, random generator), from the
condition's :class:`Param`; the registry of :mod:`biomatch.datasets.degrade` reads the same
:class:`Param` for its defaults, units and ranges, so they cannot drift apart.  The image
operations here (envelopes, sub-pixel grey morphology, skin-level simulation at 500 dpi, the
print mask) are used by more than one family of conditions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...errors import invalid
from ...imaging.limits import MAX_DPI, MIN_DPI

MM_PER_INCH = 25.4
SKIN_DPI = 500.0               # skin-level processes are simulated at no coarser a grid than this
SENSOR_NOISE_GREY = 2.8        # std of a compliant scanner (PIV: SNR >= 70.6 over ~200 grey levels)
ENVELOPE_RADIUS_MM = 0.3       # > half a ridge period: a max/min filter this wide sees a ridge and a valley
ENVELOPE_SMOOTH_MM = 0.4


@dataclass(frozen=True)
class Param:
    """The one severity parameter of a condition.

    Attributes
    ----------
    name : str
        Its keyword in the condition's function (named in error messages).
    default : float
    low, high : float
        Accepted range, inclusive.
    unit : str
        Short unit for error messages (``"mm"``).
    meaning : str
        What the number measures, for the registry (``"mm of ridge width lost per side"``).
    """

    name: str
    default: float
    low: float
    high: float
    unit: str
    meaning: str


# --------------------------------------------------------------------------- checks and set-up

def check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
        got = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}".strip()
        raise invalid("image", "a uint8 array of shape (h, w)", got)
    if min(image.shape) < 16 or max(image.shape) > 16384:
        raise invalid("image", "sides of 16-16384 px", image.shape)
    return image


def check_dpi(dpi) -> float:
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(dpi)) or not MIN_DPI <= float(dpi) <= MAX_DPI:
        raise invalid("dpi", f"a number in [{MIN_DPI:g}, {MAX_DPI:g}]", dpi)
    return float(dpi)


def check_param(spec: Param, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or not spec.low <= float(value) <= spec.high:
        raise invalid(spec.name, f"a number in [{spec.low:g}, {spec.high:g}] ({spec.unit})", value)
    return float(value)


def check_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise invalid("rng", "a numpy Generator or a non-negative int seed", rng)


def set_up(image, dpi, value, rng, spec: Param, *, random: bool = True):
    """A condition's checked inputs, in the order they are checked.

    Returns
    -------
    (image, dpi, param, rng) : (uint8 (h, w), float, float, numpy Generator or None)
        ``rng`` is None (and not checked) for a deterministic condition (``random=False``).
    """
    image = check_image(image)
    dpi = check_dpi(dpi)
    param = check_param(spec, value)
    return image, dpi, param, (check_rng(rng) if random else None)


# --------------------------------------------------------------------------- scales and image operations

def px(mm: float, dpi: float) -> float:
    """Millimetres on the finger to pixels at ``dpi``."""
    return mm * dpi / MM_PER_INCH


def disc(radius_px: float) -> np.ndarray:
    import cv2

    r = max(0, int(round(radius_px)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    import cv2

    if sigma_px < 0.2:
        return img.astype(np.float32, copy=True)
    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)


def envelopes(img: np.ndarray, dpi: float) -> tuple[np.ndarray, np.ndarray]:
    """Light (valley / no-contact) and dark (ridge / full-contact) grey levels, smooth over a period."""
    import cv2

    k = disc(max(1.0, px(ENVELOPE_RADIUS_MM, dpi)))
    f = img.astype(np.float32)
    light = blur(cv2.dilate(f, k, borderType=cv2.BORDER_REFLECT), px(ENVELOPE_SMOOTH_MM, dpi))
    dark = blur(cv2.erode(f, k, borderType=cv2.BORDER_REFLECT), px(ENVELOPE_SMOOTH_MM, dpi))
    return light, dark


def grey_morph(img: np.ndarray, radius_px: float, dilate: bool) -> np.ndarray:
    """Grey dilation (light grows) or erosion (dark grows) by a disc of sub-pixel radius.

    The image is supersampled so that the disc has at least 3 px of radius, then brought back
    by area averaging: a 0.05 mm change is 1 px at 500 dpi and a third of one at 165 dpi.
    """
    import cv2

    f = img.astype(np.float32)
    if radius_px < 0.1:
        return f.copy()
    k = int(min(8, max(1, math.ceil(3.0 / radius_px))))
    h, w = f.shape
    up = cv2.resize(f, (w * k, h * k), interpolation=cv2.INTER_LINEAR) if k > 1 else f
    op = cv2.dilate if dilate else cv2.erode
    up = op(up, disc(radius_px * k), borderType=cv2.BORDER_REFLECT)
    return cv2.resize(up, (w, h), interpolation=cv2.INTER_AREA) if k > 1 else up


def to_uint8(f: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def add_back_noise(f: np.ndarray, kept_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Restore the sensor's noise after the print's contrast (and its noise with it) was scaled."""
    sigma = SENSOR_NOISE_GREY * math.sqrt(max(0.0, 1.0 - kept_fraction ** 2))
    if sigma <= 0:
        return f
    return f + rng.normal(0.0, sigma, f.shape).astype(np.float32)


def no_contact_level(light: np.ndarray) -> float:
    """Grey level the sensor shows where no skin touches it."""
    return float(np.percentile(light, 90))


def on_skin(image: np.ndarray, dpi: float, body: Callable[[np.ndarray, float], np.ndarray]) -> np.ndarray:
    """Run a skin-level process ``body(float32 image, dpi) -> float32 image`` at no less than
    500 dpi, then integrate over the sensor's pixels (area averaging) when the image is coarser.

    A 0.3 mm patch of lost contact or a 0.05 mm change of ridge width is a property of the skin;
    drawn directly on a 165 dpi grid it would alias into single-pixel salt noise.
    """
    import cv2

    f = image.astype(np.float32)
    if dpi >= SKIN_DPI:
        return body(f, dpi)
    h, w = f.shape
    nh, nw = int(round(h * SKIN_DPI / dpi)), int(round(w * SKIN_DPI / dpi))
    up = cv2.resize(f, (nw, nh), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(body(up, dpi * nw / w), (w, h), interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------- the print region

def print_mask(image: np.ndarray, dpi: float) -> np.ndarray:
    """Where the image shows ridges: the largest region of ridge-valley contrast.

    Parameters
    ----------
    image : uint8 (h, w)
    dpi : float

    Returns
    -------
    bool (h, w)
        The print region (holes filled); the whole image when no contrast region is found.
    """
    return mask_of_print(check_image(image), check_dpi(dpi))


def mask_of_print(image: np.ndarray, dpi: float) -> np.ndarray:
    """:func:`print_mask` of inputs already checked (or of a float image on the skin grid)."""
    import cv2

    light, dark = envelopes(image, dpi)
    mod = blur(light - dark, px(0.5, dpi))
    top = float(np.percentile(mod, 95))
    if top < 8.0:
        return np.ones(image.shape, bool)
    m = (mod > 0.35 * top).astype(np.uint8)
    k = disc(px(0.5, dpi))
    m = cv2.morphologyEx(cv2.morphologyEx(m, cv2.MORPH_OPEN, k), cv2.MORPH_CLOSE, k)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.ones(image.shape, bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    m = (labels == biggest).astype(np.uint8)
    # fill holes: everything not reachable from the border outside the print
    pad = np.pad(m, 1)
    flood = pad.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = (flood == 0)[1:-1, 1:-1]
    return (m > 0) | holes


def mask_centre(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def area_cm2(mask: np.ndarray, dpi: float) -> float:
    return float(mask.sum()) * (MM_PER_INCH / dpi) ** 2 / 100.0


def sample_in_mask(mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if n == 0 or len(xs) == 0:
        return np.zeros((0, 2))
    idx = rng.integers(0, len(xs), n)
    return np.stack([xs[idx] + rng.uniform(-0.5, 0.5, n), ys[idx] + rng.uniform(-0.5, 0.5, n)], 1)
