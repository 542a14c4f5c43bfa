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
                       (else at its column profile's valleys), the pixels shared out by a
                       watershed along the neck; a region longer than a fingertip is cut at
                       the crease, where the tip's ridge energy first falls below half its
                       level (the crease's white line, or a lighter middle phalanx)
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

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import MutableMapping

import numpy as np

from ..errors import ImageError, InvalidInputError, NotASlapError, invalid
from ..imaging import check_dpi, load_fingerprint
from ..params import WORKING_DPI, ExtractionParams
from .segmentation import ridge_band_energy

__all__ = ["SLAPS", "SLAP_OF_FGP", "SlapParams", "SlapFinger", "SlapSegmentation", "segment_slap", "NotASlapError"]


SLAPS = {"right4": (13, (2, 3, 4, 5)), "left4": (14, (10, 9, 8, 7)), "thumbs": (15, (6, 1))}
"""Slap kind -> (ANSI/NIST-ITL finger position code, positions from the image's left to its right)."""
SLAP_OF_FGP = {13: "right4", 14: "left4", 15: "thumbs"}

_MM_PER_INCH = 25.4
_SCALE = 4  # the print map is made at 1/4 of the 500 ppi working image (0.2 mm per pixel)


@dataclass(frozen=True)
class SlapParams:
    """Every tunable of slap segmentation (lengths in mm, angles in degrees).

    Attributes
    ----------
    energy_relative_min : float
        Print map: ridge-band energy above this fraction of its 95th percentile.
    close_radius_mm, open_radius_mm : float
        Closing joins ridges of one print; opening removes strokes, text and lines narrower
        than twice ``open_radius_mm``.
    max_hand_rotation_deg, hand_rotation_step_deg : float
        Range and step of the hand-rotation search.
    hand_rotation_prior_deg : float
        Spread of hand rotations (hands are placed about upright): the profile's sharpness at
        angle a is weighed by exp(-a^2 / 2 prior^2), so that the slant of a row of touching
        fingertips does not pass for the hand's rotation.
    finger_width_mm, thumb_width_mm : float
        Prior fingertip widths, used until the slap's own tips give theirs.
    split_width_ratio : float
        A piece wider than this many finger widths is split at its column profile's valleys.
    split_valley_ratio : float
        Without a notch, a piece wider than ``split_width_ratio`` fingers is split at its weakest
        column at least 0.6 finger widths from either end if that column's count is below this
        fraction of the lower of the two peaks beside it.
    min_notch_ratio : float
        Touching fingertips are told apart by the notch between their rounded tops: at least
        this many finger widths deep (0.12: 2 mm), searched first.
    deep_valley_ratio : float
        A piece about one finger wide is split only at a valley this deep (a cut-off neighbour).
    tip_length_ratio : tuple of float
        The crease is searched between these multiples of the finger's width from its tip.
    max_tip_length_ratio : float
        A piece longer than this many widths holds more than a fingertip: it is cut even without
        a visible crease (a light plain impression of a fingertip is up to 2.3 widths long: its
        contact is narrower than the finger).
    crease_drop_ratio : float
        Otherwise a piece is cut where its ridge energy first falls below this fraction of the
        tip's level (the crease's white line, or a middle phalanx printed lighter: it carries
        less weight), if half a finger width of print follows.
    lower_phalanx_overlap : float
        A piece is a lower phalanx when its columns overlap a piece above it by this fraction
        of the narrower one.
    min_width_ratio, min_length_ratio : float
        A fingertip is at least this many finger widths wide and long.
    min_fill : float
        Fraction of a piece's area with ridge energy over the threshold (before closing):
        handwriting and text blobs stay below it.
    tip_rise_mm : tuple of float
        Height of each finger's tip above the middle finger's, index, middle, ring, little
        (the arc of a right hand, in its own frame; mirrored for the left).
    tip_rise_sigma_mm : float
        Spread of each tip's height about the arc in the position assignment.
    thumb_rise_sigma_mm : float
        Spread of the height difference of the two thumbs' tips (side by side on the platen):
        a faint blob far below the one thumb found is a phalanx, not the other thumb.
    spacing_ratio, spacing_sigma_ratio : float
        Prior of the fingertip centre spacing over the finger width (fingers slightly spread on
        the platen: 1.1-1.6), and its spread; each hypothesis fits its own spacing under it.
    position_sigma_ratio : float
        Spread of each tip's centre about the fitted spacing, in spacings.
    centre_sigma_ratio : float
        Spread, in finger spacings, of the hand's centre about the image's centre (the hand is
        placed on the middle of the platen): decides which end a missing finger is at when the
        arc alone cannot.
    edge_spread_mm : float
        How far the print map's edge lies outside the print's: the ridge band-pass (coarse
        low-pass sigma about 3.75 px at 500 ppi) and the energy window (two box passes of
        11 px) spread the ridge energy about half their support outward, and the map is
        thresholded at 0.3 of the prints' level: 0.3-0.4 mm (measured 0.36 mm on generated
        slaps, the same on every side).  Boxes are pulled in by it.
    crop_margin_mm : float
        Margin around the fingertip in the upright crop.
    max_hole_mm2 : float
        Holes in the print map up to this area are filled (a punched hole is about 30 mm²).
    missing_cost : float
        Cost (chi-square units) of declaring a finger missing when choosing the fingertips: a
        doubtful piece (score s costs -2 ln s) or a poor fit to the hand's arc is preferred to a
        missing finger only while it costs less.
    """

    energy_relative_min: float = 0.3
    close_radius_mm: float = 0.8
    open_radius_mm: float = 3.2
    max_hand_rotation_deg: float = 45.0
    hand_rotation_step_deg: float = 2.0
    hand_rotation_prior_deg: float = 20.0
    finger_width_mm: float = 16.0
    thumb_width_mm: float = 21.0
    split_width_ratio: float = 1.45
    split_valley_ratio: float = 0.8
    min_notch_ratio: float = 0.12
    deep_valley_ratio: float = 0.4
    tip_length_ratio: tuple = (0.9, 2.6)
    max_tip_length_ratio: float = 2.8
    crease_drop_ratio: float = 0.5
    lower_phalanx_overlap: float = 0.4
    min_width_ratio: float = 0.5
    min_length_ratio: float = 0.6
    min_fill: float = 0.55
    tip_rise_mm: tuple = (-8.0, 0.0, -4.0, -20.0)
    tip_rise_sigma_mm: float = 7.0
    thumb_rise_sigma_mm: float = 10.0
    spacing_ratio: float = 1.25
    position_sigma_ratio: float = 0.12
    centre_sigma_ratio: float = 1.0
    edge_spread_mm: float = 0.35
    spacing_sigma_ratio: float = 0.2
    crop_margin_mm: float = 1.0
    max_hole_mm2: float = 80.0
    missing_cost: float = 6.0

    def __post_init__(self):
        for name in ("energy_relative_min", "close_radius_mm", "open_radius_mm", "max_hand_rotation_deg",
                     "hand_rotation_step_deg", "hand_rotation_prior_deg", "finger_width_mm", "thumb_width_mm", "split_width_ratio",
                     "split_valley_ratio", "max_tip_length_ratio", "min_width_ratio", "min_length_ratio",
                     "tip_rise_sigma_mm", "thumb_rise_sigma_mm", "spacing_ratio", "spacing_sigma_ratio", "centre_sigma_ratio",
                     "position_sigma_ratio"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise invalid(f"SlapParams.{name}", "a positive number", v)
        if len(self.tip_rise_mm) != 4 or len(self.tip_length_ratio) != 2:
            raise invalid("SlapParams.tip_rise_mm", "4 heights (index, middle, ring, little)", self.tip_rise_mm)


@dataclass(frozen=True)
class SlapFinger:
    """One fingertip found in a slap.

    Attributes
    ----------
    position : int
        ANSI/NIST-ITL finger position (1-10).
    box : tuple of int
        ``(x0, y0, x1, y1)`` in the slap image's pixels, x1/y1 exclusive: the axis-aligned box of
        the distal phalanx's print.
    rotation_deg : float
        The finger axis's angle from the vertical, positive when the tip leans left.
    image : ndarray of uint8 (h, w)
        The fingertip upright, at the slap's resolution, neighbours blanked (white).
    quality : int or None
        Print quality 0-100 of ``image`` (:mod:`biomatch.extract.quality_score`), when asked.
    confidence : float
        0-1: how clearly the piece is a fingertip (size, fill, ridge strength).
    """

    position: int
    box: tuple
    rotation_deg: float
    image: np.ndarray = field(repr=False)
    quality: int | None = None
    confidence: float = 1.0

    def as_dict(self) -> dict:
        return {"position": self.position, "box": list(self.box), "rotation_deg": round(self.rotation_deg, 2),
                "quality": self.quality, "confidence": round(self.confidence, 3)}


@dataclass(frozen=True)
class SlapSegmentation:
    """The fingertips of one slap.

    Attributes
    ----------
    slap : str
        ``"right4"``, ``"left4"`` or ``"thumbs"``.
    fgp : int
        Its ANSI/NIST-ITL finger position code (13, 14, 15).
    dpi : float
    fingers : tuple of SlapFinger
        In the image's left-to-right order.
    missing : tuple of int
        Positions of the slap not found (amputated, bandaged, off the platen, too faint).
    hand_rotation_deg : float
    """

    slap: str
    fgp: int
    dpi: float
    fingers: tuple
    missing: tuple
    hand_rotation_deg: float

    def by_position(self) -> dict:
        return {f.position: f for f in self.fingers}

    def as_dict(self) -> dict:
        return {"slap": self.slap, "fgp": self.fgp, "dpi": self.dpi,
                "hand_rotation_deg": round(self.hand_rotation_deg, 2),
                "fingers": [f.as_dict() for f in self.fingers], "missing": list(self.missing)}


@dataclass(eq=False)
class _Piece:
    """A candidate fingertip in the hand's frame (map pixels, 0.2 mm)."""

    mask: np.ndarray  # bool, full map size
    x0: int
    x1: int
    y0: int
    y1: int
    fill: float = 0.0
    energy: float = 0.0
    score: float = 0.0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def cx(self) -> float:
        return 0.5 * (self.x0 + self.x1)


def segment_slap(image: np.ndarray | str | Path, dpi: float, slap: str | int, params: SlapParams | None = None,
                 *, quality: bool = True, capture: MutableMapping[str, object] | None = None) -> SlapSegmentation:
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
    chosen = _choose(_candidates(pieces, len(order), fw, p), kind, order, fw, px_mm, p, w_map=size[0])
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


def _slap_kind(slap) -> str:
    if isinstance(slap, str) and slap in SLAPS:
        return slap
    if isinstance(slap, (int, np.integer)) and not isinstance(slap, bool) and int(slap) in SLAP_OF_FGP:
        return SLAP_OF_FGP[int(slap)]
    raise invalid("slap", "'right4' (13), 'left4' (14) or 'thumbs' (15)", slap)


def _original(image) -> np.ndarray:
    """The image as 8-bit grey at its own resolution (boxes and crops are in its pixels)."""
    from ..imaging import read_image, to_grey8

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


def _pieces(hmask: np.ndarray, henergy: np.ndarray, p: SlapParams, fw: float) -> list:
    """Connected regions of the upright map, split where fingers touch and cut at the crease."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(hmask.astype(np.uint8), connectivity=8)
    min_area = (p.min_width_ratio * fw) * (p.min_length_ratio * fw)
    out = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < 0.5 * min_area:
            continue
        comp = labels == i
        for strip in _split_columns(comp, p, fw):
            out.extend(_cut_creases(strip, henergy, p, fw))
    return [pc for pc in out if pc.mask.sum() >= 0.5 * min_area]


def _bounds(m: np.ndarray):
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1


def _split_columns(comp: np.ndarray, p: SlapParams, fw: float) -> list:
    """Split a region wider than a finger: at the notches of its upper contour, else at the valleys
    of its column profile; the pixels then shared out by :func:`_watershed`."""
    b = _bounds(comp)
    x0, x1, y0, y1 = b
    todo, done = [(x0, x1)], []
    prof = comp.sum(0).astype(np.float64)
    k = max(1, int(round(0.15 * fw)))
    prof = np.convolve(prof, np.ones(2 * k + 1) / (2 * k + 1), mode="same")
    # the upper contour: between touching fingertips it dips into a notch (the tips are rounded),
    # whatever is joined below them (a middle phalanx without its crease gap, the palm)
    rows = np.where(comp.any(0), comp.argmax(0), comp.shape[0]).astype(np.float64)
    while todo:
        a, b_ = todo.pop()
        # wider than a finger: split at the deepest notch of the upper contour, else at a valley
        # of the column profile; about one finger wide: only at a deep valley (a cut-off neighbour)
        if b_ - a > p.split_width_ratio * fw:
            margin = int(0.6 * fw)
            cut = _notch(rows, a, b_, margin, p.min_notch_ratio * fw)
            if cut is None:
                cut = _valley(prof, a, b_, p.split_valley_ratio, margin)
        elif b_ - a > 0.9 * fw:
            cut = _valley(prof, a, b_, p.deep_valley_ratio, int(0.1 * fw))
        else:
            cut = None
        if cut is None:
            done.append((a, b_))
            continue
        todo.extend([(a, cut), (cut, b_)])
    strips = sorted(done)
    if len(strips) == 1:
        return [comp]
    return _watershed(comp, strips)


def _watershed(comp: np.ndarray, strips: list) -> list:
    """The pixels of touching fingers shared out along the neck between them, not a vertical cut:
    each strip's core (its pixels far from the region's edge) grows over the region's distance
    map (watershed), so an oblique or overlapping contact line is followed."""
    import cv2
    from skimage.segmentation import watershed

    dist = cv2.distanceTransform(comp.astype(np.uint8), cv2.DIST_L2, 5)
    markers = np.zeros(comp.shape, np.int32)
    for i, (a, b_) in enumerate(strips, start=1):
        d = np.zeros_like(dist)
        d[:, a:b_] = dist[:, a:b_]
        top = float(d.max())
        if top <= 0:
            continue
        markers[d >= 0.6 * top] = i
    labels = watershed(-dist, markers, mask=comp)
    return [labels == i for i in range(1, len(strips) + 1) if (labels == i).any()]


def _notch(top: np.ndarray, a: int, b: int, margin: int, min_depth: float) -> int | None:
    """The column in (a, b), ``margin`` from either end, where the upper contour ``top`` (row of
    the first print pixel, down is larger) dips deepest below the highest points on both sides;
    None unless it dips ``min_depth`` at least."""
    best, best_depth = None, min_depth
    for x in range(a + max(margin, 1), b - max(margin, 1)):
        depth = top[x] - max(top[a:x].min(), top[x + 1:b].min(initial=top[x]))
        if depth >= best_depth:
            best, best_depth = x, depth
    return best


def _valley(prof: np.ndarray, a: int, b: int, ratio: float, margin: int) -> int | None:
    """The deepest column in (a, b), at least ``margin`` columns from either end, whose count is
    below ``ratio`` times the lower of the peaks on its two sides."""
    best, best_ratio = None, ratio
    for x in range(a + max(margin, 1), b - max(margin, 1)):
        left, right = prof[a:x].max(initial=0.0), prof[x:b].max(initial=0.0)
        low = min(left, right)
        if low <= 0:
            continue
        r = prof[x] / low
        if r < best_ratio:
            best, best_ratio = x, r
    return best


def _cut_creases(strip: np.ndarray, henergy: np.ndarray, p: SlapParams, fw: float) -> list:
    """A piece longer than a fingertip, cut at the crease (then the rest, again, for a long finger).

    Along the finger, the ridge energy of the tip holds a level; at the first joint it falls -- the
    crease's white line, or a step down to a middle phalanx pressed lighter than the tip.  The cut
    is at the weakest row just after the first row, in the band where the joint lies, whose energy
    falls below ``crease_drop_ratio`` of the tip's level, provided at least half a finger width of
    print follows (a tip that merely fades towards its joint ends there instead).  A piece longer
    than ``max_tip_length_ratio`` widths is cut at its weakest row in the band whatever.
    """
    out = []
    m = strip
    for _ in range(4):
        b = _bounds(m)
        if b is None:
            break
        x0, x1, y0, y1 = b
        w_eff = min(max(x1 - x0, 1), 1.3 * fw)
        lo = y0 + int(p.tip_length_ratio[0] * w_eff)
        hi = min(y1 - int(0.3 * w_eff), y0 + int(p.tip_length_ratio[1] * w_eff))
        if y1 - y0 <= 1.5 * w_eff or hi <= lo:
            out.append(_Piece(m, x0, x1, y0, y1))
            break
        rows = (henergy * m).sum(1) / np.maximum(m.sum(1), 1)
        k = max(1, int(round(0.06 * fw)))
        rows = np.convolve(rows, np.ones(2 * k + 1) / (2 * k + 1), mode="same")
        tip_rows = rows[y0 + int(0.2 * w_eff):lo]
        level = float(np.median(tip_rows)) if len(tip_rows) else float(rows[y0:lo].max(initial=0.0))
        low = np.flatnonzero(rows[lo:hi] < p.crease_drop_ratio * level)
        cut = None
        if len(low):
            start = lo + int(low[0])
            cut = start + int(np.argmin(rows[start:min(hi, start + int(0.3 * w_eff) + 1)]))
            if y1 - cut < 0.5 * w_eff:
                cut = None  # a fade to the tip's end, not a joint
        if cut is None and y1 - y0 > p.max_tip_length_ratio * w_eff:
            cut = lo + int(np.argmin(rows[lo:hi]))
        if cut is None:
            out.append(_Piece(m, x0, x1, y0, y1))
            break
        top = m.copy()
        top[cut:] = False
        rest = m.copy()
        rest[:cut] = False
        bt = _bounds(top)
        if bt is not None:
            out.append(_Piece(top, *bt))
        m = rest
    return out


def _finger_width(pieces: list, prior: float, px_mm: float, kind: str, p: SlapParams) -> float:
    """The slap's own fingertip width: the median width of single-finger-sized pieces, else the prior."""
    ws = [pc.width for pc in pieces if 0.6 * prior <= pc.width <= 1.4 * prior and pc.height >= 0.8 * pc.width]
    if len(ws) >= 2:
        return float(np.clip(np.median(ws), 0.75 * prior, 1.3 * prior))
    return prior


def _drop_lower_phalanges(pieces: list, fw: float, p: SlapParams) -> list:
    """A piece with a finger-sized piece just above it in the same finger column is a lower phalanx.

    "Just above": the upper piece's bottom within 0.6 finger widths of this piece's top (the
    joint's crease between them), its columns over ``lower_phalanx_overlap`` of this piece's.
    """
    keep = []
    for pc in pieces:
        lower = False
        for q in pieces:
            if q is pc or q.y0 >= pc.y0 or q.width < p.min_width_ratio * fw or q.height < p.min_length_ratio * fw:
                continue
            overlap = min(pc.x1, q.x1) - max(pc.x0, q.x0)
            gap = pc.y0 - q.y1
            if overlap >= p.lower_phalanx_overlap * pc.width and -0.5 * pc.height <= gap <= 0.6 * fw \
                    and q.fill >= p.min_fill:
                lower = True
                break
        if not lower:
            keep.append(pc)
    return keep


def _score(pc: _Piece, hraw: np.ndarray, henergy: np.ndarray, inside: np.ndarray, ref: float, fw: float,
           p: SlapParams) -> None:
    import cv2

    area = float(pc.mask.sum())
    pc.fill = float(hraw[pc.mask].mean()) if area else 0.0
    pc.energy = float(henergy[pc.mask].mean()) / ref if area else 0.0
    size = min(1.0, area / (0.9 * fw * 1.3 * fw))
    # a piece against the image's edge is a cut-off print: worth less the narrower it is
    edge = cv2.dilate(pc.mask.astype(np.uint8), _disk(2)) & (~inside).astype(np.uint8)
    border = 0.5 if edge.any() and pc.width < 0.8 * fw else 1.0
    pc.score = size * min(1.0, pc.fill / 0.9) * min(1.0, pc.energy / 0.8) * border


def _candidates(pieces: list, n: int, fw: float, p: SlapParams) -> list:
    """Finger-sized, filled pieces, the best ``n + 3`` by score (enough for any choice below)."""
    ok = [pc for pc in pieces if pc.width >= p.min_width_ratio * fw and pc.height >= p.min_length_ratio * fw
          and pc.fill >= p.min_fill and pc.score >= 0.1]
    ok.sort(key=lambda pc: -pc.score)
    return sorted(ok[:n + 3], key=lambda pc: pc.cx)


def _choose(cands: list, kind: str, order: tuple, fw: float, px_mm: float, p: SlapParams, w_map: int) -> list:
    """Which candidates are the slap's fingertips, and their positions: ``[(piece, position)]``.

    Every subset of the candidates (in x order) against every choice of slots (in order) is
    costed, the lowest cost wins::

        cost = geometry (chi-square of the x spacing and the arc of tips against the hand's
               template, after the best shift; thumbs: none)
             + sum over chosen pieces of -2 ln(score)    (a doubtful piece costs)
             + missing_cost per slot left empty           (a missing finger costs too)
             + overlap: two chosen pieces in one column (the same finger twice) are impossible

    so that a missing finger leaves the right gap and a stray blob (handwriting, a cut-off
    neighbour) is taken only when the hand's geometry wants it.
    """
    n = len(order)
    best, best_cost = [], math.inf
    for k in range(min(n, len(cands)), 0, -1):
        for subset in itertools.combinations(cands, k):
            if any(min(a.x1, b.x1) - max(a.x0, b.x0) > 0.6 * min(a.width, b.width)
                   for a, b in zip(subset, subset[1:])):
                continue
            base = sum(-2.0 * math.log(max(pc.score, 1e-3)) for pc in subset) + p.missing_cost * (n - k)
            if base >= best_cost:
                continue
            slots, geo = _slots(subset, kind, order, fw, px_mm, p, w_map)
            if base + geo < best_cost:
                best, best_cost = list(zip(subset, slots)), base + geo
    return best


def _slots(kept: tuple, kind: str, order: tuple, fw: float, px_mm: float, p: SlapParams, w_map: int):
    """The positions of ``kept`` (in x order) that fit the hand's template best, and the fit's cost."""
    m = len(kept)
    if kind == "thumbs":
        if m == len(order):
            # both thumbs lie on the platen side by side: their tips at about one height
            dy = (kept[0].y0 - kept[1].y0) / (p.thumb_rise_sigma_mm * px_mm)
            return list(order), float(dy * dy)
        # one thumb: its side of the image (left thumb 6 on the left)
        return [order[0] if kept[0].cx < w_map / 2.0 else order[1]], 0.0
    rise = np.asarray(p.tip_rise_mm, np.float64) * px_mm  # index, middle, ring, little
    if kind == "left4":
        rise = rise[::-1]  # image order little, ring, middle, index
    spacing = p.spacing_ratio * fw
    xs = np.array([pc.cx for pc in kept])
    tops = np.array([-pc.y0 for pc in kept], np.float64)  # up is positive
    best, best_cost = None, math.inf
    for slots in itertools.combinations(range(len(order)), m):
        s = np.asarray(slots, np.float64)
        # x: xs ~ x0 + step * slot, the step (this hand's finger spacing) fitted too, under a
        # prior about the usual spacing (fingers more or less spread on the platen)
        sx, ss = p.position_sigma_ratio * spacing, p.spacing_sigma_ratio * spacing
        a = np.array([[len(s) / sx**2, s.sum() / sx**2], [s.sum() / sx**2, (s * s).sum() / sx**2 + 1 / ss**2]])
        rhs = np.array([xs.sum() / sx**2, (xs * s).sum() / sx**2 + spacing / ss**2])
        x0, step = np.linalg.solve(a, rhs)
        ex = np.append((xs - (x0 + step * s)) / sx, (step - spacing) / ss)
        # heights: tops ~ t0 + rise[slot]
        r = rise[list(slots)]
        t0 = float(np.mean(tops - r))
        ey = (tops - (t0 + r)) / (p.tip_rise_sigma_mm * px_mm)
        # the hand is placed about the middle of the platen: its centre (between the middle and
        # ring fingers) within about one finger spacing of the image's centre
        ec = (x0 + step * 0.5 * (len(order) - 1) - w_map / 2.0) / (p.centre_sigma_ratio * spacing)
        cost = float((ex ** 2).sum() + (ey ** 2).sum() + ec ** 2)
        if cost < best_cost:
            best, best_cost = slots, cost
    return [order[i] for i in best], best_cost


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
    from .image_quality import image_quality

    try:
        return int(image_quality(crop, dpi).score)
    except (InvalidInputError, ImageError):  # a crop too small or without ridges: quality 0
        return 0
