"""Controlled, physically modelled degradations of fingerprint images.

Each condition is one function ``f(image, dpi, param, rng) -> image``: an 8-bit grey
image (ridges dark) at ``dpi`` goes in, a degraded 8-bit image comes out, its one
severity parameter is in physical units (millimetres on the finger, grey levels of the
sensor, dots per inch), and the result depends only on the inputs and the random
generator (no global state, no threads).  Lengths are converted to pixels with the
image's own resolution, so one parameter means the same thing on a 500 dpi FVC image and
on a 165 dpi SOCOFing scan.

Conditions (:data:`CONDITIONS`; ``"name:param"`` strings are read by :func:`parse_condition`)
---------------------------------------------------------------------------------------------
========== ======================= ==================================================
name       parameter (default)     physical model
========== ======================= ==================================================
none       --                      the image unchanged (the reference)
dry        0.05 mm                 ridges thinned by the parameter on each side (grey
                                   dilation: the light valleys grow), contact broken in
                                   0.3 mm patches, ridge contrast reduced
wet        0.07 mm                 ridges thickened on each side (valleys fill in and
                                   close), saturated dark blobs of 0.8-2 mm (droplets)
worn       0.35 (ratio)            ridge height reduced to the ratio: ridge contrast
                                   scaled by it, ridge tops rounded (low-pass at ridge
                                   scale), abrasion scratches
scars      1.5 per cm^2            creases (light) and raised scars (dark): lines
                                   0.1-0.4 mm wide, 2-8 mm long, mostly across the finger
distortion 1.5 mm                  plastic skin distortion (Cappelli, Maio & Maltoni
                                   2001): undistorted close-contact ellipse, rigid
                                   rotation + translation outside, smooth brake between;
                                   the parameter is the largest displacement on the print
contact    64 mm^2                 only an ellipse of that area around the print centre
                                   touches the sensor (small sensors, light touch)
noise      20 grey levels          additive Gaussian sensor noise of that standard
                                   deviation plus impulse (dead/hot pixel) noise
gamma      0.45 (exponent)         a different transfer curve ``255 (I/255)^gamma``
resolution 250 dpi                 resampled to the parameter (area-averaging sensor
                                   pixels when coarser); the extractor is told that dpi
========== ======================= ==================================================

Physical scales used throughout: the ridge-valley period of adult fingers is about
0.5 mm and ridges are 0.1-0.3 mm wide (Maltoni, Maio, Jain & Prabhakar, *Handbook of
Fingerprint Recognition*, 2nd ed., 2009, chapter 3); at 500 dpi 1 mm is 19.7 px.
The sensor noise of a compliant scanner is about 2.8 grey levels (the FBI PIV image
quality specification asks for a signal-to-noise ratio of at least 70.6 over a ~200
grey-level range); conditions that lower the print's contrast add noise back so that
the total stays at that level, since the sensor's noise does not shrink with the skin's
contrast (otherwise a contrast change would be invisible to any normalising extractor).

Ground truth
------------
:func:`apply_condition` also moves ground-truth minutiae ``(n, 4)`` ``x, y, angle, kind``
(pixels of the image, angle in radians counter-clockwise as displayed) through the
geometric conditions (distortion, contact, resolution) and reports the output dpi;
photometric conditions leave minutiae in place (a crease hides a minutia from the
extractor but the finger still has it: recall measures that).

Modules: :mod:`._common` (input set-up shared by every condition, physical scales, image
operations), :mod:`.skin` (dry, wet, worn, scars), :mod:`.geometry` (distortion, contact,
resolution), :mod:`.sensor` (noise, gamma); this module holds the registry and the public API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...errors import invalid
from ._common import SENSOR_NOISE_GREY, Param, check_dpi, check_image, check_rng, print_mask
from .geometry import (CONTACT, DISTORTION, RESOLUTION, contact, contact_moving, distortion, distortion_field,
                       distortion_moving, resolution, resolution_moving)
from .sensor import GAMMA, NOISE, gamma, noise
from .skin import DRY, SCARS, WET, WORN, dry, scars, wet, worn

__all__ = ["CONDITIONS", "Condition", "Degraded", "parse_condition", "format_condition", "apply_condition",
           "condition_rng", "output_dpi", "none", "dry", "wet", "worn", "scars", "distortion", "contact", "noise", "gamma",
           "resolution", "print_mask", "distortion_field", "SENSOR_NOISE_GREY"]


@dataclass(frozen=True)
class Degraded:
    """A degraded image with its resolution and moved ground truth.

    Attributes
    ----------
    image : uint8 (h, w)
    dpi : float
        Resolution of ``image`` (changed only by ``resolution``).
    minutiae : float64 (n, 4) or None
        ``x, y, angle, kind`` in ``image``'s pixels, when minutiae were given.
    """

    image: np.ndarray
    dpi: float
    minutiae: np.ndarray | None


def none(image: np.ndarray, dpi: float, param: float = 0.0, rng=None) -> np.ndarray:
    """The reference condition: a copy of ``image``."""
    return check_image(image).copy()


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Condition:
    """One condition of :data:`CONDITIONS`.

    Attributes
    ----------
    function : callable
        ``function(image, dpi, param, rng) -> uint8 image``.
    default : float
        Parameter used when a spec gives none.
    unit : str
        Unit of the parameter.
    low, high : float
        Accepted range of the parameter.
    geometric : bool
        True when the condition moves or removes minutiae or changes the resolution.
    moving : callable or None
        For a geometric condition, ``moving(image, dpi, param, rng) -> (image, move)``, where
        ``move`` takes ground-truth minutiae into the output (what :func:`apply_condition` uses).
    """

    function: Callable[..., np.ndarray]
    default: float
    unit: str
    low: float
    high: float
    geometric: bool = False
    moving: Callable[..., tuple] | None = field(default=None, repr=False)

    def __iter__(self):
        # ``function, default, unit = CONDITIONS[name]``
        return iter((self.function, self.default, self.unit))


def _entry(function: Callable[..., np.ndarray], spec: Param, moving: Callable[..., tuple] | None = None) -> Condition:
    return Condition(function, spec.default, spec.meaning, spec.low, spec.high, moving is not None, moving)


CONDITIONS: dict[str, Condition] = {
    "none": Condition(none, 0.0, "-", 0.0, 0.0),
    "dry": _entry(dry, DRY),
    "wet": _entry(wet, WET),
    "worn": _entry(worn, WORN),
    "scars": _entry(scars, SCARS),
    "distortion": _entry(distortion, DISTORTION, distortion_moving),
    "contact": _entry(contact, CONTACT, contact_moving),
    "noise": _entry(noise, NOISE),
    "gamma": _entry(gamma, GAMMA),
    "resolution": _entry(resolution, RESOLUTION, resolution_moving),
}
"""Every condition by name: ``function, default, unit = CONDITIONS[name]``."""


def parse_condition(spec: str) -> tuple[str, float]:
    """Read ``"name"`` or ``"name:param"`` (e.g. ``"dry:0.08"``, ``"resolution:333"``).

    Returns
    -------
    (name, param) : (str, float)
        The default parameter when none is given.

    Raises
    ------
    InvalidInputError
        Unknown name, a parameter that is not a number or is out of the condition's range.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise invalid("condition", f"'name' or 'name:param' with name in {sorted(CONDITIONS)}", spec)
    name, sep, value = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in CONDITIONS:
        raise invalid("condition", f"a name in {sorted(CONDITIONS)}", spec)
    cond = CONDITIONS[name]
    if not sep:
        return name, cond.default
    try:
        param = float(value)
    except ValueError:
        raise invalid("condition", f"'{name}:<number>' ({cond.unit})", spec) from None
    if name == "none" and param != 0:
        raise invalid("condition", "'none' without a parameter", spec)
    if not math.isfinite(param) or not cond.low <= param <= cond.high:
        raise invalid("condition", f"a {name} parameter in [{cond.low:g}, {cond.high:g}] ({cond.unit})", spec)
    return name, param


def format_condition(name: str, param: float) -> str:
    """The canonical spec string (``"dry:0.05"``; ``"none"``)."""
    return "none" if name == "none" else f"{name}:{param:g}"


def output_dpi(conditions, dpi: float = 500.0) -> float:
    """Resolution of an image of ``dpi`` after ``conditions`` (specs applied in order).

    >>> output_dpi(["dry", "resolution:333"])
    333.0
    """
    dpi = check_dpi(dpi)
    for spec in [conditions] if isinstance(conditions, str) else list(conditions or ()):
        name, param = parse_condition(spec)
        if name == "resolution":
            dpi = param
    return dpi


def condition_rng(*key) -> np.random.Generator:
    """A generator seeded from any sequence of strings and ints (stable across runs and machines).

    ``condition_rng("db1_b", "101_1", "dry:0.05")`` is the benchmark's per-image stream.
    """
    import hashlib

    digest = hashlib.blake2b("\x1f".join(str(k) for k in key).encode(), digest_size=16).digest()
    return np.random.default_rng(np.frombuffer(digest, np.uint32).astype(np.uint64))


def _carry(minutiae: np.ndarray | None, move: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray | None:
    """Ground truth of the degraded image: moved by a geometric condition's map, else a copy."""
    if minutiae is None:
        return None
    if move is None or len(minutiae) == 0:
        return minutiae.copy()
    return move(minutiae)


def apply_condition(image: np.ndarray, dpi: float, spec: str, rng, minutiae: np.ndarray | None = None) -> Degraded:
    """Degrade an image under one condition, moving its ground-truth minutiae.

    Parameters
    ----------
    image : uint8 (h, w)
    dpi : float
    spec : str
        ``"name"`` or ``"name:param"`` (see :func:`parse_condition`).
    rng : numpy Generator or int
    minutiae : float (n, 4), optional
        Ground truth ``x, y, angle, kind`` in ``image``'s pixels (angle radians CCW as displayed).

    Returns
    -------
    Degraded
        The image, its dpi (the target for ``resolution``) and the moved minutiae (None when none
        were given).
    """
    name, param = parse_condition(spec)
    dpi = check_dpi(dpi)
    image = check_image(image)
    rng = check_rng(rng)
    if minutiae is not None:
        minutiae = np.asarray(minutiae, np.float64)
        if minutiae.ndim != 2 or minutiae.shape[1] != 4:
            raise invalid("minutiae", "an array of shape (n, 4): x, y, angle, kind", minutiae.shape)
    out_dpi = param if name == "resolution" else dpi
    cond = CONDITIONS[name]
    if cond.moving is None:
        img, move = cond.function(image, dpi, param, rng), None
    else:
        img, move = cond.moving(image, dpi, param, rng)
    return Degraded(img, out_dpi, _carry(minutiae, move))
