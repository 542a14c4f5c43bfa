"""Slap segmentation: a four-finger or two-thumb plain impression -> one upright image per fingertip.

A ten-print capture takes each hand's four fingers at once ("slaps", ANSI/NIST-ITL finger
position 13 right, 14 left) and both thumbs at once (15).  This stage finds the distal phalanx
(the fingertip, down to the first joint's crease) of each finger, gives it its position from the
slap type and the geometry of the hand, and cuts it out upright.  It follows the approach of
NIST's NFSEG (NBIS) in outline -- a coarse print map, the hand's rotation from the column profile,
finger columns, fingertips cut at the crease -- with its own rules (no NFSEG code used)::

    working image      8-bit grey at 500 ppi (ridge periods 5-15 px)
    print map          ridge-band energy (extract.segmentation.ridge_band_energy) above a
                       fraction of the strongest prints, at 1/4 scale; closed (ridges join)
                       and opened (handwriting, printed text and lines narrower than
                       2 * open_radius_mm go)
    hand rotation      the angle that makes the map's column profile sharpest (fingers
                       upright), weighed by a prior for hands placed about upright
    pieces             connected regions in the hand's frame; a region wider than one finger
                       is split at the notch of its upper contour between touching tips
                       (else at its column profile's valleys), the split line then the
                       path of least ridge energy near that column, top to bottom (the gap
                       the closing bridged, or the seam where pressed tips meet), and parts
                       weaker than half their tip (a joined lower phalanx) set apart; a
                       region longer than a fingertip is cut at the crease, where the tip's
                       ridge energy per row first falls below half its level (the crease's
                       white line, a lighter middle phalanx, or a neck)
    lower phalanges    a piece with a finger-sized piece just above it in the same finger
                       column is a middle/proximal phalanx, never a fingertip
    selection and      finger-sized pieces scored by size, fill and ridge strength (fragments
    positions          at the image edge narrower than a finger count little); the subset of
                       pieces and the positions they take are chosen together, against the
                       hand's template (x order and spacing, the arc of tips: the middle
                       finger highest, the little finger lowest; the hand about the platen's
                       middle), a missing finger costing a fixed amount: a missing finger
                       leaves the right gap, a stray blob is not taken for a finger; missing
                       positions reported
    boxes, crops       each piece mapped back to the slap's pixels; its box pulled in by the
                       map's edge spread; the fingertip turned upright, neighbours blanked

Modules, in the order of the stages: :mod:`._map` (print map, hand rotation), :mod:`._pieces`
(pieces, touching tips, creases, lower phalanges, scores), :mod:`._assign` (fingertips and
positions chosen together), :mod:`._crop` (boxes, rotations, upright crops, quality); the
tunables and result types in :mod:`.params`.

Finger order in the image (ANSI/NIST-ITL finger position codes; the images as captured,
palms on the platen, as NIST's SlapSeg examples show them): right slap (13) from left to
right index 2, middle 3, ring 4, little 5; left slap (14) little 10, ring 9, middle 8, index 7;
thumbs (15) left thumb 6 on the left, right thumb 1 on the right.

Geometry (all in :class:`SlapParams`, in mm and degrees): adult fingertips are 14-20 mm wide
(little finger 12-16 mm), a plain print of the distal phalanx 1.2-2.3 times as long as it is
wide (light pressure prints a narrower strip of the pad); in a slap the tips lie on an arc whose
top is the middle finger, the index and ring fingers 3-12 mm lower, the little finger 12-30 mm
lower.

Measured (``benchmarks/segmentation.py``): see the README's ten-print section; on NIST's inked
card slaps every finger is found (``tests/extract/test_slap_segmentation.py``).

Rotation convention: ``rotation_deg`` is the angle from the image's vertical to the finger's
axis (base to tip), positive when the tip leans to the left (counter-clockwise as displayed);
the upright image is the finger turned back by that angle.

The image's own resolution is kept in every output (boxes in its pixels, crops at its ppi).
"""

from __future__ import annotations

from pathlib import Path
from typing import MutableMapping

import numpy as np

from ...errors import NotASlapError, invalid
from ...imaging import check_dpi, load_fingerprint
from ...params import WORKING_DPI, ExtractionParams
from ..segmentation import ridge_band_energy
from ._assign import _candidates, _choose
from ._crop import _finger
from ._map import _clean, _hand_angle, _original, _p95, _rotation
from ._pieces import _drop_lower_phalanges, _finger_width, _pieces, _score
from .params import MM_PER_INCH as _MM_PER_INCH, SlapFinger, SlapParams, SlapSegmentation

__all__ = ["SLAPS", "SLAP_OF_FGP", "SlapParams", "SlapFinger", "SlapSegmentation", "segment_slap", "NotASlapError"]


SLAPS = {"right4": (13, (2, 3, 4, 5)), "left4": (14, (10, 9, 8, 7)), "thumbs": (15, (6, 1))}
"""Slap kind -> (ANSI/NIST-ITL finger position code, positions from the image's left to its right)."""
SLAP_OF_FGP = {13: "right4", 14: "left4", 15: "thumbs"}

_SCALE = 4  # the print map is made at 1/4 of the 500 ppi working image (0.2 mm per pixel)


def segment_slap(image: np.ndarray | str | Path, dpi: float, slap: str | int, params: SlapParams | None = None,
                 *, quality: bool = True, absent=(), capture: MutableMapping[str, object] | None = None
                 ) -> SlapSegmentation:
    """Find, number and cut out the fingertips of a slap.

    Parameters
    ----------
    image : ndarray or path
        Grey (or colour) slap image, uint8/uint16/float, shape (h, w[, c]); or an image file.
    dpi : float
        Its resolution (100-2000 ppi); 500 and 1000 are usual.
    slap : str or int
        ``"right4"`` / 13, ``"left4"`` / 14 or ``"thumbs"`` / 15.
    params : SlapParams, optional
    quality : bool
        Compute each fingertip's print quality (runs the extractor on each crop, about 30 ms each).
    absent : iterable of int
        Positions of this slap known to be absent (the record's amputated / unable-to-print
        codes, ANSI/NIST-ITL 14.018): no print is given them, and they are reported missing.
        Without it the hand's geometry alone places the prints, and two fingers missing side by
        side can leave the others one place off.
    capture : dict, optional
        Receives ``"map"`` (the print map in the hand's frame, uint8), ``"hand_rotation_deg"``
        and ``"pieces"`` (every candidate, its box in map pixels and whether it was kept).

    Returns
    -------
    SlapSegmentation

    Raises
    ------
    InvalidInputError
        Wrong ``slap``, ``dpi``, dtype or shape (the message names the argument).
    NotASlapError
        An image too small to hold the slap's fingers at its resolution, or with no print.
    ImageError
        An unreadable file.

    Examples
    --------
    >>> seg = segment_slap("slap_right4.png", 500, "right4")  # doctest: +SKIP
    >>> [(f.position, f.box) for f in seg.fingers]  # doctest: +SKIP
    [(2, (102, 455, 410, 930)), (3, (420, 101, 700, 520)), ...]

    Notes
    -----
    Deterministic and thread-safe; about 0.1 s for a 1600 x 1000 slap at 500 ppi without quality.
    """
    import cv2

    p = SlapParams() if params is None else params
    if not isinstance(p, SlapParams):
        raise invalid("params", "a SlapParams", type(p).__name__)
    kind = _slap_kind(slap)
    fgp, order = SLAPS[kind]
    absent = _absent(absent, kind, order)
    dpi = check_dpi(dpi)
    original = _original(image)
    h0, w0 = original.shape
    width_mm, height_mm = w0 / dpi * _MM_PER_INCH, h0 / dpi * _MM_PER_INCH
    fw_prior = p.thumb_width_mm if kind == "thumbs" else p.finger_width_mm
    need_w = fw_prior * (len(order) - 0.5) * p.min_width_ratio * 1.6
    if width_mm < need_w or height_mm < fw_prior * 1.2:
        raise NotASlapError(f"image: expected a {kind} slap at least {need_w:.0f} x {fw_prior * 1.2:.0f} mm "
                            f"({len(order)} fingers side by side), got {w0} x {h0} px at {dpi:g} ppi "
                            f"({width_mm:.1f} x {height_mm:.1f} mm): a single finger?")
    if absent >= set(order):
        # every finger declared absent (both thumbs amputated...): nothing to find, and a slap
        # showing no fingertip is what the record says, not an error
        return SlapSegmentation(kind, fgp, dpi, (), tuple(order), 0.0)
    grey = load_fingerprint(original, dpi)
    energy, _ = ridge_band_energy(grey, ExtractionParams())
    small = cv2.resize(energy, (max(1, grey.shape[1] // _SCALE), max(1, grey.shape[0] // _SCALE)),
                       interpolation=cv2.INTER_AREA)
    px_mm = WORKING_DPI / _MM_PER_INCH / _SCALE  # map pixels per mm
    ref = _p95(small)
    if ref < 2.0:  # grey levels of band-passed ridges: a blank or flat image has none
        raise NotASlapError(f"image: expected a {kind} slap, got an image with no ridge pattern "
                            f"(ridge-band energy p95 {ref:.2f} grey levels): blank?")
    raw = small > p.energy_relative_min * ref
    mask = _clean(raw, p, px_mm)
    angle = _hand_angle(mask, p)
    rot, inv, size = _rotation(small.shape, angle)
    hmask = cv2.warpAffine(mask.astype(np.uint8), rot, size, flags=cv2.INTER_NEAREST) > 0
    hraw = cv2.warpAffine(raw.astype(np.uint8), rot, size, flags=cv2.INTER_NEAREST) > 0
    henergy = cv2.warpAffine(small, rot, size, flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones(small.shape, np.uint8), rot, size, flags=cv2.INTER_NEAREST) > 0
    fw = fw_prior * px_mm
    pieces = _pieces(hmask, henergy, p, fw)
    fw = _finger_width(pieces, fw, px_mm, kind, p)
    for pc in pieces:
        _score(pc, hraw, henergy, inside, ref, fw, p)
    pieces = _drop_lower_phalanges(pieces, fw, p)
    chosen = _choose(_candidates(pieces, len(order), fw, p), kind, order, fw, px_mm, p, w_map=size[0],
                     absent=absent)
    kept = [pc for pc, _ in chosen]
    if capture is not None:
        capture["map"] = (hmask * 255).astype(np.uint8)
        capture["hand_rotation_deg"] = angle
        capture["pieces"] = [((pc.x0, pc.y0, pc.x1, pc.y1), pc.score, any(pc is k for k in kept)) for pc in pieces]
    if not kept:
        raise NotASlapError(f"image: expected a {kind} slap, found no fingertip ({len(pieces)} print regions, "
                            f"none finger-sized)")
    scale_back = dpi / WORKING_DPI * _SCALE  # map pixels -> original pixels
    fingers = []
    for pc, pos in sorted(chosen, key=lambda t: t[0].cx):
        fingers.append(_finger(original, pc, pos, inv, angle, scale_back, dpi, p, px_mm, quality))
    missing = tuple(q for q in order if q not in {pos for _, pos in chosen})
    return SlapSegmentation(kind, fgp, dpi, tuple(fingers), missing, angle)


def _absent(absent, kind: str, order: tuple) -> frozenset:
    try:
        out = frozenset(absent)
    except TypeError:
        raise invalid("absent", f"positions of the {kind} slap {sorted(order)}", absent) from None
    if any(isinstance(q, bool) or not isinstance(q, (int, np.integer)) or int(q) not in order for q in out):
        raise invalid("absent", f"positions of the {kind} slap {sorted(order)}", sorted(out, key=str))
    return frozenset(int(q) for q in out)


def _slap_kind(slap) -> str:
    if isinstance(slap, str) and slap in SLAPS:
        return slap
    if isinstance(slap, (int, np.integer)) and not isinstance(slap, bool) and int(slap) in SLAP_OF_FGP:
        return SLAP_OF_FGP[int(slap)]
    raise invalid("slap", "'right4' (13), 'left4' (14) or 'thumbs' (15)", slap)
