"""Shared parts of the finger minutiae records (ISO/IEC 19794-2 and ANSI/INCITS 378).

Conventions common to the three standards and what biomatch does with them:

- coordinates: 14-bit unsigned integer pixels of the record's image, origin top-left, y down;
  converted to and from biomatch's float 500 dpi pixels with the record's resolution;
- resolution: pixels per centimetre (197 for 500 dpi). A ppcm value that is the rounding of a
  common scanner resolution (e.g. 197 -> 500, 224 -> 569, 394 -> 1000 dpi) is read as that
  resolution, so a 500 dpi template round-trips without a 0.08 % scale error;
- minutia type (2 bits): 0 other, 1 ridge ending, 2 bifurcation, 3 reserved (refused);
- angle: counter-clockwise from the x axis as displayed, quantised to the standard's step
  (ISO 360/256 = 1.40625 deg; ANSI 378 2 deg). The *direction* is :class:`Template`'s: the
  standards point a ridge ending "up the ridge" (from the end into the ridge body) and a
  bifurcation "down the valley" between its two branches, as biomatch's extractors do, so the
  angle is kept as it is; NIST's internal representation (NBIS mindtct's default output)
  points the other way. Sources: NBIS ``xytreps.c`` (``lfs2m1_minutia_XYT``: M1 / ANSI 378 "pointing up the ridge
  ending or bifurcation valley", NIST internal "opposite direction from M1"); ANSI/NIST-ITL
  1-2011 EFS (the ending's theta "should run up the ridge", the bifurcation's "down the
  valley"); SourceAFIS's ISO codecs, whose ending direction points into the ridge. Pinned by
  ``tests/formats/test_fmr_convention.py`` on synthetic ridge endings and bifurcations.
"""

from __future__ import annotations

import math

import numpy as np

from .._reader import Reader
from ..errors import FormatError, invalid
from ..imaging.limits import MAX_DPI, MIN_DPI
from ..template import MINUTIA_DTYPE, FingerView, Template

# Common scanner resolutions (dpi); a ppcm field equal to round(dpi / 2.54) means exactly that dpi.
_COMMON_DPI = (250, 300, 333, 362, 400, 450, 500, 569, 600, 700, 750, 800, 1000, 1200, 1500, 2000)
_MINUTIA_6 = np.dtype([("xt", ">u2"), ("yr", ">u2"), ("angle", "u1"), ("quality", "u1")])
_MINUTIA_5 = np.dtype([("xt", ">u2"), ("yr", ">u2"), ("angle", "u1")])
MAX_MINUTIAE_PER_VIEW = 255
MAX_COORD = (1 << 14) - 1
_MAX_SIDE_PX_500 = 20000  # Template's own bound


def ppcm_to_dpi(ppcm: int) -> float:
    """Resolution in dpi of a pixels-per-centimetre field (0 is refused by the callers)."""
    for dpi in _COMMON_DPI:
        if round(dpi / 2.54) == ppcm:
            return float(dpi)
    return ppcm * 2.54


def dpi_to_ppcm(dpi: float) -> int:
    return int(round(dpi / 2.54))


def check_write_dpi(dpi: object) -> float:
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(dpi)) or not MIN_DPI <= float(dpi) <= MAX_DPI:
        raise invalid("dpi", f"a resolution in [{MIN_DPI:g}, {MAX_DPI:g}] dots per inch", dpi)
    return ppcm_to_dpi(dpi_to_ppcm(float(dpi)))  # the resolution the record will state


def check_override_dpi(dpi: object) -> float | None:
    """None, or a resolution that replaces a record's resolution fields (not snapped)."""
    if dpi is None:
        return None
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(dpi)) or not MIN_DPI <= float(dpi) <= MAX_DPI:
        raise invalid("dpi", f"None or the record's true resolution in [{MIN_DPI:g}, {MAX_DPI:g}] dots per inch", dpi)
    return float(dpi)


def read_minutiae(r: Reader, count: int, field_len: int, angle_step_rad: float, max_angle_code: int,
                  quality_absent: tuple[int, ...]) -> np.ndarray:
    """Read ``count`` minutiae of ``field_len`` (5 or 6) bytes; returns raw fields as a dict-like array.

    Angles and qualities are validated here; coordinates are converted by :func:`to_template`.
    """
    start = r.pos
    raw = np.frombuffer(r.take(count * field_len, f"{count} minutiae"), _MINUTIA_6 if field_len == 6 else _MINUTIA_5)
    kind = (raw["xt"] >> 14).astype(np.uint8)
    if np.any(kind == 3):
        i = int(np.argmax(kind == 3))
        raise r.fail(f"minutia {i}: type code 3 is reserved (expected 0 other, 1 ending, 2 bifurcation)",
                     start + i * field_len)
    angle_code = raw["angle"].astype(np.int64)
    if np.any(angle_code > max_angle_code):
        i = int(np.argmax(angle_code > max_angle_code))
        raise r.fail(f"minutia {i}: angle code {int(angle_code[i])} above {max_angle_code}", start + i * field_len + 4)
    if field_len == 6:
        q = raw["quality"].astype(np.int64)
        absent = np.isin(q, quality_absent)
        bad = (q > 100) & ~absent
        if np.any(bad):
            i = int(np.argmax(bad))
            raise r.fail(f"minutia {i}: quality {int(q[i])} outside 0-100", start + i * field_len + 5)
        q = np.where(absent, 0, q)
    else:
        q = np.zeros(count, np.int64)
    out = np.zeros(count, [("x", "i4"), ("y", "i4"), ("angle", "f8"), ("kind", "u1"), ("quality", "u1")])
    out["x"] = raw["xt"] & MAX_COORD
    out["y"] = raw["yr"] & MAX_COORD
    out["angle"] = angle_code * angle_step_rad
    out["kind"] = kind
    out["quality"] = q
    return out


def to_template(r: Reader, raw: np.ndarray, width: int, height: int, dpi_x: float, dpi_y: float,
                quality: int, offset: int) -> Template:
    """Convert record pixels to a 500 dpi :class:`Template`."""
    sx, sy = 500.0 / dpi_x, 500.0 / dpi_y
    w500, h500 = int(round(width * sx)), int(round(height * sy))
    if w500 > _MAX_SIDE_PX_500 or h500 > _MAX_SIDE_PX_500:
        raise r.fail(f"image size {width}x{height} px at {dpi_x:g}x{dpi_y:g} dpi exceeds "
                     f"{_MAX_SIDE_PX_500} px at 500 dpi", offset)
    if len(raw) > 1000:  # only when several views were merged; a view has at most 255
        raise r.fail(f"{len(raw)} minutiae (at most 1000)", offset)
    if not 0 <= quality <= 100:
        raise r.fail(f"finger quality {quality} outside 0-100", offset)
    m = np.zeros(len(raw), MINUTIA_DTYPE)
    m["x"] = raw["x"] * sx
    m["y"] = raw["y"] * sy
    m["angle"] = np.mod(raw["angle"], 2 * np.pi).astype(np.float32) % np.float32(2 * np.pi)
    m["kind"] = raw["kind"]
    m["quality"] = raw["quality"]
    return Template(m, w500, h500, quality, "")


def quantise(template: Template, dpi: float, angle_steps: int, what: str):
    """Template -> (width, height, x, y, type, angle code, quality) in record units at ``dpi``."""
    m = template.minutiae
    if len(m) > MAX_MINUTIAE_PER_VIEW:
        raise invalid("template", f"at most {MAX_MINUTIAE_PER_VIEW} minutiae per {what} finger view", len(m))
    s = dpi / 500.0
    x = np.clip(np.rint(m["x"].astype(np.float64) * s), 0, MAX_COORD).astype(np.int64)
    y = np.clip(np.rint(m["y"].astype(np.float64) * s), 0, MAX_COORD).astype(np.int64)
    step = 2 * np.pi / angle_steps
    a = np.rint(m["angle"].astype(np.float64) / step).astype(np.int64) % angle_steps
    w = min(int(round(template.width * s)), 0xFFFF)  # round, not ceil: a second round trip is exact
    h = min(int(round(template.height * s)), 0xFFFF)
    return w, h, x, y, m["kind"].astype(np.int64), a, m["quality"].astype(np.int64)


def pack_minutiae(x, y, kind, angle, quality, with_quality: bool = True) -> bytes:
    out = np.zeros(len(x), _MINUTIA_6 if with_quality else _MINUTIA_5)
    out["xt"] = (kind << 14) | x
    out["yr"] = y
    out["angle"] = angle
    if with_quality:
        out["quality"] = quality
    return out.tobytes()


def views_of(obj, what: str) -> tuple[FingerView, ...]:
    """Accept a Template, a FingerView or a non-empty sequence of FingerViews."""
    if isinstance(obj, Template):
        return (FingerView(obj),)
    if isinstance(obj, FingerView):
        return (obj,)
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(v, FingerView) for v in obj):
        if len(obj) > 255:
            raise invalid("views", f"at most 255 finger views in one {what} record", len(obj))
        return tuple(obj)
    raise invalid("template", "a Template, a FingerView or a non-empty sequence of FingerViews",
                  type(obj).__name__)


def check_view_codes(v: FingerView, what: str) -> None:
    for name, value, hi in (("position", v.position, 255), ("view_number", v.view_number, 15),
                            ("impression_type", v.impression_type, 15)):
        if not 0 <= value <= hi:
            raise invalid(f"FingerView.{name}", f"0-{hi} in {what}", value)


__all__ = ["check_override_dpi", "ppcm_to_dpi", "dpi_to_ppcm", "read_minutiae", "to_template", "quantise", "pack_minutiae",
           "views_of", "FormatError"]
