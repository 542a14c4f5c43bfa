"""FBI WSQ fingerprint images: a validating header parser around the NBIS codec.

Decoding and encoding use NBIS (through the PyPI ``wsq`` package, IDEMIA, CeCILL-C, which wraps
NBIS's C WSQ codec), so decoded pixels are NBIS's by construction.

Safety. Fuzzing showed that NBIS's decoder is not memory-safe on corrupt input (heap corruption,
``double free`` aborts within a few thousand mutations of a valid file). biomatch therefore:

1. parses the marker structure in Python first (:func:`parse_header`): SOI first, every table
   segment's length within the input, exactly one frame header with a sane size, quantisation
   and Huffman tables consistent, every block naming a defined Huffman table, EOI last, and the
   pixel count bounded by the input size (:data:`MAX_PIXELS_PER_BYTE`), so NBIS never sees an
   allocation request that the input does not justify;
2. runs the NBIS decoder in a separate worker process (``python -m
   biomatch.imaging._wsq_worker``, started on first use, restarted if it dies or exceeds
   :data:`DECODE_TIMEOUT_S`), so a decoder crash becomes a :class:`~biomatch.errors.FormatError`
   instead of killing the caller.

Decodes are serialised through that one worker (thread-safe, one at a time); its start costs
about 0.1-0.3 s once per process, a decode of a 256 x 256 image ~1 ms more than in-process. Encoding runs in-process: the encoder only sees validated arrays.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from dataclasses import dataclass

import numpy as np

from .._reader import Reader
from ..errors import FormatError, ImageError, invalid
from .limits import MAX_IMAGE_PIXELS

__all__ = ["WsqInfo", "parse_header", "frame_size", "decode", "encode", "is_wsq", "MAX_PIXELS_PER_BYTE"]

log = logging.getLogger(__name__)

SOI, EOI, SOF, SOB, DTT, DQT, DHT, DRT, COM = (0xFFA0 + i for i in range(9))
_TABLE_MARKERS = {DTT: "transform table", DQT: "quantisation table", DHT: "Huffman table",
                  DRT: "restart interval", COM: "comment"}
MAX_PIXELS_PER_BYTE = 256
"""A WSQ file of n bytes may declare at most 256 n pixels (0.03 bit per pixel; NBIS targets 0.75)."""
MAX_PIXELS = MAX_IMAGE_PIXELS
"""Largest WSQ image, in pixels: the finger-image limit of :mod:`biomatch.imaging.limits` (one limit)."""
DECODE_TIMEOUT_S = 5.0
_MAX_HUFFMAN_TABLES = 8  # NBIS MAX_DHT_TABLES


@dataclass(frozen=True)
class WsqInfo:
    """What the WSQ headers say: size, resolution (NISTCOM ``PPI``, None if absent), block count."""

    width: int
    height: int
    ppi: float | None
    n_blocks: int


def is_wsq(data: bytes) -> bool:
    return len(data) >= 2 and data[0] == 0xFF and data[1] == 0xA0


def _ppi_from_comment(text: bytes) -> float | None:
    if not text.startswith(b"NIST_COM"):
        return None
    for line in text.split(b"\n"):
        if line.startswith(b"PPI "):
            try:
                value = float(line[4:].strip())
            except ValueError:
                return None
            return value if 100 <= value <= 2000 else None
    return None


def parse_header(data: bytes) -> WsqInfo:
    """Validate the marker structure of a WSQ file without decoding pixels.

    Raises
    ------
    FormatError
        Naming the segment and byte offset of the first inconsistency.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise invalid("data", "bytes", type(data).__name__)
    data = bytes(data)
    r = Reader(data, "WSQ image")
    if r.u16("start-of-image marker") != SOI:
        raise r.fail("expected the start-of-image marker FFA0", 0)
    frame = None
    ppi = None
    huffman: set[int] = set()
    have_dqt = have_dtt = False
    n_blocks = 0
    while True:
        at = r.pos
        marker = r.u16("marker")
        if marker == EOI:
            if r.remaining:
                raise r.fail(f"{r.remaining} bytes after the end-of-image marker")
            break
        if marker in _TABLE_MARKERS or marker in (SOF, SOB):
            length = r.u16("segment length")
            if length < 2:
                raise r.fail(f"segment length {length} below 2", at + 2)
            seg = r.sub(length - 2, f"segment {marker:04X} (length {length})", f"WSQ segment {marker:04X}")
        else:
            raise r.fail(f"unknown marker {marker:04X}", at)
        if marker == COM:
            ppi = ppi or _ppi_from_comment(bytes(seg.take(seg.remaining, "comment")))
        elif marker == DQT:
            if length != 389:
                raise r.fail(f"quantisation table: length {length}, expected 389", at + 2)
            have_dqt = True
        elif marker == DTT:
            hisz, losz = seg.u8("high-pass filter length"), seg.u8("low-pass filter length")
            if not (hisz and losz):
                raise r.fail("transform table: empty filter", at)
            have_dtt = True
        elif marker == DHT:
            while seg.remaining:
                tid = seg.u8("Huffman table id")
                if tid >= _MAX_HUFFMAN_TABLES:
                    raise seg.fail(f"Huffman table id {tid} (at most {_MAX_HUFFMAN_TABLES - 1})", seg.pos - 1)
                counts = seg.take(16, "Huffman code counts")
                total = sum(counts)
                if total == 0 or total > 256:
                    raise seg.fail(f"Huffman table {tid}: {total} codes (expected 1-256)")
                # a canonical code of length L can hold at most 2^L codes: reject oversubscribed tables
                room = 1
                for count in counts:
                    room = room * 2 - count
                    if room < 0:
                        raise seg.fail(f"Huffman table {tid}: code lengths oversubscribed")
                seg.skip(total, f"Huffman table {tid} values")
                huffman.add(tid)
        elif marker == SOF:
            if frame is not None:
                raise r.fail("second frame header", at)
            if length != 17:
                raise r.fail(f"frame header: length {length}, expected 17", at + 2)
            seg.skip(2, "black/white")
            h, w = seg.u16("height"), seg.u16("width")
            if h == 0 or w == 0:
                raise r.fail(f"frame header: image size {w}x{h}", at + 6)
            limit = min(MAX_PIXELS, MAX_PIXELS_PER_BYTE * len(data))
            if w * h > limit:
                raise r.fail(f"frame header: {w}x{h} = {w * h} pixels, more than {limit} allowed for a "
                             f"{len(data)}-byte file", at + 6)
            frame = (w, h)
        elif marker == SOB:
            if frame is None or not (have_dqt and have_dtt and huffman):
                raise r.fail("block before the frame header and its transform, quantisation and Huffman tables", at)
            tid = seg.u8("block Huffman table id")
            if tid not in huffman:
                raise r.fail(f"block uses undefined Huffman table {tid}", at + 4)
            n_blocks += 1
            _skip_entropy_data(r)
    if frame is None or n_blocks == 0:
        raise r.fail("no frame header or no block before the end-of-image marker")
    return WsqInfo(frame[0], frame[1], ppi, n_blocks)


def frame_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the frame header, without validating the rest of the file.

    Walks the table segments that precede the frame header (each length checked against the
    input), so that a reader can refuse an oversized image before anything else; None when the
    input is not WSQ or has no well-formed frame header before its first block (then
    :func:`parse_header` says what is wrong).
    """
    if not is_wsq(data):
        return None
    pos = 2
    while pos + 4 <= len(data):
        marker, length = struct.unpack_from(">HH", data, pos)
        if length < 2 or pos + 2 + length > len(data):
            return None
        if marker == SOF:
            if length != 17:
                return None
            h, w = struct.unpack_from(">HH", data, pos + 6)  # after black/white, as parse_header reads them
            return w, h
        if marker not in _TABLE_MARKERS:
            return None
        pos += 2 + length
    return None


def _skip_entropy_data(r: Reader) -> None:
    """Advance to the next marker (FF followed by a non-zero byte; FF 00 is a stuffed FF)."""
    data, pos, end = r.data, r.pos, r.end
    while True:
        i = data.find(b"\xff", pos, end)
        if i < 0 or i + 1 >= end:
            raise r.fail("entropy-coded data runs past the end of the input (no end-of-image marker)", end)
        if data[i + 1] != 0:
            r.pos = i
            return
        pos = i + 2


# --------------------------------------------------------------------------- isolated NBIS decoder

class _Worker:
    """One subprocess running NBIS's decoder; restarted whenever it dies or hangs."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc = None
        self.starts = 0  # diagnostics: more than one means the decoder died or hung

    def _start(self):
        import subprocess
        import sys

        self.starts += 1
        self._proc = subprocess.Popen([sys.executable, "-m", "biomatch.imaging._wsq_worker"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      bufsize=0)

    def _stop(self):
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc.stdin.close()
            self._proc.stdout.close()
        self._proc = None

    def _read(self, n: int, deadline: float) -> bytes:
        import select
        import time

        out = bytearray()
        fd = self._proc.stdout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd.fileno(), min(n - len(out), 1 << 20))
            if not chunk:
                raise EOFError
            out += chunk
        return bytes(out)

    def decode(self, data: bytes, timeout: float):
        import time

        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            deadline = time.monotonic() + timeout
            try:
                self._proc.stdin.write(struct.pack(">I", len(data)) + data)
                status, w, h, n = struct.unpack(">BIII", self._read(13, deadline))
                if n > MAX_PIXELS:
                    raise EOFError
                payload = self._read(n, deadline)
            except TimeoutError:
                self._stop()
                raise FormatError(f"WSQ image: NBIS decoder did not finish within {timeout:g} s") from None
            except (EOFError, OSError, ValueError):
                self._stop()
                raise FormatError("WSQ image: NBIS decoder crashed on this data (corrupt file)") from None
            if status != 0:
                raise FormatError(f"WSQ image: NBIS decoder refused the data ({payload.decode('utf-8', 'replace')})")
            return w, h, None, payload


_worker = _Worker()


def _codec():
    try:
        import _wsq  # noqa: F401  (the NBIS extension of the PyPI ``wsq`` package)
    except ImportError as exc:
        raise ImageError("WSQ support needs the 'wsq' package: pip install 'biomatch[wsq]'") from exc
    return _wsq


def decode(data: bytes) -> tuple[np.ndarray, float | None]:
    """Decode a WSQ image.

    Returns
    -------
    pixels : ndarray of uint8, shape (height, width)
    ppi : float or None
        Resolution from the NISTCOM comment, when the file has one.

    Raises
    ------
    FormatError
        Corrupt or inconsistent data (header checks, or NBIS refusing or crashing).
    ImageError
        The ``wsq`` package is not installed.
    """
    info = parse_header(data)
    _codec()
    w, h, _, buf = _worker.decode(bytes(data), DECODE_TIMEOUT_S)
    if (w, h) != (info.width, info.height) or len(buf) != w * h:
        raise FormatError(f"WSQ image: decoder returned {w}x{h} ({len(buf)} bytes) for a "
                          f"{info.width}x{info.height} frame header")
    return np.frombuffer(buf, np.uint8).reshape(h, w).copy(), info.ppi


def encode(image: np.ndarray) -> bytes:
    """Encode an 8-bit grey image with NBIS's WSQ encoder (its fixed 0.75 bit/pixel, ~15:1).

    The NBIS wrapper writes its own NISTCOM comment; the resolution is not recorded, so keep
    it beside the file (AN2K records carry it).
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
        raise invalid("image", "a 2-d uint8 array", getattr(image, "dtype", type(image).__name__))
    h, w = image.shape
    if not (16 <= h <= 0xFFFF and 16 <= w <= 0xFFFF) or w * h > MAX_PIXELS:
        raise invalid("image.shape", f"sides 16-65535 px and at most {MAX_PIXELS} pixels", image.shape)
    return bytes(_codec().compress(np.ascontiguousarray(image).tobytes(), h, w, 0.75))
