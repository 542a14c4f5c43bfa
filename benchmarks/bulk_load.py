"""Bulk loading speed: generated ten-finger subjects into a new gallery, before and after, RAM and disk.

    .venv/bin/python benchmarks/bulk_load.py [--n 10000,100000] [--before-python /work/main/.venv/bin/python]
        [--from-disk 10000] [--work /work/galleries/tmp-bulk]

For each N, the templates of N generated persons (impression 0 of ``finger_seed(person,
position)``, as ``benchmarks/dedup_scale.py``) are generated once and pickled under ``--work``
(generation is timed apart: it is not loading).  Each measurement is a fresh child process that
unpickles them into Enrolments IN MEMORY, then times ``Gallery.bulk_enroll`` + ``close`` (the
index saved) into a new gallery; ``before`` runs the same child with another interpreter and
checkout (``--before-python``: a venv of the tree before this change, whose bulk_enroll is the
old path).  ``--from-disk N`` also times ``biomatch gallery import`` of N subjects written as
``<subject>/<position>.bmt`` files (reading and decoding included).

Columns: enrolments/s (wall, and CPU seconds per 1,000), builder peak RSS, the gallery's memory
per enrolment after reopening (``stats()``), disk per enrolment.  Measure before and after in the
same time window: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, pickle, sys, time, resource
sys.path.insert(0, {repo!r} + "/tests/dedup")
from biomatch.dedup import Enrolment, Gallery
from biomatch.retrieval.codes import finger_codes
rows = pickle.load(open({data!r}, "rb"))
recs = [Enrolment(sid, fingers) for sid, fingers in rows]
del rows
finger_codes([recs[0].fingers[1]])  # JIT cache warm
g = Gallery.create({gallery!r})
t0, c0 = time.perf_counter(), time.process_time()
n = g.bulk_enroll(recs, batch_size={batch})
g.close()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
with Gallery.open({gallery!r}, read_only=True) as r:
    st = r.stats()
print(json.dumps({{"n": n, "wall": wall, "cpu": cpu, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "mem_per": st["memory_bytes_per_subject"], "disk": st["disk_bytes"]}}))
"""


def _generate(n: int, work: Path) -> Path:
    data = work / f"templates_{n}.pkl"
    if data.exists():
        return data
    sys.path.insert(0, str(REPO / "tests" / "dedup"))
    from dedup_util import finger_seed

    from biomatch.datasets.synthetic import template_impressions

    t0 = time.perf_counter()
    rows = [(f"s{i:08d}", {p: template_impressions(finger_seed(i, p), 1)[0] for p in range(1, 11)}) for i in range(n)]
    print(f"# generated {n} ten-finger subjects in {time.perf_counter() - t0:.0f} s (not part of loading)", flush=True)
    with open(data, "wb") as f:
        pickle.dump(rows, f, protocol=5)
    return data


def _run(python: str, repo: Path, data: Path, gallery: Path, batch: int) -> dict:
    code = _CHILD.format(repo=str(repo), data=str(data), gallery=str(gallery), batch=batch)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=str(repo), env=env)
    shutil.rmtree(gallery, ignore_errors=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _from_disk(n: int, data: Path, work: Path) -> dict:
    from biomatch.dedup import Gallery
    from biomatch.formats import save

    src = work / f"files_{n}"
    if not src.exists():
        for sid, fingers in pickle.load(open(data, "rb"))[:n]:
            d = src / sid
            d.mkdir(parents=True)
            for p, t in fingers.items():
                save(t, d / f"{p:02d}.bmt")
    gallery = work / "g-disk"
    Gallery.create(gallery).close()
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "biomatch", "gallery", "import", str(gallery), str(src), "--quiet"],
                         capture_output=True, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    wall = time.perf_counter() - t0
    shutil.rmtree(gallery, ignore_errors=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return {"n": n, "wall": wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="10000,100000", help="comma-separated subject counts")
    ap.add_argument("--before-python", help="interpreter of the tree before the change (its bulk_enroll is 'before')")
    ap.add_argument("--before-repo", type=Path, default=Path("/work/main"))
    ap.add_argument("--from-disk", type=int, default=0, help="also time `biomatch gallery import` of this many subjects")
    ap.add_argument("--batch", type=int, default=5000, help="batch size of the new path (the old one: 2000)")
    ap.add_argument("--work", type=Path, default=Path("/work/galleries/tmp-bulk"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print("| N | path | enrolments/s (wall) | CPU s per 1,000 | builder peak RSS | gallery RAM per enrolment "
          "| disk per enrolment |")
    print("|---|---|---|---|---|---|---|")
    for n in [int(x) for x in args.n.split(",")]:
        data = _generate(n, args.work)
        runs = [("after", sys.executable, REPO, args.batch)]
        if args.before_python:
            runs.insert(0, ("before", args.before_python, args.before_repo, 2000))
        for name, python, repo, batch in runs:
            r = _run(python, repo, data, args.work / f"g-{name}", batch)
            print(f"| {n:,} | {name} (in memory) | {r['n'] / r['wall']:,.0f} | {1000 * r['cpu'] / r['n']:.2f} "
                  f"| {r['peak_rss'] / 2**20:,.0f} MiB | {r['mem_per']:,.0f} B | {r['disk'] / r['n'] / 1e3:.1f} KB |",
                  flush=True)
    if args.from_disk:
        n = args.from_disk
        r = _from_disk(n, _generate(max(n, 10000), args.work), args.work)
        print(f"| {n:,} | after, `biomatch gallery import` of .bmt files (read + decode included) "
              f"| {n / r['wall']:,.0f} | | | | |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
