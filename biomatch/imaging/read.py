"""Decode an image file or buffer into an array, its header checked first.

Formats: PNG, JPEG, JPEG 2000 (OpenCV's OpenJPEG), TIFF (OpenCV, else tifffile for the
compressions OpenCV lacks), BMP, PNM, WebP and WSQ (NBIS in an isolated process,
:mod:`biomatch.imaging.wsq`). Every read refuses, from the header, an image over its pixel limit
or whose decode would not fit in memory (:func:`~biomatch.imaging.header.check_header`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..errors import FormatError, ImageError, invalid
from . import wsq
from .header import ImageHeader, check_header, read_header
from .limits import MAX_IMAGE_PIXELS

__all__ = ["read_image", "decode_bytes"]

_MAX_FILE_BYTES = 200 * 2**20

# The decoded forms a caller may ask for. EXIF orientation is ignored, as IMREAD_UNCHANGED
# does: fingerprints and faces are read as stored, whatever the mode.
_MODES = ("unchanged", "grey8", "bgr8")


def read_image(path: str | os.PathLike, *, mode: str = "unchanged", max_pixels: int = MAX_IMAGE_PIXELS,
               name: str = "path") -> np.ndarray:
    """Read an image file (TIFF, PNG, BMP, PGM, JPEG, JPEG 2000, WebP, WSQ) as an array.

    The header is read first and the image refused, before decoding, when it has more than
    ``max_pixels`` pixels or its decode would not fit in
    :data:`~biomatch.imaging.limits.READ_BYTES_PER_PIXEL` x ``max_pixels`` bytes (see
    :mod:`biomatch.imaging`). WSQ files (recognised by their FFA0
    marker, whatever their name) are decoded by NBIS in an isolated process
    (:mod:`biomatch.imaging.wsq`); JPEG 2000 by OpenCV's OpenJPEG; TIFFs that OpenCV cannot
    decode (LZMA) by tifffile, first page only.

    Parameters
    ----------
    path : str or path-like
    mode : {"unchanged", "grey8", "bgr8"}
        ``"unchanged"``: the pixels as stored, uint8 or uint16, grey ``(h, w)`` or colour
        ``(h, w, 3|4)`` in BGR(A) order (use :func:`to_grey8` to normalise); ``"grey8"``: uint8
        ``(h, w)``, converted by the codec (1 byte per pixel instead of up to 8); ``"bgr8"``:
        uint8 ``(h, w, 3)``. EXIF orientation is never applied.
    max_pixels : int
        Largest ``width x height`` accepted: :data:`MAX_IMAGE_PIXELS` (finger images) unless
        the caller reads something else (faces: :data:`MAX_FACE_IMAGE_PIXELS`).
    name : str
        The caller's argument name, used in error messages.

    Returns
    -------
    ndarray
        As ``mode`` says; its shape is the header's size.

    Raises
    ------
    InvalidInputError
        ``path`` is not a path, or holds a NUL byte.
    ImageError
        Missing, empty, truncated or undecodable file; too many pixels or too much memory
        needed, named with the limit and the header's ``width x height``.
    """
    p = _as_path(path, name)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ImageError(f"{name}: cannot read image {str(p)!r}: {exc.strerror}") from exc
    if not p.is_file():
        raise ImageError(f"{name}: expected an image file, got {str(p)!r} which is not a regular file")
    if size == 0:
        raise ImageError(f"{name}: image file {str(p)!r} is empty (0 bytes)")
    if size > _MAX_FILE_BYTES:
        raise ImageError(f"{name}: expected an image under {_MAX_FILE_BYTES} bytes, got {size} bytes")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageError(f"{name}: cannot read image {str(p)!r}: {exc.strerror}") from exc
    return _decode(data, name, mode, max_pixels, len(data), repr(str(p)))


def _as_path(path, name: str) -> Path:
    try:
        text = os.fspath(path)
    except TypeError:
        raise invalid(name, "a path (str or os.PathLike)", type(path).__name__) from None
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if "\x00" in text:  # the OS cannot take it; Python would raise a bare ValueError
        raise invalid(name, "a path without NUL bytes", text)
    return Path(text)


def decode_bytes(data: bytes, name: str = "image", *, mode: str = "unchanged",
                 max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an encoded image held in memory (WSQ, PNG, JPEG, JPEG 2000, TIFF, BMP, PNM, WebP).

    Checked like :func:`read_image` (the header before any decoding); ``mode`` and
    ``max_pixels`` are the same. The caller's buffer is not counted in the memory budget.

    Parameters
    ----------
    data : bytes, bytearray or memoryview
        The whole encoded file.
    name : str
        The caller's argument name, used in error messages.
    mode : {"unchanged", "grey8", "bgr8"}
    max_pixels : int

    Returns
    -------
    ndarray
        As ``mode`` says (see :func:`read_image`).

    Raises
    ------
    ImageError
        Undecodable data, or an image over the limits, named ``name``; a corrupt WSQ's
        :class:`~biomatch.errors.FormatError` from :mod:`biomatch.imaging.wsq` is re-raised as
        ImageError naming ``name``.
    """
    if not isinstance(data, bytes):
        if not isinstance(data, (bytearray, memoryview)):
            raise invalid(name, "bytes", type(data).__name__)
        data = bytes(data)
    return _decode(data, name, mode, max_pixels, 0, f"{len(data)} bytes")


def _decode(data: bytes, name: str, mode: str, max_pixels: int, held_bytes: int, what: str) -> np.ndarray:
    import cv2

    if mode not in _MODES:
        raise invalid("mode", " or ".join(map(repr, _MODES)), mode)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise invalid("max_pixels", "a positive integer", max_pixels)
    header = read_header(data, name, what=what)
    check_header(header, name, int(max_pixels), mode, held_bytes, what)
    if header.format == "WSQ":
        img = _decode_wsq(data, name)
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if mode == "bgr8" else img
    flags = {"unchanged": cv2.IMREAD_UNCHANGED,
             "grey8": cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION,
             "bgr8": cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION}[mode]
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        img = None
    if img is None and header.format == "TIFF":
        img = _tiff_first_page(data, header, name, mode, int(max_pixels), held_bytes, what)
    if img is None:
        raise ImageError(f"{name}: cannot decode {what} as an image (corrupt, truncated or unknown format)")
    if img.shape[:2] != (header.height, header.width):  # the decoder read another size than the header said
        raise ImageError(f"{name}: decoded {img.shape[1]}x{img.shape[0]} pixels from {what}, its {header.format} "
                         f"header says {header.width}x{header.height}")
    return img


def _decode_wsq(data: bytes, name: str) -> np.ndarray:
    try:
        return wsq.decode(data)[0]
    except FormatError as exc:
        raise ImageError(f"{name}: cannot decode WSQ: {exc}") from exc


def _tiff_first_page(data: bytes, header: ImageHeader, name: str, mode: str, max_pixels: int, held_bytes: int,
                     what: str):
    """The first page by tifffile (LZMA and other compressions OpenCV's libtiff lacks), or None.

    tifffile decodes the page at its stored depth and the conversion to ``mode`` needs as much
    again, so the budget is checked for that before decoding. Only page 0 is read: a file of
    many pages would otherwise be decoded whole.
    """
    import cv2

    sample = 1 if header.bits <= 8 else 2
    page_bytes = header.pixels * header.channels * sample
    fallback = ImageHeader(header.format, header.width, header.height, header.channels, header.bits, 2 * page_bytes)
    check_header(fallback, name, max_pixels, mode, held_bytes, what)
    try:
        import tifffile

        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            arr = page.asarray()
            separate = page.planarconfig == 2
    except Exception:  # any decoder failure means "not decodable"; reported by the caller
        return None
    if arr.ndim == 3 and separate:
        arr = np.moveaxis(arr, 0, -1)
    if arr.dtype not in (np.uint8, np.uint16) or arr.shape[:2] != (header.height, header.width) \
            or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or arr.ndim not in (2, 3):
        return None
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if mode != "unchanged" and arr.dtype == np.uint16:
        np.right_shift(arr, 8, out=arr)  # the page is ours: keep the high byte in place, as to_grey8 does
        arr = arr.astype(np.uint8)
    # tifffile gives RGB(A); biomatch's colour order is OpenCV's BGR(A)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR) if mode == "bgr8" else arr
    rgba = arr.shape[2] == 4
    code = {"unchanged": cv2.COLOR_RGBA2BGRA if rgba else cv2.COLOR_RGB2BGR,
            "grey8": cv2.COLOR_RGBA2GRAY if rgba else cv2.COLOR_RGB2GRAY,
            "bgr8": cv2.COLOR_RGBA2BGR if rgba else cv2.COLOR_RGB2BGR}[mode]
    return cv2.cvtColor(np.ascontiguousarray(arr), code)

