"""Dedup on a generated gallery: enrolment and dedup latency, FNIR and FPIR at the configured thresholds.

    .venv/bin/python benchmarks/dedup_small.py [--identities 2000] [--probes 100] [--threads 2]

Enrols ``identities`` generated ten-finger persons (impression 0; the bulk without dedup, the
last ``--dedup-enrols`` with it), then deduplicates ``probes`` mated records (impression 1 of
enrolled persons) and ``probes`` non-mated ones (persons never enrolled).  Exhaustive retrieval:
every probe finger is compared with every enrolled finger of its position (native MCC).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "dedup"))


def main() -> int:
    from dedup_util import make_record

    from biomatch.decide import DecisionParams, calibrate
    from biomatch.dedup import Gallery

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=2000)
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--dedup-enrols", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-calibrate", action="store_true",
                    help="use biomatch.match.SCORE_AT_FMR as is (default: calibrate on generated impostors)")
    args = ap.parse_args()
    n = args.identities
    decision = DecisionParams()
    if not args.no_calibrate:
        # Single-finger impostor scores of this generator and matcher, on persons never enrolled.
        from biomatch.datasets.synthetic import template_impressions
        from biomatch.match import FingerprintMatcher, prepare

        gal = [prepare(template_impressions(50_000_000 + i, 1)[0]) for i in range(1000)]
        imp = np.concatenate([FingerprintMatcher(template_impressions(60_000_000 + j, 1)[0]).match_many(
            gal, n_threads=args.threads) for j in range(60)])
        decision = DecisionParams(score_at_fmr=calibrate(imp))
        print(f"calibrated on {imp.size} generated impostor pairs: {decision.score_at_fmr}")
    with tempfile.TemporaryDirectory() as tmp:
        g = Gallery.create(Path(tmp) / "g", n_threads=args.threads, decision=decision)
        t0 = time.perf_counter()
        bulk = [make_record(f"s{i}", i) for i in range(n)]
        gen_s = time.perf_counter() - t0
        lat_bulk = []
        for rec in bulk[: n - args.dedup_enrols]:
            t = time.perf_counter()
            g.enroll(rec, dedup=False)
            lat_bulk.append(time.perf_counter() - t)
        lat_dedup_enrol, refused = [], 0
        for rec in bulk[n - args.dedup_enrols:]:
            t = time.perf_counter()
            r = g.enroll(rec)
            lat_dedup_enrol.append(time.perf_counter() - t)
            refused += not r.enrolled  # a new person flagged DUPLICATE/REVIEW: a false positive
        st = g.stats()
        rng = np.random.default_rng(0)
        mated = [make_record(f"m{i}", int(i), 1) for i in rng.choice(n, args.probes, replace=False)]
        nonmated = [make_record(f"n{i}", 10_000_000 + i, 1) for i in range(args.probes)]
        lat, mated_scores, miss, rank1 = [], [], 0, 0
        for rec in mated:
            t = time.perf_counter()
            r = g.deduplicate(rec)
            lat.append(time.perf_counter() - t)
            miss += r.decision != "DUPLICATE"
            rank1 += r.candidates[0].subject_id == "s" + rec.subject_id[1:]
            mated_scores.append(r.candidates[0].score)
        fp, rev, best_non = 0, 0, []
        for rec in nonmated:
            t = time.perf_counter()
            r = g.deduplicate(rec)
            lat.append(time.perf_counter() - t)
            fp += r.decision == "DUPLICATE"
            rev += r.decision == "REVIEW"
            best_non.append(r.candidates[0].score)
        th = r.thresholds
        g.close()
    ms = lambda v: f"median {1e3 * statistics.median(v):.1f} ms, p99 {1e3 * float(np.percentile(v, 99)):.1f} ms"
    print(f"gallery: {n} identities x 10 fingers (generated, {gen_s:.1f} s to generate), exhaustive retrieval, "
          f"{args.threads} matcher threads")
    print(f"enrol without dedup: {ms(lat_bulk)}  ({len(lat_bulk) / sum(lat_bulk):.0f}/s, fsync'd each)")
    print(f"enrol with dedup:    {ms(lat_dedup_enrol)}  ({refused} of {len(lat_dedup_enrol)} new persons refused)")
    print(f"dedup (read only):   {ms(lat)}  ({10 * n} native comparisons per probe)")
    print(f"memory {st['memory_bytes_per_subject'] / 1024:.0f} KiB per enrolment (prepared cylinders), "
          f"disk {st['disk_bytes'] / n / 1024:.1f} KiB per enrolment")
    print(f"thresholds: DUPLICATE >= {th['duplicate_score']:.2f} decades (FPIR {th['duplicate_fpir']}), "
          f"REVIEW >= {th['review_score']:.2f} (FPIR {th['review_fpir']}), N = {th['gallery_size']}")
    print(f"mated {args.probes}: FNIR {miss / args.probes:.2%} (not DUPLICATE), rank-1 {rank1 / args.probes:.2%}, "
          f"fused score min {min(mated_scores):.1f} median {statistics.median(mated_scores):.1f}")
    print(f"non-mated {args.probes}: FPIR {fp / args.probes:.2%} (DUPLICATE), REVIEW {rev / args.probes:.2%}, "
          f"best impostor fused score max {max(best_non):.2f} median {statistics.median(best_non):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
