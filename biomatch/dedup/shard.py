"""A shard: one partition of a gallery — its store, its retrieval index and its prepared templates.

A shard has no global state and is opened from a picklable :class:`ShardSpec`, so it can live
in another process (a worker, an actor) and be re-opened there.  A search is three calls
(:meth:`Shard.scan`, :meth:`Shard.persons`, :meth:`Shard.rerank`: the two-phase protocol of
:mod:`biomatch.dedup.scatter`) exchanging small, picklable values; the last returns a few
ranked :class:`~biomatch.dedup.report.Candidate` objects.  Everything in memory is derived from
the store and caught up from it (:meth:`Shard.catch_up`) before every search and inside the
gallery's write lock.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import decide as _decide
from ..face.embed import EMBEDDING_DIM as FACE_DIM
from ..match import FingerprintMatcher, PreparedTemplate, prepare
from ..params import MatchParams, from_json, stored_params_hash
from ..formats import decode, encode
from ..retrieval.components import make_retrieval
from ..retrieval.face_index import FaceIndex
from ..template import Template
from ..errors import CorruptStoreError, TemplateError
from . import watermark as _watermark
from .errors import IncompatibleGalleryError, UnknownSubjectError
from .report import Candidate
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
    cache_bytes : int
        Bound of the LRU cache of prepared templates (bytes; 0 disables it).
    save_rebuilt_index : bool
        Save the index at open when it had to be (re)built from the store, read-only opens
        included (derived files; a read-only open never writes the store).  False for checks
        that must write nothing.
    """

    folder: str
    gallery_id: str
    match_params_json: str
    retrieval: str = "exhaustive"
    read_only: bool = False
    n_threads: int = 1
    cache_bytes: int = 512 * 2**20
    save_rebuilt_index: bool = True


def _shard_number(meta: dict) -> int | None:
    """The shard number recorded in a store's meta table (None for a store without one)."""
    try:
        return int(meta["shard"])
    except (KeyError, TypeError, ValueError):
        return None


class _Grow:
    """A growable numpy array indexed by a store id (ids start at 1; ``fill`` = absent)."""

    __slots__ = ("data", "fill")

    def __init__(self, dtype, fill, width: int | None = None):
        self.fill = fill
        shape = (1024,) if width is None else (1024, width)
        self.data = np.full(shape, fill, dtype)

    def ensure(self, n: int) -> None:
        if n > len(self.data):
            grown = np.full((max(n, 2 * len(self.data)),) + self.data.shape[1:], self.fill, self.data.dtype)
            grown[:len(self.data)] = self.data
            self.data = grown

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


class PreparedCache:
    """A thread-safe LRU cache of prepared templates by finger id, bounded in bytes.

    Parameters
    ----------
    max_bytes : int
        Bound on ``sum(PreparedTemplate.nbytes)`` (0 disables caching).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, fid: int):
        with self._lock:
            pt = self._items.get(fid)
            if pt is None:
                self.misses += 1
                return None
            self._items.move_to_end(fid)
            self.hits += 1
            return pt

    def put(self, fid: int, pt: PreparedTemplate) -> None:
        size = int(pt.nbytes)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(fid, None)
            if old is not None:
                self.nbytes -= int(old.nbytes)
            self._items[fid] = pt
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, gone = self._items.popitem(last=False)
                self.nbytes -= int(gone.nbytes)

    def discard(self, fids) -> None:
        with self._lock:
            for f in fids:
                pt = self._items.pop(int(f), None)
                if pt is not None:
                    self.nbytes -= int(pt.nbytes)

    def __len__(self) -> int:
        return len(self._items)


class Shard:
    """One partition of a gallery.

    Thread-safe: an internal lock guards the store connection and the in-memory maps;
    preparation and native scoring run outside it.

    Memory is bounded: per enrolled finger the shard keeps 9 bytes of maps (finger id ->
    subject key, position) and per subject 88 bytes (subject key -> finger id of each
    position), plus the retrieval index (FAISS: 64 B code + 16 B ids per finger).  Templates
    stay in the store; the candidates' templates are read and prepared on demand (~0.5-0.7 ms
    per finger) and kept in an LRU cache of at most ``ShardSpec.cache_bytes`` bytes (a prepared
    finger is ~37 KB at ~40 minutiae).  Re-ranking costs ``(read + prepare + match)`` per
    candidate finger on a cold cache; the cascade of :meth:`search` keeps that to ~3 fingers
    per candidate person instead of 10 (see :class:`~biomatch.decide.DecisionParams`
    ``rerank_*`` and :class:`~biomatch.retrieval.faiss_retrieval.FaissRetrievalParams`).  With exhaustive
    retrieval every finger of the probe's positions is a candidate: only sensible for galleries
    whose prepared templates fit the cache.
    """

    STORE_NAME = "store.sqlite"

    def __init__(self, spec: ShardSpec, _create_meta: dict | None = None):
        self.spec = spec
        self.folder = Path(spec.folder)
        self._lock = threading.RLock()
        self._params = from_json(spec.match_params_json, MatchParams)
        self._params_hash = stored_params_hash(spec.match_params_json, MatchParams)  # as the store recorded it
        create = _create_meta is not None
        if create:
            os.makedirs(self.folder, mode=0o700, exist_ok=False)
        meta = dict(_create_meta or {}, gallery_id=spec.gallery_id, match_params_hash=self._params_hash)
        self._store = Store(self.folder / self.STORE_NAME, create=create, read_only=spec.read_only,
                            meta=meta if create else None)
        if create:  # nothing acknowledged yet: the watermark starts at the empty store's sequences
            _watermark.write(self.folder, spec.gallery_id, int(_create_meta["shard"]), self._store.sequences())
        got = self._store.meta()
        for key, want in (("gallery_id", spec.gallery_id), ("match_params_hash", self._params_hash)):
            if got.get(key) != want:
                self._store.close()
                raise IncompatibleGalleryError(f"store {str(self._store.path)!r}: expected {key} {want}, got "
                                               f"{got.get(key)} (another gallery's store, or a damaged one)")
        self._fid_key = _Grow(np.int64, -1)  # finger id -> subject key (-1: absent)
        self._fid_pos = _Grow(np.int8, 0)  # finger id -> position
        self._key_fids = _Grow(np.int64, 0, 11)  # subject key -> finger id per position (0: none)
        self._n_subjects = 0
        self._cache = PreparedCache(spec.cache_bytes)
        self._last_finger = 0
        self._last_removal = 0
        self._retrieval = make_retrieval(spec.retrieval)
        self._retrieval.load(self.folder / "index")
        self.index_rebuilt = False  # True when the saved index disagreed with the store
        self.index_problems: list = []  # how it disagreed
        self._indexed_at_open = 0  # rows indexed from the store since open (a rebuild: all of them)
        # Faces: an exact FAISS inner-product index in memory, rebuilt from the store on open
        # (512 B per face; ~1 s per 100k faces to read back).  Row r <-> subject key.
        self._faces = FaceIndex()
        self._face_key = _Grow(np.int64, -1)  # face row -> subject key
        self._key_face = _Grow(np.int64, -1)  # subject key -> face row (-1: none)
        self._last_face_key = 0
        self._max_key = 0
        self._bad_faces = 0
        self._executor = None
        self._queries: OrderedDict = OrderedDict()  # query id -> scan state between the phases
        try:
            self._check_watermark(got)
            # Derived files are trusted only as far as they agree with the store: fold the
            # store's finger keys in first, then compare, then index what the files lack.
            self._fold_keys()
            self._verify_retrieval()
            self.catch_up()
            if self._indexed_at_open and spec.save_rebuilt_index:
                self._save_index()  # a rebuild is paid once, read-only opens included
        except BaseException:
            self._store.close()
            raise

    def __reduce__(self):  # re-open from the spec in the receiving process
        return (Shard, (self.spec,))

    @classmethod
    def create(cls, spec: ShardSpec, number: int) -> "Shard":
        return cls(spec, _create_meta={"shard": number, "watermark": "1"})

    # ---- keeping the derived state in step with the store -------------------------------
    def catch_up(self) -> int:
        """Fold in fingers and removals committed since the last call (by any process).

        Returns the number of fingers added.  Templates are read only for fingers the
        retrieval index lacks (``id > indexed_upto``); nothing is prepared here.
        """
        with self._lock:
            added = self._fold_keys()
            if self._retrieval.name == "exhaustive":  # no codes: nothing to read
                self._retrieval.indexed_upto = self._last_finger
            if self._retrieval.indexed_upto < self._last_finger:
                after = self._retrieval.indexed_upto
                while True:
                    rows = self._store.fingers_since(after, limit=50_000)
                    if not rows:
                        break
                    self._index_rows([(fid, key, pos, self._decode_stored(fid, blob))
                                      for fid, key, _, pos, blob in rows])
                    self._indexed_at_open += len(rows)
                    after = rows[-1][0]
            removals = self._store.removals_since(self._last_removal)
            if removals:
                gone = np.asarray([f for _, f in removals], np.int64)
                known = gone[(gone > 0) & (gone < len(self._fid_key.data))]
                keys = self._fid_key.data[known]
                self._drop_fingers(gone)
                self._drop_faces(keys)
                fresh = [f for s, f in removals if s > self._retrieval.removals_upto]
                if fresh:
                    self._retrieval.remove(np.asarray(fresh, np.int64))
                self._retrieval.removals_upto = max(self._retrieval.removals_upto, removals[-1][0])
                self._last_removal = removals[-1][0]
            self._fold_faces()
            return added

    def _fold_keys(self) -> int:
        """Fold in the ``(finger id, subject key, position)`` rows committed since the last call."""
        added = 0
        while True:
            rows = self._store.finger_keys_since(self._last_finger, limit=200_000)
            if not rows:
                return added
            try:
                arr = np.asarray(rows, np.int64).reshape(len(rows), 3)
            except (TypeError, ValueError):  # NULLs or text where SQLite should hold integers
                raise CorruptStoreError(f"store {str(self._store.path)!r}: damaged finger rows after id "
                                        f"{self._last_finger} (values that are not integers)") from None
            # Values the schema promises; a damaged page may break them (SQLite does not re-check
            # CHECK constraints on read), and an out-of-range position would index past our maps.
            bad = (arr[:, 0] <= self._last_finger) | (arr[:, 1] < 1) | (arr[:, 2] < 1) | (arr[:, 2] > 10)
            if bad.any() or (len(arr) > 1 and (np.diff(arr[:, 0]) <= 0).any()):
                row = arr[np.flatnonzero(bad)[0]] if bad.any() else arr[0]
                raise CorruptStoreError(f"store {str(self._store.path)!r}: damaged finger row (id {int(row[0])}, "
                                        f"subject key {int(row[1])}, position {int(row[2])})")
            self._add_fingers(arr[:, 0], arr[:, 1], arr[:, 2])
            added += len(arr)

    def _decode_stored(self, fid: int, blob) -> Template:
        """Decode a template read from the store; damage (BMT1's CRC) names the store and the finger."""
        try:
            return decode(blob)
        except (TemplateError, TypeError, ValueError) as exc:
            raise CorruptStoreError(f"store {str(self._store.path)!r}: finger {int(fid)} has a damaged template "
                                    f"({exc})") from None

    def _check_watermark(self, meta: dict) -> None:
        """Refuse a store that holds less than it acknowledged (see :mod:`biomatch.dedup.watermark`)."""
        shard_no = _shard_number(meta)
        acknowledged = _watermark.read(self.folder, self.spec.gallery_id, shard_no)  # before the store
        seqs = self._store.sequences()
        if acknowledged is None:
            if meta.get("watermark") == "1":
                raise CorruptStoreError(f"watermark {str(self.folder / _watermark.FILE)!r}: missing, but the store "
                                        f"{str(self._store.path)!r} keeps one (restore it, or run biomatch gallery "
                                        f"check --repair --accept-store-loss to trust the store as it is)")
            if not self.spec.read_only:  # a store of a version before watermarks: start keeping one
                _watermark.write(self.folder, self.spec.gallery_id, shard_no, seqs)
                self._store.set_meta("watermark", "1")
                log.info("shard %s: watermark started at %s", self.folder, seqs)
            return
        _watermark.check(self._store.path, seqs, acknowledged)

    def _acknowledge(self) -> None:
        """Record the store's sequences in the watermark after a committed write (under the gallery's
        write lock).  A failure here loses nothing (the store is committed) but is reported: the
        watermark then lags, and only guards what it recorded."""
        try:
            _watermark.write(self.folder, self.spec.gallery_id, _shard_number(self._store.meta()),
                             self._store.sequences())
        except OSError as exc:
            log.warning("shard %s: could not update the watermark (%s); the store is committed", self.folder, exc)

    def _verify_retrieval(self) -> None:
        """Compare the loaded derived index with the store; on any disagreement start it afresh
        (it is then rebuilt from the store by :meth:`catch_up`), with a warning."""
        verify = getattr(self._retrieval, "verify", None)
        if verify is None:
            return
        try:
            problems = verify(self._fid_key.data[:self._last_finger + 1], self._fid_pos.data[:self._last_finger + 1],
                              self._store.sequences(),
                              {f for _, f in self._store.removals_since(self._retrieval.removals_upto)})
        except Exception as exc:  # noqa: BLE001 - derived data: any failure to verify means rebuild
            problems = [f"cannot verify it ({type(exc).__name__}: {exc})"]
        if problems:
            log.warning("shard %s: the index disagrees with the store (%s); rebuilding it from the store",
                        self.folder, "; ".join(problems[:3]))
            self._retrieval = make_retrieval(self.spec.retrieval)
            self.index_rebuilt = True
            self.index_problems = problems

    def _save_index(self) -> bool:
        """Save the derived index (best effort: a failure only costs a rebuild at the next open)."""
        try:
            self._retrieval.save(self.folder / "index")
            return True
        except OSError as exc:
            log.warning("shard %s: could not save the index (%s); it is rebuilt from the store when needed",
                        self.folder, exc)
            return False

    def _fold_faces(self) -> None:
        """Index the faces of subjects whose fingers are folded in; tombstone removed subjects' faces."""
        while True:
            rows = self._store.faces_since(self._last_face_key, self._max_key, limit=50_000)
            if not rows:
                break
            keys, embs = [], []
            for key, blob in rows:
                e = np.frombuffer(blob, np.float32) if len(blob) % 4 == 0 else np.zeros(0, np.float32)
                norm = float(np.linalg.norm(e)) if e.size == FACE_DIM and np.all(np.isfinite(e)) else 0.0
                if norm > 0:
                    keys.append(key), embs.append(e / norm)
                else:  # a face stored by another model version: never a candidate, counted in stats
                    self._bad_faces += 1
            if keys:
                first = self._faces.add(np.asarray(embs, np.float32))
                k = np.asarray(keys, np.int64)
                self._face_key.ensure(first + len(k))
                self._face_key.data[first:first + len(k)] = k
                self._key_face.ensure(int(k.max()) + 1)
                self._key_face.data[k] = np.arange(first, first + len(k))
            self._last_face_key = rows[-1][0]
        # Every subject up to _max_key is folded: its face was committed with its fingers (one
        # transaction).  Without this, a gallery without faces would rescan all subjects on
        # every catch-up (52 ms per search at 1M enrolments).
        self._last_face_key = max(self._last_face_key, self._max_key)

    def _drop_faces(self, keys: np.ndarray) -> None:
        """Tombstone the faces of ``keys`` that have no finger left (removed subjects)."""
        keys = np.unique(keys[(keys >= 0) & (keys < len(self._key_face.data))])
        keys = keys[(self._key_face.data[keys] >= 0) & (self._key_fids.data[keys] == 0).all(axis=1)]
        if len(keys):
            self._faces.remove(self._key_face.data[keys])
            self._key_face.data[keys] = -1

    def _index_rows(self, rows) -> None:
        """Give ``(finger id, subject key, position, Template)`` rows (ascending ids) to retrieval."""
        by_pos: dict[int, tuple[list, list, list]] = {}
        for fid, key, pos, t in rows:
            if fid > self._retrieval.indexed_upto:
                fids, ts, keys = by_pos.setdefault(int(pos), ([], [], []))
                fids.append(fid), ts.append(t), keys.append(key)
        for pos, (fids, ts, keys) in sorted(by_pos.items()):
            self._retrieval.add(pos, np.asarray(fids, np.int64), ts, np.asarray(keys, np.int64))

    def _add_fingers(self, fids: np.ndarray, keys: np.ndarray, positions: np.ndarray) -> None:
        if len(fids) == 0:
            return
        self._fid_key.ensure(int(fids.max()) + 1)
        self._fid_pos.ensure(int(fids.max()) + 1)
        self._key_fids.ensure(int(keys.max()) + 1)
        uk = np.unique(keys)
        self._n_subjects += int((self._key_fids.data[uk] == 0).all(axis=1).sum())
        self._fid_key.data[fids] = keys
        self._fid_pos.data[fids] = positions
        self._key_fids.data[keys, positions] = fids
        self._last_finger = max(self._last_finger, int(fids.max()))
        self._max_key = max(self._max_key, int(keys.max()))

    def _drop_fingers(self, fids: np.ndarray) -> None:
        fids = fids[(fids > 0) & (fids < len(self._fid_key.data))]
        fids = fids[self._fid_key.data[fids] >= 0]
        if len(fids) == 0:
            return
        keys = self._fid_key.data[fids]
        self._key_fids.data[keys, self._fid_pos.data[fids]] = 0
        self._fid_key.data[fids] = -1
        uk = np.unique(keys)
        self._n_subjects -= int((self._key_fids.data[uk] == 0).all(axis=1).sum())
        self._cache.discard(fids.tolist())

    # ---- writes (the caller holds the gallery's write lock) ---------------------------------
    def insert(self, subject_id: str, templates: dict, prepared: dict, metadata_json, face) -> None:
        """Durably insert one subject (committed and fsync'd on return), then index it."""
        blobs = {p: (encode(t), len(t)) for p, t in templates.items()}
        with self._lock:
            key, fids = self._store.insert(subject_id, blobs, metadata_json,
                                           None if face is None else np.asarray(face, np.float32).tobytes())
            self._acknowledge()
            # The store is ahead of memory only by this commit when the caller caught up first;
            # otherwise catch_up() folds everything in order.
            if self._last_finger < fids[0][0] - 1 or self._store_has_unseen_removals():
                self.catch_up()
                return
            ids = np.asarray([f for f, _ in fids], np.int64)
            pos = np.asarray([p for _, p in fids], np.int64)
            self._add_fingers(ids, np.full(len(ids), key, np.int64), pos)
            self._index_rows([(f, key, p, templates[p]) for f, p in fids])
            for fid, p in fids:
                if p in prepared:
                    self._cache.put(fid, prepared[p])
            if face is not None:
                self._fold_faces()

    def bulk_insert(self, records: list) -> int:
        """Durably insert many subjects in one transaction and index them in batches, WITHOUT dedup.

        Parameters
        ----------
        records : list of (subject_id, {position: Template}, metadata_json, face or None)

        Returns the number of subjects inserted.  Nothing is prepared (templates are prepared
        on demand when they become candidates).
        """
        rows = [(sid, {p: (encode(t), len(t)) for p, t in ts.items()}, meta,
                 None if face is None else np.asarray(face, np.float32).tobytes()) for sid, ts, meta, face in records]
        with self._lock:
            done = self._store.insert_many(rows)  # [(key, [(fid, pos), ...]), ...]
            self._acknowledge()
            first = min(f for _, fl in done for f, _ in fl) if done else 0
            if not done:
                return 0
            if self._last_finger < first - 1 or self._store_has_unseen_removals():
                self.catch_up()
                return len(done)
            flat = [(f, key, p, templates[p]) for (key, fl), (_, templates, _, _) in zip(done, records)
                    for f, p in fl]
            arr = np.asarray([(f, k, p) for f, k, p, _ in flat], np.int64)
            self._add_fingers(arr[:, 0], arr[:, 1], arr[:, 2])
            self._index_rows(flat)
            self._fold_faces()
            return len(done)

    def _store_has_unseen_removals(self) -> bool:
        return bool(self._store.removals_since(self._last_removal))

    def remove(self, subject_id: str) -> None:
        with self._lock:
            self._store.remove(subject_id)
            self._acknowledge()
            self.catch_up()

    # ---- reads ------------------------------------------------------------------------------
    def has_subject(self, subject_id: str) -> bool:
        return self._store.has_subject(subject_id)

    @property
    def n_subjects(self) -> int:
        with self._lock:
            return self._n_subjects

    def _pool(self):
        with self._lock:
            if self._executor is None:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(self.spec.n_threads, thread_name_prefix="biomatch-prepare")
            return self._executor

    def _prepared(self, fids: np.ndarray) -> list:
        """Prepared templates of ``fids`` (in order): from the cache, else read and prepared."""
        out = [self._cache.get(int(f)) for f in fids]
        missing = [int(f) for f, pt in zip(fids, out) if pt is None]
        if missing:
            with self._lock:
                blobs = self._store.templates_by_ids(missing)
            todo = [f for f in missing if blobs.get(f) is not None]  # None: removed meanwhile
            make = lambda f: prepare(self._decode_stored(f, blobs[f]), self._params)  # noqa: E731
            if self.spec.n_threads > 1 and len(todo) >= 16:
                # the native prepare releases the GIL: threads prepare in parallel
                made = dict(zip(todo, self._pool().map(make, todo)))
            else:
                made = {f: make(f) for f in todo}
            for f, pt in made.items():
                self._cache.put(f, pt)
            out = [pt if pt is not None else made.get(int(f)) for f, pt in zip(fids, out)]
        return out

    def _score(self, probe: dict, pos: np.ndarray, fids: np.ndarray) -> tuple[np.ndarray, float]:
        """Native scores of candidate fingers ``fids`` (at positions ``pos``) against the probe.

        Returns (scores, NaN for fingers removed meanwhile; seconds spent preparing candidates).
        """
        out = np.full(len(fids), np.nan)
        tp = time.perf_counter()
        all_preps = self._prepared(fids)  # one store read, one parallel batch
        t_prep = time.perf_counter() - tp
        for p, pt in probe.items():
            at = np.flatnonzero(pos == p)
            if len(at) == 0:
                continue
            preps = [all_preps[i] for i in at]
            ok = np.asarray([x is not None for x in preps], bool)
            if ok.any():
                out[at[ok]] = FingerprintMatcher(pt, self._params).match_many(
                    [x for x in preps if x is not None], n_threads=self.spec.n_threads)
        return out, t_prep

    @staticmethod
    def _cascade(probe: dict, keys: np.ndarray, code: np.ndarray, table: np.ndarray, full: np.ndarray,
                 decision: _decide.DecisionParams) -> tuple:
        """Pairs (subject key, position, finger id) to score in the first round: every finger of
        the ``full`` persons, the ``rerank_screen_fingers`` closest of the others (DecisionParams.rerank_*)."""
        positions = np.asarray(sorted(probe), np.int64)
        fid = table[:, positions]  # (m, f) finger ids, 0 where the candidate lacks the finger
        has = fid > 0
        order = np.argsort(-code[:, positions], axis=1, kind="stable")  # closest codes first
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(len(positions))[None, :].repeat(len(keys), 0), axis=1)
        # rank among the fingers the candidate has: count fingers it has that rank before
        avail_rank = np.cumsum(np.take_along_axis(has, order, 1), axis=1) - 1
        avail_rank = np.take_along_axis(avail_rank, rank, 1)
        first = has & (full[:, None] | (avail_rank < decision.rerank_screen_fingers))
        return positions, fid, has, first

    # ---- search: three calls of the two-phase protocol (biomatch.dedup.scatter) ------------------
    _MAX_QUERIES = 64
    """Queries kept between the phases (oldest dropped; a router that vanishes leaves one behind).
    Between 1a and 1b a query holds its scanned rows (24 B x rows per position x positions: ~1.5 MB
    for ten fingers at k = 100), afterwards its ~k candidate persons (~100 B each)."""

    def scan(self, qid: str, templates: dict, counts_hint: dict, face: np.ndarray | None = None,
             face_k: int = 0) -> dict:
        """Phase 1a: the exhaustive code scan of the probe, kept for :meth:`persons` and :meth:`rerank`.

        Parameters
        ----------
        qid : str
            The query's id (chosen by the router).
        templates : dict int -> Template
            Usable probe fingers by position.
        counts_hint : dict position -> int
            The gallery's active rows per position as the router believes them; rows fetched per
            position follow from it (the router checks ``fetched`` and scans again if too few).
        face, face_k
            The probe's unit face embedding and how many nearest faces to report.

        Returns
        -------
        dict with ``two_phase`` (False: this retrieval has no code ranking; every person is a
        candidate), ``hist`` ({position: int64 counts of the fetched rows per Hamming distance}),
        ``fetched`` (rows asked per position), ``counts``, ``valid`` (probe positions with a
        valid code), ``params`` (the retrieval's parameters), ``face_scores`` (descending),
        ``n_subjects``, ``ms``.
        """
        from .scatter import n_rows_for

        t0 = time.perf_counter()
        r = self._retrieval
        two_phase = hasattr(r, "scan")
        state: dict = {"two_phase": two_phase, "face_rows": np.zeros(0, np.int64), "face_scores": np.zeros(0)}
        out = {"two_phase": two_phase, "hist": {}, "fetched": 0, "counts": {}, "valid": [], "params": None}
        with self._lock:
            if two_phase:
                codes = r.probe_codes(templates)
                merged = dict(counts_hint)
                for p, n in r.position_counts().items():
                    merged[p] = max(merged.get(p, 0), n)
                _, n_rows = n_rows_for(r.params, counts_hint, sum(1 for p in codes if merged.get(p)))
                state["scanned"] = r.scan(codes, n_rows + 1)
                out.update(hist={p: np.bincount(d) for p, (d, _, _) in state["scanned"].items()},
                           fetched=n_rows + 1, counts=r.position_counts(), valid=sorted(codes), params=r.params)
            if face is not None and face_k and self._faces.n_active:
                hits = self._faces.search(face, min(face_k, self._faces.n_active))
                ok = hits.rows[0] >= 0
                state["face_rows"], state["face_scores"] = hits.rows[0][ok], hits.scores[0][ok].astype(np.float64)
            out["face_scores"] = state["face_scores"]
            out["n_subjects"] = self._n_subjects
            self._queries[qid] = state
            while len(self._queries) > self._MAX_QUERIES:
                self._queries.popitem(last=False)
        out["ms"] = (time.perf_counter() - t0) * 1e3
        return out

    def _query(self, qid: str, pop: bool = False) -> dict:
        from .scatter import ScanLostError

        with self._lock:
            state = self._queries.pop(qid, None) if pop else self._queries.get(qid)
        if state is None:
            raise ScanLostError(f"shard {str(self.folder)!r}: no scan of query {qid} (restarted?): search again")
        return state

    def persons(self, qid: str, cuts: dict, n_keep: int) -> list:
        """Phase 1b: per-person code scores within the gallery-wide ``cuts``; returns this shard's
        ``n_keep`` best persons (ties at its cut included) as ``(score, subject_id)`` pairs."""
        from .scatter import best_with_ties

        state = self._query(qid)
        if not state["two_phase"]:
            return []
        keys, table = self._retrieval.person_table(state["scanned"], cuts)
        total = table.sum(axis=1)
        # Only these can pass the gallery-wide cut (it is at least this shard's n_keep-th best):
        # the state kept until rerank shrinks from every person with a kept row to ~n_keep.
        best = np.sort(best_with_ties(total, n_keep))
        keys, table, total = keys[best], table[best], total[best]
        with self._lock:
            named = self._store.subject_ids(keys.tolist())  # removed meanwhile: absent
        names = [named.get(int(k)) for k in keys]
        state.update(keys=keys, table=table, total=total, names=names)
        del state["scanned"]
        return [(float(t), n) for t, n in zip(total, names) if n is not None]

    def rerank(self, qid: str, probe: dict, decision: _decide.DecisionParams, top: int, code_cut: tuple,
               full_cut: tuple, face_cut: float, face: np.ndarray | None = None) -> tuple[list, dict, dict]:
        """Phase 2: natively re-rank this shard's persons selected by the gallery-wide cuts.

        Persons sorting at or before ``code_cut`` (a ``(score, subject_id)`` pair, see
        :func:`~biomatch.dedup.scatter.nth_person`) are candidates; those at or before
        ``full_cut`` are matched on every common finger, the others on their ``rerank_screen_fingers``
        closest fingers first and on the rest only if those reach ``rerank_escalate_decades``
        (see :class:`~biomatch.decide.DecisionParams`).  Persons whose face similarity reaches
        ``face_cut`` join as screened candidates; every candidate with a face gets its cosine
        as one more evidence term.

        Parameters
        ----------
        probe : dict int -> PreparedTemplate or Template
            Usable probe fingers (Templates are prepared here, only if there is a candidate).
        top : int
            Candidates to return (ties with the last included).

        Returns
        -------
        (list of Candidate ranked best first, timings in ms, work counts)
        """
        from .scatter import before_cut, best_with_ties

        state = self._query(qid, pop=True)
        t0 = time.perf_counter()
        t_prep = 0.0
        n_escalated = 0
        with self._lock:
            if state["two_phase"]:
                if "total" in state:
                    sel = np.flatnonzero(before_cut(state["total"], state["names"], code_cut))
                    full = before_cut(state["total"][sel], [state["names"][i] for i in sel], full_cut)
                else:
                    sel, full = np.zeros(0, np.int64), np.zeros(0, bool)
                keys = state["keys"][sel] if len(sel) else np.zeros(0, np.int64)
                code = state["table"][sel] if len(sel) else np.zeros((0, 11))
            else:
                fid_key = self._fid_key.data
                cand = self._retrieval.candidates({p: getattr(t, "template", t) for p, t in probe.items()}, top)
                if cand is not None:
                    ids = np.concatenate([np.asarray(v, np.int64) for v in cand.values()]) if cand \
                        else np.zeros(0, np.int64)
                    ids = ids[(ids > 0) & (ids < len(fid_key))]
                    keys = np.unique(fid_key[ids])
                else:
                    keys = np.unique(fid_key[fid_key >= 0])
                keys = keys[keys >= 0]
                code = np.zeros((len(keys), 11))
                full = np.ones(len(keys), bool)  # no code ranking: every finger of every candidate
            keys = keys[keys < len(self._key_fids.data)] if len(keys) else keys
            code, full = code[:len(keys)], full[:len(keys)]
            n_face_only = 0
            face_hit = state["face_rows"][state["face_scores"] >= face_cut]
            if len(face_hit):
                fk = self._face_key.data[face_hit]
                fk = fk[~np.isin(fk, keys)]
                if len(fk):  # persons only the face found: screened like the code stage's tail
                    n_face_only = len(fk)
                    keys = np.concatenate([keys, fk])
                    code = np.concatenate([code, np.zeros((len(fk), 11))])
                    full = np.concatenate([full, np.zeros(len(fk), bool)])
            table = self._key_fids.data[keys]
            cos = np.full(len(keys), np.nan)
            if face is not None and len(keys):
                face_rows = np.where(keys < len(self._key_face.data),
                                     self._key_face.data[np.minimum(keys, len(self._key_face.data) - 1)], -1)
                have = face_rows >= 0
                if have.any():
                    # float64, row by row: the same value whatever the shard and the batch
                    v = self._faces.vectors(face_rows[have]).astype(np.float64)
                    cos[have] = (v * np.asarray(face, np.float64)[None, :]).sum(axis=1)
        if len(keys) and any(not isinstance(t, PreparedTemplate) for t in probe.values()):
            tp = time.perf_counter()
            probe = {p: t if isinstance(t, PreparedTemplate) else prepare(t, self._params) for p, t in probe.items()}
            t_prep += time.perf_counter() - tp
        t1 = time.perf_counter()
        positions, fid, has, first = self._cascade(probe, keys, code, table, full, decision)
        pos = positions[None, :].repeat(len(keys), 0)
        scores = np.full(fid.shape, np.nan)
        if first.any():
            scores[first], t = self._score(probe, pos[first], fid[first])
            t_prep += t
        screened = np.flatnonzero(~first.all(axis=1) & has.any(axis=1) & (first & has).any(axis=1))
        if len(screened):
            sc = scores[screened]
            ev = np.where(np.isnan(sc), 0.0, _decide.finger_evidence(np.nan_to_num(sc), decision))
            partial = _decide.fuse_evidence(ev.sum(1), (~np.isnan(sc)).sum(1), decision)
            up = screened[partial >= decision.rerank_escalate_decades]
            second = np.zeros_like(first)
            second[up] = has[up] & ~first[up]
            n_escalated = len(up)
            if second.any():
                scores[second], t = self._score(probe, pos[second], fid[second])
                t_prep += t
        t2 = time.perf_counter()
        out = []
        done = ~np.isnan(scores)
        has_face = ~np.isnan(cos)
        if done.any() or has_face.any():
            rows_p, cols = np.nonzero(done)
            sc = scores[done]
            ev = _decide.finger_evidence(sc, decision)
            face_ev = np.where(has_face, _decide.face_evidence(np.nan_to_num(cos), decision), 0.0)
            total = np.bincount(rows_p, weights=ev, minlength=len(keys)) + face_ev
            count = np.bincount(rows_p, minlength=len(keys)) + has_face
            scored = np.flatnonzero(count > 0)
            fused = _decide.fuse_evidence(total[scored], count[scored], decision)
            best = best_with_ties(fused, top)
            with self._lock:
                names = self._store.subject_ids([int(keys[scored[b]]) for b in best])
            for b in best:
                i = scored[b]
                sid = names.get(int(keys[i]))
                if sid is None:  # removed while we scored
                    continue
                at = np.flatnonzero(rows_p == i)
                out.append(Candidate(subject_id=sid, score=float(fused[b]),
                                     finger_scores={int(positions[cols[r]]): float(sc[r]) for r in at},
                                     finger_evidence={int(positions[cols[r]]): float(ev[r]) for r in at},
                                     face_score=float(cos[i]) if has_face[i] else None,
                                     face_evidence=float(face_ev[i]) if has_face[i] else None))
            out.sort(key=lambda c: (-c.score, c.subject_id))
        t3 = time.perf_counter()
        work = {"candidates": len(keys), "fingers_matched": int(done.sum()), "escalated": n_escalated,
                "face_only_candidates": n_face_only, "faces_compared": int(has_face.sum())}
        return out, {"prepare_candidates": t_prep * 1e3, "rerank": ((t2 - t0) - t_prep) * 1e3,
                     "fuse": (t3 - t2) * 1e3}, work

    def position_counts(self) -> dict:
        """``{position: active code rows}`` (empty for a retrieval without codes)."""
        with self._lock:
            f = getattr(self._retrieval, "position_counts", None)
            return f() if f is not None else {}

    def present(self, subject_ids) -> list:
        """The ids among ``subject_ids`` enrolled in this shard."""
        return [sid for sid in subject_ids if self._store.has_subject(sid)]

    def subject_key(self, subject_id: str) -> int | None:
        """The store's integer key of a subject (the retrieval stage's person id), None if unknown."""
        with self._lock:
            return self._store.subject_key(subject_id)

    def subject_prepared(self, subject_id: str) -> dict:
        """``{position: PreparedTemplate}`` of an enrolled subject (prepared from the store, cached)."""
        with self._lock:
            key = self._store.subject_key(subject_id)
            if key is None or key >= len(self._key_fids.data) or not self._key_fids.data[key].any():
                raise UnknownSubjectError(f"subject_id: {subject_id!r} is not enrolled")
            row = self._key_fids.data[key]
            positions = [p for p in range(1, 11) if row[p] > 0]
            fids = row[positions]
        preps = self._prepared(fids)
        return {p: pt for p, pt in zip(positions, preps) if pt is not None}

    def subject_templates(self, subject_id: str) -> dict:
        """``{position: Template}`` read from the store (the source of truth)."""
        blobs = self._store.subject_templates(subject_id)
        if not blobs:
            raise UnknownSubjectError(f"subject_id: {subject_id!r} is not enrolled")
        return {p: self._decode_stored(0, b) for p, b in blobs.items()}

    def stats(self) -> dict:
        with self._lock:
            counts = self._store.counts()
            maps = self._fid_key.nbytes + self._fid_pos.nbytes + self._key_fids.nbytes
            files = sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())
            mem_r = int(getattr(self._retrieval, "nbytes", 0))
            mem_f = self._faces.ntotal * (4 * FACE_DIM + 8) + self._key_face.nbytes
            return dict(counts, memory_bytes=maps + mem_r + mem_f + self._cache.nbytes, retrieval_bytes=mem_r,
                        faces=self._faces.n_active, face_bytes=mem_f, faces_unusable=self._bad_faces,
                        maps_bytes=maps, cache_bytes=self._cache.nbytes, cache_limit_bytes=self._cache.max_bytes,
                        cache_entries=len(self._cache), cache_hits=self._cache.hits,
                        cache_misses=self._cache.misses, disk_bytes=files, retrieval=self._retrieval.name,
                        indexed_upto=self._retrieval.indexed_upto, last_finger_id=self._last_finger)

    def integrity_problems(self) -> list[str]:
        """SQLite's integrity check, the watermark, and the index against the store (empty: sound)."""
        out = list(self._store.integrity_problems())
        with self._lock:
            try:
                self._check_watermark(self._store.meta())
            except CorruptStoreError as exc:
                out.append(str(exc))
            if self.index_rebuilt:
                out.append(f"index {str(self.folder / 'index')!r}: disagreed with the store at open (rebuilt)")
            verify = getattr(self._retrieval, "verify", None)
            if verify is not None:
                out.extend(f"index {str(self.folder / 'index')!r}: {p}" for p in
                           verify(self._fid_key.data[:self._last_finger + 1],
                                  self._fid_pos.data[:self._last_finger + 1], self._store.sequences(),
                                  {f for _, f in self._store.removals_since(self._retrieval.removals_upto)}))
        return out

    def close(self) -> None:
        with self._lock:
            if not self.spec.read_only:
                self._save_index()
            self._store.close()
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def __repr__(self) -> str:
        return f"Shard(folder={str(self.folder)!r}, retrieval={self.spec.retrieval!r})"
