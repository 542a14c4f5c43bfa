"""Mutation fuzzing of every biomatch parser over real samples: no crash, no hang, bounded memory.

Targets (each gets ``--inputs`` mutated inputs, seeded):

- ``iso2005``, ``iso2011``, ``ansi378``: :func:`biomatch.formats.load_views` with the format
  forced (so the parser, not the sniffer, sees the bytes), seeds: multi-view records written
  from FVC2002 templates when the dataset is present, else synthetic ones, plus records with
  extended data and optional blocks;
- ``bmt1``: :func:`biomatch.formats.decode`;
- ``an2k``: :func:`biomatch.formats.an2k.read_enrolment` without image decoding (structure, CNT,
  tagged fields, Type-9 legacy minutiae and INCITS 378 blocks), seeds: the NIST libbiomeval
  samples plus constructed transactions holding Type-9 INCITS 378 blocks (:func:`m1_transaction`);
- ``afis-iso2005``, ``nbis-py-iso2005``: the explicit converters of
  :mod:`biomatch.formats.foreign` followed by the standard parser, seeds: those tools' layouts
  built from biomatch's own ISO 2005 records (no dependency on the tools);
- ``wsq-header``: :func:`biomatch.imaging.wsq.parse_header`;
- ``wsq-decode``: :func:`biomatch.imaging.wsq.decode` (header checks + NBIS in the isolated worker).

An input passes when the parser returns or raises a :class:`~biomatch.errors.BiomatchError`;
anything else (another exception type, or the process dying) is a failure and the input is
saved under ``--crashes``. Time per input is measured as wall clock (the WSQ worker is another
process) and as this process's CPU time, and the slowest input is re-timed (best of 3) to tell an
input that is slow from a machine that was busy; the Python heap of each parse is traced with ``tracemalloc`` when ``--trace-memory``
(slower) and reported as its peak, the largest peak/input-size ratio, and the number of inputs
whose peak exceeded the bound 64 KiB + 8 x input size (``over_heap_bound``, must be 0; for
``wsq-decode`` 520 x input size, as the decoded image may be 256 pixels per input byte).

Measured (2026-11-29, shared 2-vCPU Zen 4, seed 1, 100,000 inputs per target, ``--trace-memory``):
no failure, 0 inputs over the heap bound, on every target. Largest traced heap per input: ISO
2005/2011/ANSI 6-8 KB, BMT1 2 KB, AN2K 274 KB (for inputs of 70-270 KB), WSQ header 12 KB,
WSQ decode 2.3 MB (the decoded image). Slowest input (CPU): 0.5-33 ms; wall-clock outliers up
to 1.4 s were the busy machine (CPU 4 ms, the same input re-timed 0.3 ms). The NBIS worker was
restarted 26 times in 100,000 WSQ decodes (crashes contained; slowest wall 0.18 s, restart
included). Without tracing: ISO 2011 31,000 inputs/s, AN2K 12,500/s, WSQ decode 2,100/s; process
max RSS 205 MiB (with tracing 860 MiB: tracemalloc's own bookkeeping over 700,000 start/stops).

Usage::

    .venv/bin/python benchmarks/fuzz_parsers.py --inputs 100000 [--targets iso2005,an2k] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF)
HEAP_BOUND_FIXED = 64 * 1024  # the allocation bound checked per input: 64 KiB + 8 x input size
HEAP_BOUND_PER_BYTE = 8
PER_BYTE_BOUND: dict[str, int] = {}  # targets whose output may be larger than their input


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to eight random edits: byte set, bit flip, big length, insert, delete, duplicate, truncate."""
    m = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not m:
            m = bytearray(rng.randbytes(rng.randint(1, 32)))
        p = rng.randrange(len(m))
        k = rng.random()
        if k < 0.30:
            m[p] = rng.randrange(256)
        elif k < 0.45:
            m[p] ^= 1 << rng.randrange(8)
        elif k < 0.55:
            m[p] = rng.choice(INTERESTING)
        elif k < 0.65:  # a length-like field set to something large
            n = rng.choice((2, 4))
            m[p:p + n] = rng.choice((0xFFFF_FFFF, 2**30, 0x7FFF, 0xFFFF, 0)).to_bytes(4, "big")[-n:]
        elif k < 0.75:
            m[p:p] = rng.randbytes(rng.randint(1, 16))
        elif k < 0.85:
            del m[p:p + rng.randint(1, 64)]
        elif k < 0.92:
            q = rng.randrange(len(m))
            m[p:p] = m[q:q + rng.randint(1, 64)]
        else:
            del m[rng.randrange(len(m) + 1):]
    return bytes(m)


_TEMPLATES: list = []


def _templates() -> list:
    """FVC2002 templates when the dataset is present, plus synthetic ones (0, 3, 20 minutiae)."""
    from biomatch.template import Template

    if _TEMPLATES:
        return _TEMPLATES
    rng = np.random.default_rng(0)
    fvc = sorted((DATASETS / "fvc2002" / "db1_b").glob("10[1-3]_1.tif"))
    if fvc:
        from biomatch.extract import extract

        _TEMPLATES.extend(extract(p, 500) for p in fvc)
    for n in (0, 3, 20):
        _TEMPLATES.append(Template.from_arrays(rng.uniform(0, 300, n), rng.uniform(0, 400, n),
                                               rng.uniform(0, 6.28, n), kind=rng.integers(0, 3, n),
                                               quality=rng.integers(0, 101, n), width=300, height=400,
                                               print_quality=50))
    return _TEMPLATES


def _fmr_seeds(fmt: str) -> list[bytes]:
    from biomatch.formats import dump
    from biomatch.template import FingerView

    seeds = []
    templates = list(_templates())
    for i, t in enumerate(templates):
        seeds.append(dump(t, fmt, dpi=(500, 569, 1000)[i % 3]))
    views = [FingerView(t, position=i + 1, view_number=i % 2, impression_type=i % 3,
                        extended_data=b"\x00\x01\x00\x08abcd" if i % 2 else b"", extended_format=fmt)
             for i, t in enumerate(templates[:4])]
    seeds.append(dump(views, fmt))
    return seeds


def _tagged(t: int, fields) -> bytes:
    body = b"".join(b"%d.%03d:" % (t, n) + v + b"\x1d" for n, v in fields)[:-1] + b"\x1c"
    length = len(body) + len(b"%d.001:\x1d" % t)
    length += len(str(length + len(str(length))))
    return b"%d.001:%d\x1d" % (t, length) + body


def m1_transaction(template, ppi: int = 500, position: int = 2) -> bytes:
    """A Type-1 + Type-9 transaction whose Type-9 holds ``template`` as an INCITS 378 block."""
    from biomatch.formats import dump

    record = dump(template, "ansi378", dpi=ppi)  # INCITS 378 minutiae: the same fields, in binary
    n = record[29]
    raw = np.frombuffer(record[30:30 + 6 * n], [("xt", ">u2"), ("y", ">u2"), ("a", "u1"), ("q", "u1")])
    fmd = b"\x1e".join(b"%d\x1f%d\x1f%d\x1f%d\x1f%d\x1f%d" % (i + 1, int(r["xt"]) & 0x3FFF, int(r["y"]),
                                                          int(r["a"]), int(r["xt"]) >> 14, int(r["q"]))
                       for i, r in enumerate(raw))
    w, h = int.from_bytes(record[16:18], "big"), int.from_bytes(record[18:20], "big")
    fields = [(2, b"01"), (3, b"0"), (4, b"U"), (126, b"27\x1f513\x1f0"), (127, b"0\x1f0"), (128, b"%d" % w),
              (129, b"%d" % h), (130, b"1"), (131, b"%d" % ppi), (132, b"%d" % ppi), (133, b"0"),
              (134, b"%d" % position), (135, b"%d\x1f255\x1f1" % template.quality), (136, b"%d" % n)]
    if n:
        fields.append((137, fmd))
    t1 = _tagged(1, [(2, b"0500"), (3, b"1\x1f1\x1e9\x1f01"), (11, b"19.69"), (12, b"19.69")])
    return t1 + _tagged(9, fields)


def afis_iso2005_layout(record: bytes) -> bytes:
    """biomatch's one-view ISO 2005 record in afis 1.2.x's '020' layout (ppi, quality 0-255)."""
    from biomatch.formats._fmr import ppcm_to_dpi

    out = bytearray(record)
    out[4:8] = b"020\0"
    ppi = round(ppcm_to_dpi(int.from_bytes(record[18:20], "big")))
    out[18:22] = ppi.to_bytes(2, "big") * 2
    for i in range(out[27]):
        out[28 + 6 * i + 5] = round(out[28 + 6 * i + 5] * 255 / 100)
    return bytes(out)


def nbis_py_iso2005_layout(record: bytes) -> bytes:
    """biomatch's one-view ISO 2005 record in nbis-py 0.1.x's layout (22-byte header, no resolution,
    no extended-data length)."""
    body = record[24:-2]
    head = record[:8] + (22 + len(body)).to_bytes(4, "big") + record[12:18] + b"\0" * 4
    return head + body


def targets() -> dict:
    from biomatch.formats import decode, encode, load_views

    out = {}
    for name, fmt in (("iso2005", "iso19794-2:2005"), ("iso2011", "iso19794-2:2011"), ("ansi378", "ansi378")):
        out[name] = (lambda b, f=fmt: load_views(b, f), _fmr_seeds(fmt))
    from biomatch.template import Template

    rng = np.random.default_rng(1)
    bmt = [encode(Template.from_arrays(rng.uniform(0, 300, n), rng.uniform(0, 300, n), rng.uniform(0, 6, n),
                                       width=300, height=300)) for n in (0, 5, 40)]
    out["bmt1"] = (decode, bmt)
    from biomatch.formats import foreign
    from biomatch.formats import dump, load

    iso = [dump(t, "iso19794-2:2005", dpi=dpi) for t, dpi in zip(_templates(), (500, 569, 1000, 500, 500, 500))]
    out["afis-iso2005"] = (lambda b: load(foreign.from_afis_iso2005(b)), [afis_iso2005_layout(r) for r in iso])
    out["nbis-py-iso2005"] = (lambda b: load(foreign.from_nbis_py_iso2005(b, 500)),
                              [nbis_py_iso2005_layout(r) for r in iso])
    samples = DATASETS / "samples" / "nist_libbiomeval"
    an2k_seeds = [p.read_bytes() for p in sorted(samples.glob("*.an2k"))]
    if an2k_seeds:
        from biomatch.formats import an2k

        an2k_seeds += [m1_transaction(t, ppi, pos) for t, ppi, pos in
                       zip(_templates(), (500, 1000, 569, 500, 500), (2, 7, 0, 3, 1))]
        out["an2k"] = (lambda b: an2k.read_enrolment(b, decode_images=False), an2k_seeds)
    try:
        import _wsq  # noqa: F401

        from biomatch.imaging import wsq
    except ImportError:
        return out
    wsq_seeds = [p.read_bytes() for p in sorted(samples.glob("*.wsq"))]
    yy, xx = np.mgrid[0:96, 0:80]
    wsq_seeds.append(wsq.encode((128 + 90 * np.cos(2 * np.pi * (xx + 0.5 * yy) / 9)).astype(np.uint8)))
    out["wsq-header"] = (wsq.parse_header, wsq_seeds)
    out["wsq-decode"] = (wsq.decode, wsq_seeds)
    # decoded pixels may legitimately reach MAX_PIXELS_PER_BYTE x the input (plus the array copy)
    PER_BYTE_BOUND["wsq-decode"] = 2 * wsq.MAX_PIXELS_PER_BYTE + HEAP_BOUND_PER_BYTE
    return out


def run(name: str, fn, seeds: list[bytes], n: int, seed: int, trace_memory: bool, crashes: Path | None):
    from biomatch.errors import BiomatchError

    rng = random.Random(f"{name}:{seed}")
    counts = {"ok": 0, "project_error": 0}
    max_t, max_cpu, max_peak, max_ratio, failures, over_bound = 0.0, 0.0, 0, 0.0, [], 0
    slowest = b""
    t0 = time.perf_counter()
    for i in range(n):
        data = mutate(rng, rng.choice(seeds))
        if trace_memory:
            tracemalloc.start()
        t, c = time.perf_counter(), time.process_time()
        try:
            fn(data)
            counts["ok"] += 1
        except BiomatchError:
            counts["project_error"] += 1
        except Exception as exc:  # a bug: anything but a project error
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
            if crashes is not None:
                crashes.mkdir(parents=True, exist_ok=True)
                (crashes / f"{name}-{seed}-{i}.bin").write_bytes(data)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        if trace_memory:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            max_peak = max(max_peak, peak)
            max_ratio = max(max_ratio, peak / max(len(data), 1))
            over_bound += peak > HEAP_BOUND_FIXED + PER_BYTE_BOUND.get(name, HEAP_BOUND_PER_BYTE) * len(data)
        if dt > max_t:
            max_t, slowest = dt, data
        max_cpu = max(max_cpu, dc)
    total = time.perf_counter() - t0
    retimed = []
    for _ in range(3):  # a slow outlier on a shared machine: is it the input or the scheduler?
        t = time.perf_counter()
        try:
            fn(slowest)
        except Exception:
            pass
        retimed.append(time.perf_counter() - t)
    return {"target": name, "inputs": n, **counts, "failures": len(failures), "first_failures": failures[:3],
            "inputs_per_s": round(n / total, 1), "max_s_per_input": round(max_t, 4),
            "max_cpu_s_per_input": round(max_cpu, 4), "slowest_input_retimed_s": round(min(retimed), 4),
            "peak_heap_bytes": max_peak if trace_memory else None,
            "max_peak_over_input_size": round(max_ratio, 2) if trace_memory else None,
            "over_heap_bound": over_bound if trace_memory else None,
            "seconds": round(total, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Mutation fuzzing of biomatch's parsers")
    ap.add_argument("--inputs", type=int, default=10_000, help="mutated inputs per target")
    ap.add_argument("--targets", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--trace-memory", action="store_true", help="trace the Python heap of every parse")
    ap.add_argument("--crashes", type=Path, default=None, help="folder for failing inputs")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import resource

    all_targets = targets()
    chosen = [t for t in (args.targets.split(",") if args.targets else all_targets) if t]
    results = []
    for name in chosen:
        if name not in all_targets:
            print(f"unknown or unavailable target {name!r}; have {sorted(all_targets)}", file=sys.stderr)
            return 2
        fn, seeds = all_targets[name]
        for s in seeds:  # warm-up: lazy imports and the WSQ worker start are not per-input costs
            try:
                fn(s)
            except Exception:
                pass
        r = run(name, fn, seeds, args.inputs, args.seed, args.trace_memory, args.crashes)
        if name == "wsq-decode":
            from biomatch.imaging import wsq

            r["decoder_process_starts"] = wsq._worker.starts  # 1 + the crashes and hangs it contained
        results.append(r)
        print(json.dumps(r), flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"process_max_rss_mib": round(rss / 1024, 1)}))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "process_max_rss_mib": round(rss / 1024, 1)}, indent=2))
    return 1 if any(r["failures"] or r["over_heap_bound"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
