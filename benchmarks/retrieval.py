"""Hit rate vs penetration rate of the FAISS candidate-retrieval stage (issue 4, "Search design").

Protocols
---------
(a) FVC2002 B, single finger, per database: impression 1 of each finger enrolled,
    impressions 2-8 searched (10 fingers x 7 probes per database: penetration steps of 1/9).
(b) SOCOFing, single finger: the 3,000 real prints enrolled, the altered-hard prints searched.
(c) Ten-finger fusion (sum of per-finger Hamming similarities per person):
    SOCOFing (real prints of subjects 1-200 enrolled, altered-hard prints of 1-200 searched; a
    probe finger without an altered print contributes nothing) and generated identities
    (``template_impressions``: impression 0 enrolled, impression 1 searched) planted in a
    generated background.

Reported: hit rate at penetration 1e-4 ... 5e-2 for 1, 2, 4 and 10 fingers; penetration at
99% and 99.9% hit; d'; Daugman's effective degrees of freedom of the impostor normalised
Hamming distance.  Penetration = (rank of the mate - 1) / (gallery size - 1), ties counted
pessimistically.

Usage::

    .venv/bin/python benchmarks/retrieval.py [--identities 20000] [--plot out/retrieval.png]

Templates extracted from the shared datasets are cached under ``$BIOMATCH_CACHE``
(default ``/tmp/biomatch_retrieval_cache``), never in the repository.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATASETS = ROOT.parent / "shared" / "datasets"
CACHE = Path(os.environ.get("BIOMATCH_CACHE", "/tmp/biomatch_retrieval_cache"))
PENETRATIONS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 2e-2, 5e-2)
FVC_DPI = {"db1_b": 500, "db2_b": 569, "db3_b": 500, "db4_b": 500}
SOCO_DPI = 165
SOCO_FINGERS = [f"{h}_{f}" for h in ("Left", "Right") for f in ("thumb", "index", "middle", "ring", "little")]


# ----------------------------------------------------------------------------- template cache
def _extract_one(args):
    from biomatch.extract import extract
    from biomatch.formats import encode

    path, dpi = args
    try:
        return path.name, encode(extract(path, dpi=dpi))
    except Exception as exc:  # a print that fails to extract counts as empty
        return path.name, repr(exc)


def cached_templates(folder: Path, dpi: float, workers: int = 1) -> dict:
    """Templates of every image in ``folder``, by file name (extracted once, cached in /tmp)."""
    from biomatch.params import ExtractionParams, params_hash
    from biomatch.formats import decode
    from biomatch.template import Template

    CACHE.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = f"{folder.parent.name}_{folder.name}_{dpi}_{params_hash(ExtractionParams())}.pkl"
    cache = CACHE / key
    if cache.exists():
        raw = pickle.loads(cache.read_bytes())
    else:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".png", ".bmp"))
        jobs = [(p, dpi) for p in files]
        t0 = time.perf_counter()
        if workers > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers) as pool:
                raw = dict(pool.imap(_extract_one, jobs, chunksize=16))
        else:
            raw = dict(map(_extract_one, jobs))
        print(f"  extracted {len(raw)} templates from {folder} in {time.perf_counter() - t0:.0f} s", flush=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(raw))
        os.replace(tmp, cache)
    return {k: (decode(v) if isinstance(v, bytes) else Template.empty()) for k, v in raw.items()}


# ----------------------------------------------------------------------------- metrics
def penetration_of_mates(sim: np.ndarray, mate: np.ndarray) -> np.ndarray:
    """Penetration needed to reach each probe's mate: (#non-mates scoring >= mate) / (n - 1).

    ``sim`` float (q, n), larger = more similar; ``mate`` int (q,) the column of the mate.
    Ties count against the mate (pessimistic).
    """
    q = np.arange(len(sim))
    s_mate = sim[q, mate]
    ge = (sim >= s_mate[:, None]).sum(1) - 1
    return ge / (sim.shape[1] - 1)


def summarise(name: str, pen: np.ndarray, gen: np.ndarray | None = None, imp: np.ndarray | None = None,
              n_bits: int | None = None) -> dict:
    row = {"name": name, "probes": len(pen)}
    for p in PENETRATIONS:
        row[f"{p:g}"] = float((pen <= p + 1e-12).mean())
    for h in (0.99, 0.999):
        row[f"pen@{h:.3g}"] = float(np.quantile(pen, h, method="higher"))
    if gen is not None and imp is not None:
        row["d'"] = float((imp.mean() - gen.mean()) / np.sqrt((imp.var() + gen.var()) / 2))
        if n_bits:
            x = imp / n_bits
            row["dof"] = float(x.mean() * (1 - x.mean()) / x.var())
    return row


def print_table(rows: list[dict]) -> None:
    cols = [f"{p:g}" for p in PENETRATIONS]
    head = f"{'protocol':52s} {'probes':>6s} " + " ".join(f"{c:>6s}" for c in cols) + \
        f" {'pen@99%':>8s} {'pen@99.9%':>9s} {'d_prime':>7s} {'dof':>5s}"
    print("hit rate at penetration")
    print(head)
    for r in rows:
        line = f"{r['name']:52s} {r['probes']:6d} " + " ".join(f"{r[c]:6.3f}" for c in cols)
        line += f" {r['pen@0.99']:8.4f} {r['pen@0.999']:9.4f}"
        line += f" {r['d' + chr(39)]:7.2f}" if "d'" in r else f" {'':7s}"
        line += f" {r['dof']:5.0f}" if "dof" in r else ""
        print(line, flush=True)


# ----------------------------------------------------------------------------- protocols
SCORING = "weighted"  # set by --scoring: "hamming" (symmetric) or "weighted" (the code stage's probe weights)


def similarity(model, probe_templates: list, gallery_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sim float32 (q, n), probe valid (q,))``: the code stage's per-finger score, in units of
    ``n_bits/2 - Hamming`` (the stage scores with probe weights; ``--scoring hamming`` the plain form)."""
    from biomatch.retrieval.codes import finger_codes, hamming, probe_weights

    half = model.params.n_bits / 2
    if SCORING == "hamming":
        codes, valid = finger_codes(probe_templates, model, return_valid=True)
        return (half - hamming(codes, gallery_codes)).astype(np.float32), valid
    from biomatch.retrieval.faiss_retrieval import FaissRetrievalParams

    w = probe_weights(probe_templates, model, clip=FaissRetrievalParams().probe_weight_clip_sd)
    sim = np.zeros((len(probe_templates), len(gallery_codes)), np.float32)
    for i in range(len(probe_templates)):
        sim[i] = w.scores(i, gallery_codes)
    return sim, w.valid


def fvc_single(model) -> list[dict]:
    from biomatch.retrieval.codes import finger_codes

    rows = []
    for db, dpi in FVC_DPI.items():
        ts = cached_templates(DATASETS / "fvc2002" / db, dpi)
        fingers = sorted({n.split("_")[0] for n in ts})
        enrol = finger_codes([ts[f"{f}_1.tif"] for f in fingers], model)
        probe_names = [(i, f"{f}_{k}.tif") for i, f in enumerate(fingers) for k in range(2, 9)]
        mate = np.array([i for i, _ in probe_names])
        d = model.params.n_bits / 2 - similarity(model, [ts[n] for _, n in probe_names], enrol)[0]
        pen = penetration_of_mates(-d.astype(float), mate)
        gen = d[np.arange(len(d)), mate]
        imp = d[mate[:, None] != np.arange(d.shape[1])[None, :]]
        rows.append(summarise(f"(a) FVC2002 {db.upper()} 1 finger, gallery 10", pen, gen, imp, model.params.n_bits))
    return rows


def socofing_split():
    real = cached_templates(DATASETS / "socofing" / "real", SOCO_DPI)
    alt = cached_templates(DATASETS / "socofing" / "altered_hard", SOCO_DPI)
    return real, alt


def _soco_key(name: str):
    m = re.match(r"(\d+)__([MF])_(Left|Right)_(\w+?)_finger(?:_(CR|Obl|Zcut))?\.png$", name)
    if not m:
        return None
    return int(m.group(1)), f"{m.group(3)}_{m.group(4)}", m.group(5)


def socofing_single(model, real, alt) -> dict:
    from biomatch.retrieval.codes import finger_codes

    real_names = sorted(real)
    index = {(_soco_key(n)[0], _soco_key(n)[1]): i for i, n in enumerate(real_names)}
    enrol = finger_codes([real[n] for n in real_names], model)
    probe_names = [n for n in sorted(alt) if _soco_key(n) and (_soco_key(n)[0], _soco_key(n)[1]) in index]
    mate = np.array([index[(_soco_key(n)[0], _soco_key(n)[1])] for n in probe_names])
    d = model.params.n_bits / 2 - similarity(model, [alt[n] for n in probe_names], enrol)[0]
    pen = penetration_of_mates(-d.astype(float), mate)
    gen = d[np.arange(len(d)), mate]
    imp = d[mate[:, None] != np.arange(d.shape[1])[None, :]]
    return summarise(f"(b) SOCOFing 1 finger, gallery {len(real_names)}", pen, gen, imp, model.params.n_bits)


SUBSETS = {1: ["Right_index"], 2: ["Right_index", "Left_index"],
           4: ["Right_index", "Left_index", "Right_middle", "Left_middle"], 10: SOCO_FINGERS}


def fused_penetration(sims: dict, fingers: list, mate: np.ndarray) -> np.ndarray:
    total = sum(sims[f] for f in fingers)
    return penetration_of_mates(total, mate)


def socofing_ten(model, real, alt, subjects=range(1, 201)) -> list[dict]:
    """Per-finger similarity = n_bits/2 - Hamming (0 for an unusable or absent finger)."""
    from biomatch.retrieval.codes import finger_codes

    subjects = list(subjects)
    sidx = {s: i for i, s in enumerate(subjects)}
    by_key = {}
    for n in real:
        k = _soco_key(n)
        if k and k[0] in sidx:
            by_key[(k[0], k[1])] = real[n]
    alts = {}
    for n in sorted(alt):
        k = _soco_key(n)
        if k and k[0] in sidx:
            alts.setdefault((k[0], k[1]), {})[k[2]] = alt[n]
    sims = {}
    variants = ("CR", "Obl", "Zcut")
    probe_subject = np.repeat(np.arange(len(subjects)), len(variants))  # 3 probes per subject
    for f in SOCO_FINGERS:
        g_t = [by_key.get((s, f)) for s in subjects]
        g_codes, g_valid = finger_codes([t if t is not None else _empty() for t in g_t], model, return_valid=True)
        p_t, p_ok = [], []
        for s in subjects:
            choice = alts.get((s, f), {})
            for v in variants:  # prefer this variant, else the next available one
                t = next((choice[w] for w in variants[variants.index(v):] + variants[:variants.index(v)]
                          if w in choice), None)
                p_t.append(t if t is not None else _empty())
                p_ok.append(t is not None)
        sim, p_valid = similarity(model, p_t, g_codes)
        sim = sim.astype(float)
        sim[~(p_valid & np.array(p_ok))] = 0.0
        sim[:, ~g_valid] = 0.0
        sims[f] = sim
    rows = []
    for n_f, fingers in SUBSETS.items():
        pen = fused_penetration(sims, fingers, probe_subject)
        total = sum(sims[f] for f in fingers)
        gen = -total[np.arange(len(total)), probe_subject]
        imp = -total[probe_subject[:, None] != np.arange(total.shape[1])[None, :]]
        rows.append(summarise(f"(c) SOCOFing {n_f:2d} finger(s), gallery {len(subjects)}", pen, gen, imp))
    return rows


def _empty():
    from biomatch.template import Template

    return Template.empty()


def generated_ten(model, identities: int, probes: int, seed_base: int = 1_000_000, population=None) -> list[dict]:
    """Generated identities x 10 fingers; ``probes`` of them searched with a second impression
    (``population``: a PopulationModel, persons ``seed_base // 16 + i``, fingers ``person * 16 + position``)."""
    from biomatch.datasets.synthetic import template_impressions
    from biomatch.retrieval.codes import finger_codes

    half = model.params.n_bits / 2
    t0 = time.perf_counter()
    sims = {}
    n_codes = 0
    for f in range(10):
        gal, prb = [], []
        for i in range(identities):
            seed = seed_base + i * 10 + f if population is None else (seed_base // 16 + i) * 16 + f + 1
            if i < probes:
                a, b = template_impressions(seed, 2, population)
                prb.append(b)
            else:
                (a,) = template_impressions(seed, 1, population)
            gal.append(a)
        g_codes, g_valid = finger_codes(gal, model, return_valid=True)
        sim, p_valid = similarity(model, prb, g_codes)
        sim[~p_valid] = 0
        sim[:, ~g_valid] = 0
        n_codes += len(gal) + len(prb)
        sims[f] = sim
    mate = np.arange(probes)
    rows = []
    for n_f in (1, 2, 4, 10):
        fingers = list(range(n_f))
        pen = fused_penetration(sims, fingers, mate)
        total = sum(sims[f] for f in fingers)
        gen = -total[mate, mate]
        imp = -total[mate[:, None] != np.arange(total.shape[1])[None, :]]
        if n_f == 1:  # back to Hamming distances for the degrees of freedom
            gen, imp = gen + half, imp + half
        label = "generated" if population is None else "registry-like"
        rows.append(summarise(f"(c) {label} {n_f:2d} finger(s), gallery {identities}", pen, gen, imp,
                              model.params.n_bits if n_f == 1 else None))
    print(f"  generated protocol: {n_codes} templates encoded, {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def encode_speed(model, n: int = 20000) -> float:
    from biomatch.datasets.synthetic import template_impressions
    from biomatch.retrieval.codes import finger_codes

    ts = [t for f in range(n // 2) for t in template_impressions(5_000_000 + f, 2)]
    finger_codes(ts[:10], model)
    t0 = time.process_time()
    finger_codes(ts, model)
    return len(ts) / (time.process_time() - t0)


def plot(rows: list[dict], path: Path) -> None:
    """Hit rate vs penetration: one colour per protocol, solid = weighted scoring, dashed = Hamming."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    xs = list(PENETRATIONS)
    protocols = list(dict.fromkeys(r["name"][4:] for r in rows))
    colours = plt.cm.tab20(np.linspace(0, 1, max(len(protocols), 2)))
    for r in rows:
        i = protocols.index(r["name"][4:])
        weighted = r["name"].startswith("wei")
        ax.plot(xs, [r[f"{p:g}"] for p in xs], marker="o" if weighted else None, ms=3, color=colours[i],
                ls="-" if weighted else "--", lw=1.4 if weighted else 1.0,
                label=r["name"][4:] if weighted or not any(x["name"].startswith("wei") for x in rows) else None)
    ax.set_xscale("log"), ax.set_xlabel("penetration rate"), ax.set_ylabel("hit rate (mate within the penetration)")
    ax.set_title("FAISS code stage: solid = probe-weighted scores, dashed = plain Hamming", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5)), ax.grid(True, which="both", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--identities", type=int, default=20000, help="generated gallery size (persons)")
    ap.add_argument("--probes", type=int, default=1000, help="generated mated probes (persons)")
    ap.add_argument("--plot", type=Path, help="write a hit-rate vs penetration plot here")
    ap.add_argument("--cache-only", action="store_true", help="only extract and cache the templates")
    ap.add_argument("--scoring", choices=["weighted", "hamming", "both"], default="both",
                    help="per-finger code score: the probe-weighted one the code stage uses, plain Hamming, or both")
    ap.add_argument("--population", choices=["default", "registry", "both"], default="both",
                    help="generated identities: the default template model, the registry-like population, or both")
    ap.add_argument("--code-set", action="append", metavar="FIELD=VALUE",
                    help="EncodeParams override of the model's code computation, e.g. window_width_mm=12 (an A/B; "
                         "the model's trained arrays are kept)")
    ap.add_argument("--model", type=Path, help="an encode model file instead of the shipped one")
    args = ap.parse_args(argv)
    if args.cache_only:
        for db, dpi in FVC_DPI.items():
            cached_templates(DATASETS / "fvc2002" / db, dpi, workers=2)
        cached_templates(DATASETS / "socofing" / "real", SOCO_DPI, workers=2)
        cached_templates(DATASETS / "socofing" / "altered_hard", SOCO_DPI, workers=2)
        return 0
    import faiss

    faiss.omp_set_num_threads(1)
    from dataclasses import replace

    from biomatch.retrieval.codes import EncodeModel, EncodeParams, default_model

    model = EncodeModel.load(args.model) if args.model else default_model()
    if args.code_set:
        over = {k: type(getattr(EncodeParams(), k))(float(v)) for k, v in (x.split("=", 1) for x in args.code_set)}
        model = EncodeModel(replace(model.params, **over), model.mean, model.projection)
    print(f"code generation {model.generation}: {model.params.n_bits} bits = {model.params.n_bytes} bytes per finger")
    print(f"encoding speed: {encode_speed(model):,.0f} codes/s (one core, CPU time, batched)", flush=True)
    from biomatch.datasets.synthetic import REGISTRY_POPULATION

    global SCORING
    rows = []
    real = alt = None
    for scoring in (["weighted", "hamming"] if args.scoring == "both" else [args.scoring]):
        SCORING = scoring
        part = []
        if DATASETS.exists():
            part += fvc_single(model)
            if real is None:
                real, alt = socofing_split()
            part.append(socofing_single(model, real, alt))
            part += socofing_ten(model, real, alt)
        else:
            print(f"  {DATASETS} not found: real-data protocols skipped")
        if args.population in ("default", "both"):
            part += generated_ten(model, args.identities, args.probes)
        if args.population in ("registry", "both"):
            part += generated_ten(model, args.identities, args.probes, population=REGISTRY_POPULATION)
        for r in part:
            r["name"] = f"{scoring[:3]} {r['name']}"
        rows += part
    print_table(rows)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
