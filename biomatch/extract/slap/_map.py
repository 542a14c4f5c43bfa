"""The print map and the hand's rotation: where the prints are, and how the hand lies."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import invalid
from .params import SlapParams



def _original(image) -> np.ndarray:
    """The image as 8-bit grey at its own resolution (boxes and crops are in its pixels)."""
    from ...imaging import read_image, to_grey8

    if isinstance(image, (str, Path)):
        image = read_image(image, mode="grey8")
    elif not isinstance(image, np.ndarray):
        raise invalid("image", "a numpy array or an image path", type(image).__name__)
    if image.size == 0:
        raise invalid("image", "a non-empty image", image.shape)
    return to_grey8(image)


def _p95(a: np.ndarray) -> float:
    return float(np.percentile(a, 95)) if a.size else 0.0


def _disk(radius_px: float) -> np.ndarray:
    import cv2

    d = max(1, int(round(2 * radius_px)) | 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))


def _clean(raw: np.ndarray, p: SlapParams, px_mm: float) -> np.ndarray:
    """Close (ridges of one print join), fill holes (pores, punched holes), open (strokes go)."""
    import cv2

    m = cv2.morphologyEx(raw.astype(np.uint8), cv2.MORPH_CLOSE, _disk(p.close_radius_mm * px_mm))
    m = _fill_holes(m, p.max_hole_mm2 * px_mm * px_mm)
    # outside the image counts as background, so that a line or text along the edge is opened away too
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, _disk(p.open_radius_mm * px_mm), borderType=cv2.BORDER_CONSTANT,
                         borderValue=0)
    return m > 0


def _fill_holes(m: np.ndarray, max_area_px: float) -> np.ndarray:
    """Fill holes up to ``max_area_px`` (pores, a punched hole, a smudge): larger enclosed
    background (between a card's printed lines and the prints) stays background."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats((m == 0).astype(np.uint8), connectivity=4)
    out = m.copy()
    h, w = m.shape
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if area <= max_area_px and x > 0 and y > 0 and x + bw < w and y + bh < h:
            out[labels == i] = 1
    return out


def _rotation(shape, angle_deg: float):
    """Affine map turning the map by ``-angle_deg`` (fingers upright) onto a canvas that holds it all,
    its inverse, and the canvas size (w, h)."""
    import cv2

    h, w = shape
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), -angle_deg, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(math.ceil(w * c + h * s)), int(math.ceil(w * s + h * c))
    m[0, 2] += nw / 2.0 - w / 2.0
    m[1, 2] += nh / 2.0 - h / 2.0
    return m, cv2.invertAffineTransform(m), (nw, nh)


def _hand_angle(mask: np.ndarray, p: SlapParams) -> float:
    """The hand's rotation: the angle whose upright map has the sharpest column profile.

    With the fingers upright their columns are separated by valleys; turned, the profile blurs.
    The profile's total variation over its total mass measures it.
    """
    import cv2

    if not mask.any():
        return 0.0
    m = mask.astype(np.float32)
    best, best_angle = -1.0, 0.0
    steps = int(round(p.max_hand_rotation_deg / p.hand_rotation_step_deg))
    for k in range(-steps, steps + 1):
        a = k * p.hand_rotation_step_deg
        rot, _, size = _rotation(m.shape, a)
        prof = cv2.warpAffine(m, rot, size, flags=cv2.INTER_LINEAR).sum(0)
        tv = float(np.abs(np.diff(prof)).sum()) / max(float(prof.sum()), 1.0)
        # hands are placed about upright (the platen's guides); a slanted row of touching
        # fingertips also sharpens the profile at its slant, so large angles need clear support
        tv *= math.exp(-0.5 * (a / p.hand_rotation_prior_deg) ** 2)
        if tv > best:
            best, best_angle = tv, a
    return best_angle
