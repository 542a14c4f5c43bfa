"""Single-thread and multi-thread throughput of FingerprintMatcher.match_many.

Synthetic templates of 30/45/60 minutiae (random points >= 10 px apart in a 400 px
square, the density of a 500 dpi print).  CPU time via time.process_time; the
median of repeated runs is printed.

    .venv/bin/python benchmarks/bench_match_speed.py [--repeats 5] [--gallery 4000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from biomatch.match import FingerprintMatcher, prepare
from biomatch.template import Template


def random_template(rng, n, size=400):
    pts = []
    while len(pts) < n:
        p = rng.uniform(20, size - 20, 2)
        if all(np.hypot(*(p - q)) > 10 for q in pts):
            pts.append(p)
    pts = np.array(pts)
    return Template.from_arrays(pts[:, 0], pts[:, 1], rng.uniform(0, 2 * np.pi, n), width=size, height=size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gallery", type=int, default=4000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'minutiae':>8} {'prepare ms':>10} {'1 thread cmp/s':>15} {'2 threads cmp/s (wall)':>23}")
    for n in (30, 45, 60):
        base = [random_template(rng, n) for _ in range(50)]
        t0 = time.process_time()
        prepared = [prepare(t) for t in base]
        prep_ms = (time.process_time() - t0) / len(base) * 1e3
        gallery = (prepared * (args.gallery // len(prepared) + 1))[: args.gallery]
        matcher = FingerprintMatcher(base[0])
        matcher.match_many(gallery[:100])  # warm-up
        one, two = [], []
        for _ in range(args.repeats):
            t0 = time.process_time()
            matcher.match_many(gallery, n_threads=1)
            one.append(len(gallery) / (time.process_time() - t0))
            t0 = time.perf_counter()
            matcher.match_many(gallery, n_threads=2)
            two.append(len(gallery) / (time.perf_counter() - t0))
        print(f"{n:>8} {prep_ms:>10.2f} {np.median(one):>15,.0f} {np.median(two):>23,.0f}")


if __name__ == "__main__":
    main()
