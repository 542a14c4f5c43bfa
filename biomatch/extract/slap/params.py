"""The slap segmentation's tunables (mm, ppi, degrees) and its result types."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...errors import invalid

MM_PER_INCH = 25.4


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
    two_finger_ratio : float
        A piece this many finger widths wide (1.5: 24 mm; an adult fingertip is 14-20 mm wide and
        its plain print narrower) holds two fingers whatever its cues: without a notch 2 mm deep,
        a valley or a clear seam it is split at its deepest notch however shallow, else on its
        path of least seam cost (two tips pressed together, one lower than the other).
    split_band_ratio : float
        The line between two touching tips is sought within this many finger widths either side
        of the column where they were told apart (0.25: a line slanted 15 deg against the hand
        over a tip's length).
    seam_sigma_mm : float
        Smoothing of the ridge energy the split line follows: keeps the dip of a 0.2-0.5 mm seam
        or gap, smooths the ridges' own texture.
    seam_halfwidth_mm : float
        A seam is a valley of ridge energy narrower than twice this: its energy is weighed
        against the strongest within this distance on either side (a broadly lighter patch of
        one print is not a seam).
    seam_step_cost : float
        Cost of each sideways step (one map pixel, 0.2 mm) of the split line, in units of the
        tips' ridge energy per row: a straight line unless the seam bends.
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
    two_finger_ratio: float = 1.5
    split_band_ratio: float = 0.25
    seam_sigma_mm: float = 0.2
    seam_halfwidth_mm: float = 1.0
    seam_step_cost: float = 0.05
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
                     "position_sigma_ratio", "split_band_ratio", "seam_sigma_mm", "seam_halfwidth_mm", "seam_step_cost", "two_finger_ratio"):
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
