"""Image input: read any common format, convert to 8-bit grey, resample to 500 dpi.

The resolution always comes from the caller: scanners and FVC TIFFs write
meaningless resolution tags (1x1 dpi), so metadata is never trusted outside
[250, 2000] dpi, and here it is not read at all.

Decompression bombs. A 2.6 MB PNG can hold 30000 x 30000 black pixels (2.7 GB decoded), and
a JPEG, TIFF or WSQ header can claim any size. Every read therefore takes the image's header
first (:func:`read_header`, without decoding) and refuses, before any pixel is decoded:

- more than ``max_pixels`` pixels: :data:`MAX_IMAGE_PIXELS` for finger images (here and in
  AN2K finger records), :data:`MAX_FACE_IMAGE_PIXELS` for face photos
  (:func:`biomatch.face.detect.to_bgr`, AN2K Type-10 records);
- a decode whose estimated peak memory (file bytes held + the decoder's buffers + the output,
  from the header's size, samples and depth) exceeds :data:`READ_BYTES_PER_PIXEL` bytes per
  allowed pixel, so that a small image of 16-bit RGBA samples, or with a decoder that keeps
  whole planes (JPEG 2000, progressive JPEG, single-strip TIFF), is bounded too.

So the memory a read adds is at most 64 MiB (codec state, plugins imported on first use) + 8
bytes per allowed pixel; a refused bomb costs a few MiB. (WSQ is decoded by NBIS in its own
process, :mod:`biomatch.formats.wsq`, within the same pixel limit.) Arrays given directly are
checked against the same pixel count before any conversion. Every entry point that reads an
image goes through :func:`read_image` or :func:`decode_bytes`; new ones (a network service)
must too.
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ImageError, invalid
from .params import WORKING_DPI

__all__ = ["read_image", "decode_bytes", "read_header", "ImageHeader", "to_grey8", "to_working_resolution",
           "load_fingerprint", "check_header", "MAX_IMAGE_PIXELS", "MAX_FACE_IMAGE_PIXELS",
           "READ_BYTES_PER_PIXEL"]

MIN_DPI = 100.0
MAX_DPI = 2000.0
MAX_IMAGE_PIXELS = 40_000_000
"""Largest finger image read, in pixels (width x height).

A 1000 ppi rolled or slap capture is about 3200 x 3000 (10 Mpx); a whole ten-print card at
1000 ppi is about 16 Mpx; 40 Mpx leaves room for 2000 ppi captures (6300 x 6300) and oversized
scans. Anything larger is not a finger image (and extraction only keeps 2000 px per side at
500 dpi anyway). Also the limit of :mod:`biomatch.formats.wsq`.
"""
MAX_FACE_IMAGE_PIXELS = 50_000_000
"""Largest face photo read, in pixels: a camera's own full-resolution output up to 50 Mpx
(48-50 Mpx phone sensors, 8160 x 6120; 24-45 Mpx DSLRs). A face needs far fewer (ISO/IEC
19794-5: 90 px between the eyes; detection works on 1280 px), but refusing a camera's own
files would push callers into ad-hoc resizing."""
READ_BYTES_PER_PIXEL = 8
"""Memory a read may use, in bytes per allowed pixel (``max_pixels``): the estimated peak of
the file held, the decoder's buffers and the output must fit in this x ``max_pixels``."""
_MAX_FILE_BYTES = 200 * 2**20

# The decoded forms a caller may ask for. EXIF orientation is ignored, as IMREAD_UNCHANGED
# does: fingerprints and faces are read as stored, whatever the mode.
_MODES = ("unchanged", "grey8", "bgr8")
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, read without decoding a pixel.

    Attributes
    ----------
    format : str
        ``"PNG"``, ``"JPEG"``, ``"TIFF"``, ``"BMP"``, ``"PNM"``, ``"WEBP"``, ``"JPEG2000"`` or ``"WSQ"``.
    width, height : int
        In pixels (the first page or frame; the only one read).
    channels : int
        Samples per pixel as stored (alpha included).
    bits : int
        Bits per sample (the largest, when samples differ).
    work_bytes : int
        Memory the decoder holds beside its output, in bytes: the coefficient planes of a
        (progressive) JPEG, the 32-bit component planes of OpenJPEG, a TIFF strip or tile
        buffer; 0 for row-by-row decoders (PNG, BMP, PNM).
    """

    format: str
    width: int
    height: int
    channels: int
    bits: int
    work_bytes: int = 0

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def peak_bytes(self, mode: str = "unchanged") -> int:
        """Estimated peak memory of decoding to ``mode`` (the file's own bytes not included).

        The decoder's output is copied once into the returned array (OpenCV's Python binding),
        and its work buffers are released before that copy, hence ``max(work + out, 2 out)``.
        """
        out = self.pixels * _bytes_per_pixel(self, mode)
        return max(self.work_bytes + out, 2 * out)


def _bytes_per_pixel(h: ImageHeader, mode: str) -> int:
    if mode == "grey8":
        return 1
    if mode == "bgr8":
        return 3
    # OpenCV returns grey as one channel and anything else as BGR or BGRA (palettes expanded)
    sample = 1 if h.bits <= 8 else 2 if h.bits <= 16 else 4 if h.bits <= 32 else 8
    return sample * (1 if h.channels == 1 else 4)


def read_header(data: bytes, name: str = "image") -> ImageHeader:
    """Size, samples and depth of an encoded image, from its header, without decoding a pixel.

    Pillow reads the headers of PNG, JPEG, TIFF, BMP, PNM and WebP: its plugin classes are used
    directly, so its own decompression-bomb check (a warning from 89 Mpx, an error from 179 Mpx,
    both above biomatch's limits) is neither raised nor needed, and no global setting of Pillow
    is touched. JPEG 2000 sizes come from the codestream's SIZ segment, which OpenJPEG allocates
    from (a JP2 file's ``ihdr`` box, which Pillow reads, may say otherwise); WSQ sizes from the
    frame header (:func:`biomatch.formats.wsq.frame_size`).

    Parameters
    ----------
    data : bytes
        The whole encoded file (a header may lie past a long metadata segment).
    name : str
        The argument's name, for error messages.

    Raises
    ------
    ImageError
        Not one of these formats, or a header that cannot be read (truncated or corrupt).
    """
    return _header(data, name, f"{len(data)} bytes")


def _header(data: bytes, name: str, what: str) -> ImageHeader:
    header = None
    if data[:2] == b"\xff\xa0":
        header = _wsq_header(data, name)
    else:
        try:
            if data.startswith(_JP2_SIGNATURE) or data.startswith(b"\xff\x4f\xff\x51"):
                header = _j2k_header(data)
            else:
                header = _pillow_header(data)
        except Exception:  # any failure of a header parser means an image that cannot be bounded
            header = None
    if header is None or header.width < 1 or header.height < 1:
        raise ImageError(f"{name}: cannot decode {what} as an image (corrupt, truncated or unknown format)")
    return header


def _pillow_header(data: bytes) -> ImageHeader | None:
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        from PIL.PngImagePlugin import PngImageFile as cls
        fmt = "PNG"
    elif head.startswith(b"\xff\xd8\xff"):
        from PIL.JpegImagePlugin import JpegImageFile as cls
        fmt = "JPEG"
    elif head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        from PIL.TiffImagePlugin import TiffImageFile as cls
        fmt = "TIFF"
    elif head.startswith(b"BM"):
        from PIL.BmpImagePlugin import BmpImageFile as cls
        fmt = "BMP"
    elif head[:1] == b"P" and head[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6"):
        from PIL.PpmImagePlugin import PpmImageFile as cls
        fmt = "PNM"
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        from PIL.WebPImagePlugin import WebPImageFile as cls
        fmt = "WEBP"
    else:
        return None
    with cls(io.BytesIO(data)) as im:
        (w, h), mode = im.size, im.mode
        if fmt == "PNG":  # depth and colour type from IHDR, which libpng requires first
            if data[12:16] != b"IHDR":
                return None
            bits, colour = data[24], data[25]
            return ImageHeader(fmt, w, h, {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}[colour], max(bits, 8))
        if fmt == "JPEG":
            # libjpeg keeps every DCT coefficient (2 bytes) of a progressive or multi-scan image
            mcu = max(c[1] for c in im.layer) * max(c[2] for c in im.layer)  # samples of the largest per MCU
            planes = sum(c[1] * c[2] for c in im.layer) / mcu
            return ImageHeader(fmt, w, h, len(im.layer), 8, math.ceil(2 * planes * w * h))
        if fmt == "TIFF":
            tags = im.tag_v2
            channels = int(tags.get(277, 1))
            bits = max(_as_tuple(tags.get(258, 1)))
            if 322 in tags and 323 in tags:
                tile = int(tags[322]) * int(tags[323])
            else:
                tile = min(int(tags.get(278, h)), h) * w
            # OpenCV reads a strip or tile at its stored depth and, for 8 bits, through 4-byte RGBA
            return ImageHeader(fmt, w, h, channels, bits, tile * (4 + channels * -(-bits // 8)))
        if fmt == "PNM":  # a 16-bit colour PNM is "RGB" to Pillow: count 16 bits
            return ImageHeader(fmt, w, h, 1 if mode in ("1", "L", "I", "I;16", "I;16B") else 3,
                               8 if mode in ("1", "L") else 16)
        if fmt == "WEBP":  # libwebp decodes to a BGR(A) buffer that OpenCV then converts
            return ImageHeader(fmt, w, h, len(mode), 8, 4 * w * h)
        return ImageHeader(fmt, w, h, {"1": 1, "L": 1, "RGBA": 4}.get(mode, 3), 8)


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _j2k_header(data: bytes) -> ImageHeader | None:
    """From the SIZ segment of the codestream, bare (.j2k) or in a JP2 file's ``jp2c`` box."""
    pos = 0
    if data.startswith(_JP2_SIGNATURE):
        while True:  # top-level boxes: u32 length (1: u64 follows, 0: to the end), 4-byte type
            if pos + 8 > len(data):
                return None
            length, kind = struct.unpack_from(">I4s", data, pos)
            head = 8
            if length == 1 and pos + 16 <= len(data):
                length, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
            elif length == 0:
                length = len(data) - pos
            if length < head:
                return None
            if kind == b"jp2c":
                pos += head
                break
            pos += length
    if data[pos:pos + 4] != b"\xff\x4f\xff\x51" or pos + 42 > len(data):
        return None
    _, _, xsiz, ysiz, x0, y0, _, _, _, _, csiz = struct.unpack_from(">HHIIIIIIIIH", data, pos + 4)
    if csiz == 0 or pos + 42 + 3 * csiz > len(data) or xsiz <= x0 or ysiz <= y0:
        return None
    bits = max((data[pos + 42 + 3 * i] & 0x7F) + 1 for i in range(csiz))
    w, h = xsiz - x0, ysiz - y0
    # OpenJPEG decodes every component into a 32-bit plane; OpenCV converts them through one more
    return ImageHeader("JPEG2000", w, h, csiz, bits, 6 * csiz * w * h)


def _wsq_header(data: bytes, name: str) -> ImageHeader:
    from .errors import FormatError
    from .formats import wsq

    size = wsq.frame_size(data)
    if size is None:
        try:  # no readable frame header: the validating parser names what is wrong
            wsq.parse_header(data)
        except FormatError as exc:
            raise ImageError(f"{name}: cannot decode WSQ: {exc}") from exc
        raise ImageError(f"{name}: cannot decode WSQ: no frame header")
    w, h = size
    # NBIS runs in its own process; here the reply is held once as bytes before the array copy
    return ImageHeader("WSQ", w, h, 1, 8, w * h)


def check_header(header: ImageHeader, name: str, max_pixels: int, mode: str = "unchanged",
                 held_bytes: int = 0, what: str = "") -> None:
    """Refuse, before decoding, an image over ``max_pixels`` or whose decode would not fit in memory.

    Parameters
    ----------
    header : ImageHeader
    name : str
        The argument's name, for the message.
    max_pixels : int
        Largest ``width x height`` allowed.
    mode : {"unchanged", "grey8", "bgr8"}
        The decoded form (see :func:`decode_bytes`); it sets the output's bytes per pixel.
    held_bytes : int
        Bytes the read already holds for this image (the file read into memory).
    what : str
        The file or buffer, for the message.

    Raises
    ------
    ImageError
        Naming ``name``, the limit and the header's ``width x height``.
    """
    where = f"the {header.format} header" + (f" of {what}" if what else "")
    if header.pixels > max_pixels:
        raise ImageError(f"{name}: expected at most {max_pixels} pixels, got {header.width}x{header.height} "
                         f"({header.pixels} pixels, from {where}; refused before decoding)")
    need = held_bytes + header.peak_bytes(mode)
    budget = READ_BYTES_PER_PIXEL * max_pixels
    if need > budget:
        raise ImageError(f"{name}: expected an image that decodes within {budget} bytes "
                         f"({READ_BYTES_PER_PIXEL} bytes x {max_pixels} allowed pixels), got {header.width}x"
                         f"{header.height} with {header.channels} samples of {header.bits} bits per pixel "
                         f"that needs about {need} bytes (from {where}; refused before decoding)")


def read_image(path: str | os.PathLike, *, mode: str = "unchanged", max_pixels: int = MAX_IMAGE_PIXELS,
               name: str = "path") -> np.ndarray:
    """Read an image file (TIFF, PNG, BMP, PGM, JPEG, JPEG 2000, WebP, WSQ) as an array.

    The header is read first and the image refused, before decoding, when it has more than
    ``max_pixels`` pixels or its decode would not fit in :data:`READ_BYTES_PER_PIXEL` x
    ``max_pixels`` bytes (see the module docstring). WSQ files (recognised by their FFA0
    marker, whatever their name) are decoded by NBIS in an isolated process
    (:mod:`biomatch.formats.wsq`); JPEG 2000 by OpenCV's OpenJPEG; TIFFs that OpenCV cannot
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
        :class:`~biomatch.errors.FormatError` from :mod:`biomatch.formats.wsq` is re-raised as
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
    header = _header(data, name, what)
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
    from .errors import FormatError
    from .formats import wsq

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


def to_grey8(image: np.ndarray) -> np.ndarray:
    """Convert a grey or colour image of 8 or 16 bits (or float in [0, 1]) to 8-bit grey.

    Parameters
    ----------
    image : ndarray, shape (h, w) or (h, w, 3|4)
        uint8, uint16 or float; colour channels in BGR(A) order (as OpenCV reads them).

    Returns
    -------
    ndarray of uint8, shape (h, w)
    """
    import cv2

    if not isinstance(image, np.ndarray):
        raise invalid("image", "a numpy array", type(image).__name__)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        elif image.dtype != np.uint8:
            image = _float_to_u8(image, "image")
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    if image.ndim != 2:
        raise invalid("image", "shape (h, w) or (h, w, 3|4)", image.shape)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        return _float_to_u8(image, "image")
    raise invalid("image.dtype", "uint8, uint16 or float", image.dtype)


def _float_to_u8(image: np.ndarray, name: str) -> np.ndarray:
    if not np.issubdtype(image.dtype, np.floating):
        raise invalid(f"{name}.dtype", "uint8, uint16 or float", image.dtype)
    if not np.all(np.isfinite(image)):
        raise invalid(name, "finite pixel values", "NaN or infinity")
    if image.size and (image.min() < 0 or image.max() > 1):
        raise invalid(name, "float pixels in [0, 1]", (float(image.min()), float(image.max())))
    return np.round(image * 255).astype(np.uint8)


def check_dpi(dpi: object) -> float:
    """Validate a resolution in dots per inch."""
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)):
        raise invalid("dpi", f"a number in [{MIN_DPI:g}, {MAX_DPI:g}]", dpi)
    value = float(dpi)
    if not math.isfinite(value) or not MIN_DPI <= value <= MAX_DPI:
        raise invalid("dpi", f"a number in [{MIN_DPI:g}, {MAX_DPI:g}]", dpi)
    return value


def to_working_resolution(grey: np.ndarray, dpi: float) -> np.ndarray:
    """Resample an 8-bit grey image from ``dpi`` to the 500 dpi working resolution.

    Area interpolation when shrinking (anti-aliased), cubic when enlarging.
    """
    import cv2

    dpi = check_dpi(dpi)
    if abs(dpi - WORKING_DPI) < 1e-6:
        return grey
    scale = WORKING_DPI / dpi
    h, w = grey.shape
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(grey, (nw, nh), interpolation=interp)


def load_fingerprint(image, dpi: float) -> np.ndarray:
    """Read (if a path) and normalise a fingerprint image to 8-bit grey at 500 dpi.

    Parameters
    ----------
    image : ndarray, str or path-like
        An array (see :func:`to_grey8`) or an image file, read as 8-bit grey by its codec
        (:func:`read_image` with ``mode="grey8"``).
    dpi : float
        Its resolution, 100-2000.

    Raises
    ------
    InvalidInputError
        Bad ``dpi``; an array of more than :data:`MAX_IMAGE_PIXELS` pixels, of the wrong shape or
        dtype; a path with a NUL byte.
    ImageError
        An unreadable file, or one over :data:`MAX_IMAGE_PIXELS` (refused from its header).
    """
    dpi = check_dpi(dpi)
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image, mode="grey8")
    elif isinstance(image, np.ndarray) and image.ndim >= 2 and image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
        # before any conversion, which would allocate in proportion
        raise invalid("image", f"at most {MAX_IMAGE_PIXELS} pixels", f"{image.shape[1]}x{image.shape[0]}")
    return to_working_resolution(to_grey8(image), dpi)
