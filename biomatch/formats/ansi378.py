"""ANSI/INCITS 378-2004 finger minutiae records (read and write).

Record header: ``"FMR\\0"``, ``" 20\\0"``, record length u16 (or, when it is 0, a u32 that
follows: the 6-byte form for records over 65,535 bytes), CBEFF product identifier u32, capture
equipment u16, image width u16, height u16, x and y resolution u16 (pixels/cm), view count u8,
reserved u8. Finger views are laid out as in ISO/IEC 19794-2:2005 (see
:mod:`biomatch.formats.iso19794_2`), except the angle: units of 2 degrees (0-179, larger codes
refused). Minutia quality 0 means "not reported" (kept as 0); finger quality is 0-100.
"""

from __future__ import annotations

import math
import struct

from .._reader import Reader
from . import _fmr
from .iso19794_2 import MAGIC, VERSION_2005, check_total_length, read_header_start, read_resolution, \
    read_view_2005, write_views_2005

__all__ = ["decode", "encode"]

ANGLE_STEPS = 180
_STEP = 2 * math.pi / ANGLE_STEPS


def decode(data: bytes, dpi: float | None = None):
    """Parse an ANSI/INCITS 378-2004 record into its finger views (500 dpi templates).

    ``dpi``, when given, replaces the record's resolution fields.
    """
    dpi = _fmr.check_override_dpi(dpi)

    r = Reader(data, "ANSI 378-2004 record")
    read_header_start(r, VERSION_2005)
    at = r.pos
    length = r.u16("record length")
    if length == 0:
        at = r.pos
        length = r.u32("record length (6-byte form)")
    check_total_length(r, length, at)
    r.skip(4, "CBEFF product identifier")
    r.skip(2, "capture equipment")
    width, height = r.u16("image width"), r.u16("image height")
    dpi_x, dpi_y = read_resolution(r, "x resolution", dpi), read_resolution(r, "y resolution", dpi)
    n = r.u8("view count")
    r.skip(1, "reserved")
    views = tuple(read_view_2005(r, width, height, dpi_x, dpi_y, _STEP, ANGLE_STEPS - 1, i, "ansi378")
                  for i in range(n))
    if r.remaining:
        raise r.fail(f"{r.remaining} bytes after the last of {n} views")
    return views


def encode(obj, dpi: float = 500) -> bytes:
    """Write an ANSI/INCITS 378-2004 record (CBEFF product id and capture equipment 0)."""
    views = _fmr.views_of(obj, "ANSI 378")
    dpi = _fmr.check_write_dpi(dpi)
    body, width, height = write_views_2005(views, dpi, ANGLE_STEPS, "ansi378", "ANSI 378")
    ppcm = _fmr.dpi_to_ppcm(dpi)
    tail = struct.pack(">IHHHHHBB", 0, 0, width, height, ppcm, ppcm, len(views), 0) + body
    total = 8 + 2 + len(tail)
    if total <= 0xFFFF:
        return MAGIC + VERSION_2005 + struct.pack(">H", total) + tail
    return MAGIC + VERSION_2005 + struct.pack(">HI", 0, total + 4) + tail
