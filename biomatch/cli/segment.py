"""``biomatch segment IMAGE --dpi N --slap right4|left4|thumbs -o DIR``: a slap cut into fingertips.

Writes ``DIR/finger_<position>.png`` (each fingertip upright, at the slap's resolution) and
``DIR/segments.json``::

    {"image": "...", "slap": "right4", "fgp": 13, "dpi": 500.0, "hand_rotation_deg": 4.0,
     "fingers": [{"position": 2, "box": [x0, y0, x1, y1], "rotation_deg": 6.1, "quality": 58,
                  "confidence": 0.9, "file": "finger_02.png"}, ...],
     "missing": [5]}

Boxes are in the slap image's pixels (x1, y1 exclusive). ``--overlay`` also writes
``overlay.png``, the slap with every box and position drawn, to check by eye. Finger images are
personal data: files are written 0600 in a folder made 0700.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import FileAccessError
from ._common import EXIT_OK, dpi

__all__ = ["add_parsers"]


def add_parsers(sub) -> None:
    """Add ``segment`` to the top-level sub-parsers."""
    p = sub.add_parser("segment", help="cut a slap (four fingers or two thumbs) into one image per fingertip",
                       description="Find the fingertips of a slap image, number them (ANSI/NIST-ITL positions) and "
                                   "write one upright image per finger plus segments.json (position, box, "
                                   "rotation, quality, missing fingers).")
    p.add_argument("image", type=Path, metavar="IMAGE")
    p.add_argument("--dpi", type=dpi, required=True, help="resolution of the slap image (500 or 1000 usually)")
    p.add_argument("--slap", choices=["right4", "left4", "thumbs"], required=True,
                   help="right4 (FGP 13: index..little from the left), left4 (14: little..index), "
                        "thumbs (15: left thumb on the left)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="folder to write into")
    p.add_argument("--overlay", action="store_true", help="also write overlay.png with the boxes drawn")
    p.add_argument("--no-quality", action="store_true", help="skip the per-finger quality score")
    p.set_defaults(func=cmd_segment)


def _private_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise FileAccessError(f"-o: cannot make the folder {str(path)!r}: {exc.strerror}") from exc


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _png(image) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise FileAccessError("PNG encoding failed")
    return buf.tobytes()


def overlay(image, seg):
    """The slap in colour with each fingertip's box and position drawn (for a look by eye)."""
    import cv2

    vis = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    t = max(2, image.shape[1] // 400)
    for f in seg.fingers:
        x0, y0, x1, y1 = f.box
        cv2.rectangle(vis, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 255), t)
        cv2.putText(vis, str(f.position), (x0 + 4 * t, y0 + 20 * t), cv2.FONT_HERSHEY_SIMPLEX, t / 2,
                    (255, 0, 0), t)
    return vis


def cmd_segment(args) -> int:
    from ..extract.slap import _original, segment_slap

    image = _original(args.image)
    seg = segment_slap(image, args.dpi, args.slap, quality=not args.no_quality)
    out = args.output
    if out.exists() and not out.is_dir():
        raise FileAccessError(f"-o: expected a folder, got {str(out)!r}, which is a file")
    _private_dir(out)
    doc = {"image": str(args.image), **seg.as_dict()}
    for f, entry in zip(seg.fingers, doc["fingers"]):
        name = f"finger_{f.position:02d}.png"
        _write_private(out / name, _png(f.image))
        entry["file"] = name
    if args.overlay:
        _write_private(out / "overlay.png", _png(overlay(image, seg)))
    _write_private(out / "segments.json", (json.dumps(doc, indent=1) + "\n").encode())
    found = ", ".join(f"{f.position}" + (f" (quality {f.quality})" if f.quality is not None else "")
                      for f in seg.fingers)
    missing = ", ".join(map(str, seg.missing)) or "none"
    print(f"{args.image}: {args.slap} (FGP {seg.fgp}), hand rotation {seg.hand_rotation_deg:+.0f} deg; "
          f"fingers {found}; missing {missing}; wrote {len(seg.fingers)} images and segments.json to {out}")
    return EXIT_OK
