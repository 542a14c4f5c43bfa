"""The skin of one distal phalanx, unrolled: a ridge pattern over the whole nail-to-nail surface.

The finger's print-bearing surface is described in *skin coordinates* (millimetres):
``s`` is the arc length around the finger from the pad's centre line (negative on the image's
left as printed), ``z`` the distance from the fingertip towards the first crease.  A rolled print
shows this surface unrolled (``|s|`` up to the nail edges), a plain print its central part pressed
flat; both are maps from these coordinates (:mod:`._tenprint_maps`).

The ridge pattern is grown as :func:`biomatch.datasets.synthetic.master` grows its masters
(zero-pole orientation field, iterated oriented Gabor filtering of smoothed noise), on a canvas
sized to the finger at 500 ppi; the ridge height field is band-limited (period 8-11 px), so
renderings at 1000 ppi sample it without aliasing and add everything finer (ridge edges, noise,
blur) at their own resolution.  Ground-truth minutiae come from the pattern's skeleton.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SKIN_PPMM = 500.0 / 25.4
"""Pixels per millimetre of the grown ridge pattern (500 ppi)."""
_N_ITER = 12
_GROW_SCALE = 0.7
_SEED_SIGMA_PX = 6.0
_MARGIN_MM = 1.0
_PORE_CANDIDATES_PER_MM2 = 7.0


@dataclass(frozen=True)
class FingerSkin:
    """One finger's unrolled distal-phalanx skin.

    Attributes
    ----------
    ridges : float32 (h, w)
        Ridge height in [-1, 1] at :data:`SKIN_PPMM`; pixel ``(u, v)`` is skin point
        ``s = u / SKIN_PPMM - half_arc_mm - 1``, ``z = v / SKIN_PPMM``.
    minutiae : float64 (n, 4)
        ``s_mm, z_mm, angle_rad, kind`` (angle counter-clockwise as displayed, y down).
    radius_mm : float
        Radius of the finger (half its width) at the first crease.
    half_arc_mm : float
        Arc length from the pad's centre line to either nail edge.
    length_mm : float
        Fingertip to first crease.
    fingerprint_class : str
    """

    ridges: np.ndarray
    minutiae: np.ndarray
    radius_mm: float
    half_arc_mm: float
    length_mm: float
    fingerprint_class: str
    pores: np.ndarray = None  # float64 (k, 2): s_mm, z_mm of sweat pores on ridge crests

    @property
    def s_offset_mm(self) -> float:
        return self.half_arc_mm + _MARGIN_MM

    def half_width_at(self, z_mm: np.ndarray) -> np.ndarray:
        """Half arc of the print-bearing skin at ``z_mm`` (the rounded tip narrows it)."""
        return outline_half_arc(z_mm, self.half_arc_mm, self.radius_mm)


def outline_half_arc(z_mm, half_arc_mm: float, radius_mm: float):
    """Half arc ``|s|`` of the distal phalanx's skin at ``z_mm`` from the tip.

    The tip is rounded over about one radius: the skin narrows like a quarter ellipse there.
    """
    z = np.asarray(z_mm, np.float64)
    t = np.clip(z / radius_mm, 0.0, 1.0)
    return half_arc_mm * np.sqrt(np.clip(1.0 - (1.0 - t) ** 2, 0.0, 1.0))


def grow_skin(seed: int, fingerprint_class: str, radius_mm: float, half_arc_mm: float,
              length_mm: float) -> FingerSkin:
    """Grow the ridge pattern of one finger (deterministic for a seed)."""
    import cv2

    from ..extract import _enhance_nb
    from ..extract.minutiae import detect_minutiae
    from ..extract.skeleton import skeletonise
    from ..params import ExtractionParams
    from .synthetic import _orientation, _thin_out

    rng = np.random.default_rng([int(seed), 0x7E9])
    w = int(np.ceil(2 * (half_arc_mm + _MARGIN_MM) * SKIN_PPMM))
    h = int(np.ceil((length_mm + _MARGIN_MM) * SKIN_PPMM))
    # The pattern's singular points sit on the pad (the canvas's central 60 %), the field
    # around them is the zero-pole model's; beyond the pad it runs on towards the nails.
    theta = _orientation(fingerprint_class, rng, h, w)
    # The pattern grows on a coarser grid (0.7x: ridge period 5.6-7.4 px, well above Nyquist) and
    # is brought to 500 ppi by cubic interpolation: a third of the cost of growing it at 500 ppi,
    # and the result is as smooth (the field is band-limited either way).
    g = _GROW_SCALE
    hc, wc = int(round(h * g)), int(round(w * g))
    c2 = cv2.resize(np.cos(2 * theta), (wc, hc), interpolation=cv2.INTER_AREA)
    s2 = cv2.resize(np.sin(2 * theta), (wc, hc), interpolation=cv2.INTER_AREA)
    theta_c = np.mod(0.5 * np.arctan2(s2, c2), np.pi)
    per = cv2.resize(rng.uniform(8.0, 10.5, (5, 5)).astype(np.float32), (wc, hc),
                     interpolation=cv2.INTER_CUBIC) * g
    periods = np.arange(5.0, 15.01, 0.5) * g
    n_a = 24
    bank = _enhance_nb.gabor_bank(n_a, periods, 4.0 * g, 4.0 * g, 5)
    a_idx = (np.rint(theta_c * (n_a / np.pi)).astype(np.int32)) % n_a
    p_idx = np.clip(np.rint((per - periods[0]) / (0.5 * g)), 0, len(periods) - 1).astype(np.int32)
    full = np.ones((hc, wc), np.uint8)
    img = cv2.GaussianBlur(rng.normal(0, 1, (hc, wc)).astype(np.float32), (0, 0), _SEED_SIGMA_PX * g)
    for _ in range(_N_ITER):
        img = _enhance_nb.gabor_filter(img, a_idx, p_idx, full, bank)
        img = np.clip(img / (np.std(img) + 1e-6) * 1.5, -1, 1).astype(np.float32)
    img = np.clip(cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC), -1, 1)
    # Ground truth on the print-bearing skin only, away from its outline.
    vv, uu = np.mgrid[0:h, 0:w]
    s = uu / SKIN_PPMM - (half_arc_mm + _MARGIN_MM)
    z = vv / SKIN_PPMM
    skin = ((np.abs(s) <= outline_half_arc(z, half_arc_mm, radius_mm)) & (z <= length_mm)).astype(np.uint8)
    inner = cv2.erode(skin, np.ones((9, 9), np.uint8))
    skel = skeletonise((img > 0).astype(np.uint8))
    cands, valid = detect_minutiae(skel, inner, theta, ExtractionParams())
    m = np.stack([cands.x, cands.y, np.mod(3 * np.pi - cands.angle, 2 * np.pi), cands.kind], 1).astype(np.float64)
    m = _thin_out(m[valid], 6.0)
    mm = np.column_stack([m[:, 0] / SKIN_PPMM - (half_arc_mm + _MARGIN_MM), m[:, 1] / SKIN_PPMM, m[:, 2], m[:, 3]])
    # Sweat pores: on ridge crests, about 2-3 per mm^2 of skin (9-18 per cm of ridge; Ashbaugh
    # 1999), 0.08-0.2 mm across: level-3 detail a 1000 ppi capture shows and a 500 ppi one blurs.
    n = int(_PORE_CANDIDATES_PER_MM2 * (w / SKIN_PPMM) * (h / SKIN_PPMM))
    pu, pv = rng.uniform(0, w - 1, n), rng.uniform(0, h - 1, n)
    crest = img[pv.astype(int), pu.astype(int)] > 0.6
    pores = np.column_stack([pu[crest] / SKIN_PPMM - (half_arc_mm + _MARGIN_MM), pv[crest] / SKIN_PPMM])
    return FingerSkin(img, mm, float(radius_mm), float(half_arc_mm), float(length_mm), fingerprint_class, pores)
