"""Generated ten-print cards with ground truth: rolled prints, 4-4-2 slaps, swaps and missing fingers.

A *card* is what a registry captures from one person: ten rolled prints (nail to nail, one
finger at a time) and three plain "slaps" (the four fingers of the right hand, of the left
hand, then both thumbs), at 500 or 1000 ppi.  Each finger's skin is grown once
(:mod:`._tenprint_skin`: an SFinGe-style ridge pattern over the whole unrolled distal phalanx,
with its minutiae) and then *printed* twice through physical maps (:mod:`._tenprint_maps`):

* rolled: the skin unrolled as a cone rolled on the plate (the print fans out), with the roll's
  slip and axial drift (the lateral distortion of rolled prints), a wide nail-to-nail area
  (1.6-2x a plain impression's width), pressure lighter towards the nails;
* plain (in the slap): the pad's central arc pressed flat (compressed towards the contact edge,
  the tip curling away), a small elastic distortion, rotated and placed on the hand's arc
  (index..little decreasing in size, the little finger lower, spacing in mm), with the middle and
  proximal phalanges showing as weaker partial blobs below a crease gap.  Two fingers never
  superimpose: where neighbouring tips would overlap they press against each other and flatten,
  meeting along a line (up to ``max_flatten_mm`` of overlap; beyond it the fingers are spread).

Operators' errors are drawn by rate: 1-2 swapped rolled fingers (mostly neighbours), swapped
hands, missing fingers (amputated ``XX`` or unable to print ``UP``: no rolled file, absent from
the slap, an amputation code in the card's AN2K).  Slaps are never swapped (they are the reference).

Everything is rendered at the card's resolution (500 or 1000 ppi): the skin's ridge height field is
band-limited and sampled through the maps; ridge edges, pressure patches, noise and blur are made at
the output's own pixel scale (in millimetres), never by upsampling a 500 ppi image.

Output layout of :func:`write_cards` (the contract with the segmentation and sequence check)::

    OUT/card_0001/slap_right4.png  slap_left4.png  slap_thumbs.png
                  rolled_01.png .. rolled_10.png   (number = the position the card claims)
                  plain_01.png ..                  (optional: the slap's finger cropped by its box)
                  card.an2k                        (Type-1, Type-4/14 rolled, Type-14 slaps)
                  truth.json

``truth.json``: ``card, seed, dpi``; ``slaps.{right4,left4,thumbs}.{image, fgp, fingers: [{position,
box [x0, y0, x1, y1] (pixels, x1/y1 exclusive, the distal phalanx's print) or null when missing,
rotation_deg (counter-clockwise as displayed), missing}], touching: [[position, position, gap_mm]]}`` (the
neighbours whose contacts meet, or come within 0.5 mm; gap negative where they pressed against each
other, by the width of the overlap their flattening absorbed); ``rolled.{claimed: {image,
true_position}}``; ``swaps`` (claimed position pairs), ``hand_swap``, ``missing`` (true positions),
``missing_codes``; ``minutiae.{true position: {rolled, rolled_image, slap, slap_image[, plain]}}``
with ``[x, y, theta_rad]`` rows (pixels of that image, angle counter-clockwise as displayed).

``make_card(card, seed, params, capture=k)`` / ``write_cards(..., capture=k)``: the same people (fingers,
missing fingers: from ``seed`` and the card number) captured again, with new impressions, placement
and operator's errors: mated rolled and plain prints for evaluation (``benchmarks/rolled_plain.py``).
Speed: about 3 CPU-s per card at 500 ppi, 9 at 1000 ppi; ``workers`` generates cards in parallel.

Positions are ANSI/NIST-ITL finger codes: 1-5 right thumb..little, 6-10 left thumb..little,
13/14/15 the right-four, left-four and two-thumb slaps.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FileAccessError, InvalidInputError, invalid
from ._tenprint_maps import Cone, FingerMap, Press, Rigid, Slip, SmoothField, soft_inside
from ._tenprint_skin import SKIN_PPMM, FingerSkin, grow_skin

__all__ = ["TenprintParams", "Card", "FINGER_NAMES", "SLAPS", "make_card", "write_card", "write_cards"]

MM_PER_INCH = 25.4
_INK_GAIN = 4.0

FINGER_NAMES = {1: "right thumb", 2: "right index", 3: "right middle", 4: "right ring", 5: "right little",
                6: "left thumb", 7: "left index", 8: "left middle", 9: "left ring", 10: "left little"}

SLAPS = {"right4": (13, (2, 3, 4, 5)), "left4": (14, (7, 8, 9, 10)), "thumbs": (15, (6, 1))}
"""Slap name -> (FGP code, positions from the image's left to its right for ``thumbs``; index to
little for the four-finger slaps, whose left-right order depends on the hand)."""

# Adult finger anatomy (means, mm): width of the distal phalanx at its crease, length tip to
# crease.  Thumbs are the largest, little fingers the smallest; a card's hand scale and each
# finger's own jitter vary them.
_WIDTH_MM = {1: 21.0, 2: 16.5, 3: 17.0, 4: 16.0, 5: 14.0}
_LENGTH_MM = {1: 28.0, 2: 23.0, 3: 24.5, 4: 23.0, 5: 20.0}
_MIDDLE_PHALANX_MM = {1: 0.0, 2: 23.0, 3: 27.0, 4: 25.0, 5: 19.0}   # thumbs have none
_PROXIMAL_PHALANX_MM = {1: 30.0, 2: 40.0, 3: 44.0, 4: 41.0, 5: 32.0}

# Pattern class frequencies per finger (arch, tented arch, ulnar loop, radial loop, whorl): loops
# mostly ulnar, radial loops mostly on index fingers, whorls common on thumbs and ring fingers,
# arches on index fingers (Henry-system statistics, rounded).
_CLASS_P = {1: (0.04, 0.02, 0.48, 0.01, 0.45), 2: (0.08, 0.07, 0.40, 0.15, 0.30), 3: (0.06, 0.02, 0.65, 0.02, 0.25),
            4: (0.03, 0.01, 0.50, 0.01, 0.45), 5: (0.03, 0.01, 0.80, 0.01, 0.15)}


@dataclass(frozen=True)
class TenprintParams:
    """Parameters of generated ten-print cards (millimetres, degrees, ppi; rates per card or finger).

    Attributes
    ----------
    dpi : int
        500 or 1000: the resolution every image is rendered at.
    slap_width_mm, slap_height_mm : float
        Slap image size (3.2 x 3.0 in, the four-finger platen of FBI 4-4-2 capture).
    rolled_width_mm, rolled_height_mm : float
        Rolled image size (1.6 x 1.5 in, the card's rolled box).
    finger_spacing_mm, finger_spacing_sd_mm : float
        Mean distance between neighbouring fingertips in a four-finger slap, and its sd across
        slaps (fingers held closer or more spread).
    thumb_spacing_mm : float
        Mean distance between the two thumbs in the thumbs slap (sd 3 mm).
    finger_rotation_deg : float
        Sd of each finger's own rotation in a slap, on top of the hand's natural fan (index
        +7 deg, middle +2, ring -3, little -9 on the right hand, mirrored on the left).
    hand_rotation_deg : float
        Sd of the whole hand's rotation in a slap.
    little_drop_mm : float
        How much lower the little fingertip lies than the middle one (sd 2 mm).
    max_flatten_mm : float
        Two fingertips cannot superimpose on a platen: where neighbours' contacts would overlap,
        the pads press against each other and flatten, and the two prints meet along a line
        (the line where both are pressed in equally deep).  Flattening absorbs an overlap up to
        this width (mm, measured across the meeting line); a wider one would need more give than
        a fingertip has, so the fingers are spread instead (the outer finger moved sideways, the
        middle and ring fingers or the two thumbs each by half) until only this much is left.
    touch_seam_mm : float
        Largest width of the lighter seam along the line where two fingertips meet (the skin
        folds up from the glass there); each touching pair draws one between 0 and this.
    hand_scale_sd : float
        Log-normal sd of a person's hand size.
    pressure_min, pressure_max : float
        Range of the finger pressure, 0 (light: thin, broken ridges) to 1 (heavy: thick ridges).
    contact_angle_deg : tuple of float
        Half angle of the pad that touches the glass in a plain print, at pressure 0 and 1.
    roll_angle_deg : float
        Half angle of a full nail-to-nail roll (the nail edges lie at about +-95 deg).
    roll_extent_min : float
        Smallest share of each side of the roll actually printed (operators stop short).
    roll_stretch_mm, roll_drift_mm : float
        Largest slip across, and axial drift, of the roll.
    cone_taper_min, cone_taper_max : float
        Radius lost per mm towards the tip (sets the cone's apex distance, hence the rolled fan).
    elastic_mm : float
        Typical elastic displacement at the contact's edge.
    phalanx_contrast : tuple of float
        Contrast range of the middle phalanx's blob, relative to the fingertip's (the proximal
        phalanx gets half of it).
    swap_rate : float
        Share of cards with 1-2 swapped rolled fingers.
    hand_swap_rate : float
        Share of cards whose rolled hands are swapped.
    missing_rate : float
        Share of fingers missing (per finger).
    unprintable_share : float
        Share of missing fingers coded "unable to print" (UP) rather than amputated (XX).
    compression : str
        AN2K image compression: "none" or "wsq".
    write_plain : bool
        Also write ``plain_NN.png``: each slap finger cropped by its box (2 mm margin).
    """

    dpi: int = 500
    slap_width_mm: float = 81.28
    slap_height_mm: float = 76.2
    rolled_width_mm: float = 40.64
    rolled_height_mm: float = 38.1
    finger_spacing_mm: float = 18.5
    finger_spacing_sd_mm: float = 1.0
    thumb_spacing_mm: float = 38.0
    finger_rotation_deg: float = 2.5
    hand_rotation_deg: float = 3.0
    little_drop_mm: float = 13.0
    max_flatten_mm: float = 2.5
    touch_seam_mm: float = 0.3
    hand_scale_sd: float = 0.05
    pressure_min: float = 0.15
    pressure_max: float = 0.9
    contact_angle_deg: tuple = (36.0, 56.0)
    roll_angle_deg: float = 95.0
    roll_extent_min: float = 0.8
    roll_stretch_mm: float = 0.7
    roll_drift_mm: float = 0.5
    cone_taper_min: float = 0.1
    cone_taper_max: float = 0.22
    elastic_mm: float = 0.3
    phalanx_contrast: tuple = (0.25, 0.55)
    swap_rate: float = 0.1
    hand_swap_rate: float = 0.03
    missing_rate: float = 0.02
    unprintable_share: float = 0.3
    compression: str = "none"
    write_plain: bool = False

    def __post_init__(self):
        if self.dpi not in (500, 1000):
            raise invalid("dpi", "500 or 1000", self.dpi)
        for name in ("swap_rate", "hand_swap_rate", "missing_rate", "unprintable_share", "roll_extent_min"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise invalid(name, "a number in [0, 1]", v)
        if not 0.0 <= self.pressure_min <= self.pressure_max <= 1.0:
            raise invalid("pressure_min/pressure_max", "0 <= min <= max <= 1", (self.pressure_min, self.pressure_max))
        if self.compression not in ("none", "wsq"):
            raise invalid("compression", "'none' or 'wsq'", self.compression)
        for name in ("slap_width_mm", "slap_height_mm", "rolled_width_mm", "rolled_height_mm",
                     "finger_spacing_mm", "thumb_spacing_mm"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 5.0 <= v <= 300.0:
                raise invalid(name, "a length in [5, 300] mm", v)
        for name in ("max_flatten_mm", "touch_seam_mm", "finger_spacing_sd_mm"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 20.0:
                raise invalid(name, "a length in [0, 20] mm", v)

    @property
    def ppmm(self) -> float:
        return self.dpi / MM_PER_INCH


@dataclass
class Card:
    """One generated card in memory: images by file name, the ground truth, and the AN2K records."""

    number: int
    images: dict = field(repr=False)
    truth: dict = field(repr=False)
    records: list = field(repr=False)


# --------------------------------------------------------------------------- fingers

def _base(position: int) -> int:
    return position if position <= 5 else position - 5


def _draw_class(rng: np.random.Generator, position: int) -> str:
    """Pattern class; an ulnar loop opens towards the little finger: to the image's right on the
    right hand (a ``right_loop``), to its left on the left hand."""
    k = int(rng.choice(5, p=_CLASS_P[_base(position)]))
    right = position <= 5
    return ("arch", "tented_arch", "right_loop" if right else "left_loop",
            "left_loop" if right else "right_loop", "whorl")[k]


@dataclass(frozen=True)
class _Finger:
    position: int
    skin: FingerSkin
    radius_mm: float


def _grow_fingers(rng: np.random.Generator, seed: int, card: int, params: TenprintParams) -> dict[int, _Finger]:
    scale = math.exp(rng.normal(0, params.hand_scale_sd))
    out = {}
    for pos in range(1, 11):
        b = _base(pos)
        f = scale * math.exp(rng.normal(0, 0.03))
        r = 0.5 * _WIDTH_MM[b] * f
        length = _LENGTH_MM[b] * f
        half_arc = r * math.radians(params.roll_angle_deg)
        cls = _draw_class(rng, pos)
        skin_seed = (int(seed) * 1_000_003 + int(card)) * 16 + pos
        skin = grow_skin(skin_seed % 2**63, cls, r, half_arc, length)
        out[pos] = _Finger(pos, skin, r)
    return out


# --------------------------------------------------------------------------- impressions

@dataclass
class _Layer:
    """One thing printed on an image: a distal print (with truth) or a phalanx blob."""

    fmap: FingerMap
    kind: str                      # "distal" or "phalanx"
    strength: float
    pressure: float
    skin: FingerSkin | None = None
    contact: Callable | None = None        # (s, z) skin mm -> signed distance inside, mm
    region: Callable | None = None         # (x, y) local mm -> (signed distance inside, ridge value)
    local_box: tuple = (0.0, 0.0, 0.0, 0.0)  # (x0, y0, x1, y1) local mm bounding the layer
    position: int = 0
    lightness: Callable | None = None      # (s, z) skin mm -> extra dryness (lighter contact)


def _plain_contact(skin: FingerSkin, contact_half_arc: float, z0: float):
    """Signed distance (mm, positive inside) of the pressed pad's contact, in skin coordinates: an
    oval (a superellipse) from ``z0`` below the tip, cut by the first crease."""
    length = skin.length_mm
    top = 0.42 * (length - z0)       # rounder above the widest line, straighter below it
    bottom = 0.8 * (length - z0)
    zc = z0 + top

    def dist(s, z):
        t = np.clip(np.where(z < zc, (zc - z) / top, (z - zc) / bottom), 0.0, 1.0)
        bound = contact_half_arc * np.where(z < zc, np.sqrt(1.0 - t ** 2), (1.0 - t ** 2.6) ** (1 / 2.6))
        bound = np.minimum(bound, skin.half_width_at(z))
        return np.minimum.reduce([bound - np.abs(s), length - z, z - z0])

    return dist


def _rolled_contact(skin: FingerSkin, extent_left: float, extent_right: float, tip_mm: float):
    """Signed distance of the rolled print's area: the skin between the roll's two ends, its top a
    dome (the tip rolls over ``tip_mm`` of the finger's length), down to the first crease."""
    from ._tenprint_skin import outline_half_arc

    def dist(s, z):
        ext = np.where(s < 0, extent_left, extent_right)
        bound = outline_half_arc(z, skin.half_arc_mm, tip_mm) * ext
        return np.minimum.reduce([bound - np.abs(s), skin.length_mm - z, z - 0.3])

    return dist


def _pressure(rng: np.random.Generator, params: TenprintParams) -> float:
    return float(rng.uniform(params.pressure_min, params.pressure_max))


def _rolled_layer(fg: _Finger, rng: np.random.Generator, params: TenprintParams) -> _Layer:
    skin = fg.skin
    taper = rng.uniform(params.cone_taper_min, params.cone_taper_max)
    cone = Cone(apex_mm=fg.radius_mm / taper)
    slip = Slip(rng, params.roll_stretch_mm * rng.uniform(0.4, 1.0), params.roll_drift_mm * rng.uniform(0.3, 1.0))
    L = skin.length_mm
    span = skin.half_arc_mm + 2
    elastic = SmoothField(rng, -span, -3.0, span, L + 3.0, params.elastic_mm * rng.uniform(0.3, 0.8),
                          centre=(0.0, 0.5 * L))
    w, h = params.rolled_width_mm, params.rolled_height_mm
    place = (0.5 * w + rng.normal(0, 1.0), 0.5 * h + rng.normal(0, 1.0))
    rigid = Rigid(float(rng.normal(0, 3.0)), (0.0, 0.5 * L), place)
    fmap = FingerMap([cone, slip], elastic, rigid, params.ppmm)
    ext_l, ext_r = rng.uniform(params.roll_extent_min, 1.0, 2)
    contact = _rolled_contact(skin, ext_l, ext_r, fg.radius_mm * rng.uniform(1.2, 1.7))
    box = (-span - 1, -3.0, span + 1, L + 3.0)
    # The roll presses hardest on the pad and lightest towards the nails.
    fade = rng.uniform(0.2, 0.6)
    half = skin.half_arc_mm

    def lightness(s, z):
        return fade * (np.abs(s) / half) ** 3

    return _Layer(fmap, "distal", 1.0, _pressure(rng, params), skin, contact, None, box, fg.position, lightness)


def _plain_layers(fg: _Finger, rng: np.random.Generator, params: TenprintParams, tip_mm: tuple[float, float],
                  angle_deg: float, *, distal: bool = True, stump: bool = False) -> list[_Layer]:
    """The slap's layers of one finger: its distal print (unless missing) and its lower phalanges."""
    skin = fg.skin
    r = fg.radius_mm
    pressure = _pressure(rng, params)
    a0, a1 = params.contact_angle_deg
    theta_c = math.radians(a0 + (a1 - a0) * pressure + rng.normal(0, 2.0))
    contact_half_arc = min(r * theta_c, 0.97 * skin.half_arc_mm)
    flat_r = r * (1.3 + 0.5 * pressure)
    press = Press(flat_radius_mm=flat_r, tip_mm=r * 0.9, tip_radius_mm=r * (1.0 + 0.5 * pressure))
    z0 = r * rng.uniform(0.12, 0.3) * (1.2 - pressure)
    L = skin.length_mm
    elastic = SmoothField(rng, -r - 2, -3.0, r + 2, L + 3.0, params.elastic_mm * rng.uniform(0.5, 1.2),
                          centre=(0.0, 0.55 * L))
    rigid = Rigid(angle_deg, (0.0, 0.0), tip_mm)
    fmap = FingerMap([press], elastic, rigid, params.ppmm)
    layers = []
    half_w = flat_r * math.sin(contact_half_arc / flat_r)
    if distal:
        contact = _plain_contact(skin, contact_half_arc, z0)
        layers.append(_Layer(fmap, "distal", 1.0, pressure, skin, contact, None,
                             (-half_w - 1.5, -1.0, half_w + 1.5, L + 1.5), fg.position))
    # Lower phalanges: ridges run across the finger; partial, weaker contact below a crease gap.
    b = _base(fg.position)
    c_lo, c_hi = params.phalanx_contrast
    y = L + rng.uniform(1.5, 2.5)
    segments = []
    if _MIDDLE_PHALANX_MM[b] > 0:
        segments.append((_MIDDLE_PHALANX_MM[b], rng.uniform(c_lo, c_hi), 0.9))
        segments.append((_PROXIMAL_PHALANX_MM[b], 0.5 * rng.uniform(c_lo, c_hi), 0.6))
    else:
        segments.append((_PROXIMAL_PHALANX_MM[b], 0.6 * rng.uniform(c_lo, c_hi), 0.85))
    if stump:  # an amputated fingertip: the stump of the middle phalanx still touches
        segments = segments[:1]
    for length, contrast, p_visible in segments:
        if rng.random() < p_visible:
            layers.append(_phalanx_layer(fmap, rng, y, length * rng.uniform(0.9, 1.05), half_w * rng.uniform(0.8, 1.0),
                                         contrast, pressure, fg.position))
        y += length + rng.uniform(1.5, 3.0)
    return layers


def _phalanx_layer(fmap: FingerMap, rng: np.random.Generator, y0: float, length: float, half_w: float,
                   contrast: float, pressure: float, position: int) -> _Layer:
    period = rng.uniform(0.45, 0.55)
    ph, lam, amp, bend = rng.uniform(0, 6.3), rng.uniform(8, 14), rng.uniform(0.3, 0.9), rng.normal(0, 0.025)
    # Partial contact: a smooth random share of the blob touches (the palm side is not flat).
    vis = SmoothField(rng, -half_w - 1, y0 - 1, half_w + 1, y0 + length + 1, 1.0, centre=(1e3, 1e3), nodes=5)
    yc = y0 + 0.5 * length

    def region(x, y):
        # A rounded rectangle (superellipse), weaker where the random field says it lifts off.
        q = (np.abs(x) / half_w) ** 4 + (np.abs(y - yc) / (0.5 * length)) ** 4
        d = (1.0 - q) * min(half_w, 0.5 * length) * 0.25
        v, _ = vis(x, y)
        d = d + 0.6 * np.tanh(v) - 0.1
        ridge = np.cos(2 * np.pi * (y + amp * np.sin(2 * np.pi * x / lam + ph) + bend * x * x) / period)
        return d, ridge

    return _Layer(fmap, "phalanx", contrast, pressure, None, None, region,
                  (-half_w - 1, y0 - 1, half_w + 1, y0 + length + 1), position)


# --------------------------------------------------------------------------- rendering

def _roi(layer: _Layer, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    x0, y0, x1, y1 = layer.local_box
    xs = np.linspace(x0, x1, 9)
    ys = np.linspace(y0, y1, 9)
    gx, gy = np.meshgrid(xs, ys)
    px, py = layer.fmap.rigid.forward(gx, gy)
    px, py = px * layer.fmap.ppmm, py * layer.fmap.ppmm
    h, w = shape
    c0, c1 = max(int(np.floor(px.min())) - 2, 0), min(int(np.ceil(px.max())) + 3, w)
    r0, r1 = max(int(np.floor(py.min())) - 2, 0), min(int(np.ceil(py.max())) + 3, h)
    if c0 >= c1 or r0 >= r1:
        return None
    return c0, r0, c1, r1


def _sample_skin(skin: FingerSkin, s: np.ndarray, z: np.ndarray) -> np.ndarray:
    import cv2

    u = ((s + skin.s_offset_mm) * SKIN_PPMM).astype(np.float32)
    v = (z * SKIN_PPMM).astype(np.float32)
    return cv2.remap(skin.ridges, u, v, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0)


def _render(shape: tuple[int, int], layers: list[_Layer], rng: np.random.Generator,
            params: TenprintParams, seams: dict | None = None) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Print ``layers`` on one image; returns it and each distal layer's contact weight (by position).

    Layers of different fingers never superimpose: where two would both touch the glass, each
    keeps its side of the line where they are pressed in equally deep (:func:`_flattened`), less
    half the pair's seam (``seams``: ``{(position, position): mm}``, either order).
    """
    import cv2

    h, w = shape
    ppmm = params.ppmm
    dark = np.zeros((h, w), np.float32)
    contacts = {}
    # Where every layer lies first (no random draw: a slap whose fingers do not meet renders as
    # it would alone), then the ink.
    geo = [_geometry(layer, shape) for layer in layers]
    # The ink's fine structure (ridge-edge noise, pore-like breaks) is made at the output's own
    # pixel scale, in millimetres: 0.06 mm is 1.2 px at 500 ppi and 2.4 px at 1000 ppi.
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.06 * ppmm)
    grain /= grain.std() + 1e-6
    for i, layer in enumerate(layers):
        if geo[i] is None:
            continue
        roi, _, s, z = geo[i]
        geo[i] = geo[i][:2]  # the others need only its contact distance (memory, at 1000 ppi)
        c0, r0, c1, r1 = roi
        d = _flattened(i, layers, geo, seams or {})
        if layer.kind == "distal":
            inside = soft_inside(d, 0.15)
            ridges = _sample_skin(layer.skin, s, z) - _pores(layer, roi, rng, ppmm)
            contacts[layer.position] = (roi, inside)
        else:
            py, px = np.mgrid[r0:r1, c0:c1].astype(np.float64)
            _, ridges = layer.region(*layer.fmap.local_from_pixels(px, py))
            inside = soft_inside(d, 0.3)
            ridges = ridges.astype(np.float32)
        # Pressure: light prints have thin, broken ridges, heavy ones thick, merged ridges; the
        # skin is drier or wetter in low-frequency patches (as in synthetic.impression).
        rh, rw = r1 - r0, c1 - c0
        patches = cv2.resize(rng.normal(0, 1, (5, 4)).astype(np.float32), (rw, rh), interpolation=cv2.INTER_CUBIC)
        local = (0.35 - 0.7 * layer.pressure) + rng.uniform(0.1, 0.35) * patches
        if layer.lightness is not None:
            local = local + layer.lightness(s, z)
        noise = grain[r0:r1, c0:c1] * rng.uniform(0.25, 0.5)
        # The glass-skin contact boundary is sharp (a ridge touches or not): a steep ink curve,
        # so edge sharpness is set by the sensor's blur below, in its own pixels.
        ink = np.clip((ridges - local + noise) * _INK_GAIN, -1.0, 1.0)
        val = (0.5 + 0.5 * ink) * inside * layer.strength
        np.maximum(dark[r0:r1, c0:c1], val.astype(np.float32), out=dark[r0:r1, c0:c1])
    bg = rng.uniform(205, 245)
    img = bg - dark * rng.uniform(150, 195)
    # Scanner optics are matched to the pixel pitch: a blur of about 0.5-0.8 output pixels, so a
    # 1000 ppi capture resolves ridge edges a 500 ppi one cannot.
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 0.8))
    img += rng.normal(0, rng.uniform(2.5, 5.0), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), contacts


def _geometry(layer: _Layer, shape: tuple[int, int]):
    """Where a layer lies on the image: ``(roi, signed distance inside its contact (mm), s, z)``
    over its ROI (skin coordinates for a distal layer, None for a phalanx), or None off the image."""
    roi = _roi(layer, shape)
    if roi is None:
        return None
    c0, r0, c1, r1 = roi
    py, px = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    lx, ly = layer.fmap.local_from_pixels(px, py)
    if layer.kind == "distal":
        s, z = layer.fmap.skin_from_local(lx, ly)
        return roi, layer.contact(s, z), s, z
    d, _ = layer.region(lx, ly)
    return roi, d, None, None


def _overlap(a, b):
    """The pixels two ROIs share, as slices into each: ``(rows_a, cols_a), (rows_b, cols_b)``, or None."""
    c0, r0 = max(a[0], b[0]), max(a[1], b[1])
    c1, r1 = min(a[2], b[2]), min(a[3], b[3])
    if c0 >= c1 or r0 >= r1:
        return None
    return ((slice(r0 - a[1], r1 - a[1]), slice(c0 - a[0], c1 - a[0])),
            (slice(r0 - b[1], r1 - b[1]), slice(c0 - b[0], c1 - b[0])))


def _flattened(i: int, layers: list[_Layer], geo: list, seams: dict) -> np.ndarray:
    """Layer ``i``'s contact distance (mm) after it meets other fingers' layers.

    Two pads pressed into the same place flatten against each other; the contact line lies where
    both are pressed in equally deep, ``d_i = d_j``, so each keeps ``(d_i - d_j) / 2 > 0``: the
    signed distance to that line (exact for two parallel edges), less half the pair's seam.  Away
    from the other contact (``d_j < -d_i``) nothing changes.
    """
    roi, d = geo[i][0], geo[i][1]
    out = d
    pos = layers[i].position
    for j, other in enumerate(layers):
        if other.position == pos or geo[j] is None:
            continue
        shared = _overlap(roi, geo[j][0])
        if shared is None:
            continue
        (si, sj) = shared
        dj = geo[j][1][sj]
        if not (dj > -d[si]).any():
            continue
        if out is d:
            out = d.copy()
        seam = seams.get((pos, other.position), seams.get((other.position, pos), 0.0))
        np.minimum(out[si], 0.5 * (d[si] - dj) - 0.5 * seam, out=out[si])
    return out


def _distance_at(layer: _Layer, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Signed distance (mm) inside ``layer``'s contact at image pixels ``(px, py)``."""
    lx, ly = layer.fmap.local_from_pixels(px, py)
    if layer.kind == "distal":
        return layer.contact(*layer.fmap.skin_from_local(lx, ly))
    return layer.region(lx, ly)[0]


def _gap(a: _Layer, b: _Layer, shape: tuple[int, int], step_mm: float = 0.2) -> float:
    """Width (mm) of the gap between two layers' contacts, negative when they would overlap (then
    minus the overlap's width across its middle); ``inf`` when they are far apart.

    On a grid over the ROIs' common part: ``max min(d_a, d_b)`` is half the overlap's width (or
    minus half the gap) for locally straight edges.
    """
    ra, rb = _roi(a, shape), _roi(b, shape)
    if ra is None or rb is None or _overlap(ra, rb) is None:
        return math.inf
    c0, r0 = max(ra[0], rb[0]), max(ra[1], rb[1])
    c1, r1 = min(ra[2], rb[2]), min(ra[3], rb[3])
    step = step_mm * a.fmap.ppmm
    py, px = np.meshgrid(np.arange(r0, r1, step), np.arange(c0, c1, step), indexing="ij")
    both = np.minimum(_distance_at(a, px, py), _distance_at(b, px, py))
    return -2.0 * float(both.max())


# How close two contacts must come to count as touching in the truth (mm): the print map of a
# segmenter cannot see a narrower gap (its ridge filters blur over about 0.4 mm).
_TOUCH_MM = 0.5


def _settle(layers: list[_Layer], positions: tuple, shape: tuple[int, int], params: TenprintParams) -> list:
    """Spread neighbouring fingertips whose contacts would overlap more than ``max_flatten_mm``.

    Pairs from the hand's middle outwards: the middle and ring fingers (or the two thumbs) each
    give way by half, the index and little fingers move away from their inner neighbour.  The
    move is across the pair's mean axis (fingers spread sideways on the platen), applied to the
    finger's every layer (its map), and repeated while the maps' curvature leaves too much.
    Returns the neighbouring pairs whose contacts then touch or overlap: ``[[a, b, gap_mm], ...]``.
    """
    distal = {la.position: la for la in layers if la.kind == "distal"}
    k = len(positions)
    # (still finger, moved finger, share of the move the moved one takes; the rest the still one)
    plan = [(1, 2, 0.5), (1, 0, 1.0), (2, 3, 1.0)] if k == 4 else [(0, 1, 0.5)]
    for i, j, share in plan:
        a, b = distal.get(positions[i]), distal.get(positions[j])
        if a is None or b is None:
            continue
        for _ in range(4):
            g = _gap(a, b, shape)
            if -g <= params.max_flatten_mm:
                break
            t = math.radians(0.5 * (a.fmap.rigid.angle_deg + b.fmap.rigid.angle_deg))
            across = np.array([math.cos(t), -math.sin(t)])  # the local x axis in the image (mm)
            if float(np.dot(np.subtract(b.fmap.rigid.place, a.fmap.rigid.place), across)) < 0:
                across = -across
            move = (-g - params.max_flatten_mm) + 0.1
            _shift(b.fmap, across * move * share)
            _shift(a.fmap, -across * move * (1.0 - share))
    touching = []
    for p, q in zip(positions, positions[1:]):
        if p in distal and q in distal:
            g = _gap(distal[p], distal[q], shape)
            if g <= _TOUCH_MM:
                touching.append([p, q, round(g, 2)])
    return touching


def _shift(fmap: FingerMap, by_mm: np.ndarray) -> None:
    r = fmap.rigid
    fmap.rigid = Rigid(r.angle_deg, r.anchor, (r.place[0] + float(by_mm[0]), r.place[1] + float(by_mm[1])))


def _pores(layer: _Layer, roi, rng: np.random.Generator, ppmm: float) -> np.ndarray:
    """The layer's sweat pores as bumps (0..depth) to subtract from the ridge height, ROI-sized."""
    import cv2

    c0, r0, c1, r1 = roi
    out = np.zeros((r1 - r0, c1 - c0), np.float32)
    pores = layer.skin.pores
    if pores is None or len(pores) == 0:
        return out
    px, py = layer.fmap.forward(pores[:, 0], pores[:, 1])
    xi, yi = np.rint(px).astype(int) - c0, np.rint(py).astype(int) - r0
    ok = (xi >= 0) & (xi < c1 - c0) & (yi >= 0) & (yi < r1 - r0)
    np.add.at(out, (yi[ok], xi[ok]), 1.0)
    sigma = rng.uniform(0.03, 0.045) * ppmm       # pore radius ~0.04-0.09 mm
    out = cv2.GaussianBlur(out, (0, 0), sigma) * (2 * np.pi * sigma * sigma)
    return out * rng.uniform(1.0, 1.8)


def _truth_minutiae(layer: _Layer, image_shape: tuple[int, int], margin_mm: float = 0.6,
                    rivals: tuple = ()) -> np.ndarray:
    """The layer's skin minutiae moved into the image, kept when well inside its contact (on its
    side of the line where it meets another finger: ``rivals``, ``(layer, seam_mm)`` pairs)."""
    m = layer.skin.minutiae
    if len(m) == 0:
        return np.zeros((0, 4))
    d = layer.contact(m[:, 0], m[:, 1])
    keep = d >= margin_mm
    out = layer.fmap.minutiae(m[keep])
    d = d[keep]
    for other, seam in rivals:
        d = np.minimum(d, 0.5 * (d - _distance_at(other, out[:, 0], out[:, 1])) - 0.5 * seam)
    h, w = image_shape
    ok = (out[:, 0] >= 0) & (out[:, 0] <= w - 1) & (out[:, 1] >= 0) & (out[:, 1] <= h - 1) & (d >= margin_mm)
    return out[ok]


def _box(roi, inside: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(inside > 0.5)
    if len(xs) == 0:
        return None
    c0, r0 = roi[0], roi[1]
    return [int(c0 + xs.min()), int(r0 + ys.min()), int(c0 + xs.max() + 1), int(r0 + ys.max() + 1)]


# --------------------------------------------------------------------------- the card

def _slap_layout(rng: np.random.Generator, params: TenprintParams, name: str) -> dict[int, tuple]:
    """Fingertip place (mm) and rotation (deg, CCW as displayed) of each finger of a slap."""
    W, H = params.slap_width_mm, params.slap_height_mm
    if name == "thumbs":
        gap = params.thumb_spacing_mm + rng.normal(0, 3.0)
        cx, y = 0.5 * W + rng.normal(0, 2.0), rng.uniform(8.0, 14.0)
        # Palms down: the left thumb on the image's left, tips leaning in towards each other.
        return {6: ((cx - 0.5 * gap, y + rng.normal(0, 1.5)), -rng.uniform(2.0, 14.0)),
                1: ((cx + 0.5 * gap, y + rng.normal(0, 1.5)), rng.uniform(2.0, 14.0))}
    positions = SLAPS[name][1]
    side = 1.0 if name == "right4" else -1.0   # right hand: index on the image's left
    spacing = params.finger_spacing_mm + rng.normal(0, params.finger_spacing_sd_mm)
    hand_angle = rng.normal(0, params.hand_rotation_deg)
    cx, top = 0.5 * W + rng.normal(0, 2.5), rng.uniform(6.0, 11.0)
    drops = (rng.uniform(1.5, 4.5), 0.0, rng.uniform(2.0, 5.0), params.little_drop_mm + rng.normal(0, 2.0))
    fan = (7.0, 2.0, -3.0, -9.0)
    out = {}
    hc = (cx, top + 20.0)
    a = math.radians(hand_angle)
    for k, pos in enumerate(positions):
        x = cx + side * (k - 1.5) * spacing
        y = top + drops[k]
        # The hand turns about a point below the fingertips.
        dx, dy = x - hc[0], y - hc[1]
        x, y = hc[0] + math.cos(a) * dx + math.sin(a) * dy, hc[1] - math.sin(a) * dx + math.cos(a) * dy
        out[pos] = ((x, y), side * fan[k] + hand_angle + rng.normal(0, params.finger_rotation_deg))
    return out


def _missing_fingers(rng: np.random.Generator, params: TenprintParams) -> dict[int, str]:
    """The person's missing fingers and their codes (the same in every capture of the person)."""
    missing = {}
    for pos in range(1, 11):
        if rng.random() < params.missing_rate:
            missing[pos] = "UP" if rng.random() < params.unprintable_share else "XX"
    return missing


def _operator_errors(rng: np.random.Generator, params: TenprintParams, missing: dict[int, str]):
    """Which finger each claimed rolled slot holds (swaps, swapped hands), for one capture."""
    holds = {p: p for p in range(1, 11)}
    hand_swap = bool(rng.random() < params.hand_swap_rate)
    if hand_swap:
        holds = {p: (p + 5 if p <= 5 else p - 5) for p in range(1, 11)}
    swaps = []
    if rng.random() < params.swap_rate:
        n = 1 if rng.random() < 0.75 else 2
        for _ in range(n):
            present = [p for p in range(1, 11) if holds[p] not in missing and not any(p in s for s in swaps)]
            if len(present) < 2:
                break
            if rng.random() < 0.7:   # neighbours on one hand: the usual slip of a hurried operator
                pairs = [(a, a + 1) for a in present if a + 1 in present and (a <= 5) == (a + 1 <= 5)]
            else:
                pairs = [(a, b) for i, a in enumerate(present) for b in present[i + 1:]]
            if not pairs:
                continue
            a, b = pairs[int(rng.integers(len(pairs)))]
            holds[a], holds[b] = holds[b], holds[a]
            swaps.append([a, b])
    return holds, hand_swap, swaps


def _mm_shape(width_mm: float, height_mm: float, ppmm: float) -> tuple[int, int]:
    return int(round(height_mm * ppmm)), int(round(width_mm * ppmm))


def _rows(m: np.ndarray, dx: float = 0.0, dy: float = 0.0) -> list:
    return [[round(float(x) - dx, 2), round(float(y) - dy, 2), round(float(a), 4)] for x, y, a, _ in m]


def make_card(card: int, seed: int, params: TenprintParams | None = None, capture: int = 0) -> Card:
    """Generate one card in memory.

    Parameters
    ----------
    card : int
        Card number (1-based); with ``seed`` it determines the person (fingers, missing fingers).
    seed : int
    params : TenprintParams, optional
    capture : int
        Which capture of the person (0, 1, ...): another card of the same ten fingers, with its
        own impressions and operator's errors (mated rolled and plain prints for evaluation).

    Returns
    -------
    Card
        ``images`` (file name -> uint8 array), ``truth`` (the ``truth.json`` dict) and ``records``
        (:class:`~biomatch.formats.an2k_write.FingerRecord` list for ``card.an2k``).
    """
    from ..formats.an2k_write import FingerRecord, Segment

    params = params or TenprintParams()
    for name, v in (("card", card), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise invalid(name, "a non-negative int", v)
    if isinstance(capture, bool) or not isinstance(capture, (int, np.integer)) or capture < 0:
        raise invalid("capture", "a non-negative int", capture)
    # The person (fingers, missing fingers) comes from (seed, card); everything about one capture
    # (impressions, placement, operator's swaps) also from ``capture``.
    rng = np.random.default_rng([int(seed), int(card), 0x7C4])
    fingers = _grow_fingers(rng, seed, card, params)
    missing = _missing_fingers(rng, params)
    key = (int(seed), int(card), int(capture))
    holds, hand_swap, swaps = _operator_errors(np.random.default_rng([*key, 0xE77]), params, missing)
    ppmm = params.ppmm
    images: dict[str, np.ndarray] = {}
    minutiae: dict[str, dict] = {str(p): {} for p in range(1, 11) if p not in missing}
    truth = {"card": int(card), "seed": int(seed), "capture": int(capture), "dpi": params.dpi, "slaps": {},
             "rolled": {},
             "swaps": swaps, "hand_swap": hand_swap, "missing": sorted(missing),
             "missing_codes": {str(p): c for p, c in sorted(missing.items())}, "minutiae": minutiae}
    records = []
    # Rolled prints: slot p (the position the card claims) holds finger holds[p].
    rshape = _mm_shape(params.rolled_width_mm, params.rolled_height_mm, ppmm)
    for p in range(1, 11):
        f = holds[p]
        if f in missing:
            continue
        # Seeded by the finger, not the slot: a swapped card's rolled files are the unswapped
        # card's, exchanged (what the tests check).
        irng = np.random.default_rng([*key, 0x801, f])
        layer = _rolled_layer(fingers[f], irng, params)
        img, _ = _render(rshape, [layer], irng, params)
        fname = f"rolled_{p:02d}.png"
        images[fname] = img
        truth["rolled"][str(p)] = {"image": fname, "true_position": f}
        minutiae[str(f)]["rolled"] = _rows(_truth_minutiae(layer, rshape))
        minutiae[str(f)]["rolled_image"] = fname
        records.append(FingerRecord(img, params.dpi, p, 1, 4 if params.dpi == 500 else 14, params.compression))
    # Slaps.
    sshape = _mm_shape(params.slap_width_mm, params.slap_height_mm, ppmm)
    for name, (fgp, positions) in SLAPS.items():
        srng = np.random.default_rng([*key, 0x5A9, fgp])
        layout = _slap_layout(srng, params, name)
        layers = []
        for pos in positions:
            tip, angle = layout[pos]
            gone = pos in missing
            stump = gone and missing[pos] == "XX" and srng.random() < 0.5
            layers += _plain_layers(fingers[pos], srng, params, tip, angle, distal=not gone, stump=stump)
            if gone and not stump:
                layers = [la for la in layers if la.position != pos]
        fname = f"slap_{name}.png"
        # Neighbouring tips spread where they would overlap more than flattening absorbs (no
        # random draw: a slap whose tips do not meet is as before); each touching pair's seam
        # from its own stream, for the same reason.
        touching = _settle(layers, positions, sshape, params)
        trng = np.random.default_rng([*key, 0x5EA, fgp])
        seams = {(a, b): float(trng.uniform(0.0, params.touch_seam_mm)) for a, b, _ in touching}
        img, contacts = _render(sshape, layers, srng, params, seams)
        images[fname] = img
        entries, segs = [], []
        for pos in positions:
            tip, angle = layout[pos]
            box = None
            if pos in contacts:
                box = _box(*contacts[pos])
            entries.append({"position": pos, "box": box, "rotation_deg": round(float(angle), 2),
                            "missing": pos in missing})
            if box is not None:
                segs.append(Segment(pos, box[0], box[2] - 1, box[1], box[3] - 1))
                layer = next(la for la in layers if la.kind == "distal" and la.position == pos)
                rivals = tuple((la, seams.get((pos, la.position), seams.get((la.position, pos), 0.0)))
                               for la in layers if la.position != pos)
                m = _truth_minutiae(layer, sshape, rivals=rivals)
                minutiae[str(pos)]["slap"] = _rows(m)
                minutiae[str(pos)]["slap_image"] = fname
                if params.write_plain:
                    pad = int(round(2.0 * ppmm))
                    x0, y0 = max(box[0] - pad, 0), max(box[1] - pad, 0)
                    x1, y1 = min(box[2] + pad, sshape[1]), min(box[3] + pad, sshape[0])
                    images[f"plain_{pos:02d}.png"] = img[y0:y1, x0:x1].copy()
                    minutiae[str(pos)]["plain"] = _rows(m, x0, y0)
        truth["slaps"][name] = {"image": fname, "fgp": fgp, "fingers": entries, "touching": touching}
        amp = {p: missing[p] for p in positions if p in missing}
        records.append(FingerRecord(img, params.dpi, fgp, 0, 14, params.compression, tuple(segs), amp))
    return Card(int(card), images, truth, records)


def write_card(folder: Path, c: Card) -> None:
    """Write one card's PNGs, ``card.an2k`` and ``truth.json`` into ``folder`` (0700; files 0600)."""
    import cv2

    from ..formats.an2k_write import write_file

    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, img in c.images.items():
            ok, buf = cv2.imencode(".png", img)
            if not ok:
                raise OSError(f"OpenCV could not encode {name}")
            _write_private(folder / name, buf.tobytes())
        _write_private(folder / "truth.json", json.dumps(c.truth, indent=1).encode())
    except (OSError, cv2.error) as exc:
        raise FileAccessError(f"out: cannot write card {c.number} in {str(folder)!r}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from exc
    write_file(folder / "card.an2k", c.records, tcn=f"CARD-{c.number:06d}", date="20260101")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_cards(out, cards: int, seed: int, *, dpi: int = 500, swap_rate: float = 0.1,
                hand_swap_rate: float = 0.03, missing_rate: float = 0.02, progress=None,
                params: TenprintParams | None = None, first: int = 1, workers: int = 1, capture: int = 0) -> Path:
    """Write ``cards`` generated ten-print cards to ``out/card_NNNN/``.

    Parameters
    ----------
    out : str or Path
        Folder (created, mode 0700).
    cards : int
        Number of cards, 1-100000.
    seed : int
        The same seed (and parameters) gives the same cards, byte for byte.
    dpi : int
        500 or 1000.
    swap_rate, hand_swap_rate, missing_rate : float
        Share of cards with 1-2 swapped rolled fingers, share with swapped hands, share of
        fingers missing (see :class:`TenprintParams`).
    progress : callable, optional
        ``progress(done, total)`` after each card.
    params : TenprintParams, optional
        Every other setting; ``dpi`` and the three rates given here override its fields.
    first : int
        Number of the first card (to extend a set: cards are independent of each other).
    workers : int
        Processes generating cards at once (the output does not depend on it).
    capture : int
        Capture number: the same seed and card numbers with another ``capture`` give new cards of
        the same people (see :func:`make_card`).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    InvalidInputError
        ``cards``, ``seed`` or a rate out of range, or ``out`` is a file.
    FileAccessError
        A folder or file cannot be written.

    Examples
    --------
    >>> write_cards("cards", 2, seed=1)            # doctest: +SKIP
    PosixPath('cards')
    """
    if isinstance(cards, bool) or not isinstance(cards, (int, np.integer)) or not 1 <= cards <= 100_000:
        raise invalid("cards", "an int in [1, 100000]", cards)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise invalid("seed", "a non-negative int", seed)
    if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or first < 1:
        raise invalid("first", "a positive int", first)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or not 1 <= workers <= 256:
        raise invalid("workers", "an int in [1, 256]", workers)
    if isinstance(capture, bool) or not isinstance(capture, (int, np.integer)) or capture < 0:
        raise invalid("capture", "a non-negative int", capture)
    params = replace(params or TenprintParams(), dpi=dpi, swap_rate=swap_rate, hand_swap_rate=hand_swap_rate,
                     missing_rate=missing_rate)
    if not isinstance(out, (str, Path)) or "\0" in str(out):
        raise invalid("out", "a folder path (str or Path, no NUL character)", out)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"out: expected a new or existing folder, got {str(folder)!r}, which is a file")
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        (folder / "params.json").write_text(json.dumps(asdict(params), indent=1))
    except OSError as exc:
        raise FileAccessError(f"out: cannot create the folder {str(folder)!r}: {exc.strerror or exc}") from exc
    if progress is not None:
        progress(0, cards)
    numbers = range(first, first + cards)
    if workers == 1 or cards == 1:
        for i, n in enumerate(numbers):
            _make_and_write(folder, n, seed, params, capture)
            if progress is not None:
                progress(i + 1, cards)
        return folder
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # Cards are independent and each is seeded by its number: the files do not depend on workers.
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_make_and_write, folder, n, seed, params, capture) for n in numbers]
        for i, fut in enumerate(as_completed(futures)):
            fut.result()
            if progress is not None:
                progress(i + 1, cards)
    return folder


def _make_and_write(folder: Path, n: int, seed: int, params: TenprintParams, capture: int) -> None:
    write_card(folder / f"card_{n:04d}", make_card(n, seed, params, capture))
