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
13, 14  variable-resolution friction ridge         :class:`FingerImage` (SLC/THPS/TVPS resolution;
                                                   Type-14 AMP 14.018 and SEG 14.021 read too)
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

Modules: the record structure (:func:`parse`, :class:`Record`, :class:`Transaction`) is read by
:mod:`biomatch.formats._an2k_records`, Type-9 minutiae by :mod:`biomatch.formats._an2k_type9`;
this module turns a transaction into images and templates (:func:`read_enrolment`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BiomatchError, FormatError, ImageError
from ..imaging import MAX_FACE_IMAGE_PIXELS, MAX_IMAGE_PIXELS, decode_bytes, read_header
from ._an2k_records import BINARY_IMAGE_TYPES, RS, US, Record, Transaction, field_int, parse, snap_ppi
from ._an2k_type9 import legacy_minutiae, m1_view

__all__ = ["Record", "Transaction", "FingerImage", "FaceImage", "Enrolment", "parse", "read_enrolment"]

_GCA = {0: "NONE", 1: "WSQ", 2: "JPEGB", 3: "JPEGL", 4: "JP2", 5: "JP2L", 6: "PNG"}



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
    amputated: tuple = ()
    """Type-14 field 14.018 (AMP): ``((position, "XX" | "UP"), ...)``, amputated or unable to print.
    Type-3/4 binary records have no such field: a missing finger there is simply absent."""
    segments: tuple = ()
    """Type-14 field 14.021 (SEG) of a slap: ``((position, left, right, top, bottom), ...)`` in pixels."""


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
    missing : dict[int, str]
        Amputated (``"XX"``) and unable-to-print (``"UP"``) fingers declared by Type-14 AMP fields.
    """

    fingers: dict
    templates: dict
    faces: list
    text: dict
    finger_images: list
    finger_views: list = field(default_factory=list)
    missing: dict = field(default_factory=dict)
    """Position -> ``"XX"`` (amputated) or ``"UP"`` (unable to print), from every record's AMP field."""


# --------------------------------------------------------------------------- images and enrolment

def _tagged_ppi(rec: Record) -> float | None:
    slc = field_int(rec, 8, "SLC", 0)
    thps = field_int(rec, 9, "THPS", 0)
    if slc == 1 and thps:
        return snap_ppi(thps)
    if slc == 2 and thps:
        return snap_ppi(thps * 2.54)
    return None


def _binary_ppi(rec: Record, t: Transaction) -> float | None:
    low = rec.type in (3, 5)
    if rec.fields["ISR"] == 0:
        return None if t.nsr_ppi is None else snap_ppi(t.nsr_ppi / (2 if low else 1))
    return t.ntr_ppi


def _finger(rec: Record, t: Transaction) -> FingerImage:
    if rec.type in BINARY_IMAGE_TYPES:
        gca = rec.fields["GCA"]
        return FingerImage(rec.fields["FGP"][0], rec.fields["IMP"], rec.type, rec.idc, rec.fields["HLL"],
                           rec.fields["VLL"], _binary_ppi(rec, t), _GCA.get(gca, f"GCA {gca}"),
                           bytes(rec.fields["DATA"]))
    return FingerImage(field_int(rec, 13, "FGP", 0), field_int(rec, 3, "IMP", 0), rec.type, rec.idc,
                       field_int(rec, 6, "HLL"), field_int(rec, 7, "VLL"), _tagged_ppi(rec),
                       rec.text(11, "NONE").strip().upper(), bytes(rec.fields.get(999, b"")),
                       amputated=_amputations(rec) if rec.type == 14 else (),
                       segments=_segments(rec) if rec.type == 14 else ())


def _items(rec: Record, number: int) -> list[list[bytes]]:
    raw = bytes(rec.fields.get(number, b""))
    return [sub.split(US) for sub in raw.split(RS)] if raw.strip() else []


def _amputations(rec: Record) -> tuple:
    """14.018 AMP: ``FGP US XX|UP`` per subfield."""
    out = []
    for items in _items(rec, 18):
        pos, code = (items + [b"", b""])[:2]
        code = code.strip().upper().decode("latin-1")
        if not pos.strip().isdigit() or not 1 <= int(pos) <= 10 or code not in ("XX", "UP"):
            raise FormatError(f"AN2K Type-14 IDC {rec.idc}: AMP (field 14.018): expected 'position 1-10 US "
                              f"XX|UP', got {US.join(items)[:24]!r}", rec.offset)
        out.append((int(pos), code))
    return tuple(out)


def _segments(rec: Record) -> tuple:
    """14.021 SEG: ``FGP US left US right US top US bottom`` per subfield."""
    out = []
    for items in _items(rec, 21):
        if len(items) != 5 or not all(x.strip().isdigit() and len(x.strip()) <= 9 for x in items):
            raise FormatError(f"AN2K Type-14 IDC {rec.idc}: SEG (field 14.021): expected 'position US left US "
                              f"right US top US bottom', got {US.join(items)[:40]!r}", rec.offset)
        out.append(tuple(int(x) for x in items))
    return tuple(out)


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
            img = FaceImage(rec.idc, rec.text(3, "FACE").strip(), field_int(rec, 6, "HLL"),
                            field_int(rec, 7, "VLL"), _tagged_ppi(rec), rec.text(11, "NONE").strip().upper(),
                            bytes(rec.fields.get(999, b"")))
            if decode_images:
                channels = 1 if csp in ("GRAY", "") else 3
                pixels = _decode_pixels(img, name, rec.offset, 8, channels, MAX_FACE_IMAGE_PIXELS)
                img = FaceImage(**{**img.__dict__, "pixels": pixels})
            faces.append(img)
    views = []
    for rec in t.of_type(9):
        ref = by_idc.get(rec.idc)
        view = m1_view(rec, None if ref is None else ref.ppi)
        if view is not None:
            views.append(view)
            pos = view.position
            if pos == 0 and ref is not None:
                pos = ref.position
            templates.setdefault(pos, view.template)
            continue
        height_mm = ref.height / ref.ppi * 25.4 if ref is not None and ref.ppi else None
        width_500 = int(round(ref.width * 500 / ref.ppi)) if ref is not None and ref.ppi else None
        tpl = legacy_minutiae(rec, height_mm, width_500)
        if tpl is None:
            continue
        pos = field_int(rec, 6, "FGP", 0)
        if pos == 0 and ref is not None:
            pos = ref.position
        templates.setdefault(pos, tpl)
    fingers = {}
    missing = {}
    for img in finger_images:
        fingers.setdefault(img.position, img)
        for pos, code in img.amputated:
            missing.setdefault(pos, code)
    return Enrolment(fingers, templates, faces, text, finger_images, views, missing)
