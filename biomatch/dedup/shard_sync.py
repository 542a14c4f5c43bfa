"""Keeping a shard's derived state in step with its store: catch-up, faces, watermark, index files.

The store is the only source of truth.  Everything a shard holds in memory (finger and subject
maps, the retrieval index, the face index) is folded in from it, in id order, by
:meth:`ShardSync.catch_up` (before every search and inside the gallery's write lock), and the
saved index files are trusted only as far as they agree with the store row for row.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import CorruptStoreError, InvalidInputError, TemplateError
from ..face.embed import EMBEDDING_DIM as FACE_DIM
from ..formats.native import decode_stored
from ..retrieval.components import make_retrieval
from ..template import Template
from . import watermark as _watermark

__all__ = ["ShardSync", "shard_number"]

log = logging.getLogger(__name__)


def shard_number(meta: dict) -> int | None:
    """The shard number recorded in a store's meta table (None for a store without one)."""
    try:
        return int(meta["shard"])
    except (KeyError, TypeError, ValueError):
        return None


class ShardSync:
    """The catch-up and persistence half of :class:`~biomatch.dedup.shard.Shard` (a mixin over its state)."""

    def catch_up(self) -> int:
        """Fold in fingers and removals committed since the last call (by any process).

        Returns the number of fingers added.  Templates are read only for fingers the
        retrieval index lacks (``id > indexed_upto``); nothing is prepared here.
        """
        with self._lock:
            added = self._fold_keys()
            if self._retrieval.name == "exhaustive":  # no codes: nothing to read
                self._retrieval.indexed_upto = self._map.last_finger
            if self._retrieval.indexed_upto < self._map.last_finger:
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
                # A removal deletes a whole subject: its keys (from the finger ids the log names)
                # leave the map, the cache, the faces and the code index.  Removal is idempotent
                # in each, so the removals a loaded index already applied do no harm; fingers of
                # subjects never folded in resolve to no key (never indexed here, or dropped at
                # open by drop_absent).
                keys = self._map.remove(np.asarray([f for _, f in removals], np.int64))
                if len(keys):
                    self._cache.discard(self._map.finger_ids(keys).tolist())
                    self._drop_faces(keys)
                    self._retrieval.remove(keys)
                self._retrieval.removals_upto = max(self._retrieval.removals_upto, removals[-1][0])
                self._last_removal = removals[-1][0]
            self._fold_faces()
            return added

    def _fold_keys(self) -> int:
        """Fold in the ``(finger id, subject key, position)`` rows committed since the last call.

        Read in chunks of 4,096 rows: they arrive as Python tuples (~140 B each), and what a
        chunk allocates stays in the process's heap after it is freed (fragmentation): measured
        at 1M fingers, 200,000-row chunks left 19 MiB of RSS behind, 20,000 6 MiB, 5,000
        2.7 MiB (2 of them SQLite's page cache), in the same 1.3 s."""
        added = 0
        while True:
            last = self._map.last_finger
            rows = self._store.finger_keys_since(last, limit=4096)
            if not rows:
                return added
            try:
                arr = np.asarray(rows, np.int64).reshape(len(rows), 3)
            except (TypeError, ValueError, OverflowError):  # NULLs or text where SQLite should hold integers
                raise CorruptStoreError(f"store {str(self._store.path)!r}: damaged finger rows after id "
                                        f"{last} (values that are not integers)") from None
            del rows
            # Values the schema promises; a damaged page may break them (SQLite does not re-check
            # CHECK constraints on read), and an out-of-range position would index past our maps.
            bad = (arr[:, 0] <= last) | (arr[:, 1] < 1) | (arr[:, 2] < 1) | (arr[:, 2] > 10)
            if bad.any() or (len(arr) > 1 and (np.diff(arr[:, 0]) <= 0).any()):
                row = arr[np.flatnonzero(bad)[0]] if bad.any() else arr[0]
                raise CorruptStoreError(f"store {str(self._store.path)!r}: damaged finger row (id {int(row[0])}, "
                                        f"subject key {int(row[1])}, position {int(row[2])})")
            try:
                self._map.add(arr[:, 0], arr[:, 1], arr[:, 2])
            except InvalidInputError as exc:  # the store's id order broken: every writer keeps it
                raise CorruptStoreError(f"store {str(self._store.path)!r}: finger rows out of the store's order "
                                        f"after id {last} ({exc})") from None
            added += len(arr)

    def _decode_stored(self, fid: int, blob) -> Template:
        """Decode a template read from the store; damage (BMT1's CRC) names the store and the finger."""
        try:
            return decode_stored(blob)
        except (TemplateError, TypeError, ValueError) as exc:
            raise CorruptStoreError(f"store {str(self._store.path)!r}: finger {int(fid)} has a damaged template "
                                    f"({exc})") from None

    def _check_watermark(self, meta: dict) -> None:
        """Refuse a store that holds less than it acknowledged (see :mod:`biomatch.dedup.watermark`)."""
        shard_no = shard_number(meta)
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
            _watermark.write(self.folder, self.spec.gallery_id, shard_number(self._store.meta()),
                             self._store.sequences())
        except OSError as exc:
            log.warning("shard %s: could not update the watermark (%s); the store is committed", self.folder, exc)

    def _verify_retrieval(self) -> None:
        """Compare the loaded derived index with the store; on any disagreement start it afresh
        (it is then rebuilt from the store by :meth:`catch_up`), with a warning."""
        if getattr(self._retrieval, "verify", None) is None:
            return
        try:
            problems = self._retrieval_problems()
        except Exception as exc:  # noqa: BLE001 - derived data: any failure to verify means rebuild
            problems = [f"cannot verify it ({type(exc).__name__}: {exc})"]
        if problems:
            log.warning("shard %s: the index disagrees with the store (%s); rebuilding it from the store",
                        self.folder, "; ".join(problems[:3]))
            self._retrieval = make_retrieval(self.spec.retrieval)
            self.index_rebuilt = True
            self.index_problems = problems
        else:  # the rows of subjects removed before this open (their fingers are gone from the store)
            self._retrieval.drop_absent(self._map.present)

    def _retrieval_problems(self) -> list:
        """The retrieval index against the store, as folded into the map (empty: they agree)."""
        verify = getattr(self._retrieval, "verify", None)
        if verify is None:
            return []
        return verify(self._map.keys_at, self._map.present, self._store.sequences(),
                      self._store.count_removals_since(self._retrieval.removals_upto))

    def _save_index(self) -> bool:
        """Save the derived index (best effort: a failure only costs a rebuild at the next open)."""
        try:
            self._retrieval.save(self.folder / "index", cipher=self._keyring)
            return True
        except OSError as exc:
            log.warning("shard %s: could not save the index (%s); it is rebuilt from the store when needed",
                        self.folder, exc)
            return False

    def _fold_faces(self) -> None:
        """Index the faces of subjects whose fingers are folded in; tombstone removed subjects' faces."""
        while True:
            rows = self._store.faces_since(self._last_face_key, self._map.max_key, limit=50_000)
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
        # Every subject up to the map's max key is folded: its face was committed with its fingers
        # (one transaction).  Without this, a gallery without faces would rescan all subjects on
        # every catch-up (52 ms per search at 1M enrolments).
        self._last_face_key = max(self._last_face_key, self._map.max_key)

    def _drop_faces(self, keys: np.ndarray) -> None:
        """Tombstone the faces of ``keys`` (subjects just removed)."""
        keys = keys[(keys >= 0) & (keys < len(self._key_face.data))]
        keys = keys[self._key_face.data[keys] >= 0]
        if len(keys):
            self._faces.remove(self._key_face.data[keys].astype(np.int64))
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
