#!/usr/bin/env python
"""The FVC2002 report in one command: biomatch on db1_b..db4_b, with the peers on the same plots.

Steps: (1) the peers' score CSVs are exported from the benchmark cache of ``peers_fvc.py``
(``~/.cache/biomatch-bench`` or ``$BIOMATCH_BENCH_CACHE``; the peer libraries need not be
installed) into ``OUT/peer-scores/<peer>/<db>.csv``; (2) ``biomatch evaluate fvc2002 DATA
--out OUT --report --peer NAME=DIR ...`` runs biomatch (a few minutes, one thread) and writes
``OUT/report.md``, ``OUT/figures/``, ``OUT/calibration.json`` and ``OUT/<db>/scores.csv``.

Peers without cached results are left out (with a note); fill the cache with
``benchmarks/setup_peers.sh`` then ``benchmarks/peers_fvc.py --peers-only``.

Usage::

    .venv/bin/python benchmarks/fvc_report.py                        # OUT = out/fvc2002-report
    .venv/bin/python benchmarks/fvc_report.py --out /tmp/report --n-boot 2000 --seed 1
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers_fvc  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=peers_fvc.DEFAULT_DATA, help="folder holding db1_b..db4_b")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "fvc2002-report", help="report folder")
    ap.add_argument("--cache", type=Path, default=peers_fvc.DEFAULT_CACHE, help="peers_fvc.py cache folder")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    dbs = [db for db in peers_fvc.DATABASES if (args.data / db).is_dir()]
    peer_dirs: dict[str, Path] = {}
    complete: dict[str, int] = {}
    for db in dbs:
        for name, result in peers_fvc.cached_results(args.cache, args.data / db, peers_fvc.DATABASES[db]).items():
            folder = args.out / "peer-scores" / peers_fvc.slug(name)
            peers_fvc.write_scores_csv(result, folder / f"{db}.csv")
            peer_dirs[name] = folder
            complete[name] = complete.get(name, 0) + 1
    for name in [n for n, k in complete.items() if k < len(dbs)]:
        print(f"fvc_report: {name}: cached on {complete[name]} of {len(dbs)} sets only: left out", file=sys.stderr)
        del peer_dirs[name]
    if not peer_dirs:
        print(f"fvc_report: no cached peer results in {args.cache}: biomatch only "
              "(benchmarks/setup_peers.sh, then benchmarks/peers_fvc.py --peers-only)", file=sys.stderr)

    from biomatch import cli

    argv = ["evaluate", "fvc2002", str(args.data), "--out", str(args.out), "--report",
            "--n-boot", str(args.n_boot), "--seed", str(args.seed)]
    for name, folder in peer_dirs.items():
        argv += ["--peer", f"{name}={folder}"]
    if args.quiet:
        argv.append("--quiet")
    sys.argv = ["biomatch", *argv]  # the report records the command it came from
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
