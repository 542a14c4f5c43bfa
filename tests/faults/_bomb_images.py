"""Decompression bombs built at test time, and child processes that measure the peak RSS of each read.

The bombs are small files whose headers claim huge images (30000 x 30000 and more). They are
written by streaming, so that the test process never holds the pixels: a deflate stream of n
zero bytes is one compressed block repeated (after a full flush the compressor forgets its
history, so every further block of zeros compresses to the same bytes) and its Adler-32 is
computed in closed form.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass

MiB = 2**20
_BLOCK = 4 * MiB
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def zlib_zeros(n: int):
    """Yield a zlib stream (RFC 1950) of ``n`` zero bytes without ever holding them."""
    yield b"\x78\xda"  # deflate, 32 KiB window, level 9 (the header's check bits make it a multiple of 31)
    full, rest = divmod(n, _BLOCK)
    if full:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        block = c.compress(bytes(_BLOCK)) + c.flush(zlib.Z_FULL_FLUSH)
        for _ in range(full):
            yield block
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    yield c.compress(bytes(rest)) + c.flush(zlib.Z_FINISH)
    # Adler-32 of zeros: A = 1, B = the sum of n A's = n (mod 65521)
    yield struct.pack(">I", ((n % 65521) << 16) | 1)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, colour_type: int = 2, bit_depth: int = 8, pad_bytes: int = 0) -> bytes:
    """A valid PNG of black pixels; ``pad_bytes`` adds an ancillary chunk that decoders skip."""
    row = 1 + (width * _PNG_CHANNELS[colour_type] * bit_depth + 7) // 8  # filter byte + samples
    out = [b"\x89PNG\r\n\x1a\n",
           _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))]
    if pad_bytes:
        out.append(_png_chunk(b"prVt", bytes(pad_bytes)))  # lower-case first letter: ancillary, ignored
    pending = b""
    for piece in zlib_zeros(row * height):
        pending += piece
        if len(pending) >= MiB:
            out.append(_png_chunk(b"IDAT", pending))
            pending = b""
    out.append(_png_chunk(b"IDAT", pending))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def jpeg_bytes(width: int, height: int, colour: bool = True) -> bytes:
    """A baseline JPEG whose frame header (SOF0) claims ``width x height``; the scan is a 64 x 64 image's.

    libjpeg decodes the short scan, warns about the premature end and fills the rest of the
    frame, so a decoder that trusts the header allocates and writes the whole frame.
    """
    import cv2
    import numpy as np

    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3) if colour else (64, 64), dtype=np.uint8)
    data = bytearray(cv2.imencode(".jpg", img)[1].tobytes())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def tiff_bytes(width: int, height: int, *, rows_per_strip: int = 1000, samples: int = 1, bits: int = 8,
               pages: int = 1, lzma: bool = False) -> bytes:
    """A TIFF of black pixels whose strips (of every page) all point at one shared compressed stream.

    ``samples`` 1 (grey) or 3 (RGB) of ``bits`` 8 or 16; deflate-compressed, or LZMA (which
    OpenCV's libtiff lacks, so that biomatch falls back to tifffile) with ``lzma=True``.
    ``pages`` > 1 chains that many identical pages.
    """
    import lzma as _lzma

    strip_bytes = width * samples * bits // 8 * rows_per_strip
    strip = _lzma.compress(bytes(strip_bytes)) if lzma else b"".join(zlib_zeros(strip_bytes))
    n_strips = -(-height // rows_per_strip)
    data_at = 8
    extra = bytearray()  # one block after the strip: the per-strip arrays and BitsPerSample, shared by every page
    extra_at = data_at + len(strip) + (len(strip) & 1)

    def array(code, values):  # code: "H" SHORT, "I" LONG
        at = extra_at + len(extra)
        extra.extend(struct.pack(f"<{len(values)}{code}", *values))
        return at

    def short(number, value):
        return struct.pack("<HHIHH", number, 3, 1, value, 0)

    def longs(number, values):  # one LONG sits in the tag; more are stored apart
        if len(values) == 1:
            return struct.pack("<HHII", number, 4, 1, values[0])
        return struct.pack("<HHII", number, 4, len(values), array("I", values))

    bits_tag = short(258, bits) if samples == 1 else struct.pack("<HHII", 258, 3, samples, array("H", [bits] * samples))
    tags = [longs(256, [width]), longs(257, [height]), bits_tag, short(259, 34925 if lzma else 8),
            short(262, 1 if samples == 1 else 2), longs(273, [data_at] * n_strips), short(277, samples),
            longs(278, [rows_per_strip]), longs(279, [len(strip)] * n_strips), short(284, 1), short(339, 1)]
    ifds_at = extra_at + len(extra) + (len(extra) & 1)
    ifd_size = 2 + 12 * len(tags) + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", ifds_at) + strip)
    out += bytes(extra_at - len(out)) + extra
    out += bytes(ifds_at - len(out))
    for page in range(pages):
        following = ifds_at + (page + 1) * ifd_size if page + 1 < pages else 0
        out += struct.pack("<H", len(tags)) + b"".join(tags) + struct.pack("<I", following)
    return bytes(out)


def wsq_bytes(width: int, height: int) -> bytes:
    """A WSQ file (NBIS-encoded 64 x 64 ridges) whose frame header is patched to claim ``width x height``."""
    import numpy as np

    from biomatch.imaging import wsq

    y, x = np.mgrid[:64, :64]
    data = bytearray(wsq.encode((128 + 100 * np.sin(x / 2.0 + y / 5.0)).astype(np.uint8)))
    sof = data.find(b"\xff\xa2")
    struct.pack_into(">HH", data, sof + 6, height, width)
    return bytes(data)


def j2k_bytes(width: int, height: int) -> bytes:
    """A JPEG 2000 codestream (OpenCV-encoded 64 x 64 grey) whose SIZ segment claims ``width x height``.

    OpenJPEG allocates from SIZ, one 32-bit plane per component, and decodes the one tile whose
    data is far too short: a bare codestream, since in a JP2 file OpenCV compares SIZ with the
    ``ihdr`` box first.
    """
    import cv2
    import numpy as np

    img = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    jp2 = cv2.imencode(".jp2", img)[1].tobytes()
    data = bytearray(jp2[jp2.find(b"\xff\x4f\xff\x51"):])  # SOC, then SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz
    struct.pack_into(">II", data, 8, width, height)
    struct.pack_into(">II", data, 24, width, height)  # one tile, as the 64 x 64 image had
    return bytes(data)


def an2k_transaction(record_type: int, width: int, height: int, compression: bytes, payload: bytes) -> bytes:
    """A Type-1 record and one tagged image record (Type-13/14 finger or Type-10 face) holding ``payload``."""

    def tagged(t, fields):
        body = b"".join(b"%d.%03d:" % (t, n) + v + b"\x1d" for n, v in fields)[:-1] + b"\x1c"
        for digits in range(1, 12):  # LEN counts its own digits
            head = b"%d.001:%d\x1d" % (t, len(body) + len(b"%d.001:\x1d" % t) + digits)
            if len(head) + len(body) == int(head.split(b":")[1][:-1]):
                return head + body
        raise ValueError("no consistent LEN")

    t1 = tagged(1, [(2, b"0500"), (3, b"1\x1f1\x1e%d\x1f01" % record_type), (11, b"19.69"), (12, b"19.69")])
    if record_type == 10:
        fields = [(2, b"01"), (3, b"FACE"), (6, b"%d" % width), (7, b"%d" % height), (8, b"1"), (9, b"300"),
                  (10, b"300"), (11, compression), (12, b"GRAY"), (999, payload)]
    else:
        fields = [(2, b"01"), (3, b"0"), (4, b"SRC"), (5, b"20260101"), (6, b"%d" % width), (7, b"%d" % height),
                  (8, b"1"), (9, b"500"), (10, b"500"), (11, compression), (12, b"8"), (13, b"2"), (999, payload)]
    return t1 + tagged(record_type, fields)


# --------------------------------------------------------------------------- measuring a read in a child


@dataclass(frozen=True)
class Outcome:
    """What the child reports: the error (class name, message, names of its classes), RSS figures
    in bytes, the read's duration, the result's shape, and how many WSQ decoder processes it started."""

    error: str | None
    message: str
    classes: tuple
    rss_before: int
    peak: int
    seconds: float
    result: str
    wsq_worker_starts: int

    @property
    def growth(self) -> int:
        """Peak RSS during the read minus the RSS just before it: an upper bound of what the read used."""
        return self.peak - self.rss_before


_CHILD = r"""
import gc, json, sys, time

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)

def reset_peak():
    # writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0), so the peak seen
    # afterwards is this call's own, not the imports' or an earlier call's
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")

spec = json.loads(sys.argv[1])
exec(spec["setup"], globals())
for call in spec["calls"]:
    gc.collect()
    reset_peak()
    before = status("VmRSS")
    t0 = time.perf_counter()
    err, text = None, ""
    try:
        result = eval(call)
        text = repr(getattr(result, "shape", type(result).__name__))
        del result
    except BaseException as exc:
        err = exc
    seconds = time.perf_counter() - t0
    peak = status("VmHWM")
    wsq = sys.modules.get("biomatch.imaging.wsq")
    print(json.dumps({"error": None if err is None else type(err).__name__, "message": "" if err is None else str(err),
                      "classes": [] if err is None else [c.__name__ for c in type(err).__mro__],
                      "rss_before": before, "peak": peak, "seconds": seconds, "result": text,
                      "wsq_worker_starts": 0 if wsq is None else wsq._worker.starts}), flush=True)
    err = None
"""


def _watch(argv: list, kill_above: int, timeout_s: float) -> tuple[int, str, str, int]:
    """Run ``argv``; return its exit code, stdout, stderr and peak RSS (bytes, from ``wait4``).

    A watchdog kills the process when its RSS passes ``kill_above`` bytes or ``timeout_s``
    seconds: a bomb that is not refused must fail the test, not take the machine down.
    """
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        deadline = time.monotonic() + timeout_s
        killed = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                with open(f"/proc/{proc.pid}/status") as fh:
                    rss = next((int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:")), 0)
            except OSError:
                rss = 0
            if killed is None:
                if rss > kill_above:
                    killed = f"killed at RSS {rss / MiB:.0f} MiB (limit {kill_above / MiB:.0f} MiB)"
                elif time.monotonic() > deadline:
                    killed = f"killed after {timeout_s:g} s"
                if killed:
                    proc.kill()
            time.sleep(0.005)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if killed:
            raise AssertionError(f"the read was not refused cheaply: {killed}")
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read(), usage.ru_maxrss * 1024


def measure(setup: str, calls: list, *, kill_above: int = 1536 * MiB, timeout_s: float = 60.0) -> list:
    """Run each of ``calls`` (Python expressions) in one fresh interpreter after ``setup``.

    Returns one :class:`Outcome` per call. Each call's peak is the child's VmHWM, reset just
    before the call (after ``setup``'s imports and the previous call), so the figure is that
    read's alone; see :func:`_watch` for the watchdog, which fails the whole child.
    """
    code, out, err, _ = _watch([sys.executable, "-c", _CHILD, json.dumps({"setup": setup, "calls": list(calls)})],
                               kill_above, timeout_s)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if code != 0 or len(lines) != len(calls):
        raise AssertionError(f"child failed (exit {code}): {err[-2000:]}")
    return [Outcome(r["error"], r["message"], tuple(r["classes"]), r["rss_before"], r["peak"], r["seconds"],
                    r["result"], r["wsq_worker_starts"]) for r in map(json.loads, lines)]


def peak_of_command(argv: list, *, kill_above: int = 1536 * MiB, timeout_s: float = 60.0) -> tuple[int, str, int]:
    """Exit code, stderr and peak RSS in bytes of a whole process (a CLI command)."""
    code, _, err, peak = _watch(argv, kill_above, timeout_s)
    return code, err, peak
