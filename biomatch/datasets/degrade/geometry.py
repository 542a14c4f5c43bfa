"""Conditions of geometry: plastic distortion, a small contact area, another sensor resolution.

These move, drop or rescale the ground-truth minutiae, so each comes as a pair: the public
function (image in, image out) and ``*_moving``, which also returns the map of minutiae into
the output that :func:`biomatch.datasets.degrade.apply_condition` applies.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import invalid
from ...imaging.limits import MAX_DPI, MIN_DPI
from ._common import (SENSOR_NOISE_GREY, Param, envelopes, mask_centre, mask_of_print, no_contact_level, px,
                      set_up, to_uint8)

DISTORTION = Param("max_displacement_mm", 1.5, 0.0, 5.0, "mm", "mm largest displacement")
CONTACT = Param("area_mm2", 64.0, 4.0, 2000.0, "mm^2", "mm^2 contact area")
RESOLUTION = Param("target_dpi", 250.0, MIN_DPI, MAX_DPI, "dpi", "dpi")

CLOSE_CONTACT_SEMI_AXES_MM = (2.5, 3.5)   # (across, along the finger)
DISTORTION_TRANSITION_MM = 5.0            # width of the brake zone
CONTACT_ASPECT = 1.3           # fingertip contact ellipses are longer along the finger
CONTACT_EDGE_MM = 0.15
CONTACT_GT_MARGIN_MM = 0.5     # ground truth kept this far inside the contact border


def distortion_field(image: np.ndarray, dpi: float, max_displacement_mm: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """The forward displacement field of :func:`distortion`, pixels.

    Returns
    -------
    (dx, dy) : float32 (h, w) each
        A skin point at ``(x, y)`` moves to ``(x + dx, y + dy)``; the largest ``hypot(dx, dy)``
        over :func:`print_mask` equals ``max_displacement_mm`` in pixels.
    """
    image, dpi, mm, rng = set_up(image, dpi, max_displacement_mm, rng, DISTORTION)
    target = px(mm, dpi)
    h, w = image.shape
    mask = mask_of_print(image, dpi)
    cx, cy = mask_centre(mask)
    # Close-contact ellipse (undistorted), a little off the centre of the print.
    cx += rng.normal(0, px(0.5, dpi))
    cy += rng.normal(0, px(0.5, dpi))
    ax, ay = (px(a, dpi) for a in CLOSE_CONTACT_SEMI_AXES_MM)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Distance outside the ellipse, approximately in pixels (elliptic radius minus 1, times the mean axis).
    rad = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    outside = np.maximum(rad - 1.0, 0.0) * (0.5 * (ax + ay))
    k = px(DISTORTION_TRANSITION_MM, dpi)
    brake = np.where(outside < k, 0.5 * (1.0 - np.cos(np.pi * outside / k)), 1.0).astype(np.float32)
    # The outer skin moves rigidly: a rotation about the contact centre and a translation.
    ys, xs = np.nonzero(mask)
    r_print = float(np.sqrt(((xs - cx) ** 2 + (ys - cy) ** 2).max())) if len(xs) else float(max(h, w))
    theta0 = rng.uniform(-1.0, 1.0) / max(r_print, 1.0)    # ~1 px at the print's edge per unit
    t0 = rng.normal(0, 1, 2)
    t0 = t0 / (np.hypot(*t0) + 1e-9) * rng.uniform(0.3, 1.0)
    sub = (slice(None, None, 4), slice(None, None, 4))
    msub = mask[sub]

    def field(s: float, sl=(slice(None), slice(None))):
        th = s * theta0
        c, sn = math.cos(th), math.sin(th)
        X, Y = xx[sl] - cx, yy[sl] - cy
        fx = (c - 1.0) * X - sn * Y + s * t0[0]
        fy = sn * X + (c - 1.0) * Y + s * t0[1]
        return fx * brake[sl], fy * brake[sl]

    def peak(s: float) -> float:
        fx, fy = field(s, sub)
        mag = np.hypot(fx, fy)[msub]
        return float(mag.max()) if mag.size else 0.0

    if target <= 0:
        z = np.zeros((h, w), np.float32)
        return z, z.copy()
    lo, hi = 0.0, 1.0
    while peak(hi) < target and hi < 1e6:
        hi *= 2.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if peak(mid) < target else (lo, mid)
    dx, dy = field(0.5 * (lo + hi))
    return dx.astype(np.float32), dy.astype(np.float32)


def distortion_moving(image, dpi, max_displacement_mm, rng):
    """:func:`distortion` and the map of ground-truth minutiae into its output.

    Returns
    -------
    (image, move) : (uint8 array, callable)
        ``move(m)`` takes a non-empty float64 (n, 4) array ``x, y, angle, kind`` in the input's
        pixels to the output's (angles turned with the skin; minutiae moved off the image dropped).
    """
    import cv2

    dx, dy = distortion_field(image, dpi, max_displacement_mm, rng)
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Render through the inverse map: solve p + D(p) = q by fixed-point iteration (|grad D| < 1).
    src_x, src_y = xx.copy(), yy.copy()
    for _ in range(12):
        src_x = xx - cv2.remap(dx, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        src_y = yy - cv2.remap(dy, src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    light, _ = envelopes(image, dpi)
    bg = no_contact_level(light)
    out = cv2.remap(image.astype(np.float32), src_x, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=bg)
    gx_x, gx_y = np.gradient(dx, axis=1), np.gradient(dx, axis=0)
    gy_x, gy_y = np.gradient(dy, axis=1), np.gradient(dy, axis=0)

    def points(m: np.ndarray) -> np.ndarray:
        xi = np.clip(np.rint(m[:, 0]).astype(int), 0, w - 1)
        yi = np.clip(np.rint(m[:, 1]).astype(int), 0, h - 1)
        nx, ny = m[:, 0] + dx[yi, xi], m[:, 1] + dy[yi, xi]
        # Directions turn with the local Jacobian I + grad D; angles are CCW as displayed (y down).
        ux, uy = np.cos(m[:, 2]), -np.sin(m[:, 2])
        vx = (1 + gx_x[yi, xi]) * ux + gx_y[yi, xi] * uy
        vy = gy_x[yi, xi] * ux + (1 + gy_y[yi, xi]) * uy
        a = np.mod(np.arctan2(-vy, vx), 2 * np.pi)
        out_m = np.column_stack([nx, ny, a, m[:, 3]])
        ok = (nx >= 0) & (nx <= w - 1) & (ny >= 0) & (ny <= h - 1)
        return out_m[ok]

    return to_uint8(out), points


def distortion(image: np.ndarray, dpi: float, max_displacement_mm: float = DISTORTION.default, rng=0) -> np.ndarray:
    """Strong plastic (elastic) skin distortion.

    Parameters
    ----------
    image : uint8 (h, w)
    dpi : float
    max_displacement_mm : float
        Largest displacement of any point of the print, millimetres (0-5; default 1.5, three
        ridge periods; ordinary impressions of one finger differ by a fraction of a millimetre).
    rng : numpy Generator or int

    Returns
    -------
    uint8 (h, w)

    Notes
    -----
    The model of Cappelli, Maio & Maltoni, "Modelling plastic distortion in fingerprint images"
    (ICAPR 2001): a close-contact region (an ellipse of 2.5 x 3.5 mm semi-axes near the print
    centre) does not move; the outer skin undergoes a rigid rotation about it and a translation;
    between them a brake function rises smoothly from 0 to 1 over a 5 mm band (raised cosine).
    The rotation/translation mix is drawn from ``rng`` and scaled so that the largest displacement
    over the print is exactly ``max_displacement_mm`` (see :func:`distortion_field`).
    """
    return distortion_moving(image, dpi, max_displacement_mm, rng)[0]


def contact_moving(image, dpi, area_mm2, rng):
    """:func:`contact` and the map of ground-truth minutiae into its output.

    Returns
    -------
    (image, move) : (uint8 array, callable)
        ``move(m)`` takes a non-empty float64 (n, 4) array ``x, y, angle, kind`` in the input's
        pixels to the output's (only those 0.5 mm or more inside the contact ellipse kept).
    """
    image, dpi, area, rng = set_up(image, dpi, area_mm2, rng, CONTACT)
    h, w = image.shape
    mask = mask_of_print(image, dpi)
    cx, cy = mask_centre(mask)
    a = px(math.sqrt(area / (math.pi * CONTACT_ASPECT)), dpi)   # semi-axis across the finger, px
    b = a * CONTACT_ASPECT
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rad = np.sqrt(((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2)
    edge = px(CONTACT_EDGE_MM, dpi) / a
    touch = np.clip((1.0 - rad) / max(edge, 1e-3) + 0.5, 0.0, 1.0)
    light, _ = envelopes(image, dpi)
    bg = no_contact_level(light)
    back = bg + rng.normal(0.0, SENSOR_NOISE_GREY, image.shape).astype(np.float32)
    out = touch * image.astype(np.float32) + (1.0 - touch) * back
    margin = px(CONTACT_GT_MARGIN_MM, dpi) / a

    def points(m: np.ndarray) -> np.ndarray:
        r = np.sqrt(((m[:, 0] - cx) / a) ** 2 + ((m[:, 1] - cy) / b) ** 2)
        return m[r <= 1.0 - margin]

    return to_uint8(out), points


def contact(image: np.ndarray, dpi: float, area_mm2: float = CONTACT.default, rng=0) -> np.ndarray:
    """Small contact area: only an ellipse of ``area_mm2`` around the print centre is imaged.

    Parameters
    ----------
    image : uint8 (h, w)
    dpi : float
    area_mm2 : float
        Contact area, mm^2 (4-2000; default 64, the area of the 8 x 8 mm sensors of phones and
        laptops; an FVC2002 print is 150-300 mm^2).
    rng : numpy Generator or int
        Draws the sensor noise of the no-contact region.

    Returns
    -------
    uint8 (h, w)
        Same size; outside the ellipse the sensor's no-contact grey level plus its noise.

    Notes
    -----
    The ellipse is centred on the centroid of :func:`print_mask`, 1.3 times longer along the
    finger (vertical) than across, with a 0.15 mm soft edge.  Ground truth keeps the minutiae at
    least 0.5 mm inside it.
    """
    return contact_moving(image, dpi, area_mm2, rng)[0]


def resolution_moving(image, dpi, target_dpi, rng):
    """:func:`resolution` and the map of ground-truth minutiae into its output.

    Returns
    -------
    (image, move) : (uint8 array, callable)
        ``move(m)`` takes a non-empty float64 (n, 4) array ``x, y, angle, kind`` in the input's
        pixels to the output's (rescaled about pixel centres).
    """
    import cv2

    image, dpi, target, _ = set_up(image, dpi, target_dpi, rng, RESOLUTION, random=False)
    f = target / dpi
    h, w = image.shape
    nh, nw = max(1, int(round(h * f))), max(1, int(round(w * f)))
    if min(nh, nw) < 16:
        raise invalid("target_dpi", f"a resolution giving at least 16 px per side from {w}x{h} at {dpi:g} dpi",
                      target_dpi)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
    out = cv2.resize(image, (nw, nh), interpolation=interp)
    fx, fy = nw / w, nh / h

    def points(m: np.ndarray) -> np.ndarray:
        out_m = m.copy()
        out_m[:, 0] = (m[:, 0] + 0.5) * fx - 0.5
        out_m[:, 1] = (m[:, 1] + 0.5) * fy - 0.5
        return out_m

    return out, points


def resolution(image: np.ndarray, dpi: float, target_dpi: float = RESOLUTION.default, rng=None) -> np.ndarray:
    """The same finger seen by a sensor of another resolution.

    Parameters
    ----------
    image : uint8 (h, w)
    dpi : float
        Resolution of ``image``.
    target_dpi : float
        Resolution of the output (100-2000; the benchmark uses 250, 333, 750 and 1000).
    rng : unused

    Returns
    -------
    uint8 (round(h * target / dpi), round(w * target / dpi))
        To be extracted at ``target_dpi``.

    Notes
    -----
    A coarser sensor integrates light over its larger pixels: area averaging (box aperture).  A
    finer one cannot add detail the source lacks: cubic interpolation, so 750 and 1000 dpi test
    how the extractor handles the stated resolution, not finer ridge detail.  At 250 dpi a 0.5 mm
    ridge period is under 5 px, close to the Nyquist limit of thin ridges.
    """
    return resolution_moving(image, dpi, target_dpi, rng)[0]
