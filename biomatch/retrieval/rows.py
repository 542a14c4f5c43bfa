"""The row-index life cycle shared by the finger and face indexes: base + delta + tombstones.

A row index holds vectors (binary finger codes, float face embeddings) under implicit row
ids: the ``n``-th vector added is row ``n`` and the caller keeps the map row -> enrolment,
which saves FAISS's 8 bytes of id per row.  Its life cycle::

    new index ──add──► base (in memory) ──save──► file ──open(mmap)──► base (mapped, read-only)
                                                                    ──add──► delta (in memory)
    remove(rows) ──► tombstones (one bit per row, in memory as on disk; never returned by a
                     search, never cleared)
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

__all__ = ["RowIndex", "Tombstones", "faiss_module", "file_digest", "pack_tombstones", "unpack_tombstones",
           "best_of_parts"]


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


_POPCOUNT8 = np.array([bin(b).count("1") for b in range(256)], np.int64)


class Tombstones:
    """Removed-row flags, one bit per row, most significant bit first (:func:`pack_tombstones`'s
    layout, so saving is a copy).  A bool per row would cost 8x more: 10 B per ten-finger
    enrolment, against 1.25 B.  Grows by a quarter when rows are added."""

    __slots__ = ("_bits", "n", "count")

    def __init__(self, n: int = 0, packed: np.ndarray | None = None):
        self.n = int(n)
        nbytes = (self.n + 7) // 8
        if packed is None:
            self._bits = np.zeros(nbytes, np.uint8)
        else:
            self._bits = np.array(packed[:nbytes], np.uint8)  # a writable copy
            if self.n % 8 and nbytes:  # bits past the last row are never set
                self._bits[-1] &= np.uint8((0xFF << (8 - self.n % 8)) & 0xFF)
        self.count = int(_POPCOUNT8[self._bits].sum()) if nbytes else 0

    @classmethod
    def from_flags(cls, removed: np.ndarray) -> "Tombstones":
        return cls(len(removed), np.packbits(np.asarray(removed, bool)))

    @property
    def nbytes(self) -> int:
        return int(self._bits.nbytes)

    def extend(self, k: int) -> None:
        """Add ``k`` rows, none removed."""
        need = (self.n + int(k) + 7) // 8
        if need > len(self._bits):
            grown = np.zeros(max(need, int(len(self._bits) * 1.25) + 1), np.uint8)
            grown[:len(self._bits)] = self._bits
            self._bits = grown
        self.n += int(k)

    def get(self, rows) -> np.ndarray:
        """bool flags of ``rows`` (int, each in ``[0, n)``)."""
        r = np.asarray(rows, np.int64)
        return ((self._bits[r >> 3] >> (7 - (r & 7)).astype(np.uint8)) & 1).astype(bool)

    def set(self, rows: np.ndarray) -> int:
        """Flag ``rows`` (unique, in ``[0, n)``); returns how many were not flagged yet."""
        r = np.asarray(rows, np.int64)
        r = r[~self.get(r)]
        np.bitwise_or.at(self._bits, r >> 3, (0x80 >> (r & 7)).astype(np.uint8))
        self.count += len(r)
        return len(r)

    def count_in(self, offset: int, n: int) -> int:
        """Flagged rows among ``[offset, offset + n)``."""
        if n <= 0 or not self.count:
            return 0
        if offset == 0 and n == self.n:
            return self.count
        a, b = int(offset), int(offset) + int(n)
        seg = self._bits[a >> 3:(b + 7) >> 3].copy()
        seg[0] &= np.uint8(0xFF >> (a & 7))
        seg[-1] &= np.uint8((0xFF << (7 - ((b - 1) & 7))) & 0xFF)
        return int(_POPCOUNT8[seg].sum())

    def flags(self, offset: int = 0, n: int | None = None) -> np.ndarray:
        """bool flags of rows ``[offset, offset + n)`` (all rows by default)."""
        n = self.n - offset if n is None else int(n)
        a = int(offset)
        return np.unpackbits(self._bits[a >> 3:(a + n + 7) >> 3])[a & 7:(a & 7) + n].astype(bool)

    def bits(self) -> np.ndarray:
        """The packed flags in place (read-only view, ``uint8``; row ``i`` at bit ``i``, most
        significant first; may extend past the last row): for native passes over every row."""
        view = self._bits.view()
        view.flags.writeable = False
        return view

    def packed(self) -> bytes:
        """The file form (:func:`pack_tombstones` of :meth:`flags`)."""
        return self._bits[:(self.n + 7) // 8].tobytes()


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

    def _init(self, base, factory: str, mapped: bool, frozen: bool | None = None) -> None:
        self._base = base
        self._delta = None  # in-memory rows added after a memory-mapped open
        self._factory = factory
        self._mapped = mapped
        # A frozen base takes no rows (they go to the delta): a mapped one cannot, and one read
        # whole from a file is exactly sized -- growing it in place would let FAISS's vector
        # double its capacity, up to 64 B of slack per row.
        self._frozen = mapped if frozen is None else frozen
        self._tomb = Tombstones()

    def _set_tombstones(self, removed: np.ndarray) -> None:
        self._tomb = Tombstones.from_flags(removed)

    @property
    def _n_removed(self) -> int:
        return self._tomb.count

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

    @property
    def tombstone_bytes(self) -> int:
        """Memory of the tombstones (one bit per row, and the growth headroom)."""
        return self._tomb.nbytes

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
        if self._frozen:
            if self._delta is None:
                self._delta = self._new_delta()
            self._delta.add(x)
        else:
            if not self._base.is_trained:
                self._train_first(x)
            self._base.add(x)
        self._tomb.extend(len(x))
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
        new = self._tomb.set(np.unique(r))
        if new:
            self._changed()
        return new

    def is_removed(self, rows) -> np.ndarray:
        """Tombstone flags of ``rows`` (bool array)."""
        return self._tomb.get(rows)
