"""Each fingertip back in the slap's pixels: its box, rotation, upright crop and quality."""

from __future__ import annotations

import math

import numpy as np

from ...errors import ImageError, InvalidInputError
from ._map import _disk
from ._pieces import _Piece
from .params import MM_PER_INCH as _MM_PER_INCH, SlapFinger, SlapParams



def _finger(original: np.ndarray, pc: _Piece, position: int, inv: np.ndarray, hand_deg: float,
            scale_back: float, dpi: float, p: SlapParams, px_mm: float, quality: bool) -> SlapFinger:
    import cv2

    ys, xs = np.nonzero(pc.mask)
    pts = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, np.float64)], 1) @ inv.T  # map pixels, slap frame
    # the piece's own axis within the hand's frame (fingers fan out), when it is elongated enough to tell
    own = 0.0
    if len(xs) > 10:
        cov = np.cov(np.stack([xs, ys]).astype(np.float64))
        ev, evec = np.linalg.eigh(cov)
        if ev[1] > 1.3 * ev[0]:
            vx, vy = evec[:, 1]
            if vy > 0:
                vx, vy = -vx, -vy  # base -> tip: up
            own = float(np.degrees(np.arctan2(-vx, -vy)))
            own = float(np.clip(own, -30.0, 30.0))
    rotation = hand_deg + own
    h0, w0 = original.shape
    corners = pts * scale_back
    # the map's edge lies outside the print's by the band-pass and energy windows' spread
    grow = 0.5 * scale_back - p.edge_spread_mm * dpi / _MM_PER_INCH
    x0 = int(np.clip(np.floor(corners[:, 0].min() - grow), 0, w0))
    x1 = int(np.clip(np.ceil(corners[:, 0].max() + grow), 0, w0))
    y0 = int(np.clip(np.floor(corners[:, 1].min() - grow), 0, h0))
    y1 = int(np.clip(np.ceil(corners[:, 1].max() + grow), 0, h0))
    # upright crop: the piece's extent along and across its own axis, turned back by its rotation
    c = corners[:, :2].mean(0)
    t = math.radians(rotation)
    across = np.array([math.cos(t), -math.sin(t)])
    along = np.array([-math.sin(t), -math.cos(t)])
    rel = corners[:, :2] - c
    u, v = rel @ across, rel @ along
    margin = p.crop_margin_mm * dpi / _MM_PER_INCH
    cw = int(math.ceil(u.max() - u.min() + 2 * margin + scale_back))
    ch = int(math.ceil(v.max() - v.min() + 2 * margin + scale_back))
    centre = c + across * 0.5 * (u.max() + u.min()) + along * 0.5 * (v.max() + v.min())
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), -rotation, 1.0)
    m[0, 2] += cw / 2.0 - centre[0]
    m[1, 2] += ch / 2.0 - centre[1]
    crop = cv2.warpAffine(original, m, (cw, ch), flags=cv2.INTER_LINEAR, borderValue=255)
    # blank what is not this finger (a neighbour's edge, a lower phalanx below the crease)
    piece = np.zeros((h0, w0), np.uint8)
    poly = cv2.convexHull((corners[:, :2]).astype(np.float32)).astype(np.int32)
    cv2.fillConvexPoly(piece, poly, 1)
    keep = cv2.warpAffine(piece, m, (cw, ch), flags=cv2.INTER_NEAREST)
    keep = cv2.dilate(keep, _disk(margin))
    crop = np.where(keep > 0, crop, 255).astype(np.uint8)
    q = None
    if quality:
        q = _quality(crop, dpi)
    return SlapFinger(position, (x0, y0, x1, y1), rotation, crop, q, float(min(1.0, pc.score)))


def _quality(crop: np.ndarray, dpi: float) -> int:
    from ..image_quality import image_quality

    try:
        return int(image_quality(crop, dpi).score)
    except (InvalidInputError, ImageError):  # a crop too small or without ridges: quality 0
        return 0
