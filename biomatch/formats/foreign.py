"""Explicit readers for known non-conformant "ISO 19794-2" writers.

Some tools write records that look like ISO/IEC 19794-2 but deviate from it. biomatch's
standard parsers refuse them (or, worse, would misread a resolution field); guessing which tool
wrote a record is not reliable, so nothing here is ever applied by :func:`biomatch.formats.load`
on its own. A caller who knows where a record comes from converts it to a conformant record
with the function named after that tool, then loads it as usual::

    from biomatch.formats import foreign
    from biomatch.formats import load

    t = load(foreign.from_afis_iso2005(data))                 # afis 1.2.x to_iso19794_2()
    t = load(afis_2011_bytes, dpi=500)                        # afis 1.2.x to_iso19794_2_2011()
    t = load(foreign.from_nbis_py_iso2005(data, dpi=500))     # nbis-py 0.1.x to_iso_19794_2_2005()

Each function checks the layout it expects byte for byte (lengths, counts) and raises
:class:`~biomatch.errors.FormatError` with the byte offset when the input is not that layout;
the result is then validated again by the standard parser.

Deviations (measured on afis 1.2.7 and nbis-py 0.1.3, read from their sources):

=================  =====================================================================
afis ISO 2005      version ``"020\\0"`` instead of ``" 20\\0"``; resolution fields in
(``020``)          pixels per inch instead of pixels per centimetre (500, not 197);
                   minutia quality scaled to 0-255 instead of 0-100. Otherwise the 2005
                   layout (one view, empty extended data). Directions follow the standard.
afis ISO 2011      conformant layout, but the resolution is ``round(ppi / 25.4)``
                   (pixels per millimetre) clamped to at least 99: 500 ppi is written as
                   99 px/cm (251 ppi). Read it with ``load(data, dpi=<the true ppi>)``.
nbis-py ISO 2005   22-byte record header (no view count and no reserved byte), both
                   resolution fields 0, no extended-data length after the minutiae (one
                   view). The resolution must be supplied by the caller.
=================  =====================================================================
"""

from __future__ import annotations

import math
import struct

from .._reader import Reader
from ..errors import invalid
from ..imaging.limits import MAX_DPI, MIN_DPI
from . import _fmr
from .iso19794_2 import MAGIC, VERSION_2005

__all__ = ["from_afis_iso2005", "from_nbis_py_iso2005"]

AFIS_VERSION_2005 = b"020\0"


def _dpi(dpi) -> float:
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not math.isfinite(float(dpi)) \
            or not MIN_DPI <= float(dpi) <= MAX_DPI:
        raise invalid("dpi", f"the record's resolution in [{MIN_DPI:g}, {MAX_DPI:g}] dots per inch", dpi)
    return float(dpi)


def from_afis_iso2005(data: bytes) -> bytes:
    """Convert an afis 1.2.x ``to_iso19794_2()`` record into a conformant ISO 19794-2:2005 one.

    The resolution afis states (in ppi) is kept, written in pixels per centimetre; minutia
    qualities 0-255 become ``round(q * 100 / 255)``.

    Raises
    ------
    FormatError
        Not that layout (magic, version, lengths, view count, minutia count).
    """
    r = Reader(bytes(data), "afis ISO 19794-2 '020' record")
    if r.take(4, "format identifier") != MAGIC:
        raise r.fail("format identifier: expected b'FMR\\x00'", 0)
    if r.take(4, "version") != AFIS_VERSION_2005:
        raise r.fail(f"version: expected {AFIS_VERSION_2005!r} (afis's 2005-shaped layout)", 4)
    at = r.pos
    if r.u32("record length") != len(r.data):
        raise r.fail(f"record length field disagrees with the input ({len(r.data)} bytes)", at)
    r.skip(2, "capture device")
    r.skip(4, "image size")
    res_at = r.pos
    ppi_x, ppi_y = r.u16("x resolution (ppi)"), r.u16("y resolution (ppi)")
    for ppi in (ppi_x, ppi_y):
        if not MIN_DPI <= ppi <= MAX_DPI:
            raise r.fail(f"resolution {ppi} ppi outside [{MIN_DPI:g}, {MAX_DPI:g}]", res_at)
    at = r.pos
    if r.u8("view count") != 1:
        raise r.fail("afis writes exactly one finger view", at)
    r.skip(1, "reserved")
    r.skip(3, "finger position, view / impression, finger quality")
    count = r.u8("minutia count")
    start = r.pos
    minutiae = bytearray(r.take(6 * count, f"{count} minutiae"))
    if r.u16("extended data length") != 0 or r.remaining:
        raise r.fail("expected an empty extended data block at the end of the record", r.pos - 2)
    for i in range(count):
        minutiae[6 * i + 5] = round(minutiae[6 * i + 5] * 100 / 255)
    out = bytearray(r.data)
    out[4:8] = VERSION_2005
    out[18:22] = struct.pack(">HH", _fmr.dpi_to_ppcm(ppi_x), _fmr.dpi_to_ppcm(ppi_y))
    out[start:start + 6 * count] = minutiae
    return bytes(out)


def from_nbis_py_iso2005(data: bytes, dpi: float) -> bytes:
    """Convert an nbis-py 0.1.x ``to_iso_19794_2_2005()`` record into a conformant one.

    Parameters
    ----------
    data : bytes
        The record: 22-byte header, one view header, minutiae, nothing after them.
    dpi : float
        Resolution of the image it was extracted from (the record states none).

    Raises
    ------
    FormatError
        Not that layout (magic, version, length, non-zero resolution, minutia count).
    """
    dpi = _dpi(dpi)
    r = Reader(bytes(data), "nbis-py ISO 19794-2:2005 record")
    if r.take(4, "format identifier") != MAGIC or r.take(4, "version") != VERSION_2005:
        raise r.fail("expected b'FMR\\x00 20\\x00'", 0)
    at = r.pos
    if r.u32("record length") != len(r.data):
        raise r.fail(f"record length field disagrees with the input ({len(r.data)} bytes)", at)
    r.skip(6, "capture equipment and image size")
    at = r.pos
    if r.u16("x resolution") != 0 or r.u16("y resolution") != 0:
        raise r.fail("nbis-py writes resolution 0; this record states one (read it as a standard record)", at)
    r.skip(3, "finger position, view / impression, finger quality")
    count = r.u8("minutia count")
    r.skip(6 * count, f"{count} minutiae")
    if r.remaining:
        raise r.fail(f"{r.remaining} bytes after the minutiae (nbis-py writes none)")
    ppcm = _fmr.dpi_to_ppcm(dpi)
    body = r.data[22:] + b"\0\0"  # the view, then an empty extended data block
    head = r.data[:8] + struct.pack(">I", 24 + len(body)) + r.data[12:18] + struct.pack(">HHBB", ppcm, ppcm, 1, 0)
    return head + body
