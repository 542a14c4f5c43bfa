"""Enrolments per second through one writer: serial against pipelined windows, same decisions.

    .venv/bin/python benchmarks/enrol_pipeline.py [--identities 20000] [--stream 400]
        [--windows 1,8,16,32] [--threads 2] [--processes 0,2] [--keep DIR]

Builds a gallery of ``identities`` generated ten-finger persons (bulk, no dedup), then enrols
the same stream into a fresh copy of it once per window size (``Gallery.enroll_many(window=w,
n_threads=t)``, and with ``n_processes=p`` search processes for each p of ``--processes`` above 0;
window 1 is the serial path): a third of the stream returning persons (another
impression of an enrolled one), a third new persons, a third second impressions of those new
persons 1-5 records after their first (inside one window or across two).  Prints enrolments/s
(wall), per day, CPU per enrolment, and checks that no duplicate was admitted and that every
window took the serial path's decisions.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "dedup"))


def stream_records(n_gallery: int, n: int, seed: int = 7) -> tuple[list, set]:
    """The stream, and the subject ids that must end as DUPLICATE."""
    from dedup_util import make_record

    rng = np.random.default_rng(seed)
    third = n // 3
    out: list = [None] * n
    must_dup: set = set()
    slots = list(rng.permutation(n))
    # New persons and their second impression 1-5 records later.
    new = 0
    firsts = sorted(slots[:third])
    taken = set()
    pairs = []
    for at in firsts:
        later = at + int(rng.integers(1, 6))
        if later < n and later not in taken and at not in taken:
            taken.update((at, later))
            pairs.append((at, later))
    for at, later in pairs:
        person = n_gallery + 10_000 + new
        out[at] = make_record(f"new{new}", person)
        out[later] = make_record(f"twin{new}", person, 1)
        must_dup.add(f"twin{new}")
        new += 1
    rest = [i for i in range(n) if out[i] is None]
    for j, i in enumerate(rest):
        if j % 2 == 0:
            person = int(rng.integers(0, n_gallery))
            out[i] = make_record(f"back{j}", person, 1)
            must_dup.add(f"back{j}")
        else:
            out[i] = make_record(f"solo{j}", n_gallery + 50_000 + j)
    return out, must_dup


def build(path: Path, n: int) -> float:
    from dedup_util import make_record

    from biomatch.dedup import Gallery

    t0 = time.perf_counter()
    with Gallery.create(path) as g:
        g.bulk_enroll((make_record(f"g{i}", i) for i in range(n)), batch_size=2000,
                      progress=lambda done, total: print(f"  built {done}/{n}", flush=True))
    return time.perf_counter() - t0


def run(path: Path, stream: list, window: int, threads: int, processes: int) -> tuple[list, float, float]:
    """The stream enrolled; wall and CPU seconds of this process (the search processes' CPU is not
    counted: they are started before the clock, as a service keeps them)."""
    from biomatch.dedup import Gallery

    with Gallery.open(path) as g:
        g.deduplicate(stream[0])  # warm-up: indexes mapped, kernels loaded
        if processes:  # started, their gallery opened and warm, before the clock
            rec = stream[0]
            g._workers(processes).search([(rec.subject_id, g._usable(rec.fingers, "warm-up"),
                                           g.decision_params.max_candidates, rec.face)] * 2 * processes)
        t0, c0 = time.perf_counter(), time.process_time()
        out = g.enroll_many(stream, window=window, n_threads=threads, n_processes=processes, stop_on_error=False)
        return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=20000)
    ap.add_argument("--stream", type=int, default=400)
    ap.add_argument("--windows", default="1,8,16,32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--processes", default="0", help="search processes per window, comma-separated (0: threads)")
    ap.add_argument("--keep", type=Path, help="build (or reuse) the gallery here")
    args = ap.parse_args()
    import biomatch._native as native

    tmp = Path(tempfile.mkdtemp(prefix="enrol-pipeline-"))
    base = args.keep or tmp / "base"
    if not (base / "manifest.json").exists():
        print(f"building {args.identities} identities in {base} ...", flush=True)
        print(f"  build {build(base, args.identities):.0f} s", flush=True)
    stream, must_dup = stream_records(args.identities, args.stream)
    print(f"kernel {native.kernel}; gallery {args.identities}; stream {len(stream)} "
          f"({len(must_dup)} must be DUPLICATE); threads {args.threads}")
    print(f"{'window':>6} {'procs':>5} {'enrolments/s':>12} {'per day':>11} {'CPU ms/enrol':>12} {'wall ms/enrol':>13} "
          f"{'enrolled':>8} {'dup admitted':>12} {'same as serial':>14}")
    serial = None
    runs = [(w, p) for w in [int(x) for x in args.windows.split(",")]
            for p in ([0] if w == 1 else [int(x) for x in args.processes.split(",")])]
    for w, procs in runs:
        copy = tmp / f"w{w}p{procs}"
        shutil.copytree(base, copy)
        out, wall, cpu = run(copy, stream, w, args.threads, procs)
        shutil.rmtree(copy)
        decisions = [(r.decision, r.enrolled) for r in out]
        admitted = sum(1 for rec, r in zip(stream, out) if rec.subject_id in must_dup and r.enrolled)
        if serial is None:
            serial = decisions
        n = len(stream)
        print(f"{w:>6} {procs:>5} {n / wall:>12.1f} {86400 * n / wall:>11,.0f} {cpu / n * 1e3:>12.1f} "
              f"{wall / n * 1e3:>13.1f} {sum(e for _, e in decisions):>8} {admitted:>12} {str(decisions == serial):>14}",
              flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
