"""The distributed gallery on a local Ray cluster: scatter-gather overhead, backlog throughput, 50M table.

    .venv/bin/python benchmarks/cluster_scaling.py [--gallery 3000] [--backlog 60] [--queries 30]
        [--shards 1 2 4]

For each shard count S: a gallery of ``--gallery`` generated ten-finger persons is bulk-built
(embedded), then opened twice on the same folder — embedded (``Gallery``) and distributed
(``DistributedGallery``, S shard actors + the writer actor on a local Ray cluster).  Measured:

1. Ray alone: a parallel no-op call to the S shard actors (median of 200).
2. One ten-finger dedup (mated and non-mated probes, warm): embedded (shards one after the
   other in this process) vs distributed (shards in parallel in their actors); the overhead of
   the cluster path per query is the distributed wall time minus the slowest shard's own time
   (Ray calls, the probe's transfer, the merge).
3. Dedup backlog through ``DistributedGallery.enroll_many`` (half returning persons, half new):
   enrolments per hour — every enrolment goes through the one writer actor (atomic cluster-wide).
4. Read-only dedup throughput with 4 requests in flight (threads of one router).
5. A table extrapolating to 50 million enrolments on N nodes of this machine's kind.

The extrapolation's inputs, each printed with the table: RAM and disk per enrolment, the 1M
dedup latency and its code stage (one pass over every mapped code, which grows with N) measured by
``benchmarks/dedup_scale.py`` (constants below),
the overhead and commit measured in 2-3, the shard actors' RSS.  Assumptions, stated: 2 shard
actors per node (one per core); the code stage is memory-bound, so a node passes over its codes
at one core's rate whatever its shard count; the search is two-phase
(``biomatch/dedup/scatter.py``), so the k persons re-ranked per probe are split over the
shards (the busiest re-ranks k/S + 3 sigma of them) instead of each shard re-ranking its own k.

Measured 2026-11-29 (2-core EPYC shared with two other engineers, load average 2.5;
``--queries 40 --backlog 80``, 3,000 enrolments, Ray 2.60, num_cpus = shards + 1; 78 s wall,
32 s CPU in this process):

| shards | Ray ping, all shards | dedup embedded | dedup distributed | slowest shard | scatter-gather overhead | fingers matched | backlog enrol (wall) | CPU per enrolment | enrolments/hour | searches/hour (4 in flight) | shard actor RSS |
|---|---|---|---|---|---|---|---|---|---|---|---|
| 1 | 0.66 ms | 100.0 ms | 111.7 ms | 98.0 ms | 12.9 ms | 180 | 95 ms | 95 ms | 37,730 | 156,077 | 668 MiB |
| 2 | 0.87 ms | 100.2 ms | 79.2 ms | 62.6 ms | 15.9 ms | 180 | 73 ms | 108 ms | 49,467 | 132,169 | 455 MiB |
| 4 | 1.87 ms | 109.4 ms | 98.9 ms | 71.7 ms | 24.6 ms | 180 | 93 ms | 151 ms | 38,721 | 86,417 | 348 MiB |

scatter-gather overhead per query (wall - slowest shard's own time, median over configs): 15.9 ms; commit 6.0 ms; scan 3.67 ns CPU per 512-bit code (3.7 ms per 1M codes, one position, one thread)

Inputs: RAM 1,065 B and disk 6.0 KB per enrolment (dedup_scale.py, 1M); 1M dedup median 0.238 s = scan 37 ms (10 positions x 1M at the rate above) + re-ranking 201 ms of k = 100 persons; overhead 15.9 ms and commit 6.0 ms (above); shard actor 455 MiB + Ray 710 MiB per node (above; Ray's baseline measured by ray.init on this machine kind).

| nodes | enrolments per node | memory per node | disk per node | scan per probe | busiest shard re-ranks | latency per probe | enrolments/day (one writer) | read-only dedups/day (all nodes busy) | latency if k = 48,461 |
|---|---|---|---|---|---|---|---|---|---|
| 1 | 50.0M | 51.2 GiB (over 80% of RAM) | 300 GB | 1.83 s | 65 persons, 0.13 s | 1.98 s | 43,510 | 47,138 | 51.3 s |
| 2 | 25.0M | 26.4 GiB (over 80% of RAM) | 150 GB | 0.92 s | 38 persons, 0.08 s | 1.01 s | 85,130 | 94,275 | 25.9 s |
| 4 | 12.5M | 14.0 GiB | 75 GB | 0.46 s | 22 persons, 0.05 s | 0.52 s | 164,467 | 188,551 | 13.1 s |
| 8 | 6.2M | 7.8 GiB | 38 GB | 0.23 s | 14 persons, 0.03 s | 0.27 s | 310,479 | 377,101 | 6.7 s |
| 16 | 3.1M | 4.7 GiB | 19 GB | 0.11 s | 8 persons, 0.02 s | 0.15 s | 563,534 | 754,203 | 3.4 s |
| 32 | 1.6M | 3.1 GiB | 9 GB | 0.06 s | 5 persons, 0.01 s | 0.08 s | 961,339 | 1,508,406 | 1.8 s |

Same answers and the same work whatever the shard count (180 fingers matched per probe with 1, 2
and 4 shards; the embedded dedup takes 100 / 100 / 109 ms).  Before the two-phase search each shard
re-ranked its own top persons: the previous run of this script (2,000 enrolments, load 4-7) gave
182 / 315 / 501 ms embedded and 34k / 27k / 23k enrolments per hour with 1 / 2 / 4 shards.
Two shards on two cores: 1.4x faster dedup than one (79 vs 112 ms) and 49k vs 38k enrolments per
hour; four shards on two cores pay 25 ms of Ray overhead (three round trips to four actors) for
no more parallelism.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "dedup"))
sys.path.insert(0, str(REPO / "benchmarks"))

# Measured inputs of the extrapolation that this script does not re-measure (README "1:N deduplication"):
RAM_PER_ENROLMENT_B = 692  # dedup_scale.py at 1,000,000 (session 14): RSS per enrolment, codes paged in
DISK_PER_ENROLMENT_B = 7966  # same run: store + index files per enrolment
LATENCY_1M_S = 0.138  # same run (registry-like, kernel avx512): median ten-finger dedup, k=100 persons
CODE_STAGE_1M_S = 0.078  # same run: the code stage, one pass over the ten positions' mapped codes (memory-bound)
K_PERSONS = 100  # FaissRetrievalParams.max_persons: persons re-ranked per probe, gallery-wide (two-phase search)
K_PERSONS_BOUND_50M = 185_343  # same run: k keeping the p99.9 mate rank bound at 50M (conservative)
RAY_NODE_BASELINE_MIB = 710  # ray.init baseline RSS, measured on this machine kind (Ray 2.60)
NODE_RAM_GIB = 24
SHARDS_PER_NODE = 2  # one shard actor per core


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_ms(xs) -> float:
    return statistics.median(xs) * 1e3


def run_config(path: Path, records: list, backlog: list, probes: list, shards: int) -> dict:
    import ray

    from biomatch.dedup import Gallery
    from biomatch.dedup.cluster import DistributedGallery, release_actors

    with Gallery.create(path, n_shards=shards) as g:
        g.bulk_enroll(records, batch_size=1000)
    out: dict = {"shards": shards}
    d = DistributedGallery.open(path)
    e = Gallery.open(path, read_only=True)
    try:
        for p in probes[:3]:  # warm: code model, kernels, caches on both sides
            d.deduplicate(p), e.deduplicate(p)
        actors = [s.actor for s in d._shards]
        ray.get([a.ping.remote() for a in actors])
        ts = []
        for _ in range(200):
            t = time.perf_counter()
            ray.get([a.ping.remote() for a in actors])
            ts.append(time.perf_counter() - t)
        out["ping_ms"] = median_ms(ts)
        te, td, shard_work, over, work = [], [], [], [], []
        for p in probes:
            t = time.perf_counter()
            e.deduplicate(p)
            te.append(time.perf_counter() - t)
            t = time.perf_counter()
            r = d.deduplicate(p)
            td.append(time.perf_counter() - t)
            shard_work.append(r.timings_ms["slowest_shard"])
            over.append(r.timings_ms["scatter_gather"] - r.timings_ms["slowest_shard"])
            work.append(r.work["fingers_matched"])
        out["embedded_ms"], out["distributed_ms"] = median_ms(te), median_ms(td)
        out["shard_work_ms"] = statistics.median(shard_work)
        out["overhead_ms"] = statistics.median(over)
        out["fingers_matched"] = statistics.median(work)

        pids = [s.pid() for s in d._shards] + [ray.get(d.actors()["writer"].pid.remote())]
        cpu0 = sum(cpu_s(p) for p in pids) + time.process_time()
        results: list = []
        t = time.perf_counter()
        d.enroll_many(backlog, progress=lambda i, n, r: results.append(r))
        wall = time.perf_counter() - t
        out["backlog_cpu_ms"] = (sum(cpu_s(p) for p in pids) + time.process_time() - cpu0) / len(backlog) * 1e3
        out["enrol_per_hour"] = len(backlog) / wall * 3600
        out["enrol_ms"] = wall / len(backlog) * 1e3
        out["enrol_median_ms"] = statistics.median(sum(v for k, v in r.timings_ms.items()
                                                       if k in ("scatter_gather", "commit")) for r in results)
        out["commit_ms"] = statistics.median(r.timings_ms.get("commit", 0.0) for r in results if r.enrolled)
        out["decisions"] = {k: sum(r.decision == k for r in results) for k in ("DUPLICATE", "REVIEW", "UNIQUE")}

        queue = list(probes) * 2
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    if not queue:
                        return
                    p = queue.pop()
                d.deduplicate(p)

        t = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        out["search_per_hour"] = 2 * len(probes) / (time.perf_counter() - t) * 3600
        st = d.stats()
        out["bytes_per_enrolment"] = (st["retrieval_bytes"] + sum(
            s.maps_bytes for s in (sh.stats() for sh in d._shards))) / st["subjects"]
        out["actor_rss_mib"] = statistics.median(rss_mib(p) for p in st["cluster"]["shard_pids"])
    finally:
        e.close()
        d.close()
        release_actors(path)
    return out


def busiest_share(k: int, shards: int) -> float:
    """Persons the busiest of ``shards`` re-ranks when the gallery-wide top ``k`` fall on shards
    uniformly at random (subjects are hashed): mean k/S plus 3 standard deviations, at most k."""
    mean = k / shards
    return min(k, mean + 3 * (mean * (1 - 1 / shards)) ** 0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gallery", type=int, default=3000)
    ap.add_argument("--backlog", type=int, default=60)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()

    import ray
    from dedup_util import make_record

    t = time.perf_counter()
    records = [make_record(f"s{i}", i) for i in range(args.gallery)]
    half = args.backlog // 2
    backlog = [make_record(f"back{i}", i * 7 % args.gallery, 1) for i in range(half)] + \
              [make_record(f"new{i}", 5_000_000 + i) for i in range(args.backlog - half)]
    backlog = [backlog[i // 2 + (i % 2) * half] for i in range(len(backlog))]  # interleaved
    probes = [make_record(f"m{i}", i * 13 % args.gallery, 2) for i in range(args.queries // 2)] + \
             [make_record(f"n{i}", 6_000_000 + i) for i in range(args.queries - args.queries // 2)]
    print(f"generated {len(records) + len(backlog) + len(probes)} records in {time.perf_counter() - t:.0f} s",
          flush=True)

    ray.init(address="local", num_cpus=max(args.shards) + 1, include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for s in args.shards:
                rows.append(run_config(Path(tmp) / f"g{s}", records, backlog, probes, s))
                print(rows[-1], flush=True)
    finally:
        ray.shutdown()

    scan_s = CODE_STAGE_1M_S / (10 * 1_000_000)  # seconds per code and position, mapped, measured at 1M

    print(f"\n## Measured ({args.gallery} enrolments, {args.queries} probes, backlog {args.backlog}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})\n")
    print("| shards | Ray ping, all shards | dedup embedded | dedup distributed | slowest shard | "
          "scatter-gather overhead | fingers matched | backlog enrol (wall) | CPU per enrolment | "
          "enrolments/hour | searches/hour (4 in flight) | shard actor RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shards']} | {r['ping_ms']:.2f} ms | {r['embedded_ms']:.1f} ms | {r['distributed_ms']:.1f} ms | "
              f"{r['shard_work_ms']:.1f} ms | {r['overhead_ms']:.1f} ms | {r['fingers_matched']:.0f} | "
              f"{r['enrol_ms']:.0f} ms | {r['backlog_cpu_ms']:.0f} ms | {r['enrol_per_hour']:,.0f} | "
              f"{r['search_per_hour']:,.0f} | {r['actor_rss_mib']:.0f} MiB |")
    overhead_s = statistics.median(r["overhead_ms"] for r in rows) / 1e3
    commit_s = statistics.median(r["commit_ms"] for r in rows) / 1e3
    actor_mib = statistics.median(r["actor_rss_mib"] for r in rows)
    scan_1m = 10 * 1_000_000 * scan_s
    rerank_1m = LATENCY_1M_S - scan_1m
    print(f"\nscatter-gather overhead per query (wall - slowest shard's own time, median over configs): "
          f"{overhead_s * 1e3:.1f} ms; commit {commit_s * 1e3:.1f} ms; code stage {scan_s * 1e9:.2f} ns per "
          f"512-bit code ({scan_1m / 10 * 1e3:.1f} ms per 1M mapped codes, one position, one thread; dedup_scale.py)")

    n_total = 50_000_000
    print(f"\n## Extrapolated: {n_total / 1e6:.0f}M ten-finger enrolments on N nodes of 2 vCPU / "
          f"{NODE_RAM_GIB} GiB, {SHARDS_PER_NODE} shard actors per node\n")
    print(f"Inputs: RAM {RAM_PER_ENROLMENT_B:,} B and disk {DISK_PER_ENROLMENT_B / 1e3:.1f} KB per enrolment "
          f"(dedup_scale.py, 1M); 1M dedup median {LATENCY_1M_S} s = code stage {scan_1m * 1e3:.0f} ms (10 "
          f"positions x 1M, grows with N) + the rest {rerank_1m * 1e3:.0f} ms (re-ranking k = {K_PERSONS} persons); "
          f"overhead {overhead_s * 1e3:.1f} ms and commit {commit_s * 1e3:.1f} ms (above); shard actor "
          f"{actor_mib:.0f} MiB + Ray {RAY_NODE_BASELINE_MIB} MiB per node (above; Ray baseline measured).\n")
    print("| nodes | enrolments per node | memory per node | disk per node | scan per probe | "
          "busiest shard re-ranks | latency per probe | enrolments/day (one writer) | "
          f"read-only dedups/day (all nodes busy) | latency if k = {K_PERSONS_BOUND_50M:,} |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for nodes in (1, 2, 4, 8, 16, 32):
        per = n_total / nodes
        mem_gib = (per * RAM_PER_ENROLMENT_B + (SHARDS_PER_NODE * actor_mib + RAY_NODE_BASELINE_MIB) * 2**20) / 2**30
        scan = per * 10 * scan_s  # memory-bound: a node scans its codes at one core's rate
        share = busiest_share(K_PERSONS, nodes * SHARDS_PER_NODE)
        rerank = rerank_1m * share / K_PERSONS
        latency = scan + rerank + overhead_s
        per_day_enrol = 86400 / (latency + commit_s)
        # CPU per probe on one node: its scan plus its share of the k re-ranked persons; 2 cores.
        node_cpu = scan + rerank_1m / nodes
        per_day_search = 86400 / max(scan, node_cpu / SHARDS_PER_NODE)
        fits = "" if mem_gib <= 0.8 * NODE_RAM_GIB else " (over 80% of RAM)"
        big = scan + rerank_1m * busiest_share(K_PERSONS_BOUND_50M, nodes * SHARDS_PER_NODE) / K_PERSONS + overhead_s
        print(f"| {nodes} | {per / 1e6:.1f}M | {mem_gib:.1f} GiB{fits} | {per * DISK_PER_ENROLMENT_B / 1e9:.0f} GB | "
              f"{scan:.2f} s | {share:.0f} persons, {rerank:.2f} s | {latency:.2f} s | {per_day_enrol:,.0f} | "
              f"{per_day_search:,.0f} | {big:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
