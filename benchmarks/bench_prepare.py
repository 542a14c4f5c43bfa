"""CPU time of ``prepare`` (cylinder construction) per template, on real FVC templates.

Extracts the templates of a folder of FVC images once (``--cache`` keeps them in a pickle),
then times the native ``prepare`` per template (median over ``--repeats`` rounds of 10 calls,
time.process_time, one thread) and the Python entry :func:`biomatch.match.prepare` (which adds
the argument conversion).  Prints the median over all templates and over those of 34-38
minutiae (issue 16's target: at most 100 us at 36 minutiae).  ``--generated 40,60`` also times
registry-like generated templates (:data:`biomatch.datasets.synthetic.REGISTRY_POPULATION`, the
minutiae layout of a real registry's prints; cost grows with the square of the minutia count) of
40 and 60 minutiae (+-2), 80 of each.  The machine is shared and noisy: compare builds by
alternating runs (``--native`` loads another build of the module).

    .venv/bin/python benchmarks/bench_prepare.py [--fvc ../shared/datasets/fvc2002/db1_b --dpi 500]
        [--repeats 10] [--cache /tmp/db1_b.pkl] [--generated 40,60]
        [--native /tmp/old/_avx512.cpython-311-x86_64-linux-gnu.so]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib.util
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("BIOMATCH_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


def load_native(path: str | None):
    """The native module: ``biomatch._native`` (the kernel it selects), or, when ``path`` is given,
    the kernel module built at that path alone (e.g. ``build/.../_avx512.cpython-311-x86_64-linux-gnu.so``
    of another checkout).  Never both in one process: two builds of one kernel share a nanobind
    domain, and the second's types would be taken for the first's (a crash when their layout differs)."""
    if not path:
        import biomatch._native as native

        return native
    name = Path(path).name.split(".")[0]  # _portable, _avx2 or _avx512: its PyInit_ name
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def templates(folder: str, dpi: float, cache: str | None) -> list:
    if cache and os.path.exists(cache):
        with open(cache, "rb") as f:
            return pickle.load(f)
    import cv2

    from biomatch.extract import extract

    out = [extract(cv2.imread(p, 0), dpi=dpi) for p in sorted(glob.glob(os.path.join(folder, "*.tif")))]
    if cache:
        with open(cache, "wb") as f:
            pickle.dump(out, f)
    return out


def generated(minutiae: int, count: int = 80) -> list:
    """``count`` registry-like generated templates of ``minutiae`` +- 2 minutiae (the same ones on
    every run: the finger seeds are drawn in order)."""
    from biomatch.datasets.synthetic import REGISTRY_POPULATION, template_impressions

    out, seed = [], 1000
    while len(out) < count:
        t = template_impressions(seed, 1, REGISTRY_POPULATION)[0]
        if abs(len(t) - minutiae) <= 2:
            out.append(t)
        seed += 1
    return out


def time_native(native, cfg, tm: list, repeats: int) -> np.ndarray:
    """Median CPU time per template, us, of the native ``prepare`` (``repeats`` rounds of 10 calls)."""
    inputs = [(np.ascontiguousarray(t.as_float_array(), dtype=np.float32), t.orientation_grid) for t in tm]
    per = np.zeros((repeats, len(tm)))
    for r in range(repeats):
        for i, (xyaq, grid) in enumerate(inputs):
            t0 = time.process_time()
            for _ in range(10):
                native.prepare(cfg, xyaq, grid)
            per[r, i] = (time.process_time() - t0) / 10
    return np.median(per, axis=0) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fvc", default=str(DATA / "fvc2002" / "db1_b"))
    ap.add_argument("--dpi", type=float, default=500)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--cache", help="pickle of the extracted templates (written when missing)")
    ap.add_argument("--native", help="path of another build of a kernel module (_portable/_avx2/_avx512) to time")
    ap.add_argument("--generated", default="", help="also registry-like generated templates of these minutia counts "
                    "(comma-separated, e.g. 40,60)")
    args = ap.parse_args()
    from biomatch.params import MatchParams

    native = load_native(args.native)
    tm = templates(args.fvc, args.dpi, args.cache)
    if args.native and "biomatch._native" in sys.modules:
        sys.exit("--native: the extraction loaded biomatch._native; run once without --native to write --cache")
    cfg = native.Config(dataclasses.asdict(MatchParams()))
    sizes = np.array([len(t) for t in tm])
    native_us = time_native(native, cfg, tm, args.repeats)
    gen = {int(m): time_native(native, cfg, generated(int(m)), args.repeats)
           for m in args.generated.split(",") if m.strip()}
    py_us = None
    if not args.native:  # the Python entry runs on the installed module only
        from biomatch.match import prepare

        py = np.zeros((args.repeats, len(tm)))
        for r in range(args.repeats):
            for i, t in enumerate(tm):
                t0 = time.process_time()
                prepare(t)
                py[r, i] = time.process_time() - t0
        py_us = np.median(py, axis=0) * 1e6
    near36 = np.abs(sizes - 36) <= 2
    print(f"kernel: {native.kernel}{' (' + args.native + ')' if args.native else ''}")
    print(f"templates: {len(tm)} ({args.fvc}), minutiae median {np.median(sizes):.0f}, mean {sizes.mean():.1f}")
    print(f"native prepare: median {np.median(native_us):.1f} us, mean {native_us.mean():.1f} us; "
          f"34-38 minutiae ({near36.sum()}): median {np.median(native_us[near36]):.1f} us")
    for m, us in gen.items():
        print(f"native prepare, {len(us)} generated registry-like templates of {m} +- 2 minutiae: "
              f"median {np.median(us):.1f} us, mean {us.mean():.1f} us")
    if py_us is not None:
        print(f"biomatch.match.prepare: median {np.median(py_us):.1f} us; "
              f"34-38 minutiae: median {np.median(py_us[near36]):.1f} us")


if __name__ == "__main__":
    main()
