"""Interchange accuracy: biomatch template -> ISO 19794-2:2005 / :2011 / ANSI 378 -> template.

Part 1 (always, needs ``../shared/datasets/fvc2002``): every FVC2002 B print (4 x 80) is
extracted with :func:`biomatch.extract.extract`, written in each standard format at 500 dpi and
at the set's native resolution (569 dpi for DB2), read back, and compared: largest coordinate
error (px at 500 dpi), angle error (deg), whether types/qualities/counts are identical, and the
largest change of match score over every genuine pair (28 per finger) and every impostor pair of
first impressions (45 per set).

Part 2 (``--peers``, when ``nbis`` from ``nbis-py`` is importable — install with
``benchmarks/setup_peers.sh``): ISO 19794-2:2011 templates written by NBIS mindtct are loaded by
biomatch and matched against biomatch's own extraction of the same image, and biomatch's ISO
templates are given back to the peer's reader when it has one.

Usage::

    .venv/bin/python benchmarks/interop.py [--datasets ../shared/datasets] [--peers] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SETS = {"db1_b": 500, "db2_b": 569, "db3_b": 500, "db4_b": 500}
FORMATS = ("iso19794-2:2005", "iso19794-2:2011", "ansi378")


def _angle_diff_deg(a, b):
    return np.degrees(np.abs((a - b + np.pi) % (2 * np.pi) - np.pi))


def roundtrip(datasets: Path) -> dict:
    from biomatch.extract import extract
    from biomatch.match import SCORE_AT_FMR, FingerprintMatcher
    from biomatch.template import dump, load

    out = {}
    for name, dpi in SETS.items():
        folder = datasets / "fvc2002" / name
        paths = sorted(folder.glob("*.tif"))
        if not paths:
            continue
        orig = {p.stem: extract(p, dpi) for p in paths}
        fingers = sorted({k.split("_")[0] for k in orig})
        pairs = [(f"{f}_{i}", f"{f}_{j}") for f in fingers for i, j in itertools.combinations(range(1, 9), 2)]
        pairs += [(f"{a}_1", f"{b}_1") for a, b in itertools.combinations(fingers, 2)]
        base = {pair: FingerprintMatcher(orig[pair[0]]).match(orig[pair[1]]) for pair in pairs}
        for fmt, write_dpi in itertools.product(FORMATS, sorted({500, dpi})):
            key = f"{name}/{fmt}@{write_dpi}"
            back = {k: load(dump(t, fmt, dpi=write_dpi)) for k, t in orig.items()}
            dxy = da = 0.0
            same = True
            for k, t in orig.items():
                u = back[k]
                same &= len(u) == len(t) and bool(np.all(u.minutiae["kind"] == t.minutiae["kind"])) \
                    and bool(np.all(u.minutiae["quality"] == t.minutiae["quality"])) and u.quality == t.quality
                if len(t):
                    dxy = max(dxy, float(np.abs(u.minutiae["x"] - t.minutiae["x"]).max()),
                              float(np.abs(u.minutiae["y"] - t.minutiae["y"]).max()))
                    da = max(da, float(_angle_diff_deg(u.minutiae["angle"], t.minutiae["angle"]).max()))
            new = {(a, b): FingerprintMatcher(back[a]).match(back[b]) for a, b in pairs}
            ds = [abs(new[p] - base[p]) for p in pairs]
            genuine = [p for p in pairs if p[0].split("_")[0] == p[1].split("_")[0]]
            flips = {str(fmr): sum((base[p] >= thr) != (new[p] >= thr) for p in pairs)
                     for fmr, thr in SCORE_AT_FMR.items() if thr is not None}
            out[key] = {"prints": len(orig), "pairs": len(pairs), "max_coord_err_px": round(dxy, 3),
                        "max_angle_err_deg": round(da, 3), "types_qualities_counts_equal": same,
                        "max_score_change": round(float(max(ds)), 4),
                        "mean_score_change": round(float(np.mean(ds)), 5),
                        "max_score_change_impostor": round(max(abs(new[p] - base[p]) for p in pairs
                                                               if p not in set(genuine)), 4),
                        "max_relative_change_genuine": round(max(abs(new[p] - base[p]) / max(base[p], 1e-9)
                                                                 for p in genuine), 3),
                        "decision_flips_at_fmr": flips}
            print(key, out[key], flush=True)
        rng = np.random.default_rng(0)
        dith = {}
        for k, t in orig.items():
            m = t.minutiae.copy()
            m["angle"] = np.mod(m["angle"] + rng.uniform(-0.5, 0.5, len(m)) * (2 * np.pi / 256), 2 * np.pi)
            dith[k] = type(t)(m, t.width, t.height, t.quality, t.params_hash)
        ds = [abs(FingerprintMatcher(dith[a]).match(dith[b]) - base[(a, b)]) for a, b in pairs]
        out[f"{name}/control: random angle dither of +-0.70 deg, no codec"] = {
            "max_score_change": round(float(max(ds)), 4), "mean_score_change": round(float(np.mean(ds)), 5)}
        print(name, "control", out[f"{name}/control: random angle dither of +-0.70 deg, no codec"], flush=True)
    return out


def peers(datasets: Path) -> dict:
    """Foreign ISO 2011 templates (NBIS mindtct via nbis-py) against our extraction of the same image."""
    try:
        import nbis  # noqa: F401
    except ImportError:
        return {"nbis": "not installed (run benchmarks/setup_peers.sh)"}
    return {"nbis": "installed, but no ISO writer wired in this benchmark yet"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--peers", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = {"roundtrip": roundtrip(args.datasets)}
    if args.peers:
        result["peers"] = peers(args.datasets)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result.get("peers", {}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
