"""Dedup at scale on generated data: bulk build, memory, latency, FAISS mate rank, FNIR at FPIR, extrapolation.

    .venv/bin/python benchmarks/dedup_scale.py --identities 100000 [--probes 200] [--k-persons 200]
        [--scan-rows 1000000] [--keep PATH]

1. Build (child process): ``identities`` generated ten-finger persons (impression 0 of
   ``finger_seed(person, position)``), loaded with ``Gallery.bulk_enroll`` (NO dedup: a trusted
   backlog; batches committed in one SQLite transaction each, codes computed per batch).
2. Search (fresh parent process, so RSS is the gallery's, not the build's garbage): open the
   gallery (codes memory-mapped), measure RSS and disk per enrolment, the mate's rank in the
   code stage (``--rank-probes`` mated probes, code scores only), then ``--probes`` mated (impression 1
   of random enrolled persons) and ``--probes`` non-mated (persons never enrolled) ten-finger
   dedups end to end (cold LRU cache of prepared templates), median/p99 latency, FNIR at the
   empirical FPIR of the non-mated top scores and at the model thresholds (FPIR 0.1% / 1%).
3. Rate of the code stage's pass (native ``code_sums``) over ``--scan-rows`` random 512-bit codes
   in memory (one position), and a table extrapolating memory and latency to 10M and 50M.

Measured 2026-11-29 (2-core shared EPYC, one thread; N = 100,000 built here, 1M only for the scan):
build 272 s wall / 174 s CPU (368/s wall under contention), builder peak RSS 286 MiB; gallery RSS
878 B per enrolment after open (1,313 B with the mapped codes paged in), disk 6.0 KB; FAISS stage:
mate rank 1 for 99.6% of 1,000 mated probes, <= 100 for 100% (worst 69); dedup with k_persons=100:
median 0.65 s, p99 0.93 s (0.62 s of it preparing ~1,000 candidate fingers from the store);
k_persons=200: median 1.28 s, p99 1.61 s; FNIR 0/150 at the FPIR-0.1% threshold (8.0 decades),
non-mated max 4.0 vs mated min 64.7; scan of 1M random 512-bit codes 2.9-3.4 ms per position.
RAM since the compact subject maps (2026-12-07, ``--population registry``, N = 100,000): the gallery's
own count 687 B per enrolment (1,085 before), RSS 65 B after open and 701 B with the codes paged in
(675 and 1,312 before); the same decisions (README, "Memory per enrolment").
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "dedup"))

GEN_OFFSET = 10_000_000  # non-mated persons: never enrolled

_MODEL = None
"""The generator's model: None (the default TemplateModel, easy mates) or
``biomatch.datasets.synthetic.REGISTRY_POPULATION`` (``--population registry``: poor people, fingers
and captures in a real registry's proportions, fitted by benchmarks/population_calibration.py)."""


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def person_fingers(person: int, impression: int) -> dict:
    from dedup_util import finger_seed

    from biomatch.datasets.synthetic import template_impressions

    return {p: template_impressions(finger_seed(person, p), impression + 1, model=_MODEL)[impression]
            for p in range(1, 11)}


def calibrated_decision(threads: int):
    from biomatch.datasets.synthetic import template_impressions
    from biomatch.decide import DecisionParams, calibrate
    from biomatch.match import FingerprintMatcher, prepare

    gal = [prepare(template_impressions(50_000_000 + i, 1, model=_MODEL)[0]) for i in range(1000)]
    imp = np.concatenate([FingerprintMatcher(template_impressions(60_000_000 + j, 1, model=_MODEL)[0]).match_many(
        gal, n_threads=threads) for j in range(60)])
    return DecisionParams(score_at_fmr=calibrate(imp))


def build(path: str, n: int, batch: int, decision, out) -> None:
    from biomatch.dedup import Enrolment, Gallery

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    g = Gallery.create(path, decision=decision)

    def records():
        for i in range(n):
            yield Enrolment(f"s{i}", person_fingers(i, 0))

    def progress(done, total):
        if done % 20000 < batch:
            print(f"  built {done}/{n} in {time.perf_counter() - t0:.0f} s", flush=True)

    done = g.bulk_enroll(records(), batch_size=batch, progress=progress)
    g.close()  # saves the FAISS indexes
    out.put({"built": done, "build_s": time.perf_counter() - t0, "build_cpu_s": time.process_time() - cpu0,
             "build_peak_rss": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024})


def scan_rate(rows: int, n_bits: int = 512) -> float:
    """Seconds of CPU per pass of the code stage over ``rows`` random codes in memory (one position,
    one probe finger: the native ``code_sums`` of ``FingerIndex.add_scores``, 3 weight planes).
    Codes read from a mapped file through the page cache cost more (1M gallery, session 14: ~6.8 ms
    per million mapped codes against ~3.5 ms in memory with avx512)."""
    from biomatch.retrieval.codes import WEIGHT_PLANES
    from biomatch.retrieval.finger_index import FingerIndex

    rng = np.random.default_rng(0)
    ix = FingerIndex(n_bits)
    for i in range(0, rows, 250_000):
        ix.add(rng.integers(0, 256, (min(250_000, rows - i), n_bits // 8), dtype=np.uint8))
    keys = np.arange(rows, dtype=np.int32)
    sums, seen = np.zeros(rows, np.float32), np.zeros(rows, np.uint8)
    q = rng.integers(0, 256, (20, n_bits // 8), dtype=np.uint8)
    planes = rng.integers(0, 256, (WEIGHT_PLANES, n_bits // 8), dtype=np.uint8)
    ix.add_scores(q[0], planes, 1000, 0.5, keys, sums, seen)
    t = time.process_time()
    for c in q:
        ix.add_scores(c, planes, 1000, 0.5, keys, sums, seen)
    return (time.process_time() - t) / len(q)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=100_000)
    ap.add_argument("--probes", type=int, default=200, help="mated and non-mated end-to-end dedups (each)")
    ap.add_argument("--rank-probes", type=int, default=1000, help="mated probes for the FAISS-stage mate rank")
    ap.add_argument("--k-persons", type=int, default=200, help="persons re-ranked per probe (penetration)")
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--scan-rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--probe-weight-clip", type=float, default=1.0,
                    help="code stage's probe weight clip in sd (1e-6: plain Hamming scores, the former stage)")
    ap.add_argument("--keep", type=Path, help="build the gallery here (and keep it); reused when it exists")
    ap.add_argument("--population", choices=["default", "registry"], default="default",
                    help="generated people: default (easy mates) or registry (calibrated to real sets)")
    args = ap.parse_args()
    n = args.identities
    global _MODEL
    if args.population == "registry":
        from biomatch.datasets.synthetic import REGISTRY_POPULATION

        _MODEL = REGISTRY_POPULATION

    import faiss

    from biomatch.dedup import Enrolment, Gallery
    from biomatch.retrieval.faiss_retrieval import FaissRetrievalParams, code_ranking

    faiss.omp_set_num_threads(1)
    decision = calibrated_decision(args.threads)
    tmp = tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR"))
    path = str(args.keep or Path(tmp.name) / "g")
    res = {}
    if not Path(path).exists():
        q = mp.get_context("fork").Queue()
        p = mp.get_context("fork").Process(target=build, args=(path, n, args.batch, decision, q))
        p.start()
        res = q.get()
        p.join()
        print(f"build: {res['built']} enrolments in {res['build_s']:.0f} s ({res['built'] / res['build_s']:.0f}/s, "
              f"CPU {res['build_cpu_s']:.0f} s), peak RSS of the builder {res['build_peak_rss'] / 2**20:.0f} MiB")

    rss0 = rss_bytes()
    t0 = time.perf_counter()
    g = Gallery.open(path, decision=decision, n_threads=args.threads)
    open_s = time.perf_counter() - t0
    rss1 = rss_bytes()
    st = g.stats()
    n = st["subjects"]
    # Mated probes are drawn from the generated persons s0 .. s{built - 1}: a kept gallery may hold
    # other subjects too (enrolled by other scripts), which are no one's mate here.
    built = min(n, args.identities)
    disk = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    for s in g._shards:
        r = s._retrieval
        r.params = FaissRetrievalParams(min_persons=args.k_persons, max_persons=args.k_persons,
                                        penetration=min(1.0, args.k_persons / max(n, 1)),
                                        probe_weight_clip_sd=args.probe_weight_clip)
        for ix in r._index.values():  # touch the mapped codes once (page cache), as a service would
            ix.search(np.zeros(ix.n_bytes, np.uint8), 1)
    rss2 = rss_bytes()
    print(f"open: {open_s:.1f} s; RSS +{(rss1 - rss0) / n:.0f} B per enrolment after open, "
          f"+{(rss2 - rss0) / n:.0f} B with codes paged in; gallery's own count {st['memory_bytes'] / n:.0f} B "
          f"(codes+ids {st['retrieval_bytes'] / n:.0f}); disk {disk / n:.0f} B per enrolment")

    # FAISS-stage mate rank (scan only)
    shard = g._shards[0]
    rng = np.random.default_rng(1)
    ranks, t_scan, mate_scores, imp_top = [], [], [], []
    for person in rng.choice(built, min(args.rank_probes, built), replace=False):
        probe = person_fingers(int(person), 1)
        t = time.process_time()
        keys, scores, _ = code_ranking(shard._retrieval, probe)
        t_scan.append(time.process_time() - t)
        mate = shard._store.subject_key(f"s{person}")
        hit = np.flatnonzero(keys == mate)
        ranks.append(1 + int((scores > scores[hit[0]]).sum()) if len(hit) else 10**9)
        mate_scores.append(scores[hit[0]] if len(hit) else 0.0)
        imp = np.delete(scores, hit)
        imp_top.append(np.sort(imp)[-1000:])  # the high tail of this probe's n - 1 impostor persons
    ranks = np.asarray(ranks)
    mate_scores = np.asarray(mate_scores)
    pool = np.sort(np.concatenate(imp_top))
    trials = len(ranks) * (n - 1)  # impostor person comparisons observed
    # impostors expected above each mate's score per impostor comparison (pooled over all probes)
    exceed = (len(pool) - np.searchsorted(pool, mate_scores, side="left")) / trials
    print(f"code stage, {len(ranks)} mated ten-finger probes at N={n}: mate rank median {np.median(ranks):.0f}, "
          f"p99 {np.percentile(ranks, 99):.0f}, max {ranks.max()}; within top 1/10/50/100/200/1000: "
          + "/".join(f"{(ranks <= k).mean():.2%}" for k in (1, 10, 50, 100, 200, 1000))
          + f"; codes+scan CPU {np.median(t_scan) * 1e3:.1f} ms per probe")
    print(f"  code scores: mate min {mate_scores.min():.0f} p0.1 {np.percentile(mate_scores, 0.1):.0f} median "
          f"{np.median(mate_scores):.0f}; best impostor over {trials:.2e} impostor-person comparisons "
          f"{pool.max():.0f}, p99.99 of the pooled tail {np.percentile(pool, 99.99):.0f}")

    # end-to-end dedups
    cpu = []

    def run(persons, impression):
        out = []
        for i, person in enumerate(persons):
            rec = Enrolment(f"q{person}", person_fingers(int(person), impression))
            t, c = time.perf_counter(), time.process_time()
            rep = g.deduplicate(rec)
            out.append((time.perf_counter() - t, rep))
            cpu.append(time.process_time() - c)
            if (i + 1) % 100 == 0:
                print(f"  {i + 1}/{len(persons)} dedups", file=sys.stderr, flush=True)
        return out

    mated = run(rng.choice(built, args.probes, replace=False), 1)
    non = run(GEN_OFFSET + np.arange(args.probes), 0)
    lat = np.asarray([t for t, _ in mated + non])
    tm = {k: np.median([r.timings_ms.get(k, 0) for _, r in mated + non]) for k in mated[0][1].timings_ms}
    work = {k: np.mean([r.work.get(k, 0) for _, r in mated + non]) for k in mated[0][1].work}
    cpu = np.asarray(cpu)
    print(f"dedup latency ({len(lat)} ten-finger probes, k_persons={args.k_persons}): median {np.median(lat):.3f} s, "
          f"p99 {np.percentile(lat, 99):.3f} s wall; CPU median {np.median(cpu):.3f} s, p99 "
          f"{np.percentile(cpu, 99):.3f} s; median stages ms: " + ", ".join(f"{k} {v:.0f}" for k, v in tm.items()))
    print("  work per probe (mean): " + ", ".join(f"{k} {v:.1f}" for k, v in work.items()))
    top = lambda r: r.candidates[0].score if r.candidates else 0.0  # noqa: E731
    mate_ok = np.asarray([bool(r.candidates) and r.candidates[0].subject_id == f"s{rid}"
                          for (_, r), rid in zip(mated, [int(r.subject_id[1:]) for _, r in mated])])
    ms = np.asarray([top(r) for _, r in mated])
    ns = np.asarray([top(r) for _, r in non])
    th = mated[0][1].thresholds
    print(f"fused scores: mated min {ms.min():.1f} median {np.median(ms):.1f}; non-mated max {ns.max():.1f} "
          f"median {np.median(ns):.1f} (decades); model thresholds {th}")
    for name, cut in (("empirical max non-mated (FPIR < 1/%d)" % len(ns), ns.max()),
                      ("model DUPLICATE (FPIR 0.1%)", th.get("duplicate_score")),
                      ("model REVIEW (FPIR 1%)", th.get("review_score"))):
        if cut is None:
            continue
        fnir = 1 - np.mean(mate_ok & (ms > cut if name.startswith("empirical") else ms >= cut))
        fpir = np.mean(ns >= cut) if not name.startswith("empirical") else 0.0
        print(f"  {name}: threshold {cut:.1f}: FNIR {fnir:.2%} ({len(ms)} mated), FPIR {fpir:.2%} ({len(ns)} non-mated)")
    g.close()

    # scan rate and extrapolation
    sec = scan_rate(args.scan_rows)
    rate = args.scan_rows / sec
    from biomatch import _native
    print(f"code stage pass (native code_sums, kernel {_native.kernel}), {args.scan_rows} random codes in memory, "
          f"one probe finger: {sec * 1e3:.1f} ms CPU ({rate / 1e6:.0f}M codes/s, {rate * 64 / 1e9:.1f} GB/s)")
    rerank_s = np.median([(r.timings_ms.get("prepare_candidates", 0) + r.timings_ms.get("rerank", 0)) / 1e3
                          for _, r in mated + non])
    # re-ranking cost per compared finger; the cascade compares every finger of the head persons,
    # rerank_screen_fingers of the others plus all of the ~escalated ones (measured rate)
    per_finger_s = rerank_s / max(work.get("fingers_matched", 1.0), 1.0)
    dp = g.decision_params if hasattr(g, "decision_params") else None
    head = getattr(dp, "rerank_full_persons", args.k_persons)
    screen = getattr(dp, "rerank_screen_fingers", 10)
    esc_rate = work.get("escalated", 0.0) / max(args.k_persons - head, 1)

    def fingers_for(k: int) -> float:
        return 10 * min(k, head) + max(k - head, 0) * (screen + esc_rate * (10 - screen))
    per_enrol = 10 * (64 + 4) + 6 + 10 / 8  # codes, row keys, subject map, tombstone bits
    print("extrapolation (one process, one thread; codes+ids in RAM; scan time at the measured random-code rate; "
          "mate rank at N = 1 + N x (measured rate of impostor persons scoring above that mate's code score, "
          f"pooled over {trials:.1e} comparisons; 0 observed means < 1/{trials:.0e}); re-ranking measured "
          f"{rerank_s:.2f} s median at k={args.k_persons} for {work.get('fingers_matched', 0):.0f} fingers, "
          f"i.e. {per_finger_s * 1e3:.2f} ms per finger, scaled by the cascade's fingers per person):")
    print("| N | codes+keys+maps RAM | scan 10 positions | p99.9 mate rank (bound) | k_persons | re-rank | total |")
    print("|---|---|---|---|---|---|---|")
    for big in sorted({n, 1_000_000, 10_000_000, 50_000_000}):
        mem = big * per_enrol
        scan = 10 * big / rate
        bound = np.maximum(exceed, 1.0 / trials)  # unobserved: at most one in `trials`
        r999 = 1 + big * np.percentile(bound, 99.9)
        k = max(args.k_persons, int(np.ceil(4 * r999)))
        rr = per_finger_s * fingers_for(k)
        print(f"| {big:,} | {mem / 2**30:.1f} GiB | {scan:.2f} s | {r999:.1f} | {k:,} | {rr:.2f} s | "
              f"{scan + rr:.2f} s |")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
