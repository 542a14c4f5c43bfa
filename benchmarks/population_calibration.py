#!/usr/bin/env python
"""Per-finger score distributions of real sets vs generated populations, side by side.

Real genuine and impostor scores of biomatch's native matcher on

- FVC2002 DB1_B..DB4_B undegraded (FVC protocol: 280 genuine pairs and 2,880 all-impostor pairs per
  set, a failure to extract scores 0), templates from ``benchmarks/robustness.py``'s cache when it holds
  them (condition ``none``), else extracted;
- the same four sets under every degradation of ``benchmarks/robustness.py`` (dry, wet, worn, scars,
  distortion, contact, noise, two gamma curves, four resolutions): the degraded images are rebuilt with
  the robustness benchmark's seeds only to find their cached templates (never re-extracted when cached);
- SOCOFing: the real print of each finger of subjects 1-200 against one altered-hard print of it
  (``_CR``, ``_Obl`` or ``_Zcut``, the set ``biomatch demo dedup`` uses), impostors real vs real of
  other subjects;

and of generated templates (:mod:`biomatch.datasets.synthetic`): the default ``template_impressions``
model ("old") and the registry-like population (:data:`~biomatch.datasets.synthetic.REGISTRY_POPULATION`,
"new"), impression 0 against impression 1 of every finger of ``--persons`` people.  The real target is a
weighted mixture (``REAL_MIX``, weights stated in the table) of the undegraded FVC sets, their
degradations as a registry would see them, and SOCOFing altered.

Prints the quantile table (genuine 0.1/1/5/10/25/50 %, impostor 50/99/99.9/99.99 %), the ten-finger
consequence (fused mated score vs the highest non-mated score, ``biomatch.decide.fuse``), and writes one
plot (genuine ECDF on a log axis, histograms).  Real scores are cached under ``--cache`` (one npz of
score arrays per set; the SOCOFing templates as ``biomatch demo dedup`` caches them, so a demo's
``cache/templates_*.npz`` copied there is reused).

    .venv/bin/python benchmarks/population_calibration.py [--persons 2000] [--out docs/population_calibration.png]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = REPO.parent / "shared" / "datasets"
FVC_DPI = {"db1_b": 500.0, "db2_b": 569.0, "db3_b": 500.0, "db4_b": 500.0}
CONDITIONS = ("none", "dry", "wet", "worn", "scars", "distortion", "contact", "noise", "gamma:0.45",
              "gamma:2.2", "resolution:250", "resolution:333", "resolution:750", "resolution:1000")
BENCH_CACHE = Path(os.environ.get("BIOMATCH_BENCH_CACHE", Path.home() / ".cache" / "biomatch-bench"))
ROBUSTNESS_CACHE = BENCH_CACHE / "robustness" / "templates"
GENUINE_Q = (0.001, 0.01, 0.05, 0.10, 0.25, 0.50)
IMPOSTOR_Q = (0.50, 0.99, 0.999, 0.9999)

# The real mixture a registry's mated searches resemble (weights of the genuine pairs; each set's pairs
# share their weight equally).  Most captures are ordinary (FVC2002 B, undegraded, half the weight); a
# third are affected by skin or capture conditions (dry, wet, worn, scarred skin, strong distortion, small
# contact: 5% each; sensor noise and contrast 2.5% each); altered or injured fingers (SOCOFing altered-hard)
# 10%.  Resolution mismatches are left out: a registry declares its capture resolution.
REAL_MIX = {"FVC none": 0.50, "FVC dry": 0.05, "FVC wet": 0.05, "FVC worn": 0.05, "FVC scars": 0.05,
            "FVC distortion": 0.05, "FVC contact": 0.05, "FVC noise": 0.025, "FVC gamma:0.45": 0.0125,
            "FVC gamma:2.2": 0.0125, "SOCOFing altered": 0.10}


# --------------------------------------------------------------------------- real templates

def _canonical(condition: str) -> str:
    from biomatch.datasets.degrade import format_condition, parse_condition

    return format_condition(*parse_condition(condition))


def _cached_template(key: str, dirs: list[Path]):
    """A template of the robustness cache (newest extractor first) by its image key, or None."""
    from biomatch.formats import decode

    for d in dirs:
        h = hashlib.sha256(f"{d.name}\n{key}".encode()).hexdigest()[:40]
        f = d / f"{h}.npz"
        if f.is_file():
            with np.load(f, allow_pickle=False) as z:
                blob = z["template"].tobytes()
            return decode(blob) if blob else None
    return False


def fvc_templates(db: str, condition: str) -> tuple[dict, int]:
    """``{(finger, impression): Template or None}`` of one FVC B set under one condition (as
    ``benchmarks/robustness.py`` degrades it) and how many came from its cache."""
    import cv2

    from biomatch.datasets.degrade import apply_condition, condition_rng
    from biomatch.errors import InvalidInputError
    from biomatch.evaluate.fvc import list_fvc_images
    from biomatch.extract import extract

    dirs = sorted(ROBUSTNESS_CACHE.glob("biomatch-*"), key=lambda p: -p.stat().st_mtime)
    cond = _canonical(condition)
    out, hits = {}, 0
    for im in list_fvc_images(DATA / "fvc2002" / db):
        img = cv2.imread(str(im.path), cv2.IMREAD_GRAYSCALE)
        d = apply_condition(img, FVC_DPI[db], cond, condition_rng(db, im.name, cond))
        pix = hashlib.sha256(d.image.tobytes() + repr(d.image.shape).encode()).hexdigest()
        t = _cached_template(f"{db}\n{im.name}\n{cond}\n{d.dpi:g}\n{pix}", dirs)
        if t is False:
            try:
                t = extract(d.image, d.dpi)
            except InvalidInputError:
                t = None
        else:
            hits += 1
        out[(im.finger, im.impression)] = t
    return out, hits


def _prep(t):
    from biomatch.match import prepare

    return None if t is None or len(t) == 0 else prepare(t)


def fvc_scores(templates: dict) -> tuple[np.ndarray, np.ndarray]:
    """FVC protocol: every unordered genuine pair and every unordered all-impostor pair; 0 when a side
    has no template."""
    from biomatch.match import FingerprintMatcher

    keys = sorted(templates)
    prep = {k: _prep(templates[k]) for k in keys}
    gen, imp = [], []
    for i, a in enumerate(keys):
        rest = keys[i + 1:]
        if prep[a] is None:
            s = np.zeros(len(rest))
        else:
            live = [j for j, b in enumerate(rest) if prep[b] is not None]
            s = np.zeros(len(rest))
            if live:
                s[live] = FingerprintMatcher(prep[a]).match_many([prep[rest[j]] for j in live])
        for b, v in zip(rest, s):
            (gen if a[0] == b[0] else imp).append(float(v))
    return np.array(gen), np.array(imp)


def socofing_scores(cache: Path, impostor_pairs: int = 200_000, seed: int = 1):
    """SOCOFing as ``biomatch demo dedup`` reads it (templates cached in ``cache``): the real print of
    every finger of subjects 1-200 against its altered-hard print; impostors real vs real of other
    subjects (a seeded sample of about ``impostor_pairs`` ordered pairs)."""
    from biomatch.cli.demo_data import socofing
    from biomatch.match import FingerprintMatcher

    _, enrol, stream = socofing(DATA / "socofing", cache, True)
    altered = dict(stream[:len(enrol)])
    gen = []
    for sid, fingers in enrol:
        for pos, t in fingers.items():
            a, b = _prep(t), _prep(altered.get(sid, {}).get(pos))
            if a is not None or b is not None:  # a finger absent from both sides is no comparison
                gen.append(0.0 if a is None or b is None else FingerprintMatcher(a).match(b))
    flat = [(sid, _prep(t)) for sid, fingers in enrol for t in fingers.values()]
    rng = np.random.default_rng(seed)
    per_probe = max(1, impostor_pairs // len(flat))
    imp = []
    for sid, a in flat:
        others = [flat[j] for j in rng.choice(len(flat), per_probe + 20, replace=False) if flat[j][0] != sid]
        others = others[:per_probe]
        live = [b for _, b in others if b is not None]
        s = list(FingerprintMatcher(a).match_many(live)) if a is not None and live else []
        imp.extend(list(map(float, s)) + [0.0] * (len(others) - len(s)))
    return np.array(gen), np.array(imp)


def real_sets(cache: Path, log=print) -> dict:
    """``{set name: (genuine, impostor)}`` of every real set, cached as one npz per set."""
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for cond in CONDITIONS:
        name = f"FVC {cond}"
        f = cache / f"real_{_slug(name)}.npz"
        if not f.is_file():
            t0 = time.time()
            g, i, hits, n = [], [], 0, 0
            for db in FVC_DPI:
                ts, h = fvc_templates(db, cond)
                gg, ii = fvc_scores(ts)
                g.append(gg), i.append(ii)
                hits, n = hits + h, n + len(ts)
            np.savez(f, genuine=np.concatenate(g), impostor=np.concatenate(i), cached=hits, n=n)
            log(f"{name}: {hits}/{n} templates from the robustness cache, {time.time() - t0:.0f} s")
        with np.load(f) as z:
            out[name] = (z["genuine"], z["impostor"])
    f = cache / "real_SOCOFing_altered.npz"
    if not f.is_file():
        g, i = socofing_scores(cache)
        np.savez(f, genuine=g, impostor=i)
    with np.load(f) as z:
        out["SOCOFing altered"] = (z["genuine"], z["impostor"])
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in text)



# --------------------------------------------------------------------------- generated populations

def generated_scores(model, persons: int, seed: int = 70_000_000, impostor_pairs: int = 100_000):
    """Per-finger scores of ``persons`` generated people: impression 0 against impression 1 of each finger
    (``(persons, 10)`` genuine matrix), and ``impostor_pairs`` non-mated pairs (impression 0 of one person
    against impression 1 of others, the same finger position), plus the prepared templates."""
    from biomatch.datasets.synthetic import template_impressions
    from biomatch.match import FingerprintMatcher

    enrol = [[None] * 10 for _ in range(persons)]
    probe = [[None] * 10 for _ in range(persons)]
    gen = np.zeros((persons, 10))
    for k in range(persons):
        for p in range(10):
            a, b = template_impressions((seed + k) * 16 + p + 1, 2, model)
            enrol[k][p], probe[k][p] = _prep(a), _prep(b)
            gen[k, p] = 0.0 if enrol[k][p] is None or probe[k][p] is None \
                else FingerprintMatcher(enrol[k][p]).match(probe[k][p])
    rng = np.random.default_rng(seed)
    per_probe = 500
    imp = []
    for _ in range(max(1, impostor_pairs // per_probe)):
        k, p = int(rng.integers(persons)), int(rng.integers(10))
        others = [j for j in rng.choice(persons, min(per_probe + 1, persons), replace=False) if j != k][:per_probe]
        live = [probe[j][p] for j in others if probe[j][p] is not None]
        s = list(FingerprintMatcher(enrol[k][p]).match_many(live)) if enrol[k][p] is not None and live else []
        imp.extend(list(map(float, s)) + [0.0] * (len(others) - len(s)))
    return gen, np.array(imp), (enrol, probe)


def nonmated_scores(enrol, probe, comparisons: int, seed: int = 5) -> np.ndarray:
    """Finger scores ``(comparisons, 10)`` of random non-mated person pairs (enrolment of one against
    the probe of another, finger by finger)."""
    from biomatch.match import FingerprintMatcher

    rng = np.random.default_rng(seed)
    n = len(enrol)
    per_probe = min(200, n - 1)
    out = []
    for _ in range(max(1, comparisons // per_probe)):
        k = int(rng.integers(n))
        others = [j for j in rng.choice(n, per_probe + 1, replace=False) if j != k][:per_probe]
        cols = []
        for p in range(10):
            live = [j for j in others if probe[j][p] is not None]
            s = dict(zip(live, FingerprintMatcher(enrol[k][p]).match_many([probe[j][p] for j in live])
                         if enrol[k][p] is not None and live else []))
            cols.append([s.get(j, 0.0) for j in others])
        out.append(np.array(cols).T)
    return np.concatenate(out)


# --------------------------------------------------------------------------- report

def weighted_quantiles(sets: dict, weights: dict, qs, which: int = 0) -> np.ndarray:
    """Quantiles of the mixture of ``sets[name][which]`` with ``weights[name]`` (each set's pairs share
    their set's weight)."""
    vals, w = [], []
    for name, wt in weights.items():
        x = np.asarray(sets[name][which], np.float64)
        vals.append(x)
        w.append(np.full(len(x), wt / len(x)))
    vals, w = np.concatenate(vals), np.concatenate(w)
    order = np.argsort(vals)
    cdf = np.cumsum(w[order]) / w.sum()
    return np.array([vals[order][min(np.searchsorted(cdf, q), len(vals) - 1)] for q in qs])


def quantile_row(name: str, gq, iq, n_gen: int, n_imp: int) -> str:
    return (f"| {name} | " + " | ".join(f"{v:.3f}" for v in gq) + " | "
            + " | ".join(f"{v:.4f}" for v in iq) + f" | {n_gen:,} / {n_imp:,} |")


def table_header() -> list[str]:
    return ["| scores | " + " | ".join(f"gen {100 * q:g}%" for q in GENUINE_Q) + " | "
            + " | ".join(f"imp {100 * q:g}%" for q in IMPOSTOR_Q) + " | pairs gen / imp |",
            "|---|" + "---|" * (len(GENUINE_Q) + len(IMPOSTOR_Q) + 1)]



def ten_finger(gen: np.ndarray, nonmated_finger_scores: np.ndarray, params) -> list[str]:
    """Rows of the ten-finger table: fused mated score quantiles, non-mated tail, FNIR at FPIR 0.1%."""
    from biomatch.decide import fuse
    from biomatch.decide.verdict import thresholds

    mated = np.array([fuse(dict(enumerate(row)), params) for row in gen])
    nonmated = np.array([fuse(dict(enumerate(row)), params) for row in nonmated_finger_scores])
    rows = [f"mated fused (decades), {len(mated):,} persons: min {mated.min():.1f}, 0.1% "
            f"{np.quantile(mated, 0.001):.1f}, 1% {np.quantile(mated, 0.01):.1f}, 5% {np.quantile(mated, 0.05):.1f}, "
            f"median {np.median(mated):.1f}",
            f"non-mated fused, {len(nonmated):,} person pairs: max {nonmated.max():.2f}, 99.9% "
            f"{np.quantile(nonmated, 0.999):.2f}; share >= 3 decades {np.mean(nonmated >= 3):.2e} (calibrated: 1e-3)"]
    for n in (200_000, 1_000_000, 10_000_000):
        th = thresholds(n, params).duplicate_score
        rows.append(f"gallery {n:>10,}: DUPLICATE at {th:.1f} decades (FPIR 0.1%): mated below it "
                    f"{np.mean(mated < th):.2%} (FNIR)")
    return rows


def plot(out: Path, real_mix: tuple, curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    vals, w = real_mix
    order = np.argsort(vals)
    ax1.step(vals[order], np.cumsum(w[order]) / w.sum(), where="post", color="k", lw=2, label="real mix (weighted)")
    bins = np.linspace(0, 0.7, 71)
    ax2.hist(vals, bins, weights=w / w.sum(), histtype="stepfilled", color="0.8", label="real mix (weighted)")
    for (name, g), c in zip(curves.items(), ("tab:orange", "tab:blue", "tab:green")):
        x = np.sort(g.ravel())
        ax1.step(x, np.arange(1, len(x) + 1) / len(x), where="post", color=c, label=name)
        ax2.hist(g.ravel(), bins, weights=np.full(g.size, 1 / g.size), histtype="step", color=c, lw=1.5, label=name)
    ax1.set_yscale("log")
    ax1.set_ylim(5e-4, 1)
    ax1.set_xlim(0, 0.6)
    ax1.set_xlabel("genuine score (one finger)")
    ax1.set_ylabel("share of genuine pairs below (ECDF, log)")
    ax1.legend(fontsize=8, loc="lower right")
    ax1.grid(alpha=0.3)
    ax2.set_yscale("log")
    ax2.set_xlabel("genuine score (one finger)")
    ax2.set_ylabel("share of pairs per bin")
    ax2.legend(fontsize=8)
    fig.suptitle("Genuine scores: real mixture vs generated populations (biomatch native matcher)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv=None) -> int:
    from biomatch.datasets.synthetic import REGISTRY_POPULATION
    from biomatch.decide import DecisionParams, calibrate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=2000, help="generated people per model (10 fingers each)")
    ap.add_argument("--nonmated", type=int, default=50_000, help="non-mated ten-finger person pairs")
    ap.add_argument("--cache", type=Path, default=BENCH_CACHE / "population",
                    help="real scores and SOCOFing templates (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "population_calibration.png")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    t0 = time.time()
    sets = real_sets(args.cache, log=lambda m: print(m, file=sys.stderr, flush=True))
    lines = table_header()
    for name in sets:
        g, i = sets[name]
        lines.append(quantile_row(f"{name}" + (f" (weight {REAL_MIX[name]:g})" if name in REAL_MIX else ""),
                                  np.quantile(g, GENUINE_Q), np.quantile(i, IMPOSTOR_Q), len(g), len(i)))
    n_g = sum(len(sets[k][0]) for k in REAL_MIX)
    n_i = sum(len(sets[k][1]) for k in REAL_MIX)
    real_gq = weighted_quantiles(sets, REAL_MIX, GENUINE_Q, 0)
    real_iq = weighted_quantiles(sets, REAL_MIX, IMPOSTOR_Q, 1)
    lines.append(quantile_row("**real mix (target)**", real_gq, real_iq, n_g, n_i))
    models = {"generated, old (TemplateModel())": None, "generated, new (REGISTRY_POPULATION)": REGISTRY_POPULATION}
    gens, report = {}, {"real_mix": {"genuine": real_gq.tolist(), "impostor": real_iq.tolist()}}
    tenf = []
    for label, model in models.items():
        t1 = time.time()
        g, i, (enrol, probe) = generated_scores(model, args.persons)
        gens[label] = g
        lines.append(quantile_row(f"**{label}**", np.quantile(g.ravel(), GENUINE_Q), np.quantile(i, IMPOSTOR_Q),
                                  g.size, len(i)))
        nm = nonmated_scores(enrol, probe, args.nonmated)
        tenf.append(f"{label}:")
        for pname, params in (("score table calibrated on these generated impostors (as benchmarks/dedup_scale.py)",
                               DecisionParams(score_at_fmr=calibrate(i))),
                              ("shipped score table (FVC2002)", DecisionParams())):
            tenf.append(f"  {pname}:")
            tenf += ["    " + r for r in ten_finger(g, nm, params)]
        report[label] = {"genuine": np.quantile(g.ravel(), GENUINE_Q).tolist(),
                         "impostor": np.quantile(i, IMPOSTOR_Q).tolist(), "seconds": time.time() - t1}
        print(f"{label}: {time.time() - t1:.0f} s", file=sys.stderr, flush=True)
    print("\n".join(lines))
    print()
    print("\n".join(tenf))
    mix_vals = np.concatenate([sets[k][0] for k in REAL_MIX])
    mix_w = np.concatenate([np.full(len(sets[k][0]), REAL_MIX[k] / len(sets[k][0])) for k in REAL_MIX])
    try:
        plot(args.out, (mix_vals, mix_w), gens)
        print(f"\nwrote {args.out}")
    except ImportError:
        print("matplotlib not installed: no plot")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(f"{time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
