"""The isolated WSQ decoder process (see :mod:`biomatch.imaging.wsq`): ``python -m`` this module.

A plain subprocess rather than :mod:`multiprocessing`, whose "spawn" start method re-imports the
caller's ``__main__`` (an unguarded user script would run again in the child).

Protocol on stdin/stdout, big-endian: request = u32 length + WSQ bytes; reply = status u8
(0 ok, 1 NBIS refused) + u32 width + u32 height + u32 payload length + payload (pixels when ok,
else the error text). NBIS prints its errors on stderr, which the parent discards.
"""

from __future__ import annotations

import struct
import sys


def _read_exact(stream, n: int) -> bytes:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def serve(stdin, stdout) -> None:
    import _wsq

    while True:
        try:
            (length,) = struct.unpack(">I", _read_exact(stdin, 4))
            data = _read_exact(stdin, length)
        except EOFError:
            return
        try:
            buf, w, h, _ = _wsq.decompress(data)
            reply = struct.pack(">BIII", 0, int(w), int(h), len(buf)) + bytes(buf)
        except Exception as exc:  # NBIS error codes surface as exceptions: report, keep serving
            text = str(exc)[:200].encode("utf-8", "replace")
            reply = struct.pack(">BIII", 1, 0, 0, len(text)) + text
        stdout.write(reply)
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
