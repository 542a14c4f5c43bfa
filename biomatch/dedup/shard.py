"""A shard: one partition of a gallery — its store, its retrieval index and its prepared templates.

A shard has no global state and is opened from a picklable :class:`ShardSpec`, so it can live
in another process (a worker, an actor) and be re-opened there; :meth:`Shard.search` returns
a few ranked :class:`~biomatch.dedup.report.Candidate` objects (small, picklable) for
scatter-gather.  Everything in memory is derived from the store and caught up from it
(:meth:`Shard.catch_up`) before every search and inside the gallery's write lock.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import decide as _decide
from ..match import FingerprintMatcher, PreparedTemplate, prepare
from ..params import MatchParams, from_json, params_hash, to_json
from ..template import Template, decode, encode
from .errors import IncompatibleGalleryError, UnknownSubjectError
from .report import Candidate
from .retrieval import make_retrieval
from .store import Store

__all__ = ["Shard", "ShardSpec"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardSpec:
    """Everything needed to open a shard, in any process (picklable, plain values).

    Attributes
    ----------
    folder : str
        The shard's folder (holds ``store.sqlite`` and ``index/``).
    gallery_id : str
        The owning gallery's id; a store of another gallery is refused.
    match_params_json : str
        :func:`biomatch.params.to_json` of the MatchParams.
    retrieval : str
        Name of the retrieval component (``"faiss"`` or ``"exhaustive"``).
    read_only : bool
    n_threads : int
        Native matcher threads per search.
    """

    folder: str
    gallery_id: str
    match_params_json: str
    retrieval: str = "exhaustive"
    read_only: bool = False
    n_threads: int = 1


class _PositionTable:
    """Fingers of one position: parallel lists, appended in place, rebuilt on removal."""

    __slots__ = ("finger_ids", "subjects", "prepared", "_subjects_arr")

    def __init__(self):
        self.finger_ids: list[int] = []
        self.subjects: list[int] = []
        self.prepared: list[PreparedTemplate] = []
        self._subjects_arr = None

    def append(self, fid: int, key: int, prep: PreparedTemplate) -> None:
        self.finger_ids.append(fid)
        self.subjects.append(key)
        self.prepared.append(prep)
        self._subjects_arr = None

    def subjects_array(self) -> np.ndarray:
        if self._subjects_arr is None or len(self._subjects_arr) != len(self.subjects):
            self._subjects_arr = np.fromiter(self.subjects, np.int64, len(self.subjects))
        return self._subjects_arr

    def drop(self, fids: set) -> None:
        keep = [i for i, f in enumerate(self.finger_ids) if f not in fids]
        # New lists (not in-place) so that a search holding the old snapshot stays consistent.
        self.finger_ids = [self.finger_ids[i] for i in keep]
        self.subjects = [self.subjects[i] for i in keep]
        self.prepared = [self.prepared[i] for i in keep]
        self._subjects_arr = None


class Shard:
    """One partition of a gallery.

    Thread-safe: an internal lock guards the store connection and the in-memory tables;
    native scoring runs outside it on a snapshot.  Memory: the prepared templates, ~37 KB per
    enrolled finger at ~40 minutiae (``PreparedTemplate.nbytes``), plus the retrieval index.
    """

    STORE_NAME = "store.sqlite"

    def __init__(self, spec: ShardSpec, _create_meta: dict | None = None):
        self.spec = spec
        self.folder = Path(spec.folder)
        self._lock = threading.RLock()
        self._params = from_json(spec.match_params_json, MatchParams)
        self._params_hash = params_hash(self._params)
        create = _create_meta is not None
        if create:
            os.makedirs(self.folder, mode=0o700, exist_ok=False)
        meta = dict(_create_meta or {}, gallery_id=spec.gallery_id, match_params_hash=self._params_hash)
        self._store = Store(self.folder / self.STORE_NAME, create=create, read_only=spec.read_only,
                            meta=meta if create else None)
        got = self._store.meta()
        for key, want in (("gallery_id", spec.gallery_id), ("match_params_hash", self._params_hash)):
            if got.get(key) != want:
                self._store.close()
                raise IncompatibleGalleryError(f"shard {str(self.folder)!r}: expected {key} {want}, got {got.get(key)}")
        self._tables = {p: _PositionTable() for p in range(1, 11)}
        self._where: dict[int, tuple[int, int]] = {}  # finger id -> (subject key, position)
        self._names: dict[int, str] = {}  # subject key -> subject id
        self._keys: dict[str, int] = {}  # subject id -> key
        self._fingers_of: dict[int, dict[int, int]] = {}  # subject key -> {position: finger id}
        self._last_finger = 0
        self._last_removal = 0
        self._retrieval = make_retrieval(spec.retrieval)
        self._retrieval.load(self.folder / "index")
        self.catch_up()

    def __reduce__(self):  # re-open from the spec in the receiving process
        return (Shard, (self.spec,))

    @classmethod
    def create(cls, spec: ShardSpec, number: int) -> "Shard":
        return cls(spec, _create_meta={"shard": number})

    # ---- keeping the derived state in step with the store -------------------------------
    def catch_up(self) -> int:
        """Fold in fingers and removals committed since the last call (by any process).

        Returns the number of fingers added.
        """
        with self._lock:
            rows = self._store.fingers_since(self._last_finger)
            new_by_pos: dict[int, tuple[list, list, list]] = {}
            for fid, key, sid, pos, blob in rows:
                t = decode(blob)
                self._add_finger(fid, key, sid, pos, prepare(t, self._params))
                if fid > self._retrieval.indexed_upto:
                    new_by_pos.setdefault(pos, ([], [], []))
                    new_by_pos[pos][0].append(fid)
                    new_by_pos[pos][1].append(t)
                    new_by_pos[pos][2].append(key)
            for pos, (fids, ts, keys) in new_by_pos.items():
                self._retrieval.add(pos, np.asarray(fids, np.int64), ts, np.asarray(keys, np.int64))
            removals = self._store.removals_since(self._last_removal)
            if removals:
                gone = [f for _, f in removals]
                self._drop_fingers(set(gone))
                fresh = [f for s, f in removals if s > self._retrieval.removals_upto]
                if fresh:
                    self._retrieval.remove(np.asarray(fresh, np.int64))
                self._retrieval.removals_upto = max(self._retrieval.removals_upto, removals[-1][0])
                self._last_removal = removals[-1][0]
            return len(rows)

    def _add_finger(self, fid, key, sid, pos, prep) -> None:
        self._tables[pos].append(fid, key, prep)
        self._where[fid] = (key, pos)
        self._names[key] = sid
        self._keys[sid] = key
        self._fingers_of.setdefault(key, {})[pos] = fid
        self._last_finger = max(self._last_finger, fid)

    def _drop_fingers(self, fids: set) -> None:
        positions = set()
        for fid in fids:
            hit = self._where.pop(fid, None)
            if hit is None:
                continue
            key, pos = hit
            positions.add(pos)
            fingers = self._fingers_of.get(key, {})
            fingers.pop(pos, None)
            if not fingers:
                self._fingers_of.pop(key, None)
                sid = self._names.pop(key, None)
                if sid is not None and self._keys.get(sid) == key:
                    del self._keys[sid]
        for pos in positions:
            self._tables[pos].drop(fids)

    # ---- writes (the caller holds the gallery's write lock) ---------------------------------
    def insert(self, subject_id: str, templates: dict, prepared: dict, metadata_json, face) -> None:
        """Durably insert one subject (committed and fsync'd on return), then index it."""
        blobs = {p: (encode(t), len(t)) for p, t in templates.items()}
        with self._lock:
            key, fids = self._store.insert(subject_id, blobs, metadata_json,
                                           None if face is None else np.asarray(face, np.float32).tobytes())
            # The store is ahead of memory only by this commit when the caller caught up first;
            # otherwise catch_up() folds everything in order.
            if self._last_finger < fids[0][0] - 1 or self._store_has_unseen_removals():
                self.catch_up()
                return
            for fid, pos in fids:
                self._add_finger(fid, key, subject_id, pos, prepared[pos])
                self._retrieval.add(pos, np.asarray([fid], np.int64), [templates[pos]],
                                    np.asarray([key], np.int64))

    def _store_has_unseen_removals(self) -> bool:
        return bool(self._store.removals_since(self._last_removal))

    def remove(self, subject_id: str) -> None:
        with self._lock:
            self._store.remove(subject_id)
            self.catch_up()

    # ---- reads ------------------------------------------------------------------------------
    def has_subject(self, subject_id: str) -> bool:
        return self._store.has_subject(subject_id)

    @property
    def n_subjects(self) -> int:
        with self._lock:
            return len(self._fingers_of)

    def search(self, probe: dict, decision: _decide.DecisionParams, top: int) -> tuple[list, dict]:
        """Score the probe against this shard's candidates.

        Parameters
        ----------
        probe : dict int -> PreparedTemplate
            Usable probe fingers by position.
        top : int
            Candidates to return.

        Returns
        -------
        (list of Candidate ranked best first, timings in ms)
        """
        t0 = time.perf_counter()
        with self._lock:
            cand = self._retrieval.candidates({p: pt.template for p, pt in probe.items()}, top)
            snap = {p: (self._tables[p].subjects_array(), list(self._tables[p].prepared)) for p in probe}
        t1 = time.perf_counter()
        keep = None
        if cand is not None:
            with self._lock:
                keep = np.fromiter({self._where[f][0] for ids in cand.values() for f in ids if f in self._where},
                                   np.int64)
        subj_parts, pos_parts, score_parts = [], [], []
        for p, pt in probe.items():
            subj, preps = snap[p]
            if len(subj) == 0:
                continue
            if keep is not None:
                sel = np.flatnonzero(np.isin(subj, keep))
                subj, preps = subj[sel], [preps[i] for i in sel]
                if len(sel) == 0:
                    continue
            scores = FingerprintMatcher(pt, self._params).match_many(preps, n_threads=self.spec.n_threads)
            subj_parts.append(subj)
            pos_parts.append(np.full(len(subj), p, np.int8))
            score_parts.append(scores)
        t2 = time.perf_counter()
        out = []
        if subj_parts:
            subj = np.concatenate(subj_parts)
            pos = np.concatenate(pos_parts)
            scores = np.concatenate(score_parts).astype(np.float64)
            ev = _decide.finger_evidence(scores, decision)
            uniq, inv = np.unique(subj, return_inverse=True)
            total = np.bincount(inv, weights=ev, minlength=len(uniq))
            count = np.bincount(inv, minlength=len(uniq))
            fused = _decide.fuse_evidence(total, count, decision)
            n = min(top, len(uniq))
            best = np.argpartition(-fused, n - 1)[:n] if n < len(uniq) else np.arange(len(uniq))
            best = best[np.lexsort((uniq[best], -fused[best]))]
            with self._lock:
                names = {int(k): self._names.get(int(k)) for k in uniq[best]}
            for b in best:
                rows = np.flatnonzero(inv == b)
                sid = names[int(uniq[b])]
                if sid is None:  # removed while we scored
                    continue
                out.append(Candidate(subject_id=sid, score=float(fused[b]),
                                     finger_scores={int(pos[r]): float(scores[r]) for r in rows},
                                     finger_evidence={int(pos[r]): float(ev[r]) for r in rows}))
        t3 = time.perf_counter()
        return out, {"retrieve": (t1 - t0) * 1e3, "rerank": (t2 - t1) * 1e3, "fuse": (t3 - t2) * 1e3}

    def subject_prepared(self, subject_id: str) -> dict:
        """``{position: PreparedTemplate}`` of an enrolled subject."""
        with self._lock:
            key = self._keys.get(subject_id)
            if key is None:
                raise UnknownSubjectError(f"subject_id: {subject_id!r} is not enrolled")
            out = {}
            for pos, fid in self._fingers_of[key].items():
                table = self._tables[pos]
                out[pos] = table.prepared[table.finger_ids.index(fid)]
            return out

    def subject_templates(self, subject_id: str) -> dict:
        """``{position: Template}`` read from the store (the source of truth)."""
        blobs = self._store.subject_templates(subject_id)
        if not blobs:
            raise UnknownSubjectError(f"subject_id: {subject_id!r} is not enrolled")
        return {p: decode(b) for p, b in blobs.items()}

    def stats(self) -> dict:
        with self._lock:
            counts = self._store.counts()
            mem = sum(pt.nbytes for t in self._tables.values() for pt in t.prepared)
            files = sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())
            mem_r = int(getattr(self._retrieval, "nbytes", 0))
            return dict(counts, memory_bytes=mem + mem_r, retrieval_bytes=mem_r, disk_bytes=files,
                        retrieval=self._retrieval.name,
                        indexed_upto=self._retrieval.indexed_upto, last_finger_id=self._last_finger)

    def integrity_problems(self) -> list[str]:
        return self._store.integrity_problems()

    def close(self) -> None:
        with self._lock:
            if not self.spec.read_only:
                try:
                    self._retrieval.save(self.folder / "index")
                except OSError as exc:  # derived data: rebuilt from the store next time
                    log.warning("shard %s: could not save the index (%s)", self.folder, exc)
            self._store.close()

    def __repr__(self) -> str:
        return f"Shard(folder={str(self.folder)!r}, retrieval={self.spec.retrieval!r})"
