"""The row-index life cycle shared by the finger and face indexes: base + delta + tombstones.

A row index holds vectors (binary finger codes, float face embeddings) under implicit row
ids: the ``n``-th vector added is row ``n`` and the caller keeps the map row -> enrolment,
which saves FAISS's 8 bytes of id per row.  Its life cycle::

    new index ──add──► base (in memory) ──save──► file ──open(mmap)──► base (mapped, read-only)
                                                                    ──add──► delta (in memory)
    remove(rows) ──► tombstones (one bit per row; never returned by a search, never cleared)
    save ──► base + delta folded into one file, tombstones persisted beside it

Why a delta: FAISS cannot grow an index opened with ``IO_FLAG_MMAP_IFC`` (``add()`` aborts the
process), and the mapping is what makes opening a large gallery free (no load time, no
resident memory until searched).  Why tombstones: removing vectors from FAISS renumbers rows;
the vectors stay until the caller rebuilds.

:class:`RowIndex` implements the shared part; a subclass validates its vectors
(``_checked``), makes its exact delta index (``_new_delta``), searches, and reads and writes
its own file format.

Thread-safety: searches may run concurrently; ``add``, ``remove`` and ``save`` must be
serialised by the caller against each other and against searches.  FAISS is pinned to one
OpenMP thread per process by default (``faiss.omp_set_num_threads`` is process-wide):
parallelism comes from processes or shards.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import invalid

__all__ = ["RowIndex", "faiss_module", "file_digest", "pack_tombstones", "unpack_tombstones", "best_of_parts"]


def faiss_module(threads: int | None):
    """The ``faiss`` module (imported on first use), its OpenMP threads set when ``threads`` is given."""
    import faiss

    if threads is not None:
        faiss.omp_set_num_threads(int(threads))
    return faiss


def file_digest(data: bytes) -> dict:
    """``{"bytes": n, "sha256": hex}`` of what was written, for a manifest."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def pack_tombstones(removed: np.ndarray) -> bytes:
    """One bit per row, most significant bit first (``np.packbits``), the on-disk tombstone bitmap."""
    return np.packbits(removed).tobytes()


def unpack_tombstones(bits: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_tombstones` for ``n`` rows: ``bool (n,)``."""
    return np.unpackbits(bits)[:n].astype(bool)


def best_of_parts(keys: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest ``keys`` per query over the concatenated results of base and delta.

    ``keys`` (q, m) must already rank missing or removed results last; the sort is stable, so
    ties keep base rows before delta rows.
    """
    order = np.argsort(keys, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(keys, order, 1), np.take_along_axis(rows, order, 1)


class RowIndex:
    """Implicit row ids over a FAISS *base* index (memory-mapped read-only after ``open``), an
    in-memory *delta* for rows added since, and tombstones of removed rows.

    Subclasses call :meth:`_init` and implement ``_checked(x)`` (validate and coerce a batch)
    and ``_new_delta()`` (an empty exact in-memory index of the same kind).
    """

    def _init(self, base, factory: str, mapped: bool) -> None:
        self._base = base
        self._delta = None  # in-memory rows added after a memory-mapped open
        self._factory = factory
        self._mapped = mapped
        self._removed = np.zeros(0, bool)
        self._n_removed = 0

    def _set_tombstones(self, removed: np.ndarray) -> None:
        self._removed = removed
        self._n_removed = int(removed.sum())

    # ------------------------------------------------------------------ properties
    @property
    def factory(self) -> str:
        return self._factory

    @property
    def mapped(self) -> bool:
        """True when the base rows are memory-mapped (read-only)."""
        return self._mapped

    @property
    def ntotal(self) -> int:
        """Rows ever added (including removed ones): the next row id."""
        return int(self._base.ntotal) + self.n_delta

    @property
    def n_active(self) -> int:
        """Rows not removed."""
        return self.ntotal - self._n_removed

    @property
    def n_delta(self) -> int:
        """Rows held in the in-memory delta (0 unless opened memory-mapped)."""
        return int(self._delta.ntotal) if self._delta is not None else 0

    def __len__(self) -> int:
        return self.n_active

    # ------------------------------------------------------------------ hooks
    def _changed(self) -> None:
        """Called after rows were added or removed (subclasses drop their caches)."""

    def _train_first(self, x: np.ndarray) -> None:
        """Train an untrained base on its first batch."""
        self._base.train(x)

    def _parts(self):
        """``(index, first row, rows)`` of the base and, if any, the delta."""
        offset = 0
        for index in (self._base, self._delta):
            if index is None:
                continue
            n = int(index.ntotal)
            yield index, offset, n
            offset += n

    # ------------------------------------------------------------------ mutation
    def add(self, vectors: np.ndarray) -> int:
        """Append vectors; returns the row id of the first one (rows are consecutive).

        Raises
        ------
        InvalidInputError
            Vectors the subclass refuses (dtype, shape, values).
        """
        x = self._checked(vectors)
        first = self.ntotal
        if len(x) == 0:
            return first
        if self._mapped:
            if self._delta is None:
                self._delta = self._new_delta()
            self._delta.add(x)
        else:
            if not self._base.is_trained:
                self._train_first(x)
            self._base.add(x)
        self._removed = np.concatenate([self._removed, np.zeros(len(x), bool)])
        self._changed()
        return first

    def remove(self, rows) -> int:
        """Mark rows as removed (tombstones); returns how many were newly removed.

        Raises
        ------
        InvalidInputError
            Non-integer row ids, or a row id outside ``[0, ntotal)``.
        """
        r = np.atleast_1d(np.asarray(rows))
        if r.size and not np.issubdtype(r.dtype, np.integer):
            raise invalid("rows", "integer row ids", r.dtype)
        r = r.astype(np.int64, copy=False).ravel()
        if r.size and (r.min() < 0 or r.max() >= self.ntotal):
            raise invalid("rows", f"row ids in [0, {self.ntotal})", int(r.min() if r.min() < 0 else r.max()))
        r = np.unique(r)
        new = int((~self._removed[r]).sum())
        self._removed[r] = True
        self._n_removed += new
        if new:
            self._changed()
        return new

    def is_removed(self, rows) -> np.ndarray:
        """Tombstone flags of ``rows`` (bool array)."""
        return self._removed[np.asarray(rows, np.int64)]
