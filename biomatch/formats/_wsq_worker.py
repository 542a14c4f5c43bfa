"""Body of the isolated WSQ decoder process (see :mod:`biomatch.formats.wsq`).

Kept apart so that the spawned child imports as little as possible. NBIS prints its errors to
stderr; the worker sends them to /dev/null (the parent reports a FormatError instead).
"""

from __future__ import annotations

import os


def serve(conn) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import _wsq

    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            buf, w, h, ppi = _wsq.decompress(data)
        except Exception as exc:  # NBIS error codes surface as exceptions: report, keep serving
            conn.send(("error", str(exc)[:200]))
            continue
        conn.send(("ok", int(w), int(h), float(ppi)))
        conn.send_bytes(bytes(buf))
