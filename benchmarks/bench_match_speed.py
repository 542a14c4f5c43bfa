"""Single-thread and multi-thread throughput of the native matcher (match_many), per kernel.

Synthetic templates of 30/45/60 minutiae (random points >= 10 px apart in a 400 px
square, the density of a 500 dpi print), and with ``--fvc`` the templates our
extractor gives for a folder of FVC images.  CPU time via time.process_time; the
median of repeated runs is printed, for the kernel chosen at run time (the fastest this
CPU runs, or BIOMATCH_KERNEL) and, with ``--kernels all``, for every kernel the CPU runs.

    .venv/bin/python benchmarks/bench_match_speed.py [--repeats 5] [--gallery 4000]
        [--fvc ../shared/datasets/fvc2002/db1_b --dpi 500] [--cache /tmp/db1_b.pkl] [--sizes 30,60] [--one-thread]
        [--kernels all|portable,avx2,...] [--native /tmp/main-build/_avx512.cpython-311-x86_64-linux-gnu.so]

``--native`` times one kernel module of another build (e.g. main's, copied from its ``build/``
folder) instead of the installed ones: on a shared machine, compare two builds by alternating
processes, one build per process (two builds of one kernel cannot share a process: they register
the same nanobind types).  ``--cache`` keeps the extracted FVC templates in a pickle (mode 0600:
templates are personal data), so that alternated runs time the same templates without extracting.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib.util
import os
import pickle
import time
from pathlib import Path

import numpy as np

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


def load_module(path):
    """The kernel module built at ``path`` alone (its file name gives its PyInit_ name)."""
    spec = importlib.util.spec_from_file_location(Path(path).name.split(".")[0], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def throughput(label, mod, templates, args):
    """All-against-all comparisons of the templates through one kernel's module, each probe
    against the gallery; one row of the table."""
    kernel = mod.kernel
    cfg = mod.Config(dataclasses.asdict(MatchParams()))
    arrays = [(t.as_float_array(), t.orientation_grid) for t in templates]
    prepared = [mod.prepare(cfg, xyaq, grid) for xyaq, grid in arrays]  # warm-up
    prep_us = []
    for _ in range(args.repeats):
        t0 = time.process_time()
        for xyaq, grid in arrays:
            mod.prepare(cfg, xyaq, grid)
        prep_us.append((time.process_time() - t0) / len(arrays) * 1e6)
    gallery = (prepared * (args.gallery // len(prepared) + 1))[: args.gallery]
    mod.match_many(cfg, prepared[0], gallery[:100], 1)  # warm-up
    rates = {"one": [], "two": []}
    step = max(1, len(prepared) // 10)  # 10 probes per repeat, spread over the set
    for r in range(args.repeats):
        probes = range(r % step, len(prepared), step)
        t0 = time.process_time()
        for i in probes:
            mod.match_many(cfg, prepared[i], gallery, 1)
        rates["one"].append(len(probes) * len(gallery) / (time.process_time() - t0))
        if args.one_thread:
            rates["two"].append(np.nan)
            continue
        t0 = time.perf_counter()
        for i in probes:
            mod.match_many(cfg, prepared[i], gallery, 2)
        rates["two"].append(len(probes) * len(gallery) / (time.perf_counter() - t0))
    print(f"{kernel:>8} {label:>12} {np.median(prep_us):>10.0f} {np.median(rates['one']):>15,.0f} "
          f"{np.median(rates['two']):>23,.0f}", flush=True)


def fvc_templates(folder, dpi, cache):
    """Our extractor's templates (>= 4 minutiae) of a folder of FVC images, from ``cache`` when it exists."""
    if cache and os.path.exists(cache):
        with open(cache, "rb") as f:
            return pickle.load(f)
    from biomatch.extract import extract

    paths = sorted(glob.glob(os.path.join(folder, "*.tif")))
    templates = [t for t in (extract(p, dpi) for p in paths) if len(t) >= 4]
    if cache:
        with os.fdopen(os.open(cache, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            pickle.dump(templates, f)
    return templates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gallery", type=int, default=2000)
    ap.add_argument("--fvc", help="folder of FVC images to extract and match as well")
    ap.add_argument("--dpi", type=float, default=500)
    ap.add_argument("--cache", help="pickle of the --fvc templates (written when missing)")
    ap.add_argument("--sizes", default="30,45,60",
                    help="generated sets to time: 30, 45 and/or 60 minutiae, comma-separated ('' for none)")
    ap.add_argument("--one-thread", action="store_true", help="time one thread only (A/B runs on a shared machine)")
    ap.add_argument("--kernels", default=None,
                    help="comma-separated kernels to time, or 'all' the CPU runs (default: the one in use)")
    ap.add_argument("--native", help="path of one kernel module of another build to time instead (see above)")
    args = ap.parse_args()
    if args.native:
        modules = [load_module(args.native)]
        print(f"kernel: {modules[0].kernel} ({args.native})")
    else:
        from biomatch import _native

        kernels = (list(_native.available_kernels()) if args.kernels == "all"
                   else args.kernels.split(",") if args.kernels else [_native.kernel])
        modules = [_native.load_kernel(k) for k in kernels]
        print(f"kernel: {_native.kernel} (this CPU runs {', '.join(_native.available_kernels())})")
    sets = []
    rng = np.random.default_rng(0)
    sizes = [int(v) for v in args.sizes.split(",") if v]
    for n in (30, 45, 60):  # always drawn in this order: the same templates whichever are timed
        generated = [random_template(rng, n) for _ in range(50)]
        if n in sizes:
            sets.append((str(n), generated))
    if args.fvc:
        templates = fvc_templates(args.fvc, args.dpi, args.cache)
        mean = np.mean([len(t) for t in templates])
        sets.append((f"{os.path.basename(args.fvc.rstrip('/'))} ({mean:.0f})", templates))
    print(f"{'kernel':>8} {'minutiae':>12} {'prepare us':>10} {'1 thread cmp/s':>15} {'2 threads cmp/s (wall)':>23}")
    for mod in modules:
        for label, templates in sets:
            throughput(label, mod, templates, args)


if __name__ == "__main__":
    main()
