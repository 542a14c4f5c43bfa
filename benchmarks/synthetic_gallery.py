"""Draw masters and impressions of generated fingerprints into one PNG (docs/synthetic_gallery.png).

    .venv/bin/python benchmarks/synthetic_gallery.py [--out docs/synthetic_gallery.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    import cv2

    from biomatch.datasets.synthetic import CLASSES, impression, master

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "synthetic_gallery.png")
    args = ap.parse_args()
    rows = []
    for k, cls in enumerate(CLASSES):
        mp = master(100 + k, cls)
        m = np.where(mp.mask > 0, 127 - 110 * mp.ridges, 255).astype(np.uint8)
        tiles = [m] + [impression(mp, 1000 * k + i).image for i in range(3)]
        tiles = [cv2.resize(t, (192, 240), interpolation=cv2.INTER_AREA) for t in tiles]
        row = np.hstack([np.pad(t, 4, constant_values=255) for t in tiles])
        cv2.putText(row, cls.replace("_", " "), (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1, cv2.LINE_AA)
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.vstack(rows))
    print(f"wrote {args.out}: per row a master (left) and three impressions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
