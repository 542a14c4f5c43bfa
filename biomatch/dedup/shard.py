"""A shard: one partition of a gallery — its store, its retrieval index and its prepared templates.

A shard has no global state and is opened from a picklable :class:`ShardSpec`, so it can live
in another process (a worker, an actor) and be re-opened there.  It implements
:class:`~biomatch.dedup.protocol.ShardProtocol`: every call is one message of
:mod:`biomatch.dedup.protocol`, answered with a typed reply.  Its jobs are split by module:
this one holds the state, the writes and the reads; :mod:`~biomatch.dedup.shard_sync` keeps
the derived state in step with the store; :mod:`~biomatch.dedup.shard_search` answers the
three calls of a search; :mod:`~biomatch.dedup.cache` bounds the memory of prepared templates.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CorruptStoreError
from ..face.embed import EMBEDDING_DIM as FACE_DIM
from ..params import MatchParams, from_json, stored_params_hash
from ..retrieval.components import make_retrieval
from ..retrieval.face_index import FaceIndex
from ..formats import encode
from . import watermark as _watermark
from .bulk import encode_rows
from .cache import GrowArray, PreparedCache
from .encryption import Keyring
from .errors import GalleryKeyError, IncompatibleGalleryError, UnknownSubjectError
from .finger_map import FingerMap
from .protocol import (BulkInsert, CountSubjects, HasSubject, Insert, IntegrityProblems, PositionCounts, Present,
                       Remove, Sequences, ShardStats, Stats, SubjectInfo, SubjectInfoReply, SubjectPrepared,
                       SubjectTemplates)
from .shard_search import ShardSearch
from .shard_sync import ShardSync
from .store import MAX_SUBJECT_KEY, Store

__all__ = ["Shard", "ShardSpec"]


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
    key : KeyProvider, optional
        The key-encryption key of an encrypted gallery (a description of where it is -- a key
        file, a variable, a KMS key -- never key material: a shard in another process reads it
        there and unwraps the data keys from the gallery manifest, ``folder/../../manifest.json``).
    """

    folder: str
    gallery_id: str
    match_params_json: str
    retrieval: str = "exhaustive"
    read_only: bool = False
    n_threads: int = 1
    cache_bytes: int = 512 * 2**20
    save_rebuilt_index: bool = True
    key: object = None



class Shard(ShardSync, ShardSearch):
    """One partition of a gallery.

    Thread-safe: an internal lock guards the store connection and the in-memory maps;
    preparation and native scoring run outside it.

    Memory is bounded: per subject key the shard keeps 6 bytes of map (its first finger id and
    its positions, :mod:`~biomatch.dedup.finger_map`), plus the retrieval index (FAISS: 64 B
    code + 4 B subject key + 1 bit of tombstone per finger): 687 B per ten-finger enrolment,
    sized exactly at open.  Templates
    stay in the store; the candidates' templates are read and prepared on demand (~0.5-0.7 ms
    per finger) and kept in an LRU cache of at most ``ShardSpec.cache_bytes`` bytes (a prepared
    finger is ~37 KB at ~40 minutiae).  Re-ranking costs ``(read + prepare + match)`` per
    candidate finger on a cold cache; the cascade of :meth:`rerank` keeps that to ~3 fingers
    per candidate person instead of 10 (see :class:`~biomatch.decide.DecisionParams`
    ``rerank_*`` and :class:`~biomatch.retrieval.faiss_retrieval.FaissRetrievalParams`).  With exhaustive
    retrieval every finger of the probe's positions is a candidate: only sensible for galleries
    whose prepared templates fit the cache.
    """

    STORE_NAME = "store.sqlite"

    def __init__(self, spec: ShardSpec, _create_meta: dict | None = None, keyring: Keyring | None = None):
        self.spec = spec
        self.folder = Path(spec.folder)
        self._lock = threading.RLock()
        self._params = from_json(spec.match_params_json, MatchParams)
        self._params_hash = stored_params_hash(spec.match_params_json, MatchParams)  # as the store recorded it
        create = _create_meta is not None
        if create:
            os.makedirs(self.folder, mode=0o700, exist_ok=False)
        meta = dict(_create_meta or {}, gallery_id=spec.gallery_id, match_params_hash=self._params_hash)
        if keyring is None and spec.key is not None:  # opened on its own (a Ray actor, a check)
            keyring = Keyring(spec.key, self.folder.parent.parent / "manifest.json", spec.gallery_id)
        self._store = Store(self.folder / self.STORE_NAME, create=create, read_only=spec.read_only,
                            meta=meta if create else None, cipher=keyring)
        self._keyring = keyring  # also seals the code index files (Shard._save_index)
        if self._store.encrypted and keyring is None:
            self._store.close()
            raise GalleryKeyError(f"store {str(self._store.path)!r}: encrypted, and opened without the gallery's key")
        if create:  # nothing acknowledged yet: the watermark starts at the empty store's sequences
            _watermark.write(self.folder, spec.gallery_id, int(_create_meta["shard"]), self._store.sequences())
        got = self._store.meta()
        for key, want in (("gallery_id", spec.gallery_id), ("match_params_hash", self._params_hash)):
            if got.get(key) != want:
                self._store.close()
                raise IncompatibleGalleryError(f"store {str(self._store.path)!r}: expected {key} {want}, got "
                                               f"{got.get(key)} (another gallery's store, or a damaged one)")
        self._map = FingerMap()  # subject key <-> finger ids; sized from the store below
        self._cache = PreparedCache(spec.cache_bytes)
        self._last_removal = 0
        self._retrieval = make_retrieval(spec.retrieval)
        self._retrieval.load(self.folder / "index", cipher=self._keyring)
        self.index_rebuilt = False  # True when the saved index disagreed with the store
        self.index_problems: list = []  # how it disagreed
        self._indexed_at_open = 0  # rows indexed from the store since open (a rebuild: all of them)
        # Faces: an exact FAISS inner-product index in memory, rebuilt from the store on open
        # (512 B per face; ~1 s per 100k faces to read back).  Row r <-> subject key.
        self._faces = FaceIndex()
        self._face_key = GrowArray(np.int32, -1)  # face row -> subject key
        self._key_face = GrowArray(np.int32, -1)  # subject key -> face row (-1: none)
        self._last_face_key = 0
        self._bad_faces = 0
        self._executor = None
        self._queries: OrderedDict = OrderedDict()  # query id -> scan state between the phases
        try:
            # exactly the keys the store holds: no growth slack after open
            self._map = FingerMap(min(self._store.last_subject_key(), MAX_SUBJECT_KEY))
            self._check_watermark(got)
            # Derived files are trusted only as far as they agree with the store: fold the
            # store's finger keys in first, then compare, then index what the files lack.
            # The removals logged before the fold concern subjects the fold no longer sees:
            # the index drops their rows when it is verified, so only later ones are caught up.
            removed_before = self._store.sequences()["removals"]
            self._fold_keys()
            self._verify_retrieval()
            self._last_removal = removed_before
            self._retrieval.removals_upto = max(self._retrieval.removals_upto, removed_before)
            self.catch_up()
            if self._indexed_at_open and spec.save_rebuilt_index:
                self._save_index()  # a rebuild is paid once, read-only opens included
        except BaseException:
            self._store.close()
            raise

    def __reduce__(self):  # re-open from the spec in the receiving process
        return (Shard, (self.spec,))

    @classmethod
    def create(cls, spec: ShardSpec, number: int, keyring: Keyring | None = None) -> "Shard":
        return cls(spec, _create_meta={"shard": number, "watermark": "1"}, keyring=keyring)


    # ---- writes (the caller holds the gallery's write lock) ---------------------------------
    def insert(self, call: Insert) -> None:
        """Durably insert one subject (committed and fsync'd on return), then index it."""
        templates, face = call.templates, call.face
        blobs = {p: (encode(t), len(t)) for p, t in templates.items()}
        with self._lock:
            key, fids = self._store.insert(call.subject_id, blobs, call.metadata_json,
                                           None if face is None else np.asarray(face, np.float32).tobytes())
            self._acknowledge()
            # The store is ahead of memory only by this commit when the caller caught up first;
            # otherwise catch_up() folds everything in order.
            if self._map.last_finger < fids[0][0] - 1 or self._store_has_unseen_removals():
                self.catch_up()
                return
            ids = np.asarray([f for f, _ in fids], np.int64)
            pos = np.asarray([p for _, p in fids], np.int64)
            self._map.add(ids, np.full(len(ids), key, np.int64), pos)
            self._index_rows([(f, key, p, templates[p]) for f, p in fids])
            for fid, p in fids:
                if p in call.prepared:
                    self._cache.put(fid, call.prepared[p])
            if face is not None:
                self._fold_faces()

    def bulk_insert(self, call: BulkInsert) -> int:
        """Durably insert many subjects in one transaction and index them in one append per
        position, WITHOUT dedup.

        Returns the number of subjects inserted.  Nothing is prepared (templates are prepared
        on demand when they become candidates).  With ``call.encoded`` (see
        :mod:`biomatch.dedup.bulk`) the blobs and codes are the caller's; otherwise they are
        made here.
        """
        enc = call.encoded if call.encoded is not None else encode_rows(call.rows)
        if not enc.subjects:
            return 0
        with self._lock:
            key0, fid0 = self._store.insert_batch(enc.subjects, enc.fingers)
            self._acknowledge()
            n = len(enc.fingers)
            if self._map.last_finger < fid0 - 1 or self._store_has_unseen_removals():
                self.catch_up()  # another writer got in between: fold everything in id order
                return len(enc.subjects)
            fids = np.arange(fid0, fid0 + n, dtype=np.int64)
            keys = key0 + np.fromiter((f[0] for f in enc.fingers), np.int64, n)
            pos = np.fromiter((f[1] for f in enc.fingers), np.int64, n)
            self._map.add(fids, keys, pos)
            add_codes = getattr(self._retrieval, "add_codes", None)
            if enc.codes is not None and add_codes is not None \
                    and enc.code_generation == getattr(self._retrieval, "generation", None):
                for p in np.unique(pos):
                    rows = np.flatnonzero(pos == p)
                    add_codes(int(p), fids[rows], enc.codes[rows], enc.valid[rows], keys[rows])
            else:
                # The rows' templates are in the fingers' order (subject-major, positions ascending)
                templates = [t for _, ts, _, _ in call.rows for _, t in sorted(ts.items())] if call.rows \
                    else [self._decode_stored(f, b) for f, (_, _, b, _) in zip(fids.tolist(), enc.fingers)]
                self._index_rows(list(zip(fids.tolist(), keys.tolist(), pos.tolist(), templates)))
            self._fold_faces()
            return len(enc.subjects)

    def checkpoint(self) -> bool:
        """Save the derived index now (bulk loading does it every few minutes, so that a kill
        costs a catch-up of minutes, not a rebuild of the whole load); False when it failed."""
        with self._lock:
            return self._save_index()

    def _store_has_unseen_removals(self) -> bool:
        return bool(self._store.removals_since(self._last_removal))

    def remove(self, call: Remove) -> None:
        with self._lock:
            self._store.remove(call.subject_id)
            self._acknowledge()
            self.catch_up()

    # ---- reads ------------------------------------------------------------------------------
    def has_subject(self, call: HasSubject) -> bool:
        return self._store.has_subject(call.subject_id)

    def count_subjects(self, call: CountSubjects = CountSubjects()) -> int:
        with self._lock:
            return self._map.n_present

    def position_counts(self, call: PositionCounts = PositionCounts()) -> dict:
        with self._lock:
            f = getattr(self._retrieval, "position_counts", None)
            return f() if f is not None else {}

    def present(self, call: Present) -> list:
        return self._store.present(call.subject_ids)

    def subject_key(self, subject_id: str) -> int | None:
        """The store's integer key of a subject (the retrieval stage's person id), None if unknown."""
        with self._lock:
            return self._store.subject_key(subject_id)

    def subject_prepared(self, call: SubjectPrepared) -> dict:
        with self._lock:
            key = self._store.subject_key(call.subject_id)
            positions = [] if key is None else list(self._map.positions(key))
            if not positions:
                raise UnknownSubjectError(f"subject_id: {call.subject_id!r} is not enrolled")
            fids = self._map.finger_table([key])[0][positions]
        preps = self._prepared(fids)
        return {p: pt for p, pt in zip(positions, preps) if pt is not None}

    def subject_templates(self, call: SubjectTemplates) -> dict:
        if call.cached:
            return {p: pt.template for p, pt in self.subject_prepared(SubjectPrepared(call.subject_id)).items()}
        blobs = self._store.subject_templates(call.subject_id)
        if not blobs:
            raise UnknownSubjectError(f"subject_id: {call.subject_id!r} is not enrolled")
        return {p: self._decode_stored(0, b) for p, b in blobs.items()}

    def subject_info(self, call: SubjectInfo) -> SubjectInfoReply:
        """Positions, face and metadata of an enrolled subject, from memory and the store's
        subject row (no template is read)."""
        with self._lock:
            row = self._store.subject_record(call.subject_id)
            positions = () if row is None else self._map.positions(int(row[0]))
            if not positions:
                raise UnknownSubjectError(f"subject_id: {call.subject_id!r} is not enrolled")
            key = int(row[0])
            has_face = key < len(self._key_face.data) and int(self._key_face.data[key]) >= 0
            return SubjectInfoReply(call.subject_id, positions, bool(has_face), row[1])

    def stats(self, call: Stats = Stats()) -> ShardStats:
        with self._lock:
            counts = self._store.counts()
            maps = self._map.nbytes
            files = sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())
            mem_r = int(getattr(self._retrieval, "nbytes", 0))
            mem_f = self._faces.ntotal * 4 * FACE_DIM + self._face_key.nbytes + self._key_face.nbytes
            return ShardStats(**counts, memory_bytes=maps + mem_r + mem_f + self._cache.nbytes, retrieval_bytes=mem_r,
                              faces=self._faces.n_active, face_bytes=mem_f, faces_unusable=self._bad_faces,
                              maps_bytes=maps, cache_bytes=self._cache.nbytes, cache_limit_bytes=self._cache.max_bytes,
                              cache_entries=len(self._cache), cache_hits=self._cache.hits,
                              cache_misses=self._cache.misses, disk_bytes=files, retrieval=self._retrieval.name,
                              indexed_upto=self._retrieval.indexed_upto, last_finger_id=self._map.last_finger)

    def sequences(self, call: Sequences = Sequences()) -> dict:
        return self._store.sequences()

    def integrity_problems(self, call: IntegrityProblems = IntegrityProblems()) -> list[str]:
        """SQLite's integrity check, the watermark, and the index against the store (empty: sound)."""
        out = list(self._store.integrity_problems())
        with self._lock:
            try:
                self._check_watermark(self._store.meta())
            except CorruptStoreError as exc:
                out.append(str(exc))
            if self.index_rebuilt:
                out.append(f"index {str(self.folder / 'index')!r}: disagreed with the store at open (rebuilt)")
            out.extend(f"index {str(self.folder / 'index')!r}: {p}" for p in self._retrieval_problems())
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
