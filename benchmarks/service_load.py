"""Searches per second and latency of `biomatch serve` on loopback, at several client concurrencies.

    .venv/bin/python benchmarks/service_load.py [--identities 5000] [--concurrency 1,8,32]
        [--seconds 30] [--max-requests 2000] [--operation deduplicate|identify] [--keep DIR]
        [--max-concurrent N] [--workers N] [--cache-mb N]

Builds (or reuses, ``--keep``) a gallery of ``identities`` generated ten-finger persons (bulk,
no dedup), creates a ``search`` key, starts ``biomatch serve`` on a free 127.0.0.1 port and
waits for ``/healthz``.  Then, per concurrency level, that many async httpx clients send
ten-finger probes (half another impression of an enrolled person, half new people; templates
in base64 JSON, as a registry would send them) for ``--seconds`` or ``--max-requests``,
whichever comes first.  Prints searches per second, p50 / p99 latency (client side: HTTP,
decoding, search, audit write), errors, and the server's RSS (resident memory of all its
processes, sampled every 0.5 s: the peak).  The server is stopped at the end; traffic goes to
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "dedup"))


def build(path: Path, n: int) -> None:
    from dedup_util import make_record
    from biomatch.dedup import Gallery

    t0 = time.perf_counter()
    with Gallery.create(path) as g:
        g.bulk_enroll((make_record(f"P-{i}", i) for i in range(n)), batch_size=2000)
    print(f"# built {n} identities in {time.perf_counter() - t0:.0f} s", flush=True)


def probes(n_gallery: int, count: int, seed: int = 3) -> list[bytes]:
    from dedup_util import make_record
    from biomatch.formats import encode

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        person = int(rng.integers(0, n_gallery)) if i % 2 == 0 else n_gallery + 100_000 + i
        rec = make_record("x", person, impression=1 if i % 2 == 0 else 0)
        out.append(json.dumps({"subject_id": f"Q-{i}", "fingers": [
            {"position": p, "data": base64.b64encode(encode(t)).decode()} for p, t in rec.fingers.items()]}).encode())
    return out


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (uvicorn workers)."""
    total = 0
    pids = [pid]
    try:
        pids += [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


async def level(url: str, key: str, bodies: list[bytes], concurrency: int, seconds: float, max_requests: int,
                path: str, pid: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    sent = 0
    peak = rss_bytes(pid)
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client):
        nonlocal sent, errors
        while time.perf_counter() < deadline and sent < max_requests:
            body = bodies[sent % len(bodies)]
            sent += 1
            t0 = time.perf_counter()
            try:
                r = await client.post(path, content=body, headers=headers)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    async def sampler():
        nonlocal peak
        while True:
            peak = max(peak, rss_bytes(pid))
            await asyncio.sleep(0.5)

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        s = asyncio.create_task(sampler())
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        s.cancel()
    lat = np.asarray(latencies) * 1e3
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors, "wall_s": wall,
            "searches_per_s": len(latencies) / wall, "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else None, "server_rss_mib": peak / 2**20}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--identities", type=int, default=5000)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=30.0, help="per level (bound)")
    ap.add_argument("--max-requests", type=int, default=2000, help="per level (bound)")
    ap.add_argument("--operation", choices=["deduplicate", "identify"], default="deduplicate")
    ap.add_argument("--max-concurrent", type=int, default=None, help="the server's --max-concurrent")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cache-mb", type=int, default=None, help="the server's --cache-mb")
    ap.add_argument("--keep", type=Path, help="gallery folder to build once and reuse")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    from biomatch.service.auth import KeyStore, service_dir

    work = Path(tempfile.mkdtemp(prefix="service_load_"))
    gallery = args.keep or work / "g"
    if not (gallery / "manifest.json").exists():
        build(gallery, args.identities)
    key = KeyStore(service_dir(gallery)).create(["search"], "service_load")[1]
    bodies = probes(args.identities, 200)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "biomatch", "serve", str(gallery), "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(args.workers)]
    if args.cache_mb is not None:
        cmd += ["--cache-mb", str(args.cache_mb)]
    if args.max_concurrent:
        cmd += ["--max-concurrent", str(args.max_concurrent)]
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    results = []
    try:
        import httpx

        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {(work / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        path = "/v1/deduplicate" if args.operation == "deduplicate" else "/v1/identify"
        if args.operation == "identify":
            bodies = [json.dumps({k: v for k, v in json.loads(b).items() if k != "subject_id"}).encode()
                      for b in bodies]
        idle = rss_bytes(proc.pid)
        asyncio.run(level(url, key, bodies, 2, 10, 20, path, proc.pid))  # warm-up (numba, caches)
        print(f"# server RSS idle {idle / 2**20:.0f} MiB; {args.identities} identities; {args.operation}; "
              f"workers {args.workers}; cpus {os.cpu_count()}", flush=True)
        print("concurrency\trequests\terrors\tsearches/s\tp50 ms\tp99 ms\tserver RSS MiB", flush=True)
        for c in (int(x) for x in args.concurrency.split(",")):
            r = asyncio.run(level(url, key, bodies, c, args.seconds, args.max_requests, path, proc.pid))
            results.append(r)
            print(f"{c}\t{r['requests']}\t{r['errors']}\t{r['searches_per_s']:.1f}\t{r['p50_ms']:.0f}\t"
                  f"{r['p99_ms']:.0f}\t{r['server_rss_mib']:.0f}", flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    if args.json:
        args.json.write_text(json.dumps({"identities": args.identities, "levels": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
