#!/usr/bin/env python
"""Validate the fingerprint image quality score with error-versus-reject curves, and fit its weights.

Error versus reject (Grother & Tabassi, "Performance of biometric quality measures", IEEE TPAMI
2007; the "error versus discard characteristic" of ISO/IEC 29794-1): the decision threshold is
fixed once, on all impostor scores, at FMR = 0.1%; then the lowest-quality images of a set are
rejected, 0 to 20% of them, and the FNMR is recomputed on the genuine pairs that remain (a pair is
rejected when either image is).  A quality score that predicts matching errors makes the curve
fall; a random ordering keeps it flat on average.

Sets (``../shared/datasets`` or ``$BIOMATCH_DATASETS``):

- FVC2002 DB1_B-DB4_B: 280 genuine pairs, 2,880 all-impostor pairs per set (FVC protocol through
  :func:`biomatch.evaluate.fvc.run_fvc`);
- SOCOFing: the 3,000 real prints (subjects 1-300) and their 7,066 hard alterations at 165 dpi;
  genuine = real vs its altered versions, impostors = real vs real of every other finger
  (4.5 million pairs).

Orderings compared: the image quality score (:mod:`biomatch.extract.image_quality`), the
extractor's former whole-print quality (``print_quality``, the template's quality byte before the
image quality score),
random (mean of 200 orderings) and an oracle that knows the scores (images rejected by their
number of failed genuine pairs: a bound, not a method).  Ties of the integer scores are broken at
random (mean of 50 draws): rejection is by the 0-100 score a user sees.

``fit`` reproduces the weights of :class:`biomatch.params.QualityParams` from generated prints
(:mod:`biomatch.datasets.synthetic`, SFinGe-like) with known degradations: partial contact,
contrast loss, blur and noise, each applied at random strength to 40-50% of the impressions
(independently).  None of the validation sets is used to fit.  It also prints a 5-fold
(by finger) held-out likelihood for feature subsets, the rule by which features were kept.

Usage::

    .venv/bin/python benchmarks/quality_evr.py                 # EVR table + docs/quality_evr.png
    .venv/bin/python benchmarks/quality_evr.py --no-socofing   # FVC2002 only (about 1 min)
    .venv/bin/python benchmarks/quality_evr.py fit             # weights from generated prints

Extraction results (features, scores) are cached under ``$BIOMATCH_CACHE`` (default
``/tmp/biomatch_quality_cache``), never in the repository; the cache key holds the extraction
parameter hash and :data:`FEATURES_VERSION`.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATASETS = Path(os.environ.get("BIOMATCH_DATASETS", REPO.parent / "shared" / "datasets"))
CACHE = Path(os.environ.get("BIOMATCH_CACHE", "/tmp/biomatch_quality_cache"))
FEATURES_VERSION = 2  # bump when QualityFeatures' definitions change
FVC_SETS = {"db1_b": 500.0, "db2_b": 569.0, "db3_b": 500.0, "db4_b": 500.0}
SOCO_DPI = 165.0
FMR = 0.001
REJECT = np.array([0.0, 0.02, 0.05, 0.10, 0.15, 0.20])
REJECT_FINE = np.linspace(0.0, 0.20, 41)
FEATURES = ("area_mm2", "coherence", "clarity", "ridge_fraction", "n_minutiae", "minutiae_quality")


# ----------------------------------------------------------------------------- extraction
class _Recorder:
    """An ``extract(path, dpi)`` for run_fvc that also keeps each image's quality features."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def __call__(self, path, dpi):
        return self.one(path, dpi)[0]

    def one(self, path, dpi):
        from biomatch.errors import InvalidInputError
        from biomatch.extract import extract
        from biomatch.extract.image_quality import image_quality_from_capture
        from biomatch.template import Template

        cap: dict = {}
        try:
            t = extract(path, dpi, capture=cap)
        except InvalidInputError as exc:  # e.g. a stated dpi that the ridge period contradicts
            print(f"  {Path(path).name}: not extracted, scores 0 (failure to enrol): {exc}", file=sys.stderr)
            cap, t = {}, Template.empty()
        t0 = time.process_time()
        q = image_quality_from_capture(cap, t)  # what extract() adds for the template's quality byte
        ms = (time.process_time() - t0) * 1e3
        row = {"features": dataclasses.asdict(q.features), "print_quality": _former_quality(cap, t),
               "quality_ms": ms}
        self.rows[Path(path).stem] = row
        return t, row


def _former_quality(cap: dict, t) -> int:
    """The extractor's former whole-print quality (``print_quality``, the template's quality byte
    until the image quality score replaced it), from the captured maps: the ridge fraction is
    counted on the refined mask, so it can differ by a few points from what extraction used."""
    from biomatch.extract.quality import print_quality, ridge_fraction
    from biomatch.params import ExtractionParams

    if len(t) == 0 or "block_period" not in cap:
        return 0
    p = ExtractionParams()
    ridges = ridge_fraction(cap["block_period"], cap["mask"], p.block_size_px)
    return print_quality(cap["mask"], cap["coherence"], ridges, len(t), p.min_print_coherence)


def _cache_path(name: str) -> Path:
    from biomatch.params import ExtractionParams, params_hash

    # The extractor's code is part of the key: a change that keeps the parameters changes results.
    code = hashlib.sha256()
    for f in sorted((REPO / "biomatch" / "extract").glob("*.py")):
        code.update(f.read_bytes())
    return CACHE / f"{name}_{params_hash(ExtractionParams())}_{code.hexdigest()[:12]}_v{FEATURES_VERSION}"


def _save(name: str, names, rows, genuine_pairs, genuine, impostor) -> dict:
    path = _cache_path(name)
    CACHE.mkdir(parents=True, exist_ok=True, mode=0o700)
    np.savez(path.with_suffix(".tmp.npz"), genuine_pairs=np.asarray(genuine_pairs, np.int64),
             genuine=np.asarray(genuine, np.float64), impostor=np.asarray(impostor, np.float32))
    os.replace(path.with_suffix(".tmp.npz"), path.with_suffix(".npz"))
    path.with_suffix(".json").write_text(json.dumps({"names": list(names), "rows": [rows[n] for n in names]}))
    return _load(name)


def _load(name: str) -> dict | None:
    path = _cache_path(name)
    if not (path.with_suffix(".npz").exists() and path.with_suffix(".json").exists()):
        return None
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path.with_suffix(".npz")) as z:
        arrays = {k: z[k] for k in z.files}
    return {"names": meta["names"], "rows": meta["rows"], **arrays}


def fvc_set(folder: Path, dpi: float, name: str) -> dict:
    """Features of every image and the scores of the FVC protocol (all impostors), cached."""
    cached = _load(name)
    if cached is not None:
        return cached
    from biomatch.evaluate.fvc import run_fvc
    from biomatch.match import prepare

    rec = _Recorder()
    t0 = time.perf_counter()
    res = run_fvc(folder, dpi, extract=rec, prepare=prepare)
    print(f"  {name}: {len(res.names)} images, {len(res.genuine)} genuine / {len(res.impostor)} impostor pairs "
          f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return _save(name, res.names, rec.rows, res.pairs["genuine"], res.genuine, res.impostor)


def _extract_job(job):
    path, dpi = job
    from biomatch.formats import encode

    t, row = _Recorder().one(path, dpi)
    return Path(path).stem, encode(t), row


def socofing_set(root: Path, workers: int) -> dict:
    """SOCOFing real + altered-hard: features, genuine (real vs altered) and impostor (real vs real) scores."""
    cached = _load("socofing")
    if cached is not None:
        return cached
    from biomatch.match import FingerprintMatcher, prepare
    from biomatch.formats import decode

    real = sorted((root / "real").glob("*.png"))
    alt = sorted((root / "altered_hard").glob("*.png"))
    jobs = [(str(p), SOCO_DPI) for p in real + alt]
    t0 = time.perf_counter()
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            out = list(pool.imap(_extract_job, jobs, chunksize=32))
    else:
        out = list(map(_extract_job, jobs))
    print(f"  socofing: extracted {len(out)} images in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    names = [o[0] for o in out]
    rows = {o[0]: o[2] for o in out}
    templates = [decode(o[1]) for o in out]
    prepared = [prepare(t) if len(t) else None for t in templates]
    index = {n: k for k, n in enumerate(names)}
    n_real = len(real)
    gp, gs = [], []
    for k in range(n_real, len(names)):
        mate = index.get(names[k].rsplit("_", 1)[0])
        if mate is None:
            continue
        gp.append((mate, k))
        a, b = prepared[mate], prepared[k]
        gs.append(FingerprintMatcher(a).match(b) if a is not None and b is not None else 0.0)
    t0 = time.perf_counter()
    imp = []
    for i in range(n_real - 1):  # every real print against every later real print (other fingers)
        cand = [prepared[j] for j in range(i + 1, n_real)]
        if prepared[i] is None:
            imp.append(np.zeros(len(cand), np.float32))
            continue
        ok = [c is not None for c in cand]
        s = np.zeros(len(cand), np.float32)
        if any(ok):
            s[np.flatnonzero(ok)] = FingerprintMatcher(prepared[i]).match_many([c for c in cand if c is not None])
        imp.append(s)
    imp = np.concatenate(imp)
    print(f"  socofing: {len(gs)} genuine / {len(imp)} impostor pairs in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr, flush=True)
    return _save("socofing", names, rows, gp, gs, imp)


# ----------------------------------------------------------------------------- scores and curves
def features_of(data: dict):
    from biomatch.extract.image_quality import QualityFeatures

    return [QualityFeatures(**r["features"]) for r in data["rows"]]


def quality_of(data: dict, qp=None) -> np.ndarray:
    from biomatch.extract.image_quality import quality_score

    return np.array([quality_score(f, qp).score for f in features_of(data)], np.float64)


def threshold_at_fmr(impostor: np.ndarray, fmr: float) -> float:
    """The smallest score ``t`` with at most ``fmr`` of the impostors scoring >= t (next above the
    k-th highest impostor); a genuine pair fails when it scores below ``t``."""
    s = np.sort(np.asarray(impostor, np.float64))[::-1]
    k = int(math.floor(fmr * len(s)))  # impostors allowed at or above t
    return float(np.nextafter(s[k], np.inf)) if k < len(s) else -np.inf


def evr(order_keys: np.ndarray | None, pairs: np.ndarray, failed: np.ndarray, reject=REJECT, rng=None,
        draws: int = 1, n: int | None = None) -> np.ndarray:
    """FNMR after rejecting the lowest ``reject`` fractions of the ``n`` images by ``order_keys``.

    Ties are broken at random, averaged over ``draws`` draws (``rng`` required when ``draws > 1``
    or when ``order_keys`` is None: a random ordering of ``n`` images).
    """
    n = len(order_keys) if order_keys is not None else int(n)
    out = np.zeros(len(reject))
    for _ in range(draws):
        tie = rng.random(n) if rng is not None else np.arange(n)
        order = np.argsort(tie) if order_keys is None else np.lexsort((tie, order_keys))
        for r_i, r in enumerate(reject):
            bad = np.zeros(n, bool)
            bad[order[: int(round(r * n))]] = True
            keep = ~(bad[pairs[:, 0]] | bad[pairs[:, 1]])
            out[r_i] += failed[keep].mean() if keep.any() else np.nan
    return out / draws


def oracle_keys(n: int, pairs: np.ndarray, genuine: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """Lower keys for images in more failed pairs (then lower mean genuine score): a bound."""
    n_fail = np.bincount(pairs[failed].ravel(), minlength=n)
    tot = np.bincount(pairs.ravel(), weights=np.repeat(genuine, 2), minlength=n)
    cnt = np.maximum(np.bincount(pairs.ravel(), minlength=n), 1)
    return -n_fail * 10.0 + tot / cnt / (np.abs(genuine).max() + 1e-9)


def curves(data: dict, qp=None, reject=REJECT, fmr=FMR, seed: int = 0) -> dict[str, np.ndarray]:
    pairs, genuine = data["genuine_pairs"], data["genuine"]
    n = len(data["names"])
    failed = genuine < threshold_at_fmr(data["impostor"], fmr)
    q = quality_of(data, qp)
    pq = np.array([r["print_quality"] for r in data["rows"]], np.float64)
    rng = np.random.default_rng(seed)
    return {
        "image quality": evr(q, pairs, failed, reject, rng, draws=50),
        "print_quality (former)": evr(pq, pairs, failed, reject, rng, draws=50),
        "random": evr(None, pairs, failed, reject, np.random.default_rng(seed + 1), draws=200, n=n),
        "oracle (knows the scores)": evr(oracle_keys(n, pairs, genuine, failed), pairs, failed, reject),
    }


def falls(c: np.ndarray, rand: np.ndarray) -> bool:
    """The curve falls: lower FNMR at the last rejection than at none, and a lower mean over the
    grid than the random ordering's."""
    return bool(c[-1] < c[0] and np.nanmean(c) < np.nanmean(rand))


def plot(all_curves: dict[str, dict[str, np.ndarray]], path: Path, fmr: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"image quality": dict(color="C0", lw=2.2), "print_quality (former)": dict(color="C1", lw=1.5),
              "random": dict(color="grey", lw=1.2, ls="--"),
              "oracle (knows the scores)": dict(color="k", lw=0.8, ls=":")}
    sets = list(all_curves)
    fig, axes = plt.subplots(1, len(sets), figsize=(3.3 * len(sets), 3.4), sharey=False)
    for ax, s in zip(np.atleast_1d(axes), sets):
        for name, c in all_curves[s].items():
            ax.plot(100 * REJECT_FINE, 100 * c, label=name, **styles[name])
        ax.set_title(s, fontsize=10)
        ax.set_xlabel("images rejected (lowest quality), %")
        ax.set_xlim(0, 100 * REJECT_FINE[-1])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel(f"FNMR at FMR = {100 * fmr:g}% (threshold fixed), %")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="upper right")
    fig.suptitle("Error versus reject: biomatch image quality", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load_sets(socofing: bool, workers: int) -> dict[str, dict]:
    sets = {}
    for db, dpi in FVC_SETS.items():
        folder = DATASETS / "fvc2002" / db
        if folder.is_dir():
            sets[f"FVC2002 {db.upper()}"] = fvc_set(folder, dpi, db)
        else:
            print(f"  {folder} not found: skipped", file=sys.stderr)
    if socofing:
        root = DATASETS / "socofing"
        if (root / "real").is_dir() and (root / "altered_hard").is_dir():
            sets["SOCOFing real+altered"] = socofing_set(root, workers)
        else:
            print(f"  {root} not found: skipped", file=sys.stderr)
    return sets


def cmd_evr(args) -> int:
    sets = load_sets(args.socofing, args.workers)
    if not sets:
        print("no dataset found (set BIOMATCH_DATASETS)", file=sys.stderr)
        return 1
    print(f"Error versus reject: FNMR (%) at the threshold giving FMR = {100 * args.fmr:g}% on all impostors,"
          " as the lowest-quality images are rejected\n")
    head = f"{'set':24s} {'ordering':26s} " + " ".join(f"{100 * r:5.0f}%" for r in REJECT) + "  falls"
    print(head)
    print("-" * len(head))
    fine: dict[str, dict[str, np.ndarray]] = {}
    verdicts = {}
    for s, data in sets.items():
        c = curves(data, reject=REJECT, fmr=args.fmr)
        fine[s] = curves(data, reject=REJECT_FINE, fmr=args.fmr)
        for name, v in c.items():
            mark = ("yes" if falls(fine[s][name], fine[s]["random"]) else "NO") if name != "random" else ""
            if name == "image quality":
                verdicts[s] = mark
            print(f"{s:24s} {name:26s} " + " ".join(f"{100 * x:6.2f}" for x in v) + f"  {mark}")
        n_fail = int((data["genuine"] < threshold_at_fmr(data["impostor"], args.fmr)).sum())
        print(f"{'':24s} ({len(data['names'])} images, {len(data['genuine'])} genuine pairs, {n_fail} failed at 0%; "
              f"{len(data['impostor'])} impostor pairs)")
    print("\nQuality score per set: median [10th-90th percentile]; cost of the quality on top of extraction")
    for s, data in sets.items():
        q = quality_of(data)
        ms = np.array([r["quality_ms"] for r in data["rows"]])
        print(f"  {s:24s} {np.median(q):5.0f} [{np.percentile(q, 10):3.0f}-{np.percentile(q, 90):3.0f}]  "
              f"zero: {int((q == 0).sum())}/{len(q)}  quality {np.median(ms):.2f} ms median")
    print("\nThe image-quality curve falls on every set: "
          + ("YES" if all(v == "yes" for v in verdicts.values()) else "NO: " + ", ".join(
              s for s, v in verdicts.items() if v != "yes")))
    if args.plot:
        print(f"plot: {plot(fine, args.plot, args.fmr)}")
    return 0


# ----------------------------------------------------------------------------- fitting on generated prints
def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Partial contact, contrast loss, blur and noise, each with probability 0.4-0.5 at random strength."""
    import cv2

    out = img.astype(np.float32)
    bg = float(np.percentile(out, 98))
    if rng.random() < 0.4:  # keep one side of a random line: 25-90% of the image
        h, w = out.shape
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        d = (xx - w / 2) * np.cos(a) + (yy - h / 2) * np.sin(a)
        soft = np.clip((np.quantile(d, rng.uniform(0.25, 0.9)) - d) / 4.0, 0, 1)
        out = out * soft + bg * (1 - soft)
    if rng.random() < 0.5:
        out = bg - (bg - out) * rng.uniform(0.12, 1.0)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 2.8))
    if rng.random() < 0.5:
        out = out + rng.normal(0, rng.uniform(2, 45), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def synthetic_set(fingers: int, impressions: int, seed: int) -> dict:
    """A generated FVC-layout set of degraded impressions, run through the FVC protocol (cached)."""
    name = f"synthetic_{fingers}x{impressions}_s{seed}"
    cached = _load(name)
    if cached is not None:
        return cached
    import cv2

    from biomatch.datasets.synthetic import impression, master

    folder = CACHE / name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    t0 = time.perf_counter()
    for f in range(fingers):
        mp = master(seed * 1_000_003 + f)
        for i in range(impressions):
            img = impression(mp, (seed * 1_000_003 + f) * 131 + i).image
            cv2.imwrite(str(folder / f"{101 + f}_{i + 1}.png"), degrade(img, np.random.default_rng([seed, f, i])))
    print(f"  generated {fingers * impressions} impressions in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return fvc_set(folder, 500.0, name)


def design(feats, names: tuple[str, ...], cap: int) -> np.ndarray:
    cols = {
        "log_area": lambda f: math.log(max(f.area_mm2, 1e-3) / 100.0),
        "coherence": lambda f: f.coherence,
        "clarity": lambda f: f.clarity,
        "ridge_fraction": lambda f: f.ridge_fraction,
        "minutiae": lambda f: min(f.n_minutiae, cap),
    }
    return np.array([[cols[c](f) for c in names] for f in feats], np.float64)


def fit_weights(X: np.ndarray, pairs: np.ndarray, ok_pair: np.ndarray, usable: np.ndarray):
    """Maximum likelihood of P(pair ok) = sigmoid(z_a) sigmoid(z_b), z = c + X w, w >= 0.

    Returns (c, w, mean negative log-likelihood) in the units of X.
    """
    from scipy.optimize import minimize
    from scipy.special import log_expit

    mu, sd = X[usable].mean(0), X[usable].std(0) + 1e-12
    Z = (X - mu) / sd
    a, b = pairs[:, 0], pairs[:, 1]
    y = ok_pair.astype(np.float64)

    def nll(p):
        lq = log_expit(p[0] + Z[a] @ p[1:]) + log_expit(p[0] + Z[b] @ p[1:])
        return -(y * lq + (1 - y) * np.log(-np.expm1(np.minimum(lq, -1e-12)))).sum() / len(y)

    res = minimize(nll, np.r_[2.0, np.full(X.shape[1], 0.5)], method="L-BFGS-B",
                   bounds=[(None, None)] + [(0.0, None)] * X.shape[1])
    w = res.x[1:] / sd
    return float(res.x[0] - (w * mu).sum()), w, float(res.fun)


def _pair_nll(c, w, X, pairs, ok_pair) -> float:
    from scipy.special import log_expit

    z = c + X @ w
    lq = log_expit(z[pairs[:, 0]]) + log_expit(z[pairs[:, 1]])
    y = ok_pair.astype(np.float64)
    return float(-(y * lq + (1 - y) * np.log(-np.expm1(np.minimum(lq, -1e-12)))).mean())


SUBSETS = {
    "area": ("log_area",),
    "area+coherence": ("log_area", "coherence"),
    "area+clarity": ("log_area", "clarity"),
    "area+coherence+clarity": ("log_area", "coherence", "clarity"),
    "area+coherence+ridges": ("log_area", "coherence", "ridge_fraction"),
    "area+clarity+ridges": ("log_area", "clarity", "ridge_fraction"),
    "area+coherence+clarity+ridges": ("log_area", "coherence", "clarity", "ridge_fraction"),
    "all five": ("log_area", "coherence", "clarity", "ridge_fraction", "minutiae"),
}


def cmd_fit(args) -> int:
    from biomatch.params import QualityParams

    cap = QualityParams().minutiae_cap
    data = synthetic_set(args.fingers, args.impressions, args.seed)
    feats = features_of(data)
    pairs, genuine = data["genuine_pairs"], data["genuine"]
    usable = np.array([f.n_minutiae > 0 and f.area_mm2 >= QualityParams().min_area_mm2 for f in feats])
    keep = usable[pairs[:, 0]] & usable[pairs[:, 1]]
    t = threshold_at_fmr(data["impostor"], FMR)
    ok_pair = genuine >= t
    print(f"generated set: {len(feats)} impressions ({int((~usable).sum())} unusable), {len(genuine)} genuine pairs, "
          f"FNMR {100 * (~ok_pair).mean():.1f}% at FMR {100 * FMR:g}% (threshold {t:.4f})")
    finger = np.array([int(n.split("_")[0]) for n in data["names"]])
    folds = np.random.default_rng(args.seed).permutation(finger.max() + 1) % 5
    print("\nheld-out (5-fold by finger) negative log-likelihood per genuine pair; weights fitted on all:")
    for label, names in SUBSETS.items():
        X = design(feats, names, cap)
        held = []
        for k in range(5):
            test = folds[finger[pairs[:, 0]]] == k
            c, w, _ = fit_weights(X, pairs[keep & ~test], ok_pair[keep & ~test], usable)
            held.append(_pair_nll(c, w, X, pairs[keep & test], ok_pair[keep & test]) * (keep & test).sum())
        c, w, _ = fit_weights(X, pairs[keep], ok_pair[keep], usable)
        print(f"  {label:32s} {sum(held) / keep.sum():.4f}   c={c:+.2f} " +
              " ".join(f"{n}={v:.2f}" for n, v in zip(names, w)))
    names = SUBSETS[args.model]
    c, w, _ = fit_weights(design(feats, names, cap), pairs[keep], ok_pair[keep], usable)
    field = {"log_area": "weight_log_area", "coherence": "weight_coherence", "clarity": "weight_clarity",
             "ridge_fraction": "weight_ridge_fraction", "minutiae": "weight_minutiae"}
    values = {"bias": round(c, 2), **{field[n]: round(float(v), 2) for n, v in zip(names, w)}}
    print(f"\nmodel {args.model!r}: QualityParams(" + ", ".join(f"{k}={v}" for k, v in values.items()) + ")")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    ap.add_argument("--fmr", type=float, default=FMR, help="FMR of the fixed threshold (default 0.001)")
    ap.add_argument("--no-socofing", dest="socofing", action="store_false", help="FVC2002 sets only")
    ap.add_argument("--workers", type=int, default=2, help="processes for SOCOFing extraction (default 2)")
    ap.add_argument("--plot", type=Path, default=REPO / "docs" / "quality_evr.png",
                    help="figure path (default docs/quality_evr.png)")
    f = sub.add_parser("fit", help="fit QualityParams' weights on generated prints")
    f.add_argument("--fingers", type=int, default=100)
    f.add_argument("--impressions", type=int, default=8)
    f.add_argument("--seed", type=int, default=7)
    f.add_argument("--model", choices=list(SUBSETS), default="area+coherence+clarity+ridges")
    args = ap.parse_args(argv)
    return cmd_fit(args) if args.cmd == "fit" else cmd_evr(args)


if __name__ == "__main__":
    sys.exit(main())
