"""Single-thread and multi-thread throughput of FingerprintMatcher.match_many.

Synthetic templates of 30/45/60 minutiae (random points >= 10 px apart in a 400 px
square, the density of a 500 dpi print), and with ``--fvc`` the templates our
extractor gives for a folder of FVC images.  CPU time via time.process_time; the
median of repeated runs is printed, for the kernel chosen at run time (AVX-512
VPOPCNTDQ when the CPU has it) and, with ``--portable``, for the portable one too.

    .venv/bin/python benchmarks/bench_match_speed.py [--repeats 5] [--gallery 4000]
        [--fvc ../shared/datasets/fvc2002/db1_b --dpi 500] [--portable]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import time

import numpy as np

from biomatch import _native
from biomatch.match import FingerprintMatcher, prepare
from biomatch.params import MatchParams
from biomatch.template import Template


def random_template(rng, n, size=400):
    pts = []
    while len(pts) < n:
        p = rng.uniform(20, size - 20, 2)
        if all(np.hypot(*(p - q)) > 10 for q in pts):
            pts.append(p)
    pts = np.array(pts)
    return Template.from_arrays(pts[:, 0], pts[:, 1], rng.uniform(0, 2 * np.pi, n), width=size, height=size)


def throughput(label, templates, args):
    """All-against-all comparisons of the templates, each probe against the gallery."""
    t0 = time.process_time()
    prepared = [prepare(t) for t in templates]
    prep_ms = (time.process_time() - t0) / len(templates) * 1e3
    gallery = (prepared * (args.gallery // len(prepared) + 1))[: args.gallery]
    matchers = [FingerprintMatcher(p) for p in prepared]
    cfg = _native.Config(dataclasses.asdict(MatchParams()), kernel="portable")
    natives = [p._native for p in gallery]
    matchers[0].match_many(gallery[:100])  # warm-up
    rates = {"one": [], "two": [], "portable": []}
    step = max(1, len(prepared) // 10)  # 10 probes per repeat, spread over the set
    for r in range(args.repeats):
        probes = range(r % step, len(prepared), step)
        t0 = time.process_time()
        for i in probes:
            matchers[i].match_many(gallery, n_threads=1)
        rates["one"].append(len(probes) * len(gallery) / (time.process_time() - t0))
        t0 = time.perf_counter()
        for i in probes:
            matchers[i].match_many(gallery, n_threads=2)
        rates["two"].append(len(probes) * len(gallery) / (time.perf_counter() - t0))
        if args.portable:  # the same comparisons through the portable kernel (native API)
            t0 = time.process_time()
            for i in probes:
                _native.match_many(cfg, prepared[i]._native, natives, 1)
            rates["portable"].append(len(probes) * len(gallery) / (time.process_time() - t0))
    row = f"{label:>12} {prep_ms:>10.2f} {np.median(rates['one']):>15,.0f} {np.median(rates['two']):>23,.0f}"
    if args.portable:
        row += f" {np.median(rates['portable']):>17,.0f}"
    print(row, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gallery", type=int, default=2000)
    ap.add_argument("--fvc", help="folder of FVC images to extract and match as well")
    ap.add_argument("--dpi", type=float, default=500)
    ap.add_argument("--portable", action="store_true", help="also time the portable popcount kernel")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"kernel: {_native.popcount_kernel}")
    print(f"{'minutiae':>12} {'prepare ms':>10} {'1 thread cmp/s':>15} {'2 threads cmp/s (wall)':>23}"
          + (f" {'portable 1 thread':>17}" if args.portable else ""))
    for n in (30, 45, 60):
        throughput(str(n), [random_template(rng, n) for _ in range(50)], args)
    if args.fvc:
        from biomatch.extract import extract

        paths = sorted(glob.glob(os.path.join(args.fvc, "*.tif")))
        templates = [t for t in (extract(p, args.dpi) for p in paths) if len(t) >= 4]
        mean = np.mean([len(t) for t in templates])
        throughput(f"{os.path.basename(args.fvc.rstrip('/'))} ({mean:.0f})", templates, args)


if __name__ == "__main__":
    main()
