"""Write ANSI/NIST-ITL 1-2011 transactions: Type-1, Type-4 and Type-14 records.

The inverse of :mod:`biomatch.formats.an2k` for friction-ridge images, enough to carry a
ten-print capture (rolled prints and 4-4-2 slaps) with its finger positions, segment
positions and amputation codes:

======  =============================================================================
Type    fields written
======  =============================================================================
1       LEN, VER (0500), CNT, TOT, DAT, DAI, ORI, TCN, NSR, NTR, DOM, GMT
4       binary: LEN, IDC, IMP, FGP (6 bytes, 255-padded), ISR 0, HLL, VLL, GCA (0 none,
        1 WSQ), data.  Only at 500 ppi: the standard ties Type-4 to the native scanning
        resolution (1.011 NSR, 19.69 px/mm); other resolutions need Type-14.
14      LEN, IDC, IMP, SRC, FCD, HLL, VLL, SLC 1 (ppi), THPS, TVPS, CGA (NONE / WSQ20),
        BPX 8, FGP, AMP (14.018, ``FGP US XX|UP`` per missing finger), SEG (14.021,
        ``FGP US left US right US top US bottom`` per finger of a slap), DAT (14.999)
======  =============================================================================

Tagged records are ``T.NNN:value`` fields joined by GS and ended by FS; subfields are
separated by RS and items by US; 14.999 is last and holds the image bytes.  The LEN of a
tagged record counts its own digits, so it is found by a short fixed-point iteration.
Binary records are big-endian.

Example
-------
>>> from biomatch.formats.an2k_write import FingerRecord, write_transaction
>>> import numpy as np
>>> img = np.full((64, 48), 200, np.uint8)
>>> data = write_transaction([FingerRecord(img, 500, position=2, impression=1, record_type=4)])
>>> from biomatch.formats.an2k import read_enrolment
>>> read_enrolment(data).fingers[2].width
48
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import FileAccessError, invalid
from ._an2k_records import FS, GS, RS, US

__all__ = ["FingerRecord", "Segment", "AMPUTATED", "UNABLE_TO_PRINT", "IMPRESSION_CODES", "write_transaction",
           "write_file"]

AMPUTATED = "XX"
"""14.018 amputation code: the finger is amputated."""
UNABLE_TO_PRINT = "UP"
"""14.018 amputation code: unable to print (bandaged, injured)."""

IMPRESSION_CODES = {"live_plain": 0, "live_rolled": 1, "nonlive_plain": 2, "nonlive_rolled": 3}
"""ANSI/NIST-ITL impression types (field 14.003 IMP / the Type-4 IMP byte)."""

_COMPRESSION = {"none": ("NONE", 0), "wsq": ("WSQ20", 1)}
_SLAPS = (13, 14, 15)
_PLAIN_THUMBS = (11, 12)  # plain right / left thumb


@dataclass(frozen=True)
class Segment:
    """One finger's box inside a slap image (field 14.021 SEG), pixels, right/bottom inclusive.

    Attributes
    ----------
    position : int
        Finger position 1-10.
    left, right, top, bottom : int
        Horizontal and vertical extent in the slap image's pixels.
    """

    position: int
    left: int
    right: int
    top: int
    bottom: int


@dataclass(frozen=True)
class FingerRecord:
    """A friction-ridge image to write as a Type-4 or Type-14 record.

    Attributes
    ----------
    image : uint8 (h, w)
        Grey image, ridges dark.
    ppi : int
        Resolution; Type-4 requires 500.
    position : int
        Finger position code (0-10, 13-15 for slaps).
    impression : int
        Impression type (:data:`IMPRESSION_CODES`: 0 live-scan plain, 1 live-scan rolled ...).
    record_type : int
        4 or 14.
    compression : str
        ``"none"`` (raw 8-bit) or ``"wsq"`` (NBIS's encoder, :func:`biomatch.imaging.wsq.encode`).
    segments : sequence of Segment
        14.021 for a slap (Type-14 only).
    amputated : dict[int, str]
        Position -> :data:`AMPUTATED` or :data:`UNABLE_TO_PRINT` (14.018; Type-14 only).
    """

    image: np.ndarray = field(repr=False)
    ppi: int
    position: int
    impression: int = 1
    record_type: int = 14
    compression: str = "none"
    segments: Sequence[Segment] = ()
    amputated: dict = field(default_factory=dict)


def _check(rec: FingerRecord, i: int) -> None:
    name = f"records[{i}]"
    img = rec.image
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 2:
        raise invalid(f"{name}.image", "a 2-d uint8 array", getattr(img, "dtype", type(img).__name__))
    h, w = img.shape
    if not (1 <= h <= 0xFFFF and 1 <= w <= 0xFFFF):
        raise invalid(f"{name}.image.shape", "sides of 1-65535 px", img.shape)
    if rec.record_type not in (4, 14):
        raise invalid(f"{name}.record_type", "4 or 14", rec.record_type)
    if rec.record_type == 4 and rec.ppi != 500:
        raise invalid(f"{name}.ppi", "500 for a Type-4 record (use Type-14 for other resolutions)", rec.ppi)
    if isinstance(rec.ppi, bool) or not isinstance(rec.ppi, (int, np.integer)) or not 100 <= rec.ppi <= 4000:
        raise invalid(f"{name}.ppi", "an int in [100, 4000]", rec.ppi)
    # ANSI/NIST-ITL finger positions: 0-10 fingers, 11/12 plain thumbs, 13-15 slaps; Type-4 carries
    # them too (NIST's own inked-card samples hold their slaps and plain thumbs in Type-4 records).
    valid_fgp = (*range(0, 11), *_PLAIN_THUMBS, *_SLAPS)
    if rec.position not in valid_fgp:
        raise invalid(f"{name}.position", f"a finger position in {list(valid_fgp)}", rec.position)
    if rec.impression not in range(0, 30):
        raise invalid(f"{name}.impression", "an impression code 0-29", rec.impression)
    if rec.compression not in _COMPRESSION:
        raise invalid(f"{name}.compression", f"one of {sorted(_COMPRESSION)}", rec.compression)
    if rec.record_type == 4 and (rec.segments or rec.amputated):
        raise invalid(f"{name}.segments/amputated", "none on a Type-4 record (Type-14 only)",
                      (len(rec.segments), len(rec.amputated)))
    for s in rec.segments:
        if not isinstance(s, Segment) or not 1 <= s.position <= 10:
            raise invalid(f"{name}.segments", "Segment values with positions 1-10", s)
        if not (0 <= s.left <= s.right < w and 0 <= s.top <= s.bottom < h):
            raise invalid(f"{name}.segments", f"boxes inside the {w}x{h} image", s)
    for pos, code in rec.amputated.items():
        if pos not in range(1, 11) or code not in (AMPUTATED, UNABLE_TO_PRINT):
            raise invalid(f"{name}.amputated", f"{{position 1-10: {AMPUTATED!r} or {UNABLE_TO_PRINT!r}}}",
                          (pos, code))


def _tagged(rtype: int, fields: list[tuple[int, bytes]]) -> bytes:
    """A tagged record; ``fields`` in order, without LEN (field 1), 999 last if present."""
    body = [f"{rtype}.{n:03d}:".encode() + v for n, v in fields]
    rest = sum(len(b) for b in body) + len(body)  # each field plus its separator (GS, or the final FS)
    head = f"{rtype}.001:".encode()
    base = len(head) + rest + 1  # + the GS after LEN's digits
    digits = 1
    while len(str(base + digits)) != digits:  # LEN counts its own digits
        digits += 1
    total = base + digits
    out = head + str(total).encode() + GS + GS.join(body) + FS
    if len(out) != total:  # a bug here would write a file no reader accepts
        raise RuntimeError(f"Type-{rtype} LEN {total} != {len(out)}")
    return out


def _type1(cnt: list[tuple[int, int]], ppi_native: int, tcn: str, date: str) -> bytes:
    nsr = "19.69"
    ntr = f"{ppi_native / 25.4:.2f}"
    content = RS.join([b"1" + US + str(len(cnt)).encode()] + [f"{t}".encode() + US + f"{i:02d}".encode()
                                                                for t, i in cnt])
    fields = [(2, b"0500"), (3, content), (4, b"CAR"), (5, date.encode()), (7, b"BIOMATCH"),
              (8, b"BIOMATCH"), (9, tcn.encode()), (11, nsr.encode()), (12, ntr.encode()),
              (13, b"NORAM" + US + b"1.0"), (14, date.encode() + b"120000Z")]
    return _tagged(1, fields)


def _payload(rec: FingerRecord) -> bytes:
    if rec.compression == "wsq":
        from ..imaging.wsq import encode

        return encode(rec.image)
    return np.ascontiguousarray(rec.image).tobytes()


def _type4(rec: FingerRecord, idc: int) -> bytes:
    h, w = rec.image.shape
    data = _payload(rec)
    fgp = bytes([rec.position, 255, 255, 255, 255, 255])
    gca = _COMPRESSION[rec.compression][1]
    head = bytes([idc, rec.impression]) + fgp + bytes([0]) + w.to_bytes(2, "big") + h.to_bytes(2, "big") \
        + bytes([gca])
    return (18 + len(data)).to_bytes(4, "big") + head + data


def _type14(rec: FingerRecord, idc: int, date: str) -> bytes:
    h, w = rec.image.shape
    ppi = str(int(rec.ppi)).encode()
    fields = [(2, f"{idc:02d}".encode()), (3, str(rec.impression).encode()), (4, b"BIOMATCH"),
              (5, date.encode()), (6, str(w).encode()), (7, str(h).encode()), (8, b"1"), (9, ppi), (10, ppi),
              (11, _COMPRESSION[rec.compression][0].encode()), (12, b"8"), (13, str(rec.position).encode())]
    if rec.amputated:
        fields.append((18, RS.join(str(p).encode() + US + c.encode() for p, c in sorted(rec.amputated.items()))))
    if rec.segments:
        fields.append((21, RS.join(US.join(str(v).encode() for v in (s.position, s.left, s.right, s.top, s.bottom))
                                   for s in rec.segments)))
    fields.append((999, _payload(rec)))
    return _tagged(14, fields)


def write_transaction(records: Sequence[FingerRecord], *, tcn: str = "BIOMATCH-0001",
                      date: str | None = None) -> bytes:
    """Serialise finger records behind a Type-1 record.

    Parameters
    ----------
    records : sequence of FingerRecord
        In the order they are written; IDCs 1, 2, ... are assigned in that order.
    tcn : str
        Transaction control number (1.009), printable ASCII.
    date : str, optional
        ``YYYYMMDD`` for 1.005 / 14.005 (default: today, UTC).  Give one for reproducible bytes.

    Returns
    -------
    bytes
        A transaction :func:`biomatch.formats.an2k.read_enrolment` reads back.

    Raises
    ------
    InvalidInputError
        A record with a bad image, resolution, position, code, segment or compression.
    """
    if not isinstance(records, (list, tuple)) or not records:
        raise invalid("records", "a non-empty list of FingerRecord", type(records).__name__)
    for i, rec in enumerate(records):
        if not isinstance(rec, FingerRecord):
            raise invalid(f"records[{i}]", "a FingerRecord", type(rec).__name__)
        _check(rec, i)
    if not isinstance(tcn, str) or not tcn.isascii() or not tcn.isprintable() or not 1 <= len(tcn) <= 40:
        raise invalid("tcn", "1-40 printable ASCII characters", tcn)
    if date is None:
        date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d")
    if not isinstance(date, str) or len(date) != 8 or not date.isdigit():
        raise invalid("date", "'YYYYMMDD'", date)
    ppi_native = max(int(r.ppi) for r in records)
    cnt = [(r.record_type, i + 1) for i, r in enumerate(records)]
    parts = [_type1(cnt, ppi_native, tcn, date)]
    for i, rec in enumerate(records):
        parts.append(_type4(rec, i + 1) if rec.record_type == 4 else _type14(rec, i + 1, date))
    return b"".join(parts)


def write_file(path, records: Sequence[FingerRecord], **kwargs) -> Path:
    """:func:`write_transaction` to ``path`` (file mode 0600: prints are personal data).

    Raises
    ------
    FileAccessError
        The file cannot be written.
    """
    import os

    data = write_transaction(records, **kwargs)
    p = Path(path)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise FileAccessError(f"path: cannot write {str(p)!r}: {exc.strerror or exc}") from exc
    return p
