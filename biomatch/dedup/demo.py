"""``biomatch demo dedup``: enrol a registry, deduplicate a mixed stream, report what was caught.

SOCOFing (``DATASETS/socofing``) when present: the real prints of subjects 1-200 are enrolled at
165 dpi; the stream holds one altered-hard print per finger of subjects 1-200 (the first of
``_CR``, ``_Obl``, ``_Zcut`` available: returning people) and likewise of subjects 201-300
(new people).  Otherwise generated identities
(:func:`biomatch.datasets.synthetic.template_impressions`): 2,000 enrolled, 200 returning with
another impression, 200 new.

FNIR at a target FPIR: the threshold is set on the top fused scores of the non-mated searches
(the new people, plus each returning person's best *non-mate* candidate, i.e. a search of a
gallery without their mate); FNIR is the fraction of mated searches whose mate does not reach it.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np

__all__ = ["run_demo"]

log = logging.getLogger(__name__)

_HANDS = {"Right": 0, "Left": 5}
_FINGERS = {"thumb": 1, "index": 2, "middle": 3, "ring": 4, "little": 5}
SOCO_DPI = 165.0


def socofing_position(name: str) -> tuple[int, int] | None:
    """``(subject, ISO position)`` of a SOCOFing file name, or None."""
    stem = Path(name).stem
    head, _, rest = stem.partition("__")
    parts = rest.split("_")
    if not head.isdigit() or len(parts) < 4 or parts[1] not in _HANDS or parts[2] not in _FINGERS:
        return None
    return int(head), _HANDS[parts[1]] + _FINGERS[parts[2]]


def _extract_one(job):
    from ..errors import ResolutionError
    from ..extract import extract
    from ..formats import encode

    path, dpi = job
    try:
        try:
            return path, encode(extract(path, dpi=dpi))
        except ResolutionError:  # SOCOFing's 241x298 scans are not at the set's 165 dpi: as a
            # registry would, take the resolution the ridge period shows rather than lose the print
            return path, encode(extract(path, dpi="auto"))
    except Exception:  # a print that fails to extract is simply absent
        return path, None


_CACHE_FORMAT = "biomatch-demo-templates-1"


def _write_cache(f: Path, paths: list[str], raw: dict) -> None:
    """Save ``{path: native template bytes or None}`` as one ``.npz`` of plain arrays (no pickle),
    mode 0600 (templates are personal data), atomically.

    Arrays: ``format`` (str), ``paths`` (str, n), ``present`` (bool, n: extraction succeeded),
    ``offsets`` (int64, n + 1) into ``blobs`` (uint8: the concatenated ``BMT1`` templates).
    """
    from .._io import write_file_atomic

    blobs = [raw.get(p) or b"" for p in paths]
    offsets = np.zeros(len(paths) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    arrays = {"format": np.array(_CACHE_FORMAT), "paths": np.array(paths, dtype=str),
              "present": np.array([raw.get(p) is not None for p in paths], bool), "offsets": offsets,
              "blobs": np.frombuffer(b"".join(blobs), np.uint8)}

    def write(tmp: Path) -> None:
        os.chmod(tmp, 0o600)  # even if a stale temporary file of another mode was there
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a name
            np.savez(fh, **arrays)

    f.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_file_atomic(f, write)


def _read_cache(f: Path, paths: list[str]) -> dict:
    """The templates of a cache file written by :func:`_write_cache` for exactly ``paths``.

    Raises
    ------
    Exception
        Any failure (not an npz of plain arrays, another format or path list, a template
        whose CRC or content fails :func:`biomatch.formats.decode`): the caller rebuilds.
    """
    from ..errors import FormatError
    from ..formats import decode

    with np.load(f, allow_pickle=False) as z:  # never unpickle: a replaced file cannot run code
        if set(z.files) != {"format", "paths", "present", "offsets", "blobs"}:
            raise FormatError(f"cache: expected the arrays of {_CACHE_FORMAT}, got {sorted(z.files)}")
        fmt, stored, present, offsets, blobs = (z[k] for k in ("format", "paths", "present", "offsets", "blobs"))
    n = len(paths)
    if fmt.shape != () or str(fmt) != _CACHE_FORMAT or stored.dtype.kind != "U" or stored.tolist() != paths \
            or present.dtype != bool or present.shape != (n,) or offsets.dtype != np.int64 \
            or offsets.shape != (n + 1,) or blobs.dtype != np.uint8 or blobs.ndim != 1 or offsets[0] != 0 \
            or np.any(np.diff(offsets) < 0) or offsets[-1] != blobs.size:
        raise FormatError(f"cache: not a {_CACHE_FORMAT} file for these {n} images")
    data = blobs.tobytes()
    return {p: decode(data[offsets[i]:offsets[i + 1]]) for i, p in enumerate(paths) if present[i]}


def _extract_all(paths: list[str], dpi: float, cache: Path, quiet: bool) -> dict:
    """Templates by path, extracted on 2 processes, cached in ``cache`` (see :func:`_write_cache`).

    The cache file is named by a hash of the paths and the dpi.  A file that cannot be read or
    validated (damaged, replaced) is discarded with a warning and rebuilt.
    """
    import hashlib

    from ..formats import decode
    from .commands import Progress

    paths = list(paths)
    # "resolution-checked": templates of mis-scaled images changed when the resolution check came
    key = hashlib.sha1("\n".join(paths).encode("utf-8", "surrogateescape") + str(dpi).encode()
                       + b"resolution-checked").hexdigest()[:12]
    f = cache / f"templates_{key}.npz"
    legacy = cache / f"templates_{key}.pkl"
    if legacy.exists():  # pickles were never safe to load (and were world-readable): drop them
        log.warning("removing the old pickle cache %s (not read: a pickle can run code)", legacy)
        try:
            legacy.unlink()
        except OSError as exc:
            log.warning("cannot remove %s: %s", legacy, exc.strerror or exc)
    if f.exists():
        try:
            templates = _read_cache(f, paths)
        except Exception as exc:  # any damage means: rebuild (the file is never trusted)
            log.warning("template cache %s is unreadable or invalid (%s: %s): rebuilding it",
                        f, type(exc).__name__, exc)
        else:
            print(f"templates: {len(paths)} read from the cache {f}")
            return templates
    bar = Progress(len(paths), "extract", quiet)
    raw = {}
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(min(2, os.cpu_count() or 1)) as pool:
        for i, (p, blob) in enumerate(pool.imap_unordered(_extract_one, [(p, dpi) for p in paths], chunksize=8)):
            raw[p] = blob
            bar.update(i + 1)
    print(f"templates: {len(raw)} extracted in {time.perf_counter() - t0:.0f} s on 2 processes")
    try:
        _write_cache(f, paths, raw)
    except OSError as exc:  # a cache that cannot be written costs the next run time, not this one
        log.warning("cannot write the template cache %s: %s", f, exc.strerror or exc)
    return {p: decode(b) for p, b in raw.items() if b is not None}


def _socofing(root: Path, cache: Path, quiet: bool):
    real = {}
    for f in sorted((root / "real").iterdir()):
        sp = socofing_position(f.name)
        if sp and 1 <= sp[0] <= 300:
            real[sp] = str(f)
    alt = {}
    for suffix in ("CR", "Obl", "Zcut"):
        for f in sorted((root / "altered_hard").glob(f"*_{suffix}.png")):
            sp = socofing_position(f.name)
            if sp and 1 <= sp[0] <= 300 and sp not in alt:
                alt[sp] = str(f)
    # Only the real prints of enrolled subjects are needed: new people arrive altered too.
    needed = [v for (s, _), v in real.items() if s <= 200]
    ts = _extract_all(sorted(needed) + sorted(alt.values()), SOCO_DPI, cache, quiet)

    def fingers(table, subject):
        return {p: ts[table[(subject, p)]] for p in range(1, 11) if (subject, p) in table and table[(subject, p)] in ts}

    enrol = [(f"S{s:03d}", fingers(real, s)) for s in range(1, 201)]
    stream = [(f"S{s:03d}", fingers(alt, s)) for s in range(1, 201)] + \
             [(f"S{s:03d}", fingers(alt, s)) for s in range(201, 301)]
    return "SOCOFing: real prints of subjects 1-200 enrolled; altered-hard prints of 1-200 (returning) and " \
           "201-300 (new) searched", \
        enrol, stream


def _generated(n_enrol=2000, n_return=200, n_new=200):
    from ..datasets.synthetic import template_impressions

    def person(i, imp):
        return {p: template_impressions(10_000 + i * 16 + p, imp + 1)[imp] for p in range(1, 11)}

    enrol = [(f"G{i:05d}", person(i, 0)) for i in range(n_enrol)]
    rng = random.Random(7)
    back = rng.sample(range(n_enrol), n_return)
    stream = [(f"G{i:05d}", person(i, 1)) for i in back] + \
             [(f"G{i:05d}", person(i, 0)) for i in range(n_enrol, n_enrol + n_new)]
    return f"generated identities: {n_enrol} enrolled, {n_return} returning, {n_new} new", enrol, stream


def _ms(values) -> str:
    v = np.asarray(values) * 1e3
    return f"median {np.median(v):.0f} ms, p99 {np.percentile(v, 99):.0f} ms"


def fnir_at_fpir(mated: np.ndarray, nonmated: np.ndarray, fpir: float) -> tuple[float, float]:
    """``(FNIR, threshold)``: the lowest threshold whose FPIR on ``nonmated`` is <= ``fpir``."""
    s = np.sort(nonmated)[::-1]
    allowed = int(np.floor(fpir * len(s)))
    t = np.nextafter(s[allowed], np.inf) if allowed < len(s) else -np.inf
    return float(np.mean(mated < t)), float(t)


def run_demo(datasets: Path | None, out: Path, quiet: bool = False,
             generated_sizes: tuple[int, int, int] = (2000, 200, 200)) -> int:
    """Enrol a registry, deduplicate a stream, print what was caught and missed.

    ``generated_sizes`` (enrolled, returning, new) applies when SOCOFing is absent.
    """
    from ..errors import FileAccessError, InvalidInputError
    from ..template import Template  # noqa: F401  (extraction workers import it too)
    from . import Enrolment, Gallery
    from .commands import Progress

    t_all = time.perf_counter()
    if datasets is None:
        datasets = Path(os.environ.get("BIOMATCH_DATASETS", Path(__file__).resolve().parents[2].parent
                                       / "shared" / "datasets"))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out: expected a new or existing folder, got {str(out)!r}, which is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileAccessError(f"--out: cannot create the folder {str(out)!r}: {exc.strerror or exc}") from exc
    root = Path(datasets) / "socofing"
    if root.is_dir():
        what, enrol, stream = _socofing(root, out / "cache", quiet)
    else:
        print(f"(no {root}: using generated identities)")
        what, enrol, stream = _generated(*generated_sizes)
    print(what)
    enrolled_ids = {sid for sid, _ in enrol}
    gpath = out / "gallery"
    if (gpath / "manifest.json").exists():
        shutil.rmtree(gpath)  # the demo's own gallery from a previous run
    from ..errors import NoUsableFingerError

    lat_enrol, flagged, unusable = [], [], []
    with Gallery.create(gpath) as g:
        bar = Progress(len(enrol), "enrol", quiet)
        for i, (sid, fingers) in enumerate(enrol):
            t0 = time.perf_counter()
            try:
                r = g.enroll(Enrolment(sid, fingers), accept_review=True)
            except NoUsableFingerError:
                unusable.append(sid)
                enrolled_ids.discard(sid)
                bar.update(i + 1)
                continue
            lat_enrol.append(time.perf_counter() - t0)
            if not r.enrolled:  # a false alarm among distinct people: the operator overrides it
                flagged.append((sid, r.candidates[0].subject_id, r.candidates[0].score))
                g.enroll(Enrolment(sid, fingers), dedup=False)
            bar.update(i + 1)
        st = g.stats()
        print(f"enrolled {st['subjects']} subjects ({st['fingers']} fingers): {_ms(lat_enrol)} per enrolment "
              f"(dedup + durable insert); {len(flagged)} flagged DUPLICATE at enrolment (false alarms); "
              f"{len(unusable)} with no usable finger")
        print(f"  memory {st['memory_bytes'] / st['subjects'] / 1024:.0f} KiB per enrolment "
              f"(codes + ids {st['retrieval_bytes'] / st['subjects']:.0f} B), disk {st['disk_bytes'] / 2**20:.1f} MiB")
        order = list(range(len(stream)))
        random.Random(11).shuffle(order)
        shard = g._shards[0]
        retrieval = shard._retrieval
        lat, mated, nonmated, hit_stage, outcome = [], [], [], [], []
        bar = Progress(len(stream), "dedup", quiet)
        for j, i in enumerate(order):
            sid, fingers = stream[i]
            is_mated = sid in enrolled_ids
            t0 = time.perf_counter()
            try:
                r = g.deduplicate(Enrolment(sid, fingers))
            except NoUsableFingerError:  # nothing to search with: a mated one is a miss
                outcome.append((sid, is_mated, "NO-FINGER", False, None))
                if is_mated:
                    mated.append(0.0)
                bar.update(j + 1)
                continue
            lat.append(time.perf_counter() - t0)
            mate = [c.score for c in r.candidates if c.subject_id == sid]
            others = [c.score for c in r.candidates if c.subject_id != sid]
            nonmated.append(others[0] if others else 0.0)
            if is_mated:
                mated.append(mate[0] if mate else 0.0)
                if hasattr(retrieval, "person_scores"):
                    keys, scores, _ = retrieval.person_scores(fingers)
                    k = retrieval.params.k_persons(retrieval.n_persons, retrieval._last_fingers)
                    top = set(keys[np.argsort(-scores, kind="stable")[:k]].tolist())
                    hit_stage.append(shard.subject_key(sid) in top)
            caught = r.decision == "DUPLICATE" and r.candidates[0].subject_id == sid
            outcome.append((sid, is_mated, r.decision, caught, r.candidates[0] if r.candidates else None))
            bar.update(j + 1)
        n_pers = retrieval.n_persons if hasattr(retrieval, "n_persons") else st["subjects"]
        k_used = retrieval.params.k_persons(n_pers) if hasattr(retrieval, "params") else n_pers
    mated, nonmated = np.asarray(mated), np.asarray(nonmated)
    ret = [o for o in outcome if o[1]]
    new = [o for o in outcome if not o[1]]

    def count(rows, decision):
        return sum(1 for o in rows if o[2] == decision)

    print(f"\nstream of {len(stream)}: {len(ret)} returning, {len(new)} new; {_ms(lat)} per search "
          f"(one probe, read only)")
    print(f"  returning: caught {sum(o[3] for o in ret)} as DUPLICATE, {count(ret, 'REVIEW')} REVIEW, "
          f"missed {count(ret, 'UNIQUE') + count(ret, 'NO-FINGER')}; wrong top candidate {sum(1 for o in ret if o[4] and o[4].subject_id != o[0] and o[2] != 'UNIQUE')}")
    print(f"  searches without a usable finger: {count(outcome, 'NO-FINGER')} (counted as misses when mated)")
    print(f"  new:       {count(new, 'UNIQUE')} UNIQUE, {count(new, 'REVIEW')} REVIEW, "
          f"{count(new, 'DUPLICATE')} false DUPLICATE")
    missed = [o[0] for o in ret if o[2] in ("UNIQUE", "NO-FINGER")]
    if missed:
        print(f"  missed: {', '.join(sorted(missed)[:12])}{' ...' if len(missed) > 12 else ''}")
    if hit_stage:
        print(f"FAISS stage: mate kept for re-ranking in {100 * np.mean(hit_stage):.1f}% of returning searches "
              f"at penetration {k_used}/{n_pers} persons ({100 * k_used / max(n_pers, 1):.0f}%)")
    print(f"FNIR/FPIR from fused scores ({len(mated)} mated, {len(nonmated)} non-mated searches: the new people "
          f"and each returning person's best non-mate; resolution {100 / len(nonmated):.2f}% FPIR):")
    for fpir in (0.001, 0.01):
        fnir, t = fnir_at_fpir(mated, nonmated, fpir)
        print(f"  FNIR {100 * fnir:.1f}% at FPIR {100 * fpir:g}% (threshold {t:.2f} decades)")
    print(f"total {time.perf_counter() - t_all:.0f} s; gallery in {gpath}")
    return 0
