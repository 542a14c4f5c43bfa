"""ANSI/NIST-ITL 1-2011 transactions (.an2k, .eft): parse into an enrolment-like record.

Supported record types and what biomatch takes from them:

======  =========================================  ===================================================
Type    content                                    read as
======  =========================================  ===================================================
1       transaction information (tagged)           ``Transaction.text[1]``; NSR/NTR resolutions; CNT
2       user-defined descriptive text (tagged)     ``Transaction.text[2]`` (raw field values)
3, 4    low/high-resolution grey finger (binary)   :class:`FingerImage` (position from FGP, resolution
5, 6    binary finger images (legacy)              from ISR + Type-1 NSR/NTR; Type-3/5: half NSR)
7, 8    user-defined / signature (binary)          skipped by their length
9       minutiae (tagged; legacy 9.012 MRC)        :class:`~biomatch.template.Template` at 500 dpi
10      face / SMT image (tagged)                  :class:`FaceImage`
13, 14  variable-resolution friction ridge         :class:`FingerImage` (SLC/THPS/TVPS resolution)
other   tagged records                             kept raw, not interpreted
======  =========================================  ===================================================

Structure: every record starts with its length (tagged: field ``T.001:LEN``; binary: a u32).
The order and types of the records come from Type-1 field 1.003 (CNT). Tagged fields are
``T.NNN:value`` separated by GS (0x1D), ending with FS (0x1C); subfields by RS (0x1E), items by
US (0x1F); field 999 holds binary image data up to the record's end. Every length is checked
against the bytes that remain before anything is sliced or decoded; inconsistencies raise
:class:`~biomatch.errors.FormatError` naming the record (type, index) and the byte offset.

Type-9 legacy minutiae (9.012): ``index US XXXXYYYYTTT US quality US type ...`` with x, y in
0.01 mm from the *lower-left* corner (y up) and theta in degrees counter-clockwise; biomatch
converts them to 500 dpi pixels from the top-left (y down) using the height of the image record
with the same IDC (else the largest y), keeping theta as displayed. Types A (ridge ending) and
B (bifurcation) map to ending / bifurcation, C and D to "other". Its direction is read as
NIST's internal representation (an ending pointing away from its ridge) and turned by 180 deg
into biomatch's (ISO/IEC 19794-2's): the legacy fields are not defined by ANSI/NIST-ITL 1-2011 (it refers to the 2007 edition), NBIS
mindtct writes them so (``lfs2nist_minutia_XYT``), and NIST's own sample confirms it (our
extraction of its image scores 0.248 against it as read, 0.012 with the angles turned 180 deg).

Type-9 INCITS 378 block (fields 9.126-9.150, "M1"; ANSI/NIST-ITL 1-2011 section 8.9.5): read when
field 9.137 (FMD) or 9.136 (NOM) is present, and preferred to the legacy fields of the same record.
9.128/9.129 HLL/VLL (pixels), 9.130 SLC (1 ppi, 2 pixels/cm, 0 none: then the image record of
the same IDC gives the resolution), 9.131/9.132 THPS/TVPS, 9.133 FVW view number, 9.134 FGP,
9.135 FQD (first subfield's quality 0-100, 255 "failed" read as 0), 9.136 NOM, 9.137 FMD
(``index US x US y US angle US type US quality`` per subfield: pixels from the top-left, angle
in 2-degree units 0-179 in the INCITS 378 direction, which is biomatch's; type 0/1/2;
quality 0-100). Ridge counts, cores and deltas (9.138-9.141) are kept raw in ``Record.fields``.
Each block becomes a :class:`~biomatch.template.FingerView` in ``Enrolment.finger_views``.
Extended Feature Set fields (9.300+) and vendor blocks are not interpreted.

Images are decoded through :func:`biomatch.imaging.decode_bytes` (WSQ via NBIS in its isolated
worker; JPEG, JPEG 2000, PNG via OpenCV) only when asked (``decode_images=True``). Before any
decoding, the record's HLL x VLL must be at most :data:`~biomatch.imaging.MAX_IMAGE_PIXELS`
(finger records) or :data:`~biomatch.imaging.MAX_FACE_IMAGE_PIXELS` (Type-10), and the
compressed stream's own header must state the same size (decoders allocate from it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._reader import Reader
from ..errors import BiomatchError, FormatError, ImageError, invalid
from ..imaging import MAX_FACE_IMAGE_PIXELS, MAX_IMAGE_PIXELS, decode_bytes, read_header

__all__ = ["Record", "Transaction", "FingerImage", "FaceImage", "Enrolment", "parse", "read_enrolment"]

log = logging.getLogger(__name__)

FS, GS, RS, US = b"\x1c", b"\x1d", b"\x1e", b"\x1f"
BINARY_IMAGE_TYPES = (3, 4, 5, 6)
BINARY_TYPES = (3, 4, 5, 6, 7, 8)
_MAX_FILE_BYTES = 512 * 2**20
_MAX_RECORDS = 10_000
_GCA = {0: "NONE", 1: "WSQ", 2: "JPEGB", 3: "JPEGL", 4: "JP2", 5: "JP2L", 6: "PNG"}
_NIST_TO_TEMPLATE_RAD = np.pi  # legacy 9.012 directions are NIST's internal ones (module docstring)
_COMMON_PPI = (250, 300, 333, 362, 400, 500, 569, 600, 700, 750, 800, 1000, 1200, 1500, 2000)


def _snap_ppi(ppi: float) -> float:
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


@dataclass(frozen=True)
class FingerImage:
    """A friction-ridge image of one record: ``pixels`` uint8 (h, w) or None when not decoded."""

    position: int
    impression_type: int
    record_type: int
    idc: int
    width: int
    height: int
    ppi: float | None
    compression: str
    data: bytes = field(repr=False)
    pixels: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FaceImage:
    """A Type-10 image (face, or SMT when 10.003 says so): encoded ``data`` and decoded ``pixels``."""

    idc: int
    image_type: str
    width: int
    height: int
    ppi: float | None
    compression: str
    data: bytes = field(repr=False)
    pixels: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Enrolment:
    """What a registry enrols from a transaction.

    Attributes
    ----------
    fingers : dict[int, FingerImage]
        Finger position code -> the first image of that position (all in ``finger_images``).
    templates : dict[int, Template]
        Finger position code -> minutiae of a Type-9 record, at 500 dpi (the INCITS 378 block
        when the record has one, else the legacy 9.012 minutiae).
    faces : list[FaceImage]
    text : dict[int, dict[int, str]]
        Type-1 and Type-2 fields as text, by record type then field number.
    finger_images : list[FingerImage]
    finger_views : list[FingerView]
        One per Type-9 INCITS 378 block (position, view number, impression type, resolution).
    """

    fingers: dict
    templates: dict
    faces: list
    text: dict
    finger_images: list
    finger_views: list = field(default_factory=list)


# --------------------------------------------------------------------------- structure

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
    return _snap_ppi(value * 25.4) if 2 <= value <= 200 else None


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


# --------------------------------------------------------------------------- content

def _int(rec: Record, number: int, what: str, default: int | None = None) -> int:
    raw = bytes(rec.fields.get(number, b"")).split(RS)[0].split(US)[0].strip()
    if not raw and default is not None:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise FormatError(f"AN2K Type-{rec.type} IDC {rec.idc}: {what} (field {rec.type}.{number:03d}): "
                          f"expected an integer, got {raw[:12]!r}", rec.offset)
    return int(raw)


def _tagged_ppi(rec: Record) -> float | None:
    slc = _int(rec, 8, "SLC", 0)
    thps = _int(rec, 9, "THPS", 0)
    if slc == 1 and thps:
        return _snap_ppi(thps)
    if slc == 2 and thps:
        return _snap_ppi(thps * 2.54)
    return None


def _binary_ppi(rec: Record, t: Transaction) -> float | None:
    low = rec.type in (3, 5)
    if rec.fields["ISR"] == 0:
        return None if t.nsr_ppi is None else _snap_ppi(t.nsr_ppi / (2 if low else 1))
    return t.ntr_ppi


def _finger(rec: Record, t: Transaction) -> FingerImage:
    if rec.type in BINARY_IMAGE_TYPES:
        gca = rec.fields["GCA"]
        return FingerImage(rec.fields["FGP"][0], rec.fields["IMP"], rec.type, rec.idc, rec.fields["HLL"],
                           rec.fields["VLL"], _binary_ppi(rec, t), _GCA.get(gca, f"GCA {gca}"),
                           bytes(rec.fields["DATA"]))
    return FingerImage(_int(rec, 13, "FGP", 0), _int(rec, 3, "IMP", 0), rec.type, rec.idc,
                       _int(rec, 6, "HLL"), _int(rec, 7, "VLL"), _tagged_ppi(rec),
                       rec.text(11, "NONE").strip().upper(), bytes(rec.fields.get(999, b"")))


def _decode_pixels(img, name: str, offset: int, bits: int = 8, channels: int = 1,
                   limit: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """The record's pixels; its stated size, then its codestream's header, checked before decoding.

    ``limit`` in pixels: :data:`~biomatch.imaging.MAX_IMAGE_PIXELS` for finger records,
    :data:`~biomatch.imaging.MAX_FACE_IMAGE_PIXELS` for Type-10 records.
    """
    if img.width * img.height > limit:  # HLL x VLL, before the payload is even looked at
        raise FormatError(f"{name}: expected at most {limit} pixels, got {img.width}x{img.height} "
                          "(refused before decoding)", offset)
    if img.compression in ("NONE", "0"):
        expected = img.width * img.height * channels * bits // 8
        if bits != 8 or len(img.data) != expected:
            raise FormatError(f"{name}: uncompressed image {img.width}x{img.height}x{channels} at {bits} bits "
                              f"needs {expected} bytes, the record holds {len(img.data)}", offset)
        shape = (img.height, img.width) if channels == 1 else (img.height, img.width, channels)
        return np.frombuffer(img.data, np.uint8).reshape(shape).copy()
    if img.width * img.height > 64 * len(img.data) + 2**22:  # the declared size must match the payload
        raise FormatError(f"{name}: {img.width}x{img.height} pixels for {len(img.data)} compressed bytes", offset)
    try:
        declared = read_header(img.data, name)
    except ImageError as exc:
        raise FormatError(str(exc), offset) from exc
    # the decoder allocates from the stream's own header, which may claim another size than the record
    if (declared.width, declared.height) != (img.width, img.height):
        raise FormatError(f"{name}: the {img.compression} stream declares {declared.width}x{declared.height}, "
                          f"the record {img.width}x{img.height} (refused before decoding)", offset)
    try:
        pixels = decode_bytes(img.data, name, max_pixels=limit)
    except BiomatchError as exc:  # its messages start with ``name`` already
        raise FormatError(str(exc), offset) from exc
    if pixels.shape[:2] != (img.height, img.width):
        raise FormatError(f"{name}: decoded {pixels.shape[1]}x{pixels.shape[0]}, the record says "
                          f"{img.width}x{img.height}", offset)
    return pixels


def _minutiae(rec: Record, height_mm: float | None, width_500: int | None = None):
    from ..template import BIFURCATION, ENDING, MINUTIA_DTYPE, OTHER, Template

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


def read_enrolment(source, decode_images: bool = True) -> Enrolment:
    """Parse a transaction into fingers (images and templates by position) and faces.

    Parameters
    ----------
    source : bytes or path
    decode_images : bool
        Decode image payloads to ``pixels`` (WSQ, JPEG, JPEG 2000, PNG, raw); the encoded bytes
        are always kept in ``data``.

    Raises
    ------
    FormatError
        Corrupt structure or an image that does not decode to the size its record states.
    """
    t = parse(source)
    text = {rt: {n: bytes(v).decode("latin-1") for n, v in r.fields.items()}
            for rt in (1, 2) for r in t.of_type(rt)[:1]}
    finger_images, faces, templates = [], [], {}
    by_idc = {}
    for i, rec in enumerate(t.records):
        name = f"AN2K record {i} (Type-{rec.type}, IDC {rec.idc})"
        if rec.type in BINARY_IMAGE_TYPES or rec.type in (13, 14):
            img = _finger(rec, t)
            if decode_images:
                img = FingerImage(**{**img.__dict__, "pixels": _decode_pixels(img, name, rec.offset)})
            finger_images.append(img)
            by_idc.setdefault(rec.idc, img)
        elif rec.type == 10:
            csp = rec.text(12, "GRAY").strip().upper()
            img = FaceImage(rec.idc, rec.text(3, "FACE").strip(), _int(rec, 6, "HLL"), _int(rec, 7, "VLL"),
                            _tagged_ppi(rec), rec.text(11, "NONE").strip().upper(), bytes(rec.fields.get(999, b"")))
            if decode_images:
                channels = 1 if csp in ("GRAY", "") else 3
                pixels = _decode_pixels(img, name, rec.offset, 8, channels, MAX_FACE_IMAGE_PIXELS)
                img = FaceImage(**{**img.__dict__, "pixels": pixels})
            faces.append(img)
    views = []
    for rec in t.of_type(9):
        ref = by_idc.get(rec.idc)
        view = _m1_view(rec, ref)
        if view is not None:
            views.append(view)
            pos = view.position
            if pos == 0 and ref is not None:
                pos = ref.position
            templates.setdefault(pos, view.template)
            continue
        height_mm = ref.height / ref.ppi * 25.4 if ref is not None and ref.ppi else None
        width_500 = int(round(ref.width * 500 / ref.ppi)) if ref is not None and ref.ppi else None
        tpl = _minutiae(rec, height_mm, width_500)
        if tpl is None:
            continue
        pos = _int(rec, 6, "FGP", 0)
        if pos == 0 and ref is not None:
            pos = ref.position
        templates.setdefault(pos, tpl)
    fingers = {}
    for img in finger_images:
        fingers.setdefault(img.position, img)
    return Enrolment(fingers, templates, faces, text, finger_images, views)


# --------------------------------------------------------------------------- Type-9 INCITS 378 block

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


def _m1_view(rec: Record, ref: "FingerImage | None"):
    """The INCITS 378 block of a Type-9 record as a FingerView at 500 dpi, or None without one."""
    from ..template import MINUTIA_DTYPE, FingerView, Template

    if 137 not in rec.fields and 136 not in rec.fields:
        return None
    width = _m1_int(rec, 128, "HLL (horizontal line length, px)", 1, 99999)
    height = _m1_int(rec, 129, "VLL (vertical line length, px)", 1, 99999)
    slc = _m1_int(rec, 130, "SLC (scale units)", 0, 2)
    if slc == 0:
        if ref is None or not ref.ppi:
            raise _m1_fail(rec, 130, "SLC 0 (no scale) and no image record with this IDC gives a resolution")
        ppi_x = ppi_y = ref.ppi
    else:
        unit = 1.0 if slc == 1 else 2.54
        ppi_x = _snap_ppi(_m1_int(rec, 131, "THPS (horizontal pixel scale)", 1, 99999) * unit)
        ppi_y = _snap_ppi(_m1_int(rec, 132, "TVPS (vertical pixel scale)", 1, 99999) * unit)
        for number, ppi in ((131, ppi_x), (132, ppi_y)):
            if not 100 <= ppi <= 2000:
                raise _m1_fail(rec, number, f"resolution {ppi:g} ppi outside [100, 2000]")
    view_number = _m1_int(rec, 133, "FVW (finger view)", 0, 15, default=0)
    position = _m1_int(rec, 134, "FGP (finger position)", 0, 255)
    impression = _int(rec, 3, "IMP", 0)
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
