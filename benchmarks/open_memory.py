"""RAM per enrolment of an open gallery: RSS after ``Gallery.open``, then with the mapped codes paged in.

    .venv/bin/python benchmarks/open_memory.py GALLERY [--writable]

Opens read-only by default (nothing is written unless the index disagrees with the store and is
rebuilt); ``--writable`` saves an index of an older format in the current one at the close.
Measured as ``benchmarks/dedup_scale.py`` does (RSS before and after the open, then after one
search per position has touched every code), without its build and searches, so that a copy
of a large gallery can be measured by two versions in turn.  Numbers in the README ("Memory
per enrolment").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dedup_scale import rss_bytes  # noqa: E402  (measured the same way as there)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gallery", type=Path)
    ap.add_argument("--writable", action="store_true")
    args = ap.parse_args()
    import faiss

    from biomatch.dedup import Gallery

    faiss.omp_set_num_threads(1)
    r0 = rss_bytes()
    t = time.perf_counter()
    g = Gallery.open(args.gallery, read_only=not args.writable)
    open_s = time.perf_counter() - t
    r1 = rss_bytes()
    st = g.stats()
    n = max(st["subjects"], 1)
    for shard in g._shards:
        for ix in getattr(shard._retrieval, "_index", {}).values():
            ix.search(np.zeros(ix.n_bytes, np.uint8), 1)
    r2 = rss_bytes()
    print(f"{args.gallery}: {st['subjects']} enrolments; open {open_s:.1f} s; RSS +{(r1 - r0) / n:.0f} B per enrolment "
          f"after open, +{(r2 - r0) / n:.0f} B with codes paged in; gallery's own count {st['memory_bytes'] / n:.0f} B; "
          f"index rebuilt at open: {any(s.index_rebuilt for s in g._shards)}")
    g.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
