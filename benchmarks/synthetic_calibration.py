"""Score distributions of biomatch on generated templates vs real FVC2002 B prints.

Prints a table (genuine/impostor medians and quantiles, EER, FMR1000) and writes one
histogram plot with both, so that the perturbation model of
``biomatch.datasets.synthetic.TemplateModel`` can be checked against real data.

    .venv/bin/python benchmarks/synthetic_calibration.py [--fingers 40] [--out out/calibration.png]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from biomatch.evaluate.metrics import eer as eer_of, fnmr_at_fmr  # noqa: E402
from biomatch.match import FingerprintMatcher, prepare  # noqa: E402


def scores(templates: dict) -> tuple[np.ndarray, np.ndarray]:
    """All genuine and all impostor pairs (unordered) of {(finger, impression): Template}."""
    prepared = {k: prepare(t) for k, t in templates.items()}
    gen, imp = [], []
    for a, b in itertools.combinations(sorted(prepared), 2):
        s = FingerprintMatcher(prepared[a]).match(prepared[b])
        (gen if a[0] == b[0] else imp).append(s)
    return np.array(gen), np.array(imp)


def real_templates(datasets: Path) -> dict:
    from biomatch.extract import extract

    out = {}
    for db, dpi in (("db1_b", 500), ("db2_b", 569), ("db3_b", 500), ("db4_b", 500)):
        for path in sorted((datasets / "fvc2002" / db).glob("*.tif")):
            finger, imp = path.stem.split("_")
            out[(f"{db}-{finger}", int(imp))] = extract(path, dpi)
    return out


def summary(g, i) -> dict:
    e = eer_of(g, i)
    return {"genuine_median": float(np.median(g)), "genuine_p10": float(np.quantile(g, 0.1)),
            "impostor_median": float(np.median(i)), "impostor_p99": float(np.quantile(i, 0.99)),
            "eer": float(e), "fmr1000": float(fnmr_at_fmr(g, i, 0.001)),
            "n_genuine": len(g), "n_impostor": len(i)}


def main() -> int:
    from biomatch.datasets.synthetic import template_impressions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fingers", type=int, default=40)
    ap.add_argument("--impressions", type=int, default=8)
    ap.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "calibration.png")
    args = ap.parse_args()
    synth = {}
    for f in range(args.fingers):
        for i, t in enumerate(template_impressions(10_000 + f, args.impressions)):
            synth[(f, i)] = t
    gs, is_ = scores(synth)
    rows = {"synthetic": summary(gs, is_)}
    g_real = i_real = None
    if (args.datasets / "fvc2002").is_dir():
        g_real, i_real = scores(real_templates(args.datasets))
        rows["FVC2002 B (all four)"] = summary(g_real, i_real)
    print(f"{'data':22s} {'gen med':>8s} {'gen p10':>8s} {'imp med':>8s} {'imp p99':>8s} {'EER':>7s} {'FMR1000':>8s}")
    for name, r in rows.items():
        print(f"{name:22s} {r['genuine_median']:8.4f} {r['genuine_p10']:8.4f} {r['impostor_median']:8.4f} "
              f"{r['impostor_p99']:8.4f} {100 * r['eer']:6.2f}% {100 * r['fmr1000']:7.2f}%")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 0.8, 81)
    ax.hist(is_, bins, density=True, histtype="step", color="tab:red", label="synthetic impostor")
    ax.hist(gs, bins, density=True, histtype="step", color="tab:green", label="synthetic genuine")
    if g_real is not None:
        ax.hist(i_real, bins, density=True, histtype="stepfilled", alpha=0.3, color="tab:red", label="FVC2002 impostor")
        ax.hist(g_real, bins, density=True, histtype="stepfilled", alpha=0.3, color="tab:green", label="FVC2002 genuine")
    ax.set_yscale("log")
    ax.set_xlabel("biomatch score")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title("Score distributions: generated templates vs FVC2002 B")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
