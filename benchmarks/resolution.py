"""The resolution check and ``dpi="auto"`` on every shared fingerprint set.

For each set at its published resolution (datasets/README.md): how many images give a ridge-period
estimate, the error of the resolution ``dpi="auto"`` would use (relative to the published one),
the ridge period at the published resolution (min / max, mm), how many correctly stated images the
check refuses (must be 0), and, for sets whose images do not all share one size, how many of the
odd-sized ones (SOCOFing's 241x298 scans at about 2.5x the scale of the rest) are refused at the
set's nominal dpi.  Then the catch rate of simulated mis-statements: every correct image stated at
0.4x, 0.5x, 2x and 2.5x its resolution (for a 500 dpi image: 200, 250, 1000, 1250 dpi).  A stated
value outside 100-2000 dpi is refused by the plain range check and not counted.

    .venv/bin/python benchmarks/resolution.py [--limit N] [--workers 2] [--timing]

``--limit N`` takes every k-th image so that at most N per set are used (SOCOFing has 10,000).
``--min-mm``, ``--max-mm``: try another accepted ridge period range (ResolutionParams).
``--timing``: CPU time of the check at the published resolution, and of whole extractions of
FVC2002 DB1_B with the check on and off (one thread).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATASETS = Path(os.environ.get("BIOMATCH_DATASETS", REPO.parent / "shared" / "datasets"))

FACTORS = (0.4, 0.5, 2.0, 2.5)
FVC = (("fvc2002/db1_b", 500.0), ("fvc2002/db2_b", 569.0), ("fvc2002/db3_b", 500.0), ("fvc2002/db4_b", 500.0))
SOCO_DPI = 165.0  # "about 165 dpi effective" (datasets/README.md)


def _jp2_ppi(data: bytes) -> float | None:
    """Capture resolution of a JP2 file (its ``resc`` box), in ppi."""
    i = data.find(b"resc")
    if i < 0 or len(data) < i + 14:
        return None
    vn, vd = int.from_bytes(data[i + 4:i + 6], "big"), int.from_bytes(data[i + 6:i + 8], "big")
    ve = int.from_bytes(data[i + 12:i + 13], "big", signed=True)
    return vn / vd * 10.0 ** ve * 0.0254 if vd else None


def shared_sets(limit: int | None) -> list[tuple[str, list[tuple[str, object, float]]]]:
    """[(set name, [(image name, path or array, published dpi)])] for every set found."""
    from biomatch.formats import an2k
    from biomatch.imaging import wsq

    sets = []

    def add(name, items):
        if items:
            step = max(1, -(-len(items) // limit)) if limit else 1
            sets.append((name, items[::step]))

    for name, dpi in FVC:
        add(name, [(p.name, p, dpi) for p in sorted((DATASETS / name).glob("*.tif"))])
    for name in ("socofing/real", "socofing/altered_hard"):
        add(name, [(p.name, p, SOCO_DPI) for p in sorted((DATASETS / name).glob("*.png"))])
    for name, pattern, dpi in (("samples/sourceafis_triple", "*.png", 500.0),
                               ("samples/nist_tenprint_1000ppi", "*.bmp", 1000.0),
                               ("samples/assorted_500ppi", "*.bmp", 500.0)):  # as datasets/README.md says
        add(name, [(p.name, p, dpi) for p in sorted((DATASETS / name).glob(pattern))])
    folder = DATASETS / "samples/nist_libbiomeval"
    items = []
    for p in sorted(folder.glob("*.an2k")):
        for pos, f in sorted(an2k.read_enrolment(p).fingers.items()):
            items.append((f"{p.name}#{pos}", f.pixels, float(f.ppi)))
    if (folder / "img.jp2").exists():
        items.append(("img.jp2", folder / "img.jp2", _jp2_ppi((folder / "img.jp2").read_bytes())))
    if (folder / "img.wsq").exists():
        ppi = wsq.parse_header((folder / "img.wsq").read_bytes()).ppi
        items.append(("img.wsq (a test pattern)", folder / "img.wsq", ppi))
    add("samples/nist_libbiomeval", items)
    return sets


_RANGE: dict = {}  # ResolutionParams overrides from the command line (set in each worker)


def _params():
    from biomatch.extract.resolution import ResolutionParams

    return ResolutionParams(**_RANGE)


def _set_range(overrides: dict) -> None:
    _RANGE.update(overrides)


def _refused(native, dpi) -> bool:
    from biomatch.errors import ResolutionError
    from biomatch.extract.resolution import check_resolution

    try:
        check_resolution(native, dpi, _params())
    except ResolutionError:
        return True
    return False


def measure(item) -> dict:
    """Everything the table needs about one image."""
    from biomatch.extract.resolution import auto_dpi, estimate_resolution
    from biomatch.imaging import MAX_DPI, MIN_DPI, load_fingerprint

    name, source, dpi = item
    native = load_fingerprint(source, 500)  # 8-bit grey, not resampled
    t0 = time.process_time()
    refused = _refused(native, dpi)
    check_ms = (time.process_time() - t0) * 1e3
    est = estimate_resolution(native, _params())
    used, _ = auto_dpi(native, _params())
    sims = {}
    for f in FACTORS:
        stated = dpi * f
        sims[f] = None if not MIN_DPI <= stated <= MAX_DPI else _refused(native, stated)
    return {"name": name, "shape": native.shape, "dpi": dpi, "refused": refused, "check_ms": check_ms,
            "estimated": None if est is None else est.dpi, "confirmed": None if est is None else est.confirmed,
            "period_mm": None if est is None else est.period_mm(dpi), "auto": used, "sims": sims}


def _q(values, qs=(50, 5, 95), fmt="{:+.1%}"):
    if not len(values):
        return " / ".join("-" for _ in qs)
    return " / ".join(fmt.format(v) for v in np.percentile(values, qs))


def report(name: str, rows: list[dict]) -> dict:
    sizes = Counter(r["shape"] for r in rows)
    usual = sizes.most_common(1)[0][0]
    odd = [r for r in rows if r["shape"] != usual] if name.startswith("socofing") else []
    correct = [r for r in rows if r not in odd]
    est = [r for r in correct if r["estimated"] is not None]
    err = np.array([r["auto"] / r["dpi"] - 1 for r in est])
    mm = [r["period_mm"] for r in est]
    out = {"set": name, "images": len(correct), "no_estimate": len(correct) - len(est),
           "unconfirmed": sum(1 for r in est if not r["confirmed"]), "err": err, "mm": mm,
           "refused": sum(r["refused"] for r in correct), "odd": len(odd),
           "odd_caught": sum(r["refused"] for r in odd),
           "odd_size": f"{odd[0]['shape'][1]}x{odd[0]['shape'][0]}" if odd else "",
           "odd_dpi": [r["estimated"] for r in odd if r["estimated"]],
           "sims": {f: [r["sims"][f] for r in correct if r["sims"][f] is not None] for f in FACTORS},
           "check_ms": [r["check_ms"] for r in correct]}
    refused_names = [r["name"] for r in correct if r["refused"]]
    if refused_names:
        out["refused_names"] = refused_names
    return out


def print_table(results: list[dict]) -> None:
    print(f"{'set':30s} {'images':>6s} {'no est.':>7s} {'unconf.':>7s} {'auto dpi error median / p5 / p95':>34s} "
          f"{'period mm min-max':>17s} {'refused':>7s} {'mis-scaled caught':>18s}")
    for r in results:
        mm = f"{min(r['mm']):.2f}-{max(r['mm']):.2f}" if r["mm"] else "-"
        odd = f"{r['odd_caught']}/{r['odd']} ({r['odd_size']})" if r["odd"] else "-"
        print(f"{r['set']:30s} {r['images']:6d} {r['no_estimate']:7d} {r['unconfirmed']:7d} {_q(r['err']):>34s} "
              f"{mm:>17s} {r['refused']:7d} {odd:>18s}")
        if r.get("refused_names"):
            print(f"    REFUSED: {', '.join(r['refused_names'][:10])}")
        if r["odd_dpi"]:
            dpi = _q(r["odd_dpi"], (50, 0, 100), "{:.0f}")
            print(f"    mis-scaled images appear to be {dpi} dpi (median / min / max)")
    print()
    print("Simulated mis-statements: correct images stated at a multiple of their resolution, refused / tried")
    print(f"{'set':30s} " + " ".join(f"{'x' + format(f, 'g'):>16s}" for f in FACTORS))
    totals = {f: [0, 0] for f in FACTORS}
    for r in results:
        cells = []
        for f in FACTORS:
            v = r["sims"][f]
            totals[f][0] += sum(v)
            totals[f][1] += len(v)
            cells.append(f"{sum(v)}/{len(v)} ({sum(v) / len(v):.0%})" if v else "out of range")
        print(f"{r['set']:30s} " + " ".join(f"{c:>16s}" for c in cells))
    print(f"{'all':30s} " + " ".join(f"{f'{a}/{b} ({a / b:.0%})' if b else '-':>16s}" for a, b in totals.values()))
    print("\nno est.: no measurable ridge pattern (not checked; dpi='auto' uses 500).  unconf.: an estimate the "
          "extractor's\nridge-frequency stage does not confirm (never refused; dpi='auto' uses the estimate).  "
          "auto dpi error:\nover images with an estimate, against the published resolution (SOCOFing's 165 is "
          "itself approximate).\nperiod mm: the estimate at the published resolution.  refused: correct images "
          "the check refuses.")


def timing() -> None:
    from biomatch.extract import extract
    from biomatch.extract.resolution import ResolutionParams
    from biomatch.imaging import load_fingerprint

    paths = sorted((DATASETS / "fvc2002/db1_b").glob("*.tif"))
    images = [load_fingerprint(p, 500) for p in paths]
    off = ResolutionParams(check=False)
    extract(images[0], 500)  # warm the numba kernels
    on_ms, off_ms = [], []
    for _ in range(3):
        for im in images:
            for rp, acc in ((None, on_ms), (off, off_ms)):
                t0 = time.process_time()
                extract(im, 500, resolution=rp)
                acc.append((time.process_time() - t0) * 1e3)
    print(f"FVC2002 DB1_B extraction, CPU ms per image (median of {len(on_ms)}): check on {np.median(on_ms):.1f}, "
          f"check off {np.median(off_ms):.1f}, difference of medians {np.median(on_ms) - np.median(off_ms):+.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="at most N images per set (every k-th)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--min-mm", type=float, default=None, help="ridge_period_min_mm to try")
    ap.add_argument("--max-mm", type=float, default=None, help="ridge_period_max_mm to try")
    args = ap.parse_args()
    overrides = {k: v for k, v in (("ridge_period_min_mm", args.min_mm), ("ridge_period_max_mm", args.max_mm))
                 if v is not None}
    _set_range(overrides)
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import cv2

    cv2.setNumThreads(1)
    sets = shared_sets(args.limit)
    if not sets:
        print(f"no shared dataset under {DATASETS} (set BIOMATCH_DATASETS)")
        return 1
    results = []
    t0 = time.time()
    with ProcessPoolExecutor(args.workers, initializer=_set_range, initargs=(overrides,)) as pool:
        for name, items in sets:
            rows = list(pool.map(measure, items, chunksize=8))
            results.append(report(name, rows))
    print(f"resolution check and dpi='auto' on the shared sets ({time.time() - t0:.0f} s), {_params()}\n")
    print_table(results)
    ms = [x for r in results for x in r["check_ms"]]
    print(f"\ncheck at the published resolution: median {np.median(ms):.1f} ms CPU per image, "
          f"p95 {np.percentile(ms, 95):.1f} ms")
    if args.timing:
        timing()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
