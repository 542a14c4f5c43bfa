#!/usr/bin/env python
"""Pin biomatch's FVC2002 B score arrays: a change that must not alter behaviour proves it did not.

For each FVC2002 B set (``../shared/datasets`` or ``$BIOMATCH_DATASETS``) the FVC protocol's genuine
and all-impostor score arrays of the default extractor and matcher are hashed (SHA-256 of the
float32 scores in protocol order, with the extraction and match parameter hashes).  ``record``
writes them to a JSON file, ``check`` recomputes and compares, exit 1 on any difference.  A
refactoring (moving code between modules, splitting functions) must leave every hash unchanged;
an accuracy change changes them on purpose, and its commit records the new ones.

Hashes are of one machine's build: the native kernels of another CPU, or other numba / OpenCV
versions, may differ in the last bits, so compare runs of the same machine and environment.

Usage::

    .venv/bin/python benchmarks/score_pins.py record /tmp/pins.json     # before the change
    .venv/bin/python benchmarks/score_pins.py check /tmp/pins.json      # after it
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

DATA = Path(os.environ.get("BIOMATCH_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))
FVC_DPI = {"db1_b": 500, "db2_b": 569, "db3_b": 500, "db4_b": 500}


def pins() -> dict:
    """``{set: {"genuine": sha, "impostor": sha, "eer": float}}`` plus the parameter hashes."""
    from biomatch.evaluate.fvc import run_fvc
    from biomatch.params import ExtractionParams, MatchParams, params_hash

    out: dict = {"extraction_params": params_hash(ExtractionParams()), "match_params": params_hash(MatchParams())}
    for ds, dpi in FVC_DPI.items():
        r = run_fvc(DATA / "fvc2002" / ds, dpi)
        out[ds] = {kind: hashlib.sha256(np.asarray(r.scores[kind], np.float32).tobytes()).hexdigest()
                   for kind in ("genuine", "impostor")}
        out[ds]["eer"] = float(r.eer)
        print(f"{ds}: EER {100 * r.eer:.2f}%  genuine {out[ds]['genuine'][:12]}  impostor {out[ds]['impostor'][:12]}",
              file=sys.stderr)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("record", "check"))
    ap.add_argument("file", type=Path)
    args = ap.parse_args(argv)
    now = pins()
    if args.mode == "record":
        args.file.write_text(json.dumps(now, indent=1, sort_keys=True))
        return 0
    before = json.loads(args.file.read_text())
    diff = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    for k in diff:
        print(f"CHANGED {k}: {before.get(k)} -> {now.get(k)}")
    print("identical" if not diff else f"{len(diff)} entries differ")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
