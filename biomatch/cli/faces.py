"""``biomatch evaluate faces``: face verification on a folder with one subfolder per identity.

The protocol is :func:`biomatch.evaluate.faces.run_faces` (YuNet + SFace, cosine score); this
module prints its summary and the pairs on the wrong side of the SFace threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._common import EXIT_OK

__all__ = ["add_parsers"]


def add_parsers(esub) -> None:
    """Add ``faces`` to the ``evaluate`` protocol sub-parsers."""
    f = esub.add_parser("faces", help="face verification on a folder with one subfolder per identity",
                        description="Face verification (YuNet + SFace): genuine = all pairs of images of one "
                                    "identity, impostors = all pairs of different identities (cosine score). "
                                    "Prints EER, FMR100, FMR1000, failures to detect, per-face timings on one "
                                    "thread, and the pairs on the wrong side of the SFace threshold.")
    f.add_argument("folder", type=Path, metavar="FOLDER")
    f.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    f.set_defaults(func=cmd_evaluate_faces)


def cmd_evaluate_faces(args) -> int:
    from ..evaluate.faces import run_faces

    s = run_faces(args.folder).summary()
    if args.json:
        print(json.dumps(s))
        return EXIT_OK
    print(f"Face verification on {args.folder} (YuNet + SFace, cosine)")
    print(f"  images               {s['n_images']}")
    print(f"  genuine pairs        {s['n_genuine']}")
    print(f"  impostor pairs       {s['n_impostor']}")
    print(f"  failed to detect     {s['failed_to_detect']}")
    print(f"  EER                  {100 * s['eer']:.2f}%")
    print(f"  FMR100               {100 * s['fmr100']:.2f}%")
    print(f"  FMR1000              {100 * s['fmr1000']:.2f}%")
    print(f"  detection (median)   {s['detect_ms_median']:.1f} ms per image (1 thread)")
    print(f"  embedding (median)   {s['embed_ms_median']:.1f} ms per face (1 thread, incl. alignment)")
    print(f"  at threshold {s['threshold']:.3f}   {s['n_misses']} pairs on the wrong side")
    for m in s["misses"][:50]:
        print(f"    {m['kind']:16s} {m['score']:+.3f}  {m['a']}  {m['b']}")
    for f in s["failures"]:
        print(f"  not detected         {f['image']}: {f['reason']}")
    return EXIT_OK
