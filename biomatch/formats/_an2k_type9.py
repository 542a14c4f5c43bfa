"""Minutiae of AN2K Type-9 records: the legacy 9.012 fields and the INCITS 378 block (9.126-9.150).

Both become :class:`~biomatch.template.Template` s at 500 dpi in biomatch's direction convention;
see :mod:`biomatch.formats.an2k` for the field layouts and the conversions.
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError
from ..imaging.limits import MAX_DPI, MIN_DPI
from ..template import BIFURCATION, ENDING, MINUTIA_DTYPE, OTHER, FingerView, Template
from ._an2k_records import RS, US, Record, field_int, snap_ppi

__all__ = ["legacy_minutiae", "m1_view", "M1_FIELDS"]

_NIST_TO_TEMPLATE_RAD = np.pi  # legacy 9.012 directions are NIST's internal ones (module docstring)


def legacy_minutiae(rec: Record, height_mm: float | None, width_500: int | None = None) -> Template | None:
    """The legacy 9.012 minutiae of a Type-9 record at 500 dpi, or None without them."""
    name = f"AN2K Type-9 IDC {rec.idc}"
    raw = rec.fields.get(12)
    if raw is None:
        return None
    subs = [s for s in bytes(raw).split(RS) if s]
    if len(subs) > 1000:
        raise FormatError(f"{name}: {len(subs)} minutiae (at most 1000)", rec.offset)
    m = np.zeros(len(subs), MINUTIA_DTYPE)
    ys = np.zeros(len(subs))
    for i, s in enumerate(subs):
        items = s.split(US)
        xyt = items[1] if len(items) > 1 else b""
        if len(xyt) != 11 or not xyt.isdigit():
            raise FormatError(f"{name}: minutia {i}: expected XXXXYYYYTTT, got {xyt[:16]!r}", rec.offset)
        x_mm, y_mm, theta = int(xyt[:4]) / 100, int(xyt[4:8]) / 100, int(xyt[8:])
        if theta >= 360:
            raise FormatError(f"{name}: minutia {i}: theta {theta} >= 360", rec.offset)
        q = items[2] if len(items) > 2 else b"0"
        kind = items[3] if len(items) > 3 else b"D"
        m["x"][i] = x_mm * 500 / 25.4
        ys[i] = y_mm
        m["angle"][i] = np.float32(np.mod(np.deg2rad(theta) + _NIST_TO_TEMPLATE_RAD, 2 * np.pi)) % np.float32(2 * np.pi)
        m["kind"][i] = {b"A": ENDING, b"B": BIFURCATION}.get(kind.strip(), OTHER)
        # legacy quality: 0 manual, 1 unknown, 2-63 decreasing confidence -> 0-100 (higher is better)
        qv = int(q) if q.isdigit() and len(q) < 4 else 1
        m["quality"][i] = 0 if qv <= 1 else max(0, min(100, round(100 * (63 - qv) / 61)))
    h_mm = height_mm if height_mm is not None else (float(ys.max()) if len(ys) else 0.0)
    m["y"] = (h_mm - ys) * 500 / 25.4
    if np.any(m["y"] < -1):
        raise FormatError(f"{name}: minutia below the image (y beyond its height)", rec.offset)
    m["y"] = np.maximum(m["y"], 0)
    w = width_500 if width_500 is not None else (int(np.ceil(m["x"].max() + 1)) if len(m) else 0)
    return Template(m, min(w, 20000), min(int(round(h_mm * 500 / 25.4)), 20000), 0, "")



M1_FIELDS = range(126, 151)
_M1_MAX_MINUTIAE = 255  # INCITS 378 / ISO 19794-2 count minutiae in one byte


def _m1_fail(rec: Record, number: int, message: str) -> FormatError:
    return FormatError(f"AN2K Type-9 IDC {rec.idc}: INCITS 378 block, field 9.{number:03d}: {message}",
                       rec.field_offsets.get(number, rec.offset))


def _m1_int(rec: Record, number: int, what: str, lo: int, hi: int, default: int | None = None,
            raw: bytes | None = None) -> int:
    value = bytes(rec.fields.get(number, b"") if raw is None else raw).strip()
    if not value:
        if default is not None:
            return default
        raise _m1_fail(rec, number, f"{what}: missing (mandatory in the block)")
    if not value.isdigit() or len(value) > 6 or not lo <= int(value) <= hi:
        raise _m1_fail(rec, number, f"{what}: expected an integer in [{lo}, {hi}], got {value[:12]!r}")
    return int(value)


def m1_view(rec: Record, ref_ppi: float | None) -> FingerView | None:
    """The INCITS 378 block of a Type-9 record as a FingerView at 500 dpi, or None without one.

    ``ref_ppi`` is the resolution of the image record with the same IDC (used when SLC is 0).
    """
    if 137 not in rec.fields and 136 not in rec.fields:
        return None
    width = _m1_int(rec, 128, "HLL (horizontal line length, px)", 1, 99999)
    height = _m1_int(rec, 129, "VLL (vertical line length, px)", 1, 99999)
    slc = _m1_int(rec, 130, "SLC (scale units)", 0, 2)
    if slc == 0:
        if not ref_ppi:
            raise _m1_fail(rec, 130, "SLC 0 (no scale) and no image record with this IDC gives a resolution")
        ppi_x = ppi_y = ref_ppi
    else:
        unit = 1.0 if slc == 1 else 2.54
        ppi_x = snap_ppi(_m1_int(rec, 131, "THPS (horizontal pixel scale)", 1, 99999) * unit)
        ppi_y = snap_ppi(_m1_int(rec, 132, "TVPS (vertical pixel scale)", 1, 99999) * unit)
        for number, ppi in ((131, ppi_x), (132, ppi_y)):
            if not MIN_DPI <= ppi <= MAX_DPI:
                raise _m1_fail(rec, number, f"resolution {ppi:g} ppi outside [{MIN_DPI:g}, {MAX_DPI:g}]")
    view_number = _m1_int(rec, 133, "FVW (finger view)", 0, 15, default=0)
    position = _m1_int(rec, 134, "FGP (finger position)", 0, 255)
    impression = field_int(rec, 3, "IMP", 0)
    if impression > 255:
        raise FormatError(f"AN2K Type-9 IDC {rec.idc}: IMP {impression} outside 0-255", rec.offset)
    quality = 0
    fqd = bytes(rec.fields.get(135, b""))
    if fqd:
        q = _m1_int(rec, 135, "FQD quality value", 0, 255, raw=fqd.split(RS)[0].split(US)[0])
        if 100 < q < 255:
            raise _m1_fail(rec, 135, f"quality value {q} outside 0-100 (255 = failed)")
        quality = 0 if q == 255 else q
    count = _m1_int(rec, 136, "NOM (number of minutiae)", 0, _M1_MAX_MINUTIAE)
    raw = bytes(rec.fields.get(137, b""))
    subs = [sub for sub in raw.split(RS) if sub] if raw else []
    if len(subs) != count:
        raise _m1_fail(rec, 137, f"{len(subs)} minutiae, NOM (9.136) says {count}")
    w500, h500 = int(round(width * 500 / ppi_x)), int(round(height * 500 / ppi_y))
    if w500 > 20000 or h500 > 20000:
        raise _m1_fail(rec, 128, f"image {width}x{height} px at {ppi_x:g} ppi exceeds 20000 px at 500 dpi")
    m = np.zeros(count, MINUTIA_DTYPE)
    for i, sub in enumerate(subs):
        items = sub.split(US)
        if len(items) != 6:
            raise _m1_fail(rec, 137, f"minutia {i}: expected 6 items (index, x, y, angle, type, quality), "
                                     f"got {len(items)}")
        x = _m1_int(rec, 137, f"minutia {i} x (MXC)", 0, 16383, raw=items[1])
        y = _m1_int(rec, 137, f"minutia {i} y (MYC)", 0, 16383, raw=items[2])
        angle = _m1_int(rec, 137, f"minutia {i} angle (MAV, 2-degree units)", 0, 179, raw=items[3])
        kind = _m1_int(rec, 137, f"minutia {i} type (MTY: 0 other, 1 ending, 2 bifurcation)", 0, 2, raw=items[4])
        q = _m1_int(rec, 137, f"minutia {i} quality (QOM)", 0, 100, raw=items[5])
        m["x"][i], m["y"][i] = x * 500 / ppi_x, y * 500 / ppi_y
        m["angle"][i] = np.float32(np.mod(np.deg2rad(2 * angle), 2 * np.pi)) \
            % np.float32(2 * np.pi)
        m["kind"][i], m["quality"][i] = kind, q
    return FingerView(Template(m, w500, h500, quality, ""), position, view_number, impression, ppi_x,
                      b"", "an2k-type9-m1")
