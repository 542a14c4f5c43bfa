"""ISO/IEC 19794-2:2005 and :2011 finger minutiae records (read and write).

Layouts (big-endian), as far as biomatch reads and writes them:

**2005** — record header (24 bytes): ``"FMR\\0"``, ``" 20\\0"``, record length u32, capture
equipment u16, image width u16, height u16, x and y resolution u16 (pixels/cm), view count u8,
reserved u8. Per view: position u8, view number (4 bits) + impression type (4 bits), finger
quality u8 (0-100), minutia count u8, minutiae of 6 bytes (type 2 bits + x 14 bits, reserved
2 bits + y 14 bits, angle u8 in 360/256 deg, quality u8), extended data length u16 + data.

**2011** — general header (15 bytes): ``"FMR\\0"``, ``"030\\0"``, record length u32,
representation count u16, certification flag u8. Per representation: length u32, capture
date-time (9 bytes), device technology u8, vendor u16, type u16, quality blocks (count u8, each
score u8 + vendor u16 + algorithm u16), certification blocks if the flag is set (count u8,
3 bytes each), position u8, representation number u8, x and y resolution u16 (pixels/cm),
impression type u8, width u16, height u16, minutia field length (4 bits: 5 or 6) + ridge
ending type (4 bits), minutia count u8, minutiae (6 bytes as 2005, or 5 without quality;
quality 254 = not reported, 255 = failed, both read as 0), extended data length u16 + data.

Mapping to biomatch: each view/representation becomes a :class:`~biomatch.template.FingerView`
whose template is converted to 500 dpi. The finger quality (2005) or the first quality block's
score (2011; 255 "failed" read as 0) becomes ``Template.quality``. Extended data blocks are kept
as raw bytes (``FingerView.extended_data``) and never interpreted; on writing they are copied
back only when the view was read from the same format. Values outside the standard (reserved
minutia type 3, quality > 100, zero resolution, lengths that disagree) raise
:class:`~biomatch.errors.FormatError` with the byte offset.
"""

from __future__ import annotations

import struct

from .._reader import Reader
from ..template import FingerView
from . import _fmr

__all__ = ["decode_2005", "encode_2005", "decode_2011", "encode_2011", "MAGIC", "VERSION_2005",
           "VERSION_2011"]

MAGIC = b"FMR\0"
VERSION_2005 = b" 20\0"
VERSION_2011 = b"030\0"
ISO_ANGLE_STEPS = 256
_ISO_STEP = 2 * 3.141592653589793 / ISO_ANGLE_STEPS


def read_header_start(r: Reader, version: bytes) -> None:
    if r.take(4, "format identifier") != MAGIC:
        raise r.fail(f"format identifier: expected {MAGIC!r}, got {bytes(r.data[r.pos - 4:r.pos])!r}", r.pos - 4)
    got = r.take(4, "version")
    if got != version:
        raise r.fail(f"version: expected {version!r}, got {bytes(got)!r}", r.pos - 4)


def check_total_length(r: Reader, length: int, at: int) -> None:
    if length != len(r.data):
        raise r.fail(f"record length field says {length} bytes, the input has {len(r.data)}", at)


def read_resolution(r: Reader, what: str, override: float | None = None) -> float:
    """The resolution field in dpi, or ``override`` (the field is then read but not used)."""
    at = r.pos
    ppcm = r.u16(what)
    if override is not None:
        return override
    if ppcm == 0:
        raise r.fail(f"{what}: 0 pixels/cm", at)
    return _fmr.ppcm_to_dpi(ppcm)


def read_view_2005(r: Reader, width: int, height: int, dpi_x: float, dpi_y: float, angle_step: float,
                   max_angle_code: int, index: int, fmt: str) -> FingerView:
    """One 2005-style finger view (shared with ANSI/INCITS 378-2004)."""
    at = r.pos
    position = r.u8(f"view {index} finger position")
    b = r.u8(f"view {index} view number / impression type")
    quality = r.u8(f"view {index} finger quality")
    count = r.u8(f"view {index} minutia count")
    raw = _fmr.read_minutiae(r, count, 6, angle_step, max_angle_code, ())
    ext_len = r.u16(f"view {index} extended data length")
    ext = bytes(r.take(ext_len, f"view {index} extended data"))
    t = _fmr.to_template(r, raw, width, height, dpi_x, dpi_y, quality, at)
    return FingerView(t, position, b >> 4, b & 0x0F, dpi_x, ext, fmt)


def decode_2005(data: bytes, dpi: float | None = None) -> tuple[FingerView, ...]:
    """Parse an ISO/IEC 19794-2:2005 record into its finger views (500 dpi templates).

    ``dpi``, when given, replaces the record's resolution fields (see :func:`biomatch.formats.load`).
    """
    dpi = _fmr.check_override_dpi(dpi)
    r = Reader(data, "ISO 19794-2:2005 record")
    read_header_start(r, VERSION_2005)
    at = r.pos
    check_total_length(r, r.u32("record length"), at)
    r.skip(2, "capture equipment")
    width, height = r.u16("image width"), r.u16("image height")
    dpi_x, dpi_y = read_resolution(r, "x resolution", dpi), read_resolution(r, "y resolution", dpi)
    n = r.u8("view count")
    r.skip(1, "reserved")
    views = tuple(read_view_2005(r, width, height, dpi_x, dpi_y, _ISO_STEP, 255, i, "iso19794-2:2005")
                  for i in range(n))
    if r.remaining:
        raise r.fail(f"{r.remaining} bytes after the last of {n} views")
    return views


def _keep_ext(v: FingerView, fmt: str) -> bytes:
    return v.extended_data if v.extended_format == fmt else b""


def write_views_2005(views, dpi: float, angle_steps: int, fmt: str, what: str) -> tuple[bytes, int, int]:
    body, width, height = [], 0, 0
    for v in views:
        _fmr.check_view_codes(v, what)
        w, h, x, y, kind, a, q = _fmr.quantise(v.template, dpi, angle_steps, what)
        width, height = max(width, w), max(height, h)
        ext = _keep_ext(v, fmt)
        body.append(struct.pack(">BBBB", v.position, (v.view_number << 4) | v.impression_type,
                                v.template.quality, len(x)))
        body.append(_fmr.pack_minutiae(x, y, kind, a, q))
        body.append(struct.pack(">H", len(ext)) + ext)
    return b"".join(body), width, height


def encode_2005(obj, dpi: float = 500) -> bytes:
    """Write an ISO/IEC 19794-2:2005 record.

    Parameters
    ----------
    obj : Template, FingerView or sequence of FingerView
        The views share one record header: the image size written is the largest of them.
    dpi : float
        Resolution of the record (coordinates are scaled from 500 dpi and rounded).
    """
    views = _fmr.views_of(obj, "ISO 19794-2:2005")
    dpi = _fmr.check_write_dpi(dpi)
    body, width, height = write_views_2005(views, dpi, ISO_ANGLE_STEPS, "iso19794-2:2005", "ISO 19794-2:2005")
    ppcm = _fmr.dpi_to_ppcm(dpi)
    head = struct.pack(">4s4sIHHHHHBB", MAGIC, VERSION_2005, 24 + len(body), 0, width, height, ppcm, ppcm,
                       len(views), 0)
    return head + body


def decode_2011(data: bytes, dpi: float | None = None) -> tuple[FingerView, ...]:
    """Parse an ISO/IEC 19794-2:2011 record into its finger representations (500 dpi templates).

    ``dpi``, when given, replaces the representations' resolution fields.
    """
    dpi = _fmr.check_override_dpi(dpi)
    r = Reader(data, "ISO 19794-2:2011 record")
    read_header_start(r, VERSION_2011)
    at = r.pos
    check_total_length(r, r.u32("record length"), at)
    n = r.u16("representation count")
    at = r.pos
    cert = r.u8("certification flag")
    if cert > 1:
        raise r.fail(f"certification flag: expected 0 or 1, got {cert}", at)
    views = []
    for i in range(n):
        at = r.pos
        length = r.u32(f"representation {i} length")
        if length < 4:
            raise r.fail(f"representation {i} length {length} below 4", at)
        s = r.sub(length - 4, f"representation {i} (length {length})", f"ISO 19794-2:2011 representation {i}")
        views.append(_read_representation(s, cert, at, dpi))
    if r.remaining:
        raise r.fail(f"{r.remaining} bytes after the last of {n} representations")
    return tuple(views)


def _read_representation(s: Reader, cert: int, at: int, dpi: float | None) -> FingerView:
    s.skip(9, "capture date and time")
    s.skip(5, "capture device technology, vendor and type")
    nq = s.u8("quality block count")
    s.need(5 * nq, f"{nq} quality blocks")
    quality = 0
    for j in range(nq):
        score = s.u8(f"quality block {j} score")
        s.skip(4, f"quality block {j} vendor and algorithm")
        if score > 100 and score != 255:
            raise s.fail(f"quality block {j}: score {score} outside 0-100 (255 = failed)", s.pos - 5)
        if j == 0:
            quality = 0 if score == 255 else score
    if cert:
        nc = s.u8("certification block count")
        s.skip(3 * nc, f"{nc} certification blocks")
    position = s.u8("finger position")
    number = s.u8("representation number")
    dpi_x, dpi_y = read_resolution(s, "x resolution", dpi), read_resolution(s, "y resolution", dpi)
    impression = s.u8("impression type")
    width, height = s.u16("image width"), s.u16("image height")
    b_at = s.pos
    b = s.u8("minutia field length / ridge ending type")
    field_len = b >> 4
    if field_len not in (5, 6):
        raise s.fail(f"minutia field length: expected 5 or 6, got {field_len}", b_at)
    count = s.u8("minutia count")
    raw = _fmr.read_minutiae(s, count, field_len, _ISO_STEP, 255, (254, 255))
    ext_len = s.u16("extended data length")
    ext = bytes(s.take(ext_len, "extended data"))
    if s.remaining:
        raise s.fail(f"{s.remaining} bytes after the extended data (representation length disagrees)")
    t = _fmr.to_template(s, raw, width, height, dpi_x, dpi_y, quality, at)
    return FingerView(t, position, number, impression, dpi_x, ext, "iso19794-2:2011")


def encode_2011(obj, dpi: float = 500) -> bytes:
    """Write an ISO/IEC 19794-2:2011 record (one representation per view, 6-byte minutiae).

    The capture date is written as unknown (0xFF), the device as unknown (0), one quality block
    holds ``Template.quality`` (vendor and algorithm 0), no certification blocks; the ridge ending
    type is 0 (ridge skeleton end point).
    """
    views = _fmr.views_of(obj, "ISO 19794-2:2011")
    if len(views) > 0xFFFF:
        raise _fmr.invalid("views", "at most 65535 representations", len(views))
    dpi = _fmr.check_write_dpi(dpi)
    ppcm = _fmr.dpi_to_ppcm(dpi)
    reps = []
    for v in views:
        _fmr.check_view_codes(v, "ISO 19794-2:2011")
        w, h, x, y, kind, a, q = _fmr.quantise(v.template, dpi, ISO_ANGLE_STEPS, "ISO 19794-2:2011")
        ext = _keep_ext(v, "iso19794-2:2011")
        body = (b"\xff" * 9 + struct.pack(">BHH", 0, 0, 0)
                + struct.pack(">BBHH", 1, v.template.quality, 0, 0)
                + struct.pack(">BBHHBHHBB", v.position, v.view_number, ppcm, ppcm, v.impression_type, w, h,
                              6 << 4, len(x))
                + _fmr.pack_minutiae(x, y, kind, a, q)
                + struct.pack(">H", len(ext)) + ext)
        reps.append(struct.pack(">I", 4 + len(body)) + body)
    body = b"".join(reps)
    return struct.pack(">4s4sIHB", MAGIC, VERSION_2011, 15 + len(body), len(views), 0) + body
