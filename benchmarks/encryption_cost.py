"""What encryption at rest costs: bulk load, enrolment and dedup latency, with and without it.

    .venv/bin/python benchmarks/encryption_cost.py [--persons 3000] [--trials 60] [--keep DIR]

Two galleries of the same ``--persons`` generated ten-finger persons
(:func:`biomatch.datasets.synthetic.person_impressions`, impression 0, bulk-loaded), one plain
and one encrypted (AES-256-GCM, :mod:`biomatch.dedup.encryption`).  Then, alternating between
the two galleries so that the machine's noise falls on both alike:

* enrolment: ``--trials`` new persons, each deduplicated then committed (``Gallery.enroll``);
* dedup: ``--trials`` mated probes (impression 1 of enrolled persons), read only, with a COLD
  cache of prepared templates (``cache_bytes=0``): every candidate template is read from the
  store and decrypted, the worst case for encryption;
* the store read of the candidate path alone: ``templates_by_ids`` of 300 finger ids.

Prints a table of medians and p90s, and the overhead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _record(person: int, impression: int, sid: str | None = None):
    from biomatch.datasets.synthetic import person_impressions
    from biomatch.dedup import Enrolment

    fingers = {p: ts[impression] for p, ts in person_impressions(person, impression + 1).items()}
    return Enrolment(sid or f"p{person}", fingers, metadata={"name": f"person {person}"})


def _q(xs, q):
    return float(np.percentile(np.asarray(xs), q))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--persons", type=int, default=3000)
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--keep", type=Path, help="build the galleries here and keep them")
    args = ap.parse_args(argv)
    from biomatch.dedup import Gallery, KeyFile
    from biomatch.dedup.encryption import generate_key_file

    root = args.keep or Path(tempfile.mkdtemp(prefix="enc-cost-"))
    root.mkdir(parents=True, exist_ok=True)
    key_path = root / "kek"
    if not key_path.exists():
        generate_key_file(key_path)
    key = KeyFile(key_path)
    t0 = time.perf_counter()
    backlog = [_record(i, 0) for i in range(args.persons)]
    print(f"# generated {args.persons} persons in {time.perf_counter() - t0:.0f} s", flush=True)
    rows, load = {}, {}
    for name, k in (("plain", None), ("encrypted", key)):
        path = root / name
        if path.exists():
            shutil.rmtree(path)
        t0 = time.perf_counter()
        with Gallery.create(path, key=k) as g:
            g.bulk_enroll(backlog, batch_size=1000)
        load[name] = time.perf_counter() - t0
    del backlog
    galleries = {"plain": Gallery.open(root / "plain", cache_bytes=0),
                 "encrypted": Gallery.open(root / "encrypted", key=key, cache_bytes=0)}
    try:
        for g in galleries.values():  # warm-up: numba, the native kernels, page cache
            g.deduplicate(_record(0, 1, "warm"))
        enrol = {n: [] for n in galleries}
        dedup = {n: [] for n in galleries}
        read300 = {n: [] for n in galleries}
        rng = np.random.default_rng(5)
        hits = 0
        for t in range(args.trials):
            new = _record(10_000_000 + t, 0)
            probe = _record(int(rng.integers(args.persons)), 1, "probe")
            order = list(galleries.items()) if t % 2 == 0 else list(reversed(galleries.items()))
            answers = {}
            for name, g in order:
                t0 = time.perf_counter()
                rep = g.enroll(new)
                enrol[name].append((time.perf_counter() - t0) * 1e3)
                answers[name + " enrol"] = rep.decision
                t0 = time.perf_counter()
                rep = g.deduplicate(probe)
                dedup[name].append((time.perf_counter() - t0) * 1e3)
                answers[name] = (rep.decision, [(c.subject_id, round(c.score, 6)) for c in rep.candidates])
                store = g._shards[0]._store
                ids = rng.choice(np.arange(1, args.persons * 10), 300, replace=False).tolist()
                t0 = time.perf_counter()
                store.templates_by_ids(ids)
                read300[name].append((time.perf_counter() - t0) * 1e3)
            assert answers["plain"] == answers["encrypted"] and answers["plain enrol"] == answers["encrypted enrol"], \
                answers  # encryption changes no answer
            hits += answers["plain"][0] == "DUPLICATE"
        disk = {n: g.stats()["disk_bytes"] for n, g in galleries.items()}
    finally:
        for g in galleries.values():
            g.close()
    print(f"\n{args.persons} persons (10 fingers each, bulk-loaded), {args.trials} trials per row, "
          f"alternating galleries; cold template cache; {os.cpu_count()} CPUs; the same decisions, candidates "
          f"and scores in both ({hits}/{args.trials} mated probes DUPLICATE)\n")
    print(f"{'':44s} {'plain':>14s} {'encrypted':>14s} {'overhead':>10s}")
    rows = [("bulk load, s (whole backlog)", {n: [v] for n, v in load.items()}),
            ("enrol (dedup + commit), ms median", enrol), ("dedup, mated probe, ms median", dedup),
            ("store read of 300 candidate templates, ms", read300)]
    for label, d in rows:
        p, e = statistics.median(d["plain"]), statistics.median(d["encrypted"])
        print(f"{label:44s} {p:14.2f} {e:14.2f} {100 * (e - p) / p:+9.1f}%")
    for label, d in (("enrol, ms p90", enrol), ("dedup, ms p90", dedup)):
        p, e = _q(d["plain"], 90), _q(d["encrypted"], 90)
        print(f"{label:44s} {p:14.2f} {e:14.2f} {100 * (e - p) / p:+9.1f}%")
    print(f"{'disk, bytes per person':44s} {disk['plain'] / args.persons:14.0f} "
          f"{disk['encrypted'] / args.persons:14.0f} {100 * (disk['encrypted'] - disk['plain']) / disk['plain']:+9.1f}%")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
