"""Interchange accuracy: biomatch template -> ISO 19794-2:2005 / :2011 / ANSI 378 -> template.

Part 1 (always, needs ``../shared/datasets/fvc2002``): every FVC2002 B print (4 x 80) is
extracted with :func:`biomatch.extract.extract`, written in each standard format at 500 dpi and
at the set's native resolution (569 dpi for DB2), read back, and compared: largest coordinate
error (px at 500 dpi), angle error (deg), whether types/qualities/counts are identical, and the
largest change of match score over every genuine pair (28 per finger) and every impostor pair of
first impressions (45 per set).

Part 2 (``--peers`` / ``--peers-only``, when ``nbis`` from ``nbis-py`` is importable — install
with ``benchmarks/setup_peers.sh``): ISO 19794-2:2005 templates written by NBIS mindtct are loaded
by biomatch and matched against biomatch's own extraction of the same image, and biomatch's ISO
2005 templates are read by NBIS and compared by bozorth3 with NBIS's own (see :func:`peers`).

Measured (2026-11-29): coordinates exact at 500 dpi and within 0.44 px when written at 569 dpi;
angles within 0.703 deg (ISO) / 1.0 deg (ANSI); types, qualities, counts identical for all 320
prints; score change mean 0.007-0.011, max 0.054-0.159 per set and format, 0-3 of 325 decisions
flipped at the FMR thresholds — the control (angles dithered +-0.7 deg, no codec) changes scores
as much (mean 0.007-0.009, max 0.070-0.129). Peers: see :func:`peers` (nbis-py 0.1.3: its ISO
2005 output needs repair and is 180 deg from ours; it cannot read conformant records).

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


def repair_nbis_py_iso2005(data: bytes, dpi: float) -> bytes:
    """nbis-py 0.1.3's ``to_iso_19794_2_2005`` is not conformant: a 22-byte record header (no view
    count, no reserved byte), resolution fields 0, and no extended-data length after the minutiae.
    biomatch refuses such records (FormatError at offset 18, "x resolution: 0 pixels/cm"); this
    benchmark repairs them explicitly so that the minutiae themselves can be compared."""
    import struct

    ppcm = int(round(dpi / 2.54))
    body = data[22:] + b"\0\0"  # the one view + an empty extended data block
    head = data[:18] + struct.pack(">HHBB", ppcm, ppcm, 1, 0)
    head = head[:8] + struct.pack(">I", len(head) + len(body)) + head[12:]
    return head + body


def _rotated(t, radians: float):
    m = t.minutiae.copy()
    m["angle"] = np.mod(m["angle"].astype(np.float64) + radians, 2 * np.pi).astype(np.float32) % np.float32(2 * np.pi)
    return type(t)(m, t.width, t.height, t.quality, t.params_hash)


def peers(datasets: Path, sets=("db1_b", "db3_b")) -> dict:
    """NBIS (nbis-py: mindtct, ISO 19794-2:2005 writer and reader, bozorth3) against biomatch.

    Foreign writer: NBIS's ISO 2005 template of each print is loaded by biomatch and matched with
    biomatch's MCC matcher against biomatch's own extraction of the same print ("same image") and
    of the other impressions of the finger (genuine) and the first impressions of the other fingers
    (impostor). Foreign reader: biomatch's ISO 2005 template is loaded by NBIS and compared with
    bozorth3 against NBIS's own template of the same print.
    """
    try:
        import nbis
    except ImportError:
        return {"nbis-py": "not installed (run benchmarks/setup_peers.sh)"}
    from biomatch.extract import extract
    from biomatch.match import SCORE_AT_FMR, FingerprintMatcher
    from biomatch.errors import FormatError
    from biomatch.template import dump, load

    out = {}
    for name in sets:
        dpi = SETS[name]
        paths = sorted((datasets / "fvc2002" / name).glob("*.tif"))
        if not paths:
            continue
        settings = nbis.NbisExtractorSettings(min_quality=0.0, get_center=False, check_fingerprint=False,
                                              compute_nfiq2=False, ppi=float(dpi))
        ex = nbis.new_nbis_extractor(settings)
        ours, foreign, foreign_native = {}, {}, {}
        for p in paths:
            ours[p.stem] = extract(p, dpi)
            t = ex.extract_minutiae_from_image_file(str(p))
            foreign_native[p.stem] = t
            raw = t.to_iso_19794_2_2005()
            try:
                foreign[p.stem] = load(raw)
                repaired = False
            except FormatError:
                foreign[p.stem] = load(repair_nbis_py_iso2005(raw, dpi))
                repaired = True
        thr = SCORE_AT_FMR[0.001]
        same = [FingerprintMatcher(foreign[k]).match(ours[k]) for k in ours]
        # diagnosis: the same comparison with the foreign angles turned by 180 degrees
        same_180 = [FingerprintMatcher(_rotated(foreign[k], np.pi)).match(ours[k]) for k in ours]
        fingers = sorted({k.split("_")[0] for k in ours})
        gen = [FingerprintMatcher(foreign[f"{f}_{i}"]).match(ours[f"{f}_{j}"])
               for f in fingers for i, j in itertools.permutations(range(1, 9), 2)]
        imp = [FingerprintMatcher(foreign[f"{a}_1"]).match(ours[f"{b}_1"])
               for a, b in itertools.permutations(fingers, 2)]
        ours_gen = [FingerprintMatcher(ours[f"{f}_{i}"]).match(ours[f"{f}_{j}"])
                    for f in fingers for i, j in itertools.combinations(range(1, 9), 2)]
        # NBIS reading our ISO 2005 and bozorth3 against its own template of the same image
        rd = ex  # any extractor loads ISO; bozorth3 compares
        back = [rd.load_iso_19794_2_2005(dump(ours[k], "iso19794-2:2005", dpi=dpi)) for k in ours]
        bz_same = [foreign_native[k].compare(b) for k, b in zip(ours, back)]
        bz_self = [foreign_native[k].compare(foreign_native[k]) for k in ours]
        bz_imp = [foreign_native[f"{a}_1"].compare(rd.load_iso_19794_2_2005(dump(ours[f"{b}_1"], "iso19794-2:2005",
                                                                                      dpi=dpi)))
                  for a, b in itertools.permutations(fingers, 2)]
        out[name] = {
            "nbis_iso2005_read_by_biomatch": {
                "needed_repair": repaired,
                "same_image_median": round(float(np.median(same)), 4),
                "same_image_median_if_angles_turned_180": round(float(np.median(same_180)), 4),
                "same_image_above_fmr1e-3": f"{sum(s >= thr for s in same)}/{len(same)}",
                "genuine_median": round(float(np.median(gen)), 4),
                "genuine_above_fmr1e-3": f"{sum(s >= thr for s in gen)}/{len(gen)}",
                "impostor_max": round(float(max(imp)), 4),
                "impostor_above_fmr1e-3": f"{sum(s >= thr for s in imp)}/{len(imp)}",
                "ours_vs_ours_genuine_median": round(float(np.median(ours_gen)), 4)},
            "biomatch_iso2005_read_by_nbis_bozorth3": {
                "same_image_median": float(np.median(bz_same)),
                "same_image_min": float(min(bz_same)),
                "nbis_self_median": float(np.median(bz_self)),
                "impostor_max": float(max(bz_imp)),
                "same_image_at_or_above_40": f"{sum(s >= 40 for s in bz_same)}/{len(bz_same)}"},
        }
        print(name, json.dumps(out[name]), flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--peers", action="store_true")
    ap.add_argument("--peers-only", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = {} if args.peers_only else {"roundtrip": roundtrip(args.datasets)}
    if args.peers or args.peers_only:
        result["peers"] = peers(args.datasets)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result.get("peers", {}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
