""""Who looked up this citizen": the audit log's index by subject id against a scan of the log.

    .venv/bin/python benchmarks/audit_index.py [--entries 1000000] [--subjects 100000] [--queries 200]
                                               [--scans 5] [--keep DIR]

Writes an audit log of ``--entries`` chained entries as the service writes them (canonical
JSON, ``seq``/``prev``/``hash``; shaped like the service's: operation, key id, client, request id,
status, and 1 to 3 subject ids drawn from ``--subjects``, so each subject is named by ~20
entries at the defaults) -- generated directly, not through ``AuditLog.append``, which would
fsync each line.  Then:

* the first open of the log by :class:`~biomatch.service.audit.AuditLog`: the index is built
  from the log (what the first start of a service with the index does on an older log);
* ``--queries`` lookups of random subjects through the index (``entries_for``, limit 100),
  alternating with ``--scans`` linear scans of the same query (``scan_entries_for``, what
  ``entries_for`` did before the index); the answers are compared;
* a reopen (index up to date: the catch-up reads nothing), and the sizes on disk.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_log(path: Path, entries: int, subjects: int, seed: int = 0) -> None:
    from biomatch.service.audit import GENESIS, canonical, entry_hash

    rng = random.Random(seed)
    prev = GENESIS
    ops = ("deduplicate", "identify", "enrol", "verify", "subject")
    t0 = time.time()
    with open(path, "wb") as fh:
        for seq in range(1, entries + 1):
            ids = [f"CIT-{rng.randrange(subjects):08d}" for _ in range(rng.randint(1, 3))]
            entry = {"request_id": uuid.UUID(int=rng.getrandbits(128)).hex, "operation": rng.choice(ops),
                     "method": "POST", "key_id": f"{rng.randrange(40):016x}", "subject_ids": ids,
                     "decision": rng.choice(("UNIQUE", "REVIEW", "DUPLICATE", None)), "status": 200,
                     "client": "10.0.0.7", "seq": seq, "prev": prev,
                     "time_utc": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(t0 + seq))}
            entry["hash"] = entry_hash(entry)
            fh.write(canonical(entry) + b"\n")
            prev = entry["hash"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--subjects", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--scans", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="a folder to keep the log in (default: a temporary one)")
    args = ap.parse_args(argv)
    from biomatch.service.audit import AuditLog, scan_entries_for
    from biomatch.service.audit_index import INDEX_FILE

    folder = args.keep or Path(tempfile.mkdtemp(prefix="audit-index-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "audit.log"
    try:
        if not path.exists():
            t = time.perf_counter()
            write_log(path, args.entries, args.subjects)
            print(f"log written: {args.entries:,} entries, {path.stat().st_size / 2**20:.1f} MiB "
                  f"({time.perf_counter() - t:.1f} s)")
        (folder / INDEX_FILE).unlink(missing_ok=True)
        t = time.perf_counter()
        log = AuditLog(path)
        build_s = time.perf_counter() - t
        size = sum(f.stat().st_size for f in folder.glob(INDEX_FILE + "*"))  # with its WAL
        print(f"index built at first open: {build_s:.1f} s, {size / 2**20:.1f} MiB on disk")
        rng = random.Random(1)
        indexed, scanned, n_found = [], [], []
        for q in range(args.queries):
            sid = f"CIT-{rng.randrange(args.subjects):08d}"
            t = time.perf_counter()
            got = log.entries_for(sid, 100)
            indexed.append(time.perf_counter() - t)
            n_found.append(len(got))
            if q % max(1, args.queries // args.scans) == 0 and len(scanned) < args.scans:
                t = time.perf_counter()
                ref = scan_entries_for(path, sid, 100)
                scanned.append(time.perf_counter() - t)
                assert ref == got, f"index and scan differ for {sid}"
        log.close()
        t = time.perf_counter()
        AuditLog(path).close()
        reopen_s = time.perf_counter() - t
        q = statistics.quantiles(indexed, n=100)
        print(f"query through the index: median {statistics.median(indexed) * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms "
              f"({args.queries} queries, {statistics.mean(n_found):.1f} entries each on average)")
        print(f"linear scan of the log:  median {statistics.median(scanned):.2f} s ({len(scanned)} scans, "
              f"same answers)")
        print(f"speed-up: {statistics.median(scanned) / statistics.median(indexed):,.0f}x; reopen with the index "
              f"up to date: {reopen_s * 1e3:.1f} ms")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
