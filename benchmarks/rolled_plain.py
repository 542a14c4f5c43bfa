"""Rolled versus plain prints: what cross-type matching costs (issue 18, item 2).

Generated ten-print cards (``biomatch synth tenprint``): two captures of the same people
(``--capture 0`` and ``1``: the same fingers, new impressions), each with its rolled prints and its
plain prints (the slap's fingers cropped by their truth boxes, ``--plain``).  Every comparison
type is scored all-impostor, as FVC does: every mated pair (the same finger in capture 0 and
capture 1) and every non-mated pair (two different fingers, capture 0 against capture 1):

    plain-plain    plain (capture 0) vs plain (capture 1)
    rolled-rolled  rolled vs rolled
    rolled-plain   rolled enrolled (capture 0), plain searched (capture 1)
    plain-rolled   plain enrolled, rolled searched

EER, FMR100, FMR1000 (FNMR at FMR <= 1%, 0.1%) in %, genuine score median.

``--codes``: the retrieval codes' mate ranks.  Each capture-1 print is searched by code among every
capture-0 print of the enrolled kind: the mated people's and, with ``--background B``, those of B more
people captured once (cards ``cards+1 .. cards+B``, nobody's mates), so that penetration is measured
against a list of ``(cards + B) x 10`` fingers: the mate within the first 0.1%, 1% and 5%, and the
rank's median, 90th and 99th percentiles and maximum, scored by Hamming distance and as the gallery's
code stage scores them (the probe's per-bit weights).  ``--code-set FIELD=VALUE`` computes the codes
with other EncodeParams (the shipped model's arrays kept): an A/B of the code computation.

    .venv/bin/python benchmarks/rolled_plain.py [--cards 40] [--seed 2026] [--workers 2]
        [--dpi 500|1000] [--mode pipeline|area|nearest|gauss|native] [--set max_minutiae=120 ...]
        [--match KEY=VALUE ...] [--codes [--background 120] [--code-set window_width_mm=0 ...]] [--no-match]

``--set`` / ``--match`` override ExtractionParams / MatchParams fields (A/B of a fix).
``--mode`` (1000 ppi cards): ``pipeline`` hands the extractor the 1000 ppi image (it resamples to
500 ppi itself, area interpolation); ``area`` / ``nearest`` / ``gauss`` downsample first with that
filter (bilinear at exactly 1/2 is the 2x2 mean, the same as area); ``native`` is an experiment: the extractor at 1000 ppi with its pixel lengths doubled.  ``--timing`` reports CPU ms per extraction by image kind.
``--real``: look for mated pairs in ``../shared/datasets/samples`` (the 1000 ppi NIST cards and
the assorted 500 ppi prints) and say what it found.
Cards are generated once into ``out/rolled_plain[_1000]/cap0|cap1`` (reused when present; a larger
``--cards`` or ``--background`` adds the missing ones) and extracted once per extraction setting
(``templates_by_image_<key>.pkl`` there, 0600: only the new images are extracted).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATASETS = Path(os.environ.get("BIOMATCH_DATASETS", REPO.parent / "shared" / "datasets"))

KINDS = ("plain", "rolled")
PAIRS = (("plain-plain", "plain", "plain"), ("rolled-rolled", "rolled", "rolled"),
         ("rolled-plain", "rolled", "plain"), ("plain-rolled", "plain", "rolled"))


def _coerce(cls, items):
    """``key=value`` strings -> field values of the dataclass ``cls`` (typed like its default)."""
    out = {}
    defaults = cls()
    for item in items or ():
        k, _, v = item.partition("=")
        cur = getattr(defaults, k)
        out[k] = type(cur)(float(v)) if isinstance(cur, (int, float)) and not isinstance(cur, bool) else \
            (v.lower() in ("1", "true", "yes") if isinstance(cur, bool) else v)
    return out


def generate(folder: Path, cards: int, seed: int, dpi: int, workers: int, background: int = 0) -> None:
    """Cards 1..cards in captures 0 and 1 (the mated people), and cards cards+1..cards+background in
    capture 0 only (people nobody searches for: the background of the code search)."""
    from biomatch.datasets.tenprint import TenprintParams, write_cards

    for cap, first, n in ((0, 1, cards), (1, 1, cards), (0, cards + 1, background)):
        out = folder / f"cap{cap}"
        if not n:
            continue
        last = first + n - 1
        done = [k for k in range(first, last + 1) if (out / f"card_{k:04d}" / "truth.json").exists()]
        if len(done) == n:
            continue
        # (cards are independent: a set cut short by a stop is extended, not made again)
        todo = first + len(done) if done == list(range(first, first + len(done))) else first
        t0 = time.perf_counter()
        write_cards(out, last - todo + 1, seed, dpi=dpi, swap_rate=0.0, hand_swap_rate=0.0, missing_rate=0.0,
                    params=TenprintParams(write_plain=True), workers=workers, capture=cap, first=todo)
        took = time.perf_counter() - t0
        print(f"generated cards {todo}-{last} (capture {cap}, {dpi} ppi) in {took:.0f} s "
              f"({took * workers / (last - todo + 1):.1f} CPU-s per card with {workers} workers)", flush=True)


def _items(folder: Path, cards: int, background: int = 0) -> list[tuple[int, int, str, int, Path]]:
    """(capture, card, kind, true position, image path) for every rolled and plain print (the
    background cards: capture 0, numbers above ``cards``)."""
    items = []
    for cap, numbers in ((0, range(1, cards + background + 1)), (1, range(1, cards + 1))):
        for n in numbers:
            d = folder / f"cap{cap}" / f"card_{n:04d}"
            truth = json.loads((d / "truth.json").read_text())
            for claimed, r in truth["rolled"].items():
                items.append((cap, n, "rolled", int(r["true_position"]), d / r["image"]))
            for p in range(1, 11):
                if (d / f"plain_{p:02d}.png").exists():
                    items.append((cap, n, "plain", p, d / f"plain_{p:02d}.png"))
    return items


_SCALED_PX = ("block_size_px", "gradient_sigma_px", "orientation_sigma_px", "ridge_period_min_px",
              "ridge_period_max_px", "ridge_period_default_px", "gabor_sigma_along_px", "gabor_sigma_across_px",
              "gabor_radius_px", "border_margin_px", "spur_length_px", "short_ridge_length_px",
              "cluster_distance_px", "hole_perimeter_px", "ending_valley_fork_max_px", "max_image_side_px")


def extract_at_native_resolution(img, dpi, overrides):
    """EXPERIMENT, not the pipeline: run the extractor on the image at its own resolution with every
    pixel length of ExtractionParams scaled by dpi / 500, then bring the minutiae to the 500 ppi
    template grid (the matcher's).  The resolution check is skipped (the dpi is known here)."""
    import cv2

    import biomatch.extract as ex
    from biomatch.extract.block_orientation import block_orientations
    from biomatch.params import ExtractionParams
    from biomatch.template import Template

    f = dpi / 500.0
    base = ExtractionParams(**overrides)
    scaled = {k: type(getattr(base, k))(round(getattr(base, k) * f, 6)) for k in _SCALED_PX}
    p = replace(base, **scaled)
    saved = ex.load_working_image
    ex.load_working_image = lambda image, dpi_, p_, **kw: image  # noqa: E731  (the native grey image)
    try:
        cap = {}
        t = ex.extract(img, 500, p, cap)
    finally:
        ex.load_working_image = saved
    m = t.minutiae.copy()
    m["x"] = np.round(m["x"] / f).astype(m["x"].dtype)
    m["y"] = np.round(m["y"] / f).astype(m["y"].dtype)
    h, w = img.shape
    w5, h5 = int(round(w / f)), int(round(h / f))
    grid = None
    if t.orientation_grid is not None and "orientation" in cap:
        th = cap["orientation"]
        c2 = cv2.resize(np.cos(2 * th).astype(np.float32), (w5, h5), interpolation=cv2.INTER_AREA)
        s2 = cv2.resize(np.sin(2 * th).astype(np.float32), (w5, h5), interpolation=cv2.INTER_AREA)
        coh = cv2.resize(cap["coherence"].astype(np.float32), (w5, h5), interpolation=cv2.INTER_AREA)
        mask = (cv2.resize(cap["mask"].astype(np.float32), (w5, h5), interpolation=cv2.INTER_AREA) > 0.5)
        grid = block_orientations(np.mod(0.5 * np.arctan2(s2, c2), np.pi).astype(np.float32), coh,
                                  mask.astype(np.uint8))
    return Template(m, w5, h5, t.quality, t.params_hash, grid)


def _extract_one(args):
    path, dpi, mode, overrides = args
    import cv2

    import biomatch
    from biomatch.params import ExtractionParams

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    t0 = time.process_time()
    if mode == "native" and dpi != 500:
        return extract_at_native_resolution(img, dpi, overrides), time.process_time() - t0
    if mode in ("area", "nearest", "gauss") and dpi != 500:
        f = 500 / dpi
        if mode == "gauss":   # anti-alias with a Gaussian, then decimate
            img = cv2.GaussianBlur(img, (0, 0), 0.5 / f)
        # (bilinear at exactly 1/2 is the 2x2 mean, i.e. area: nearest is the careless alternative)
        interp = cv2.INTER_AREA if mode == "area" else cv2.INTER_NEAREST
        img = cv2.resize(img, None, fx=f, fy=f, interpolation=interp)
        dpi = 500
    t = biomatch.extract(img, dpi, ExtractionParams(**overrides))
    return t, time.process_time() - t0


def extract_all(items, dpi, mode, overrides, workers):
    jobs = [(it[4], dpi, mode, overrides) for it in items]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_extract_one, jobs, chunksize=8))


def score(templates: dict, enrol_kind: str, search_kind: str, match_overrides: dict):
    """Genuine and impostor scores: capture-0 ``enrol_kind`` against capture-1 ``search_kind``."""
    import biomatch
    from biomatch.match import prepare
    from biomatch.params import MatchParams

    mp = MatchParams(**match_overrides)
    enrol = {k: t for k, t in templates.items() if k[0] == 0 and k[2] == enrol_kind}
    search = {k: t for k, t in templates.items() if k[0] == 1 and k[2] == search_kind}
    keys_s = sorted(search)
    gallery = [prepare(search[k], mp) for k in keys_s]
    gen, imp = [], []
    for ke in sorted(enrol):
        s = biomatch.FingerprintMatcher(enrol[ke], mp).match_many(gallery)
        for ks, v in zip(keys_s, s):
            (gen if (ks[1], ks[3]) == (ke[1], ke[3]) else imp).append(float(v))
    return np.array(gen), np.array(imp)


def code_retrieval(templates: dict, enrol_kind: str, search_kind: str, model=None) -> dict:
    """Finger codes (biomatch.retrieval.codes): each capture-1 ``search_kind`` print searched among every
    capture-0 ``enrol_kind`` print (the mated people's and the background's), as the gallery's code
    stage scores them: by Hamming distance, and by the probe's per-bit weights (``ProbeWeights``, clip
    1 sd: the rescoring of the scanned rows).  The mate's rank is the number of enrolled fingers
    scored better, ties counted half (0: first).

    ``model``: an EncodeModel (default: the shipped one), e.g. the shipped arrays with other
    EncodeParams (a fix under test)."""
    from biomatch.retrieval.codes import default_model, finger_codes, hamming, probe_weights

    model = model or default_model()
    ke = sorted(k for k in templates if k[0] == 0 and k[2] == enrol_kind)
    ks = sorted(k for k in templates if k[0] == 1 and k[2] == search_kind)
    t0 = time.process_time()
    ce = finger_codes([templates[k] for k in ke], model)
    enc_us = 1e6 * (time.process_time() - t0) / len(ke)
    pw = probe_weights([templates[k] for k in ks], model)
    index = {(k[1], k[3]): i for i, k in enumerate(ke)}
    out = {"enrolled": len(ke), "searched": len(ks), "encode_us": enc_us}
    d_all = hamming(pw.codes, ce).astype(float)
    for name, sign in (("hamming", 1.0), ("weighted", -1.0)):
        ranks, dm = [], []
        for j, k in enumerate(ks):
            d = d_all[j] if name == "hamming" else -pw.scores(j, ce).astype(float)
            i = index[(k[1], k[3])]
            ranks.append((d < d[i]).sum() + 0.5 * ((d == d[i]).sum() - 1))
            dm.append(sign * d[i])
        r = np.array(ranks)
        n = len(ke)
        out[name] = dict(mate_median=float(np.median(dm)),
                         **{f"hit_{p}": float((r < float(p) / 100 * n).mean() * 100) for p in ("0.1", "1", "5")},
                         rank_median=float(np.median(r)), rank_p90=float(np.percentile(r, 90)),
                         rank_p99=float(np.percentile(r, 99)), rank_max=float(r.max()),
                         ranks=[float(x) for x in r])
    imp = d_all[np.arange(len(ks))[:, None], np.arange(min(50, len(ke)))[None, :]]
    out["impostor_hamming"] = float(np.median(imp))
    return out


def code_table(templates: dict, model=None, label: str = "") -> dict:
    """Print the code search's mate ranks per comparison type; returns them by type."""
    n_e = sum(1 for k in templates if k[0] == 0 and k[2] == "plain")
    print(f"\n| finger codes{label}: search among {n_e} enrolled | scoring | mate | in first 0.1% | 1% | 5% | "
          "rank median | p90 | p99 | max |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = {}
    for name, a, b in PAIRS:
        c = code_retrieval(templates, a, b, model)
        rows[name] = c
        for scoring in ("hamming", "weighted"):
            x = c[scoring]
            print(f"| {name} | {scoring} | {x['mate_median']:.0f} | {x['hit_0.1']:.1f}% | {x['hit_1']:.1f}% | "
                  f"{x['hit_5']:.1f}% | {x['rank_median']:.1f} | {x['rank_p90']:.1f} | {x['rank_p99']:.1f} | "
                  f"{x['rank_max']:.0f} |", flush=True)
    return rows


def metrics(gen, imp):
    from biomatch.evaluate.metrics import eer, fnmr_at_fmr

    return (100 * eer(gen, imp), 100 * fnmr_at_fmr(gen, imp, 0.01), 100 * fnmr_at_fmr(gen, imp, 0.001),
            float(np.median(gen)), float(np.percentile(gen, 1)), float(imp.max()))


def real_pairs() -> None:
    """Say whether the shared samples hold mated rolled/plain pairs."""
    root = DATASETS / "samples"
    for sub in ("nist_tenprint_1000ppi", "assorted_500ppi", "nist_libbiomeval"):
        names = sorted(p.name for p in (root / sub).glob("*")) if (root / sub).exists() else []
        print(f"{sub}: {len(names)} files: {', '.join(names)}")
    print("nist_tenprint_1000ppi: cardNNNN_FF = card NNNN, finger FF; every card holds distinct fingers "
          "(0001: 01, 03; 0003: 05, 07; 0002, 0004, 0005 one each): no two images of one finger, no mated pair. "
          "assorted_500ppi: five images from five sources (CISL, FVC2002 DB2_A, NIST SD14, SD4, SD27): no mated "
          "pair. nist_libbiomeval: one rolled print (type3.an2k, right index, 250 ppi) and one right-hand slap "
          "(type4-slaps.an2k, FGP 13): a candidate pair if they are one person's; scored below.")
    import biomatch
    from biomatch.formats.an2k import read_enrolment

    lib = root / "nist_libbiomeval"
    if not (lib / "type3.an2k").exists():
        return
    slap = read_enrolment(lib / "type4-slaps.an2k").fingers[13].pixels
    rolled = read_enrolment(lib / "type3.an2k").fingers[2].pixels[40:330]  # below the printed caption
    # The slap's four fingertips, boxed by eye (index bottom left, with the card's punched hole).
    boxes = {"index": (90, 470, 430, 1000), "middle": (400, 0, 720, 520), "ring": (770, 0, 1060, 470),
             "little": (1190, 380, 1520, 720)}
    m = biomatch.FingerprintMatcher(biomatch.extract(rolled, 250))
    scores = {k: m.match(biomatch.extract(slap[y0:y1, x0:x1], 500)) for k, (x0, y0, x1, y1) in boxes.items()}
    print("  type3 rolled right index vs the slap's fingertips: "
          + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
          + " (thresholds: FMR 1% 0.0692, 0.1% 0.0915)")


def real_1000(modes=("pipeline", "area", "nearest", "native")) -> None:
    """The real 1000 ppi card crops: CPU ms per image and minutiae per mode (no mated pairs to score),
    and how far each mode's templates are from the pipeline's (mean best-match score against it)."""
    import cv2

    import biomatch

    paths = sorted((DATASETS / "samples" / "nist_tenprint_1000ppi").glob("*.bmp"))
    if not paths:
        print("no real 1000 ppi samples found")
        return
    out = {}
    for mode in modes:
        res = [_extract_one((p, 1000, mode, {})) for p in paths]
        out[mode] = res
        ms = [1000 * r[1] for r in res]
        n = [len(r[0].minutiae) for r in res]
        print(f"  real 1000 ppi ({len(paths)} card crops), mode {mode}: CPU ms median {np.median(ms):.0f} "
              f"(min {min(ms):.0f}, max {max(ms):.0f}); minutiae median {np.median(n):.0f}", flush=True)
    ref = out["pipeline"]
    for mode in modes[1:]:
        same = [biomatch.FingerprintMatcher(a[0]).match(b[0]) for a, b in zip(ref, out[mode])]
        print(f"  {mode} vs pipeline, same image: score median {np.median(same):.3f}, "
              f"identical templates {sum(a[0] == b[0] for a, b in zip(ref, out[mode]))}/{len(ref)}")
    imp = [biomatch.FingerprintMatcher(a[0]).match(b[0]) for i, a in enumerate(ref) for j, b in enumerate(ref)
           if i != j]
    print(f"  pipeline, different fingers ({len(imp)} ordered pairs): max score {max(imp):.4f}")
    _ = cv2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cards", type=int, default=40)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--dpi", type=int, default=500, choices=(500, 1000))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mode", default="pipeline", choices=("pipeline", "area", "nearest", "gauss", "native"),
                    help="non-500 ppi images: pipeline = extract(image, dpi) (it resamples to 500 itself); "
                         "area/nearest/gauss = downsample to 500 first with that filter; native = EXPERIMENT, "
                         "the extractor at the image's resolution with its pixel lengths scaled")
    ap.add_argument("--set", action="append", metavar="FIELD=VALUE", help="ExtractionParams override")
    ap.add_argument("--match", action="append", metavar="FIELD=VALUE", help="MatchParams override")
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--codes", action="store_true", help="also the retrieval codes' mate ranks")
    ap.add_argument("--background", type=int, default=0, metavar="B",
                    help="with --codes: B more people (capture 0 only) enrolled beside the mated ones, so that "
                         "the code search's penetration is measured against a list of (cards + B) x 10 fingers")
    ap.add_argument("--model", type=Path, help="with --codes: an encode model file instead of the shipped one")
    ap.add_argument("--no-match", action="store_true", help="skip the matcher's scores (codes only)")
    ap.add_argument("--code-set", action="append", metavar="FIELD=VALUE",
                    help="EncodeParams override of the shipped model's code computation (an A/B of the codes; "
                         "the model's trained arrays are kept)")
    ap.add_argument("--real", action="store_true")
    ap.add_argument("--real-only", action="store_true", help="with --real: stop after the real samples")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args(argv)
    from biomatch.params import ExtractionParams, MatchParams

    if args.real:
        real_pairs()
        real_1000()
        if args.real_only:
            return 0
    folder = args.out or REPO / "out" / ("rolled_plain" if args.dpi == 500 else f"rolled_plain_{args.dpi}")
    generate(folder, args.cards, args.seed, args.dpi, args.workers, args.background)
    items = _items(folder, args.cards, args.background)
    ext = _coerce(ExtractionParams, args.set)
    mat = _coerce(MatchParams, args.match)
    import hashlib
    import pickle

    # One cache per extraction setting, by image: a larger --cards or --background extracts only the new ones.
    key = hashlib.sha256(json.dumps([args.mode, sorted(ext.items())]).encode()).hexdigest()[:12]
    cache = folder / f"templates_by_image_{key}.pkl"
    known = {} if args.timing or not cache.exists() else pickle.loads(cache.read_bytes())
    todo = [it for it in items if str(it[4].relative_to(folder)) not in known]
    if todo:
        t0 = time.perf_counter()
        for it, r in zip(todo, extract_all(todo, args.dpi, args.mode, ext, args.workers)):
            known[str(it[4].relative_to(folder))] = r
        print(f"extracted {len(todo)} images in {time.perf_counter() - t0:.0f} s "
              f"(extraction overrides {ext or 'none'}; mode {args.mode})", flush=True)
        fd = os.open(cache, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # templates: personal data
        with os.fdopen(fd, "wb") as fh:
            fh.write(pickle.dumps(known))
    else:
        print(f"templates from {cache}", flush=True)
    results = [known[str(it[4].relative_to(folder))] for it in items]
    templates = {it[:4]: r[0] for it, r in zip(items, results)}
    timing = {}
    if args.timing:
        for kind in KINDS:
            ms = [1000 * r[1] for it, r in zip(items, results) if it[2] == kind]
            timing[f"{kind}_ms"] = float(np.median(ms))
            timing[f"{kind}_minutiae"] = float(np.median([len(r[0].minutiae) for it, r in zip(items, results)
                                                           if it[2] == kind]))
            print(f"  {kind}: extraction CPU ms median {np.median(ms):.0f}, p90 {np.percentile(ms, 90):.0f}")
    for kind in KINDS:
        n = [len(t.minutiae) for k, t in templates.items() if k[2] == kind]
        print(f"  {kind}: minutiae per template median {np.median(n):.0f} (max {max(n)}), "
              f"image {items[[i[2] for i in items].index(kind)][4].name}")
    rows = {}
    print(f"\n| comparison ({args.dpi} ppi, {args.cards} people x 10 fingers) | genuine | impostor | EER % | "
          "FMR100 % | FMR1000 % | genuine median | genuine 1% | impostor max |")
    print("|---|---|---|---|---|---|---|---|---|")
    mated = {k: t for k, t in templates.items() if k[1] <= args.cards}
    for name, a, b in () if args.no_match else PAIRS:
        t1 = time.process_time()
        gen, imp = score(mated, a, b, mat)
        us = 1e6 * (time.process_time() - t1) / (len(gen) + len(imp))
        e, f100, f1000, med, p1, imax = metrics(gen, imp)
        rows[name] = dict(genuine=len(gen), impostor=len(imp), eer=e, fmr100=f100, fmr1000=f1000, median=med,
                          genuine_p1=p1, impostor_max=imax, match_us=us)
        print(f"| {name} | {len(gen)} | {len(imp)} | {e:.2f} | {f100:.2f} | {f1000:.2f} | {med:.3f} | {p1:.3f} | "
              f"{imax:.3f} |  ({us:.0f} us/match)", flush=True)
    if args.codes:
        from biomatch.retrieval.codes import EncodeModel, EncodeParams, default_model

        model = EncodeModel.load(args.model) if args.model else default_model()
        if args.code_set:
            model = EncodeModel(replace(model.params, **_coerce(EncodeParams, args.code_set)), model.mean,
                                model.projection)
        label = f" ({args.model.name if args.model else 'shipped model'}" \
                f"{''.join(', ' + c for c in args.code_set or ())})"
        for name, c in code_table(templates, model, label).items():
            rows.setdefault(name, {})["codes"] = c
    if args.json:
        args.json.write_text(json.dumps({"dpi": args.dpi, "cards": args.cards, "extraction": ext, "match": mat,
                                         "mode": args.mode, "timing": timing, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
