"""The fingerprint template: an immutable set of minutiae at 500 dpi.

Minutia convention (as ISO/IEC 19794-2): ``x`` to the right and ``y`` downwards,
in pixels at 500 dpi from the top-left corner of the (resampled) image; ``angle``
in radians in ``[0, 2*pi)``, counter-clockwise from the x axis as the image is
displayed; ``kind`` 1 for a ridge ending and 2 for a bifurcation (0 other);
``quality`` 0-100.

The native binary format (``BMT1``) is little-endian::

    magic      4s   b"BMT1"
    version    u16  1
    width      u16  image width at 500 dpi (px)
    height     u16  image height at 500 dpi (px)
    quality    u8   whole-print quality 0-100
    reserved   u8
    params     16s  hash of the extraction parameters (ASCII hex)
    count      u16  number of minutiae
    minutiae   count x (x f32, y f32, angle f32, kind u8, quality u8)
    crc32      u32  of everything before it

Decoding validates every field and raises :class:`~biomatch.errors.FormatError`
naming the byte offset of the first inconsistency.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FormatError, invalid

__all__ = ["MINUTIA_DTYPE", "Template", "encode", "decode", "save", "load_native"]

MINUTIA_DTYPE = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("angle", "<f4"), ("kind", "u1"), ("quality", "u1")]
)
"""Structured dtype of one minutia (14 bytes)."""

ENDING, BIFURCATION, OTHER = 1, 2, 0

_MAGIC = b"BMT1"
_VERSION = 1
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

    Notes
    -----
    Thread-safe (immutable). Memory: 14 bytes per minutia plus a small header.
    """

    minutiae: np.ndarray
    width: int
    height: int
    quality: int = 0
    params_hash: str = ""

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

    def __len__(self) -> int:
        return len(self.minutiae)

    def __repr__(self) -> str:  # never print coordinates: templates are personal data
        return (f"Template(n_minutiae={len(self)}, size={self.width}x{self.height}, "
                f"quality={self.quality}, params={self.params_hash or '-'})")

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
                    print_quality: int = 0, params_hash: str = "") -> "Template":
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
        return cls(m, width, height, print_quality, params_hash)

    def as_float_array(self) -> np.ndarray:
        """Minutiae as a C-contiguous ``float32 (n, 4)`` array: x, y, angle (rad), quality/100."""
        m = self.minutiae
        out = np.empty((len(m), 4), np.float32)
        out[:, 0], out[:, 1], out[:, 2] = m["x"], m["y"], m["angle"]
        out[:, 3] = m["quality"].astype(np.float32) / 100.0
        return out


def encode(template: Template) -> bytes:
    """Serialise a template to the native ``BMT1`` format."""
    if not isinstance(template, Template):
        raise invalid("template", "a biomatch Template", type(template).__name__)
    ph = template.params_hash.encode("ascii")[:16].ljust(16, b"\0")
    head = _HEADER.pack(_MAGIC, _VERSION, template.width, template.height, template.quality, 0,
                        ph, len(template.minutiae))
    body = head + template.minutiae.astype(MINUTIA_DTYPE).tobytes()
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
    if version != _VERSION:
        raise FormatError(f"template: expected version {_VERSION}, got {version}", 4)
    if count > _MAX_MINUTIAE:
        raise FormatError(f"template: expected at most {_MAX_MINUTIAE} minutiae, got {count}", _HEADER.size - 2)
    expected = _HEADER.size + count * MINUTIA_DTYPE.itemsize + 4
    if len(data) != expected:
        raise FormatError(f"template: expected {expected} bytes for {count} minutiae, got {len(data)}", len(data))
    (crc,) = struct.unpack_from("<I", data, expected - 4)
    if crc != zlib.crc32(data[: expected - 4]):
        raise FormatError("template: CRC32 mismatch (corrupt data)", expected - 4)
    try:
        params = ph.rstrip(b"\0").decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("template: parameter hash is not ASCII", 14) from None
    m = np.frombuffer(data, MINUTIA_DTYPE, count, _HEADER.size).copy()
    try:
        return Template(m, width, height, quality, params)
    except Exception as exc:  # validation of values inside a well-formed frame
        raise FormatError(f"template: invalid content: {exc}", _HEADER.size) from exc


def save(template: Template, path: str | Path) -> None:
    """Write a template atomically, readable by the owner only (templates are personal data)."""
    from ._io import write_private_atomic

    write_private_atomic(Path(path), encode(template))


def load_native(path: str | Path) -> Template:
    """Read a native template file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FormatError(f"path: cannot read template file {str(p)!r}: {exc.strerror}") from exc
    return decode(data)
