"""The native template format ``BMT1``: encode, decode, save and load one :class:`~biomatch.template.Template`.

The format is little-endian::

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
                    cols = ceil(width / 16); see :attr:`~biomatch.template.Template.orientation_grid`
    crc32      u32  of everything before it

A template without an orientation field is written as version 2, byte for byte what earlier
releases wrote (and read).

Decoding validates every field and raises :class:`~biomatch.errors.FormatError`
naming the byte offset of the first inconsistency. Version 1 templates pointed directions the
NIST way (180 degrees from ISO): they are read with every angle turned by 180 degrees, except
generated templates (``params == "synthetic"``), whose directions have a random sense and no
convention to convert (galleries of them stay consistent with their generator).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .. import _io
from ..errors import FileAccessError, FormatError, invalid
from ..template import MAX_MINUTIAE, MAX_SIDE_PX, MINUTIA_DTYPE, NO_PRINT, ORIENTATION_BLOCK_PX, Template, grid_shape

__all__ = ["MAGIC", "encode", "decode", "save", "load_native"]

MAGIC = b"BMT1"
_VERSION = 2          # written for templates without an orientation field
_VERSION_GRID = 3     # ... and with one
_SYNTHETIC_PARAMS = "synthetic"  # see the module docstring: version 1 generated templates are not turned
_HEADER = struct.Struct("<4sHHHBB16sH")


def encode(template: Template) -> bytes:
    """Serialise a template to the native ``BMT1`` format (version 3 with an orientation
    field, else version 2)."""
    if not isinstance(template, Template):
        raise invalid("template", "a biomatch Template", type(template).__name__)
    grid = template.orientation_grid
    ph = template.params_hash.encode("ascii")[:16].ljust(16, b"\0")
    head = _HEADER.pack(MAGIC, _VERSION if grid is None else _VERSION_GRID, template.width, template.height,
                        template.quality, 0, ph, len(template.minutiae))
    body = head + template.minutiae.astype(MINUTIA_DTYPE).tobytes()
    if grid is not None:
        body += bytes([ORIENTATION_BLOCK_PX]) + grid.tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def decode(data: bytes) -> Template:
    """Parse and validate a native ``BMT1`` template."""
    m, width, height, quality, params, grid = _frame(data)
    try:
        return Template(m, width, height, quality, params, grid)
    except Exception as exc:  # validation of values inside a well-formed frame
        raise FormatError(f"template: invalid content: {exc}", _HEADER.size) from exc


def decode_stored(data: bytes) -> Template:
    """:func:`decode` for a gallery's store, where ~300 templates are read per search.

    The same frame checks and CRC, and the same values accepted, the minutiae's checked in one
    compiled pass instead of the Template constructor's numpy reductions; a template it refuses
    goes through :func:`decode`, so the error raised is the one :func:`decode` raises.
    """
    global _minutiae_ok
    if _minutiae_ok is None:  # numba is imported by the stores' users only, not by ``import biomatch``
        from ._native_nb import minutiae_ok as _minutiae_ok
    m, width, height, quality, params, grid = _frame(data)
    if not (width <= MAX_SIDE_PX and height <= MAX_SIDE_PX and quality <= 100
            and _minutiae_ok(m.view(np.uint8).reshape(len(m), MINUTIA_DTYPE.itemsize), _ANGLE_MAX)):
        return decode(data)
    if grid is not None:
        grid = grid.copy()  # owned (not a view of ``data``), as the constructor leaves it
        grid.flags.writeable = False
    m.flags.writeable = False
    return Template._checked(m, width, height, quality, params, grid)


_ANGLE_MAX = np.float32(2 * np.pi + 1e-6)  # Template's bound, as _check_minutiae compares it (float32)
_minutiae_ok = None


def _frame(data) -> tuple:
    """The fields of a BMT1 frame: ``(minutiae (owned copy), width, height, quality, params, grid view)``;
    FormatError for anything but the value checks of the Template constructor."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise invalid("data", "bytes", type(data).__name__)
    data = bytes(data)
    if len(data) < _HEADER.size + 4:
        raise FormatError(f"template: expected at least {_HEADER.size + 4} bytes, got {len(data)}", 0)
    magic, version, width, height, quality, _, ph, count = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise FormatError(f"template: expected magic {MAGIC!r}, got {magic!r}", 0)
    if version not in (1, _VERSION, _VERSION_GRID):
        raise FormatError(f"template: expected version 1, {_VERSION} or {_VERSION_GRID}, got {version}", 4)
    if count > MAX_MINUTIAE:
        raise FormatError(f"template: expected at most {MAX_MINUTIAE} minutiae, got {count}", _HEADER.size - 2)
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
    return m, width, height, quality, params, grid


def checked_path(path, name: str) -> Path:
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
    data = encode(template)
    p = checked_path(path, "path")
    if p.is_dir():
        raise invalid("path", "a template file name, not a folder", str(p))
    if not p.parent.is_dir():
        raise invalid("path", "a file in an existing folder", str(p))
    try:
        _io.write_private_atomic(p, data)
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
    p = checked_path(path, "path")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FormatError(f"path: cannot read template file {str(p)!r}: {exc.strerror}") from exc
    return decode(data)
