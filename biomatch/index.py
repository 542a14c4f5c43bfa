"""Candidate retrieval: a FAISS binary index of finger codes for one finger position.

A :class:`FingerIndex` holds the codes of one finger position (ISO 1-10) of a gallery
shard.  Rows are implicit: the ``n``-th code added is row ``n`` (the caller keeps the map
row -> enrolment), which saves FAISS's 8 bytes of id per code.  The index behind it is
chosen by a FAISS factory string (default ``"BFlat"``, the exhaustive scan, which keeps
the noisy mates that IVF/HNSW lose — see ``NOTES.md``).

Persistence: :meth:`FingerIndex.save` writes atomically (temporary file, fsync, rename,
mode 0600).  :meth:`FingerIndex.open` with ``mmap=True`` maps a flat index read-only
(``IO_FLAG_MMAP_IFC``: no load time, no RSS until touched); rows added afterwards go to an
in-memory *delta* index, because ``add()`` on a mapped FAISS index aborts the process.
``save`` writes base + delta as one index.  Removed rows are kept in a tombstone bitmap and
never returned; their codes stay until the index is rebuilt by the caller.

Thread-safety: searches may run concurrently; ``add``, ``remove`` and ``save`` must be
serialised by the caller against each other and against searches (the gallery holds a
lock).  FAISS is pinned to one OpenMP thread per process by default (parallelism comes
from processes or shards).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import BiomatchError, IndexFileError, invalid

__all__ = ["FingerIndex", "IndexFileError", "DEFAULT_FACTORY"]

DEFAULT_FACTORY = "BFlat"

_TOMBSTONE_SUFFIX = ".removed"


def _faiss(threads: int | None):
    import faiss

    if threads is not None:
        faiss.omp_set_num_threads(int(threads))
    return faiss


def _digest(data: bytes) -> dict:
    import hashlib

    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


class RowIndex:
    """What :class:`FingerIndex` and :class:`biomatch.face.index.FaceIndex` share: implicit row ids
    over a FAISS *base* index (memory-mapped read-only after :meth:`open`) plus an in-memory
    *delta* for rows added since, and tombstones of removed rows.

    Subclasses set ``_base``, ``_delta`` (None or a FAISS index), ``_factory``, ``_mapped`` and
    ``_n_removed``.
    """

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


class FingerIndex(RowIndex):
    """Binary codes of one finger position, searched by Hamming distance.

    Parameters
    ----------
    n_bits : int
        Code length in bits (multiple of 8; FAISS needs a multiple of 8).
    factory : str
        FAISS binary factory string, ``"BFlat"`` (exhaustive) by default.  Indexes that
        need training (``"BIVF..."``) are trained on the first :meth:`add`.
    threads : int or None
        Sets ``faiss.omp_set_num_threads`` (process-wide) when not None; default 1.

    Notes
    -----
    Memory: ``n_bits / 8`` bytes per row for ``BFlat`` plus one bit of tombstone.
    """

    def __init__(self, n_bits: int = 512, factory: str = DEFAULT_FACTORY, *, threads: int | None = 1):
        if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or n_bits <= 0 or n_bits % 8:
            raise invalid("n_bits", "a positive multiple of 8", n_bits)
        if not isinstance(factory, str) or not factory:
            raise invalid("factory", "a FAISS binary factory string such as 'BFlat'", factory)
        faiss = _faiss(threads)
        try:
            base = faiss.index_binary_factory(int(n_bits), factory)
        except RuntimeError as exc:
            raise invalid("factory", "a FAISS binary factory string such as 'BFlat'", factory) from exc
        self._init(base, factory, mapped=False)

    def _init(self, base, factory: str, mapped: bool) -> None:
        self._base = base
        self._delta = None  # in-memory rows added after a memory-mapped open
        self._factory = factory
        self._mapped = mapped
        self._removed = np.zeros(0, bool)
        self._n_removed = 0

    # ------------------------------------------------------------------ properties
    @property
    def n_bits(self) -> int:
        return int(self._base.d)

    @property
    def n_bytes(self) -> int:
        return int(self._base.d) // 8

    def __repr__(self) -> str:
        return (f"FingerIndex(factory={self._factory!r}, n_bits={self.n_bits}, rows={self.ntotal}, "
                f"removed={self._n_removed}, delta={self.n_delta}, mapped={self._mapped})")

    # ------------------------------------------------------------------ mutation
    def _codes(self, codes, name: str = "codes") -> np.ndarray:
        if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8:
            raise invalid(name, "a uint8 ndarray (packed bits)", getattr(codes, "dtype", type(codes).__name__))
        if codes.ndim == 1:
            codes = codes[None, :]
        if codes.ndim != 2 or codes.shape[1] != self.n_bytes:
            raise invalid(name, f"shape (n, {self.n_bytes})", codes.shape)
        return np.ascontiguousarray(codes)

    def add(self, codes: np.ndarray) -> int:
        """Append codes; returns the row id of the first one (rows are consecutive).

        Parameters
        ----------
        codes : uint8 (n, n_bytes) or (n_bytes,)
        """
        c = self._codes(codes)
        first = self.ntotal
        if len(c) == 0:
            return first
        if self._mapped:
            if self._delta is None:
                faiss = _faiss(None)
                self._delta = faiss.IndexBinaryFlat(self.n_bits)
            self._delta.add(c)
        else:
            if not self._base.is_trained:
                self._base.train(c)
            self._base.add(c)
        self._removed = np.concatenate([self._removed, np.zeros(len(c), bool)])
        return first

    def remove(self, rows) -> int:
        """Mark rows as removed (tombstones); returns how many were newly removed.

        Raises
        ------
        InvalidInputError
            A row id outside ``[0, ntotal)``.
        """
        r = np.atleast_1d(np.asarray(rows))
        if r.size and not np.issubdtype(r.dtype, np.integer):
            raise invalid("rows", "integer row ids", r.dtype)
        r = r.astype(np.int64, copy=False)
        if r.size and (r.min() < 0 or r.max() >= self.ntotal):
            raise invalid("rows", f"row ids in [0, {self.ntotal})", int(r.min() if r.min() < 0 else r.max()))
        r = np.unique(r)
        new = int((~self._removed[r]).sum())
        self._removed[r] = True
        self._n_removed += new
        return new

    def is_removed(self, rows) -> np.ndarray:
        """Tombstone flags of ``rows`` (bool array)."""
        return self._removed[np.asarray(rows, np.int64)]

    # ------------------------------------------------------------------ search
    def search(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest active rows of each query by Hamming distance.

        Parameters
        ----------
        codes : uint8 (q, n_bytes) or (n_bytes,)
        k : int
            Results per query (>= 1).

        Returns
        -------
        distances : uint32 (q, k)
            Hamming distances, ascending; ``n_bits + 1`` where a result is missing.
        rows : int64 (q, k)
            Row ids, ``-1`` where fewer than ``k`` active rows exist.
            Ties are broken by FAISS (not necessarily by row id).
        """
        c = self._codes(codes)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise invalid("k", "an int >= 1", k)
        k = int(k)
        q = len(c)
        # Over-fetch so that tombstoned rows can be dropped and k active ones remain.
        parts = []
        offset = 0
        for index in (self._base, self._delta):
            if index is None:
                continue
            n = int(index.ntotal)
            if n:
                removed = int(self._removed[offset:offset + n].sum())
                kk = min(n, k + removed)
                d, r = index.search(c, kk)
                r = np.where(r >= 0, r + offset, -1)
                parts.append((d.astype(np.int64), r))
            offset += n
        dist = np.full((q, k), self.n_bits + 1, np.uint32)
        rows = np.full((q, k), -1, np.int64)
        if not parts:
            return dist, rows
        d = np.concatenate([p[0] for p in parts], axis=1)
        r = np.concatenate([p[1] for p in parts], axis=1)
        bad = r < 0
        if self._n_removed:
            bad |= self._removed[np.where(r >= 0, r, 0)]
        d = np.where(bad, np.iinfo(np.int64).max, d)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        d = np.take_along_axis(d, order, 1)
        r = np.take_along_axis(r, order, 1)
        missing = d == np.iinfo(np.int64).max
        n = d.shape[1]
        dist[:, :n] = np.where(missing, self.n_bits + 1, d).astype(np.uint32)
        rows[:, :n] = np.where(missing, -1, r)
        return dist, rows

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> dict:
        """Write base + delta as one index, atomically (temp file, fsync, rename, mode 0600).

        Tombstones go to ``<path>.removed`` (a packed bitmap, written the same way) when
        any row is removed; a stale one is deleted otherwise.

        Returns
        -------
        dict file name -> {"bytes": int, "sha256": hex str}
            What was written, for the caller's manifest (FAISS files carry no checksum of
            their own: flipped code bytes would be read back silently).
        """
        from ._io import write_private_atomic

        faiss = _faiss(None)
        path = Path(path)
        if self._delta is None and not self._mapped:
            index = self._base
        else:
            index = faiss.IndexBinaryFlat(self.n_bits)
            for part in (self._base, self._delta):
                if part is not None and part.ntotal:
                    index.add(self._reconstruct_all(part))
        data = np.asarray(faiss.serialize_index_binary(index)).tobytes()
        write_private_atomic(path, data)
        written = {path.name: _digest(data)}
        tomb = path.with_name(path.name + _TOMBSTONE_SUFFIX)
        if self._n_removed:
            bits = np.packbits(self._removed).tobytes()
            write_private_atomic(tomb, bits)
            written[tomb.name] = _digest(bits)
        elif tomb.exists():
            tomb.unlink()
        return written

    @staticmethod
    def _reconstruct_all(index) -> np.ndarray:
        if hasattr(index, "xb"):  # flat: the codes are the storage
            import faiss

            return faiss.vector_to_array(index.xb).reshape(int(index.ntotal), int(index.code_size))
        return np.vstack([index.reconstruct(i) for i in range(int(index.ntotal))])

    @classmethod
    def open(cls, path: str | Path, mmap: bool = True, *, threads: int | None = 1) -> "FingerIndex":
        """Open an index written by :meth:`save`.

        Parameters
        ----------
        path : path
        mmap : bool
            Map the file read-only (``faiss.IO_FLAG_MMAP_IFC``); new rows then go to an
            in-memory delta.  The file must not be modified while it is mapped.

        Raises
        ------
        IndexFileError
            Missing, unreadable or corrupt file.
        """
        faiss = _faiss(threads)
        path = Path(path)
        if not path.is_file():
            raise IndexFileError(f"index: expected a file at {path}, found none")
        try:
            if mmap:
                base = faiss.read_index_binary(str(path), faiss.IO_FLAG_MMAP_IFC)
            else:
                base = faiss.read_index_binary(str(path))
        except RuntimeError as exc:
            raise IndexFileError(f"index {path}: cannot read a FAISS binary index ({exc})") from exc
        self = cls.__new__(cls)
        is_flat = isinstance(base, faiss.IndexBinaryFlat)
        self._init(base, "BFlat" if is_flat else type(base).__name__, mapped=bool(mmap))
        n = int(base.ntotal)
        self._removed = np.zeros(n, bool)
        tomb = path.with_name(path.name + _TOMBSTONE_SUFFIX)
        if tomb.exists():
            bits = np.frombuffer(tomb.read_bytes(), np.uint8)
            if len(bits) != (n + 7) // 8:
                raise IndexFileError(f"index {tomb}: expected {(n + 7) // 8} bytes of tombstones, got {len(bits)}")
            self._removed = np.unpackbits(bits)[:n].astype(bool)
            self._n_removed = int(self._removed.sum())
        return self
