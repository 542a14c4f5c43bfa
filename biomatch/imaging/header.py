"""Size, samples and depth of an encoded image from its header, and the check made before decoding.

Readers call :func:`read_header` then :func:`check_header` on every input, so that an image
over the pixel limit, or whose decode would not fit in memory, is refused before a pixel is
decoded (see :mod:`biomatch.imaging`).
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass

from ..errors import FormatError, ImageError
from . import wsq
from .limits import READ_BYTES_PER_PIXEL

__all__ = ["ImageHeader", "read_header", "check_header"]

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


def read_header(data: bytes, name: str = "image", *, what: str | None = None) -> ImageHeader:
    """Size, samples and depth of an encoded image, from its header, without decoding a pixel.

    Pillow reads the headers of PNG, JPEG, TIFF, BMP, PNM and WebP: its plugin classes are used
    directly, so its own decompression-bomb check (a warning from 89 Mpx, an error from 179 Mpx,
    both above biomatch's limits) is neither raised nor needed, and no global setting of Pillow
    is touched. JPEG 2000 sizes come from the codestream's SIZ segment, which OpenJPEG allocates
    from (a JP2 file's ``ihdr`` box, which Pillow reads, may say otherwise); WSQ sizes from the
    frame header (:func:`biomatch.imaging.wsq.frame_size`).

    Parameters
    ----------
    data : bytes
        The whole encoded file (a header may lie past a long metadata segment).
    name : str
        The argument's name, for error messages.
    what : str, optional
        The file or buffer, for error messages (default: its size in bytes).

    Raises
    ------
    ImageError
        Not one of these formats, or a header that cannot be read (truncated or corrupt).
    """
    what = f"{len(data)} bytes" if what is None else what
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


