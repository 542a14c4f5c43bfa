"""The extractor's minutiae against the ground truth of generated impressions.

A minutia is found when an extracted one lies within 10 px and 20 degrees (one-to-one,
greedy by distance).  Prints precision and recall over N impressions, and the FVC-protocol
accuracy of biomatch on a generated FVC-layout set.

    .venv/bin/python benchmarks/synthetic_extraction.py [--impressions 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def paired(gt: np.ndarray, m: np.ndarray, max_dist_px: float, max_angle_deg: float) -> int:
    """Number of ground-truth minutiae paired one-to-one with an extracted one."""
    if len(gt) == 0 or len(m) == 0:
        return 0
    d = np.hypot(gt[:, None, 0] - m["x"][None], gt[:, None, 1] - m["y"][None])
    da = np.abs(np.angle(np.exp(1j * (gt[:, None, 2] - m["angle"][None]))))
    ok = (d <= max_dist_px) & (da <= np.deg2rad(max_angle_deg))
    used: set[int] = set()
    n = 0
    for i in np.argsort(d.min(axis=1)):
        for j in np.argsort(d[i]):
            if ok[i, j] and j not in used:
                used.add(int(j))
                n += 1
                break
    return n


def main() -> int:
    from biomatch.datasets.synthetic import impression, master, write_fvc
    from biomatch.evaluate.fvc import run_fvc
    from biomatch.extract import extract

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impressions", type=int, default=200)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    tp = n_pred = n_gt = 0
    t0 = time.process_time()
    per_finger = 4
    for f in range((args.impressions + per_finger - 1) // per_finger):
        mp = master(args.seed * 1000 + f)
        for i in range(per_finger):
            imp = impression(mp, (args.seed * 1000 + f) * 17 + i)
            t = extract(imp.image, 500)
            tp += paired(imp.minutiae, t.minutiae, 10.0, 20.0)
            n_pred += len(t)
            n_gt += len(imp.minutiae)
    cpu = time.process_time() - t0
    print(f"minutiae vs ground truth, {args.impressions} generated impressions (10 px, 20 deg):")
    print(f"  precision {tp / max(n_pred, 1):.3f}   recall {tp / max(n_gt, 1):.3f}   "
          f"({n_pred / args.impressions:.1f} extracted, {n_gt / args.impressions:.1f} true per image; "
          f"{cpu:.0f} s CPU incl. generation)")
    with tempfile.TemporaryDirectory() as tmp:
        write_fvc(tmp, 10, 8, args.seed)
        r = run_fvc(tmp, 500).summary()
    print(f"FVC protocol on a generated 10 x 8 set: EER {100 * r['eer']:.2f}%  FMR100 {100 * r['fmr100']:.2f}%  "
          f"FMR1000 {100 * r['fmr1000']:.2f}%  ZeroFMR {100 * r['zerofmr']:.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
