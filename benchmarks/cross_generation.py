#!/usr/bin/env python
"""Do templates of an earlier extractor and of this one score on one scale?

A registry's gallery holds templates of whatever extractor enrolled them; after an upgrade its new
probes (and enrolments) are extracted by the new one.  The shipped thresholds
(``biomatch.match.SCORE_AT_FMR``) were measured on pairs of one generation; this benchmark
measures them on mixed pairs.  An earlier extraction generation may be declared compatible
(``biomatch.params.EXTRACTION_LINEAGE``) only when, on mixed pairs, the FMR at every shipped
threshold is not shown to exceed its target (the lower end of its 95% interval is below it) and
the FNMR is within the sampling interval of the worse same-generation FNMR.

Two steps, each run by the Python of the version that extracts (the script uses only the public
API, so the older version's own environment runs it unchanged)::

    OLD/.venv/bin/python benchmarks/cross_generation.py extract /tmp/gen_old   # older checkout
    .venv/bin/python benchmarks/cross_generation.py extract /tmp/gen_new
    .venv/bin/python benchmarks/cross_generation.py compare /tmp/gen_old /tmp/gen_new

``extract`` writes one template per FVC2002 B image (``../shared/datasets`` or
``$BIOMATCH_DATASETS``) and ``generation.json`` (the extraction parameter hash).  ``compare``
scores, with the current matcher, the FVC protocol's pairs (280 genuine, 2,880 all-impostor per
set) three ways: new x new, old probe x new gallery and new probe x old gallery (pooled as
"mixed"), and old x old; per set EER / FMR1000 and, pooled over the four sets (11,520 impostor
pairs per way), the FMR and FNMR at each shipped threshold.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

DATA = Path(os.environ.get("BIOMATCH_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))
FVC_DPI = {"db1_b": 500, "db2_b": 569, "db3_b": 500, "db4_b": 500}


def extract_all(out: Path) -> None:
    """Templates of every FVC2002 B image by the biomatch this Python imports."""
    from biomatch.evaluate.fvc import list_fvc_images
    from biomatch.extract import extract
    from biomatch.params import ExtractionParams, params_hash
    from biomatch.formats import encode

    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    n = 0
    for ds, dpi in FVC_DPI.items():
        images = list_fvc_images(DATA / "fvc2002" / ds)
        for im in images:
            (out / f"{ds}_{im.name}.bmt").write_bytes(encode(extract(im.path, dpi)))
            n += 1
        print(f"{ds}: {len(images)} templates", file=sys.stderr)
    (out / "generation.json").write_text(json.dumps({"extraction_params_hash": params_hash(ExtractionParams()),
                                                     "templates": n}))


def _scores(probes, gallery, pairs) -> np.ndarray:
    from biomatch.match import FingerprintMatcher

    out = np.zeros(len(pairs))
    for k, (i, j) in enumerate(pairs):
        if len(probes[i]) and gallery[j] is not None:
            out[k] = FingerprintMatcher(probes[i]).match_many([gallery[j]], n_threads=1)[0]
    return out


def _bounds_95(k: int, n: int) -> tuple[float, float]:
    """Two-sided 95% Wilson score interval of a binomial rate k / n."""
    z = 1.96
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n)), (centre + half) / (1 + z * z / n)


def compare(old: Path, new: Path) -> int:
    from biomatch.evaluate.fvc import fvc_pairs, list_fvc_images
    from biomatch.evaluate.metrics import compute_metrics
    from biomatch.match import SCORE_AT_FMR, prepare
    from biomatch.formats import decode

    gens = {k: json.loads((d / "generation.json").read_text())["extraction_params_hash"]
            for k, d in (("old", old), ("new", new))}
    ways = {"new x new": [("new", "new")], "mixed": [("old", "new"), ("new", "old")], "old x old": [("old", "old")]}
    pooled = {w: {"genuine": [], "impostor": []} for w in ways}
    print(f"extraction generations: old {gens['old']}, new {gens['new']}")
    print(f"{'set':7} " + "  ".join(f"{w + ' EER/FMR1000 %':>26}" for w in ways))
    for ds in FVC_DPI:
        images = list_fvc_images(DATA / "fvc2002" / ds)
        raw = {k: [decode((d / f"{ds}_{im.name}.bmt").read_bytes()) for im in images] for k, d in (("old", old), ("new", new))}
        prepared = {k: [prepare(t) if len(t) else None for t in ts] for k, ts in raw.items()}
        pairs = fvc_pairs(images)
        row = []
        for w, combos in ways.items():
            g = np.concatenate([_scores(raw[a], prepared[b], pairs["genuine"]) for a, b in combos])
            i = np.concatenate([_scores(raw[a], prepared[b], pairs["impostor"]) for a, b in combos])
            pooled[w]["genuine"].append(g)
            pooled[w]["impostor"].append(i)
            m = compute_metrics(g, i)
            row.append(f"{100 * m.eer:12.2f} / {100 * m.fmr1000:5.2f}")
        print(f"{ds:7} " + "  ".join(f"{r:>26}" for r in row))
    print("\npooled over the sets: FMR (95% interval) and FNMR at each shipped threshold, %")
    ok = True
    fnmr_same: dict[float, list[tuple[int, int]]] = {}
    for w in ("old x old", "new x new", "mixed"):
        g, i = (np.concatenate(pooled[w][k]) for k in ("genuine", "impostor"))
        parts = []
        for fmr, t in sorted(SCORE_AT_FMR.items(), reverse=True):
            k, miss = int((i >= t).sum()), int((g < t).sum())
            lo, hi = _bounds_95(k, i.size)
            parts.append(f"FMR {fmr:g}: {100 * k / i.size:.3f} [{100 * lo:.3f}, {100 * hi:.3f}], "
                         f"FNMR {100 * miss / g.size:.2f}")
            if w != "mixed":
                fnmr_same.setdefault(fmr, []).append((miss, g.size))
                continue
            # One scale: the mixed pairs' FMR is not shown to exceed the target (its lower 95%
            # bound is below it), and their FNMR is within the sampling interval of the worse
            # same-generation FNMR.
            worst = max(_bounds_95(m, n)[1] for m, n in fnmr_same[fmr])
            if lo > fmr or miss / g.size > worst:
                ok = False
        print(f"  {w:10} " + "; ".join(parts))
    print("\nverdict:", "one scale (may be declared in EXTRACTION_LINEAGE)" if ok else "NOT one scale")
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="templates of every FVC2002 B image by this Python's biomatch")
    e.add_argument("out", type=Path)
    c = sub.add_parser("compare", help="score old x new pairs with the current matcher")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "extract":
        extract_all(args.out)
        return 0
    return compare(args.old, args.new)


if __name__ == "__main__":
    sys.exit(main())
