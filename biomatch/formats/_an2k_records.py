"""The record structure of an ANSI/NIST-ITL 1-2011 transaction: records, tagged fields, binary headers.

:func:`parse` checks every length against the bytes that remain before anything is sliced;
what the records hold is read by :mod:`biomatch.formats.an2k` (images, enrolment) and
:mod:`biomatch.formats._an2k_type9` (minutiae). See :mod:`biomatch.formats.an2k` for the layout.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .._reader import Reader
from ..errors import FormatError, invalid

__all__ = ["FS", "GS", "RS", "US", "BINARY_IMAGE_TYPES", "BINARY_TYPES", "Record", "Transaction", "parse",
           "snap_ppi", "field_int"]

log = logging.getLogger("biomatch.formats.an2k")

FS, GS, RS, US = b"\x1c", b"\x1d", b"\x1e", b"\x1f"
BINARY_IMAGE_TYPES = (3, 4, 5, 6)
BINARY_TYPES = (3, 4, 5, 6, 7, 8)
_MAX_FILE_BYTES = 512 * 2**20
_MAX_RECORDS = 10_000
_COMMON_PPI = (250, 300, 333, 362, 400, 500, 569, 600, 700, 750, 800, 1000, 1200, 1500, 2000)


def snap_ppi(ppi: float) -> float:
    """19.69 px/mm is 500.1 ppi: snap to a common resolution within 0.5 %."""
    for common in _COMMON_PPI:
        if abs(ppi - common) <= 0.005 * common:
            return float(common)
    return float(ppi)


@dataclass(frozen=True)
class Record:
    """One logical record: its type, IDC, byte offset and fields.

    ``fields`` maps a tagged record's field number to its raw bytes (999: the image data); for
    binary records it holds the header values under the standard's mnemonics (``"IMP"``,
    ``"FGP"``, ``"ISR"``, ``"HLL"``, ``"VLL"``, ``"GCA"``) and ``"DATA"``.
    """

    type: int
    idc: int
    offset: int
    fields: dict = field(repr=False)
    field_offsets: dict = field(default_factory=dict, repr=False)
    """Byte offset of each tagged field's value in the transaction (for error messages)."""
    length: int = 0
    """The record's length in bytes, as checked against the input (LEN)."""

    def text(self, number: int, default: str = "") -> str:
        value = self.fields.get(number)
        return default if value is None else bytes(value).decode("latin-1")


@dataclass(frozen=True)
class Transaction:
    """A parsed transaction: the records in file order (images not decoded)."""

    records: tuple[Record, ...]
    version: str
    nsr_ppi: float | None
    ntr_ppi: float | None

    def of_type(self, t: int) -> list[Record]:
        return [r for r in self.records if r.type == t]


def _tagged(data: bytes, start: int, expected_type: int | None, index: int) -> Record:
    name = f"AN2K record {index}" + ("" if expected_type is None else f" (Type-{expected_type})")
    r = Reader(data, name, start)
    head_end = data.find(b":", start, min(start + 8, len(data)))
    if head_end < 0:
        raise r.fail("expected a tag 'T.001:' at the record start", start)
    try:
        rtype = int(data[start:head_end].split(b".")[0])
        fno = int(data[start:head_end].split(b".")[1])
    except (ValueError, IndexError):
        raise r.fail(f"malformed tag {bytes(data[start:head_end])!r}", start) from None
    if fno != 1 or (expected_type is not None and rtype != expected_type):
        raise r.fail(f"expected field {expected_type or rtype}.001 (LEN) first, got {rtype}.{fno:03d}", start)
    len_end = -1
    for sep in (GS, FS):
        i = data.find(sep, head_end + 1, min(head_end + 14, len(data)))
        if i >= 0 and (len_end < 0 or i < len_end):
            len_end = i
    digits = data[head_end + 1:len_end] if len_end > 0 else b""
    if not digits.isdigit():
        raise r.fail(f"LEN: expected decimal digits, got {bytes(digits[:12])!r}", head_end + 1)
    length = int(digits)
    if length < len_end - start + 1 or length > len(data) - start:
        raise r.fail(f"LEN {length} outside [{len_end - start + 1}, {len(data) - start}] "
                     "(the bytes that remain)", head_end + 1)
    end = start + length
    if data[end - 1:end] != FS:
        raise r.fail("record does not end with the FS separator at its LEN", end - 1)
    fields: dict[int, bytes] = {}
    offsets: dict[int, int] = {}
    pos = start
    while pos < end - 1:
        colon = data.find(b":", pos, min(pos + 16, end))
        if colon < 0:
            raise r.fail("expected a tag 'T.NNN:'", pos)
        tag = data[pos:colon].split(b".")
        if len(tag) != 2 or not tag[0].isdigit() or not tag[1].isdigit():
            raise r.fail(f"malformed tag {bytes(data[pos:colon])!r}", pos)
        t, n = int(tag[0]), int(tag[1])
        if n == 999:  # binary image data: the rest of the record
            value_end = end - 1
        else:
            gs = data.find(GS, colon + 1, end - 1)
            value_end = end - 1 if gs < 0 else gs
        if t == rtype:
            if n in fields:
                log.debug("AN2K record %d: field %d.%03d repeated; first kept", index, t, n)
            else:
                fields[n] = data[colon + 1:value_end]
                offsets[n] = colon + 1
        else:  # seen in NIST's own samples (a 13.005 inside a Type-9): ignore, do not guess
            log.debug("AN2K record %d (Type-%d): foreign field %d.%03d ignored", index, rtype, t, n)
        pos = value_end + 1
    idc = 0
    if rtype != 1:
        raw = fields.get(2, b"0")
        if not raw.isdigit():
            raise r.fail(f"IDC (field {rtype}.002): expected digits, got {bytes(raw[:8])!r}", start)
        idc = int(raw)
    return Record(rtype, idc, start, fields, offsets, length)


def _binary(data: bytes, start: int, rtype: int, index: int) -> Record:
    r = Reader(data, f"AN2K record {index} (Type-{rtype}, binary)", start)
    length = r.u32("LEN")
    minimum = 18 if rtype in BINARY_IMAGE_TYPES else 5
    if length < minimum or length > len(data) - start:
        raise r.fail(f"LEN {length} outside [{minimum}, {len(data) - start}] (the bytes that remain)", start)
    idc = r.u8("IDC")
    fields: dict = {}
    if rtype in BINARY_IMAGE_TYPES:
        fields["IMP"] = r.u8("IMP")
        fields["FGP"] = r.take(6, "FGP")
        fields["ISR"] = r.u8("ISR")
        fields["HLL"], fields["VLL"] = r.u16("HLL"), r.u16("VLL")
        fields["GCA"] = r.u8("GCA")
        fields["DATA"] = data[start + 18:start + length]
    else:
        fields["DATA"] = data[start + 5:start + length]
    return Record(rtype, idc, start, fields, {}, length)


def _content(rec: Record) -> list[tuple[int, int]]:
    raw = rec.fields.get(3)
    if raw is None:
        raise FormatError("AN2K Type-1: field 1.003 (CNT) missing", rec.offset)
    subs = [s.split(US) for s in bytes(raw).split(RS)]
    try:
        pairs = [(int(s[0]), int(s[1]) if len(s) > 1 and s[1] else 0) for s in subs]
    except ValueError:
        raise FormatError("AN2K Type-1: field 1.003 (CNT) is not 'type US idc' pairs", rec.offset) from None
    if not pairs or pairs[0][0] != 1:
        raise FormatError("AN2K Type-1: CNT must start with '1 US <count>'", rec.offset)
    if pairs[0][1] != len(pairs) - 1:
        raise FormatError(f"AN2K Type-1: CNT announces {pairs[0][1]} records but lists {len(pairs) - 1}",
                          rec.offset)
    if len(pairs) - 1 > _MAX_RECORDS:
        raise FormatError(f"AN2K Type-1: {len(pairs) - 1} records (at most {_MAX_RECORDS})", rec.offset)
    return pairs[1:]


def _ppmm(rec: Record, number: int) -> float | None:
    try:
        value = float(rec.text(number))
    except ValueError:
        return None
    return snap_ppi(value * 25.4) if 2 <= value <= 200 else None


def parse(source) -> Transaction:
    """Parse the record structure of a transaction (bytes or path); images are not decoded.

    Raises
    ------
    FormatError
        Truncated or inconsistent data, naming the record and the byte offset.
    """
    data = _read(source)
    first = _tagged(data, 0, 1, 0)
    records = [first]
    pos = first.length
    for i, (rtype, _) in enumerate(_content(first), start=1):
        if pos >= len(data):
            raise FormatError(f"AN2K record {i} (Type-{rtype}): missing, the input ends (CNT lists more)", pos)
        rec = _binary(data, pos, rtype, i) if rtype in BINARY_TYPES else _tagged(data, pos, rtype, i)
        records.append(rec)
        pos += rec.length  # checked by the record's parser; the LEN field's text may end with FS
    if pos != len(data):
        raise FormatError(f"AN2K: {len(data) - pos} bytes after the last record listed in CNT", pos)
    return Transaction(tuple(records), first.text(2), _ppmm(first, 11), _ppmm(first, 12))


def _read(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        if "\x00" in str(source):  # the OS cannot take it; Python would raise a bare ValueError
            raise invalid("source", "a path without NUL bytes", str(source))
        p = Path(source)
        try:
            if p.stat().st_size > _MAX_FILE_BYTES:
                raise FormatError(f"AN2K: {str(p)!r} is over {_MAX_FILE_BYTES} bytes")
            return p.read_bytes()
        except OSError as exc:
            raise FormatError(f"AN2K: cannot read {str(p)!r}: {exc.strerror}") from exc
    raise invalid("source", "bytes or a path", type(source).__name__)



def field_int(rec: Record, number: int, what: str, default: int | None = None) -> int:
    raw = bytes(rec.fields.get(number, b"")).split(RS)[0].split(US)[0].strip()
    if not raw and default is not None:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise FormatError(f"AN2K Type-{rec.type} IDC {rec.idc}: {what} (field {rec.type}.{number:03d}): "
                          f"expected an integer, got {raw[:12]!r}", rec.offset)
    return int(raw)

