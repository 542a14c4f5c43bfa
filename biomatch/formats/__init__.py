"""Template codecs and their one registry: read and write every supported template format.

:func:`load`, :func:`load_views` and :func:`dump` read and write every format of
:data:`FORMATS`; :func:`sniff` recognises them from their first bytes:

- ``native`` — biomatch's own ``BMT1`` (:mod:`~biomatch.formats.native`: :func:`encode`,
  :func:`decode`, :func:`save`, :func:`load_native`), the only one that keeps the parameter hash
  and the orientation field;
- ``iso19794-2:2005``, ``iso19794-2:2011`` — ISO/IEC 19794-2 finger minutiae records
  (:mod:`~biomatch.formats.iso19794_2`);
- ``ansi378`` — ANSI/INCITS 378-2004 finger minutiae records (:mod:`~biomatch.formats.ansi378`).

Beside the registry, never sniffed:

- :mod:`~biomatch.formats.foreign` — explicit converters for known non-conformant writers (afis,
  nbis-py), applied only when the caller asks;
- :mod:`~biomatch.formats.an2k` — ANSI/NIST-ITL 1-2011 transactions (.an2k, .eft), whose images
  are decoded by :mod:`biomatch.imaging` (WSQ included).

The standard records hold several finger views; a :class:`~biomatch.template.Template` is one
finger, so:

- :func:`load_views` returns every view as a :class:`~biomatch.template.FingerView` (template at
  500 dpi, finger position code, view number, impression type, the record's resolution, raw
  extended data);
- :func:`load` returns the template of the first view (or of the first view of ``position``);
- :func:`dump` writes a Template (one view, position 0 "unknown") or a sequence of FingerViews.

Standard records store integer pixels at the record's resolution and quantised angles (ISO
1.40625 deg, ANSI 2 deg); converting a template to them and back moves each minutia by at most
half a pixel (at the written resolution) and half an angle step. The parameter hash is not
stored by foreign formats: loaded templates have ``params_hash == ""``.

Every decoder reads through :class:`~biomatch._reader.Reader`, which checks each length
against the bytes that remain *before* slicing or allocating, and raises
:class:`~biomatch.errors.FormatError` naming the record, the field and the byte offset.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FormatError, invalid
from ..template import FingerView, Template
from . import ansi378, iso19794_2
from .native import MAGIC, checked_path, decode, encode, load_native, save

__all__ = ["FORMATS", "sniff", "load", "load_views", "dump", "encode", "decode", "save", "load_native"]

FORMATS = ("native", "iso19794-2:2005", "iso19794-2:2011", "ansi378")
"""Names accepted by :func:`load`, :func:`load_views` and :func:`dump`."""

_MAX_RECORD_BYTES = 16 * 2**20  # 255 views x 255 minutiae are ~400 KB; beyond 16 MiB is not a template


def _read_source(source, what: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        p = checked_path(source, what)
        try:
            size = p.stat().st_size
            if size > _MAX_RECORD_BYTES:
                raise FormatError(f"{what}: expected a template file under {_MAX_RECORD_BYTES} bytes, "
                                  f"got {size} bytes ({str(p)!r})")
            return p.read_bytes()
        except OSError as exc:
            raise FormatError(f"{what}: cannot read template file {str(p)!r}: {exc.strerror}") from exc
    raise invalid(what, "bytes or a path", type(source).__name__)


def sniff(data: bytes) -> str:
    """Name of the format of a serialised template (one of :data:`FORMATS`).

    ISO 19794-2:2005 and ANSI 378-2004 share their first 8 bytes; they are told apart by the
    record length field (u32 in ISO, u16 or 0 + u32 in ANSI), which must equal ``len(data)``.

    Raises
    ------
    FormatError
        Not a recognised template format.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise invalid("data", "bytes", type(data).__name__)
    return _sniff_full(bytes(data[:16]), len(data))


def _sniff_full(head: bytes, total: int) -> str:
    if head[:4] == MAGIC:
        return "native"
    if head[:4] == b"FMR\0":
        version = head[4:8]
        if version == b"030\0":
            return "iso19794-2:2011"
        if version == b" 20\0" and len(head) >= 14:
            if int.from_bytes(head[8:12], "big") == total:
                return "iso19794-2:2005"
            u16 = int.from_bytes(head[8:10], "big")
            if u16 == total or (u16 == 0 and int.from_bytes(head[10:14], "big") == total):
                return "ansi378"
            raise FormatError(f"template: 'FMR 20' record whose length field matches neither ISO 19794-2:2005 "
                              f"(u32) nor ANSI 378 (u16) for {total} bytes (truncated or corrupt)", 8)
        raise FormatError(f"template: 'FMR' record of unsupported version {version!r} "
                          "(expected b' 20\\x00' or b'030\\x00')", 4)
    raise FormatError(f"template: unknown format (first bytes {head[:8]!r}); expected one of {', '.join(FORMATS)}", 0)


def _check_format(format: str | None) -> None:
    if format is not None and format not in FORMATS:
        raise invalid("format", f"one of {FORMATS} or None", format)


def load_views(source, format: str | None = None, *, dpi: float | None = None) -> tuple[FingerView, ...]:
    """Read every finger view of a template record.

    Parameters
    ----------
    source : bytes or path
    format : str, optional
        One of :data:`FORMATS`; sniffed from the content when None.
    dpi : float, optional
        The true resolution of a standard record, replacing its resolution fields. Only for
        records known to state a wrong one (afis 1.2.x writes ISO 2011 with 99 px/cm for 500
        ppi; see :mod:`biomatch.formats.foreign`); never guessed. Not allowed for ``native``.

    Returns
    -------
    tuple of FingerView
        In record order (a native template gives one view, position 0).

    Raises
    ------
    FormatError
        Truncated, inconsistent or unrecognised data (the message names the record, the field
        and the byte offset).
    """
    _check_format(format)
    data = _read_source(source, "source")
    fmt = format or _sniff_full(data[:16], len(data))
    if fmt == "native":
        if dpi is not None:
            raise invalid("dpi", "None for a native template (always 500 dpi)", dpi)
        return (FingerView(decode(data), extended_format="native"),)
    codec = {"iso19794-2:2005": iso19794_2.decode_2005, "iso19794-2:2011": iso19794_2.decode_2011,
             "ansi378": ansi378.decode}[fmt]
    return codec(data, dpi)


def load(source, format: str | None = None, position: int | None = None, *,
         dpi: float | None = None) -> Template:
    """Read one finger template from any supported format.

    Parameters
    ----------
    source : bytes or path
    format : str, optional
        One of :data:`FORMATS`; sniffed when None.
    position : int, optional
        Finger position code to pick; by default the first view.
    dpi : float, optional
        Replaces a standard record's resolution fields (see :func:`load_views`).

    Returns
    -------
    Template
        At 500 dpi.

    Raises
    ------
    FormatError
        Corrupt data, or no view (of that position) in the record.
    """
    views = load_views(source, format, dpi=dpi)
    chosen = [v for v in views if position is None or v.position == position]
    if not chosen:
        where = "" if position is None else f" with finger position {position}"
        raise FormatError(f"template: the record holds no finger view{where} ({len(views)} views)")
    return chosen[0].template


def dump(template, format: str = "native", *, dpi: float = 500) -> bytes:
    """Serialise a Template, a FingerView or a sequence of FingerViews.

    Parameters
    ----------
    template : Template, FingerView or sequence of FingerView
        Several views are allowed for the standard formats (``native`` takes one).
    format : str
        One of :data:`FORMATS`.
    dpi : float
        Resolution written in a standard record (coordinates are scaled from 500 dpi and
        rounded to integers); ignored for ``native``.

    Raises
    ------
    InvalidInputError
        Unknown format, more than 255 minutiae in a view, or codes outside a field's range.
    """
    _check_format(format)
    if format is None:
        raise invalid("format", f"one of {FORMATS}", None)
    if format == "native":
        if isinstance(template, FingerView):
            template = template.template
        elif isinstance(template, (list, tuple)) and len(template) == 1 and isinstance(template[0], FingerView):
            template = template[0].template
        return encode(template)
    codec = {"iso19794-2:2005": iso19794_2.encode_2005, "iso19794-2:2011": iso19794_2.encode_2011,
             "ansi378": ansi378.encode}[format]
    return codec(template, dpi)
