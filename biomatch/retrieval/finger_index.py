"""A FAISS binary index of finger codes for one finger position: the code stage's weighted pass
over every row (:meth:`FingerIndex.add_scores`), and nearest rows by Hamming distance.

A :class:`FingerIndex` holds the codes of one finger position (ISO 1-10) of a gallery shard,
on the row life cycle of :class:`~biomatch.retrieval.rows.RowIndex` (implicit rows, a
memory-mapped base, an in-memory delta, tombstones).  The index behind it is chosen by a
FAISS binary factory string; the default ``"BFlat"`` is the exhaustive scan, which keeps the
noisy mates that IVF and HNSW lose (``benchmarks/retrieval.py`` measures the hit rate).

Files: ``<path>`` (the FAISS binary index, base + delta folded) and, when any row is removed,
``<path>.removed`` (the packed tombstone bitmap); each is written atomically (temporary file,
fsync, rename, mode 0600).  :meth:`FingerIndex.save` returns their sizes and SHA-256 for the
caller's manifest, since FAISS files carry no checksum of their own.

Thread-safety: see :mod:`biomatch.retrieval.rows`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import advise_huge_pages, write_private_atomic
from ..errors import IndexFileError, invalid
from .rows import RowIndex, Tombstones, best_of_parts, faiss_module, file_digest

__all__ = ["FingerIndex", "IndexFileError", "DEFAULT_FACTORY"]

DEFAULT_FACTORY = "BFlat"

_TOMBSTONE_SUFFIX = ".removed"
_MISSING = np.iinfo(np.int64).max


def _counting(index):
    """Select the k nearest of a flat index by counting distances, not through a heap.

    Hamming distances are small integers, so FAISS can pick the k nearest with per-distance
    counters in one pass (``use_heap = False``) instead of a k-sized heap: for 6,400 rows of
    1,000,000 the heap cost 5.6 ms per 100,000 rows and counting 1.0 ms (same distances,
    measured on one core).  Other index kinds
    are returned unchanged."""
    if isinstance(index, faiss_module(None).IndexBinaryFlat):
        index.use_heap = False
    return index


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
        faiss = faiss_module(threads)
        try:
            base = faiss.index_binary_factory(int(n_bits), factory)
        except RuntimeError as exc:
            raise invalid("factory", "a FAISS binary factory string such as 'BFlat'", factory) from exc
        self._init(_counting(base), factory, mapped=False)

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

    # ------------------------------------------------------------------ RowIndex hooks
    def _checked(self, codes, name: str = "codes") -> np.ndarray:
        if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8:
            raise invalid(name, "a uint8 ndarray (packed bits)", getattr(codes, "dtype", type(codes).__name__))
        if codes.ndim == 1:
            codes = codes[None, :]
        if codes.ndim != 2 or codes.shape[1] != self.n_bytes:
            raise invalid(name, f"shape (n, {self.n_bytes})", codes.shape)
        return np.ascontiguousarray(codes)

    def _new_delta(self):
        return _counting(faiss_module(None).IndexBinaryFlat(self.n_bits))

    def add(self, codes: np.ndarray) -> int:
        """Append codes; returns the row id of the first one (rows are consecutive).

        Parameters
        ----------
        codes : uint8 (n, n_bytes) or (n_bytes,)
        """
        return super().add(codes)

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
        c = self._checked(codes)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise invalid("k", "an int >= 1", k)
        k = int(k)
        q = len(c)
        # Over-fetch so that tombstoned rows can be dropped and k active ones remain.
        parts = []
        for index, offset, n in self._parts():
            if n:
                removed = self._tomb.count_in(offset, n)
                d, r = index.search(c, min(n, k + removed))
                parts.append((d.astype(np.int64), np.where(r >= 0, r + offset, -1)))
        dist = np.full((q, k), self.n_bits + 1, np.uint32)
        rows = np.full((q, k), -1, np.int64)
        if not parts:
            return dist, rows
        d = np.concatenate([p[0] for p in parts], axis=1)
        r = np.concatenate([p[1] for p in parts], axis=1)
        bad = r < 0
        if self._n_removed:
            bad |= self._tomb.get(np.where(r >= 0, r, 0))
        d, r = best_of_parts(np.where(bad, _MISSING, d), r, k)
        missing = d == _MISSING
        n = d.shape[1]
        dist[:, :n] = np.where(missing, self.n_bits + 1, d).astype(np.uint32)
        rows[:, :n] = np.where(missing, -1, r)
        return dist, rows

    def score_passes(self, probe: np.ndarray, planes: np.ndarray, total: int, scale, keys: np.ndarray) -> list:
        """The native passes of :meth:`add_scores` (validated), for ``code_sums_blocked``.

        Returns
        -------
        list of tuple
            One per part of the index holding rows (base, delta): ``(codes uint8 (n, n_bytes),
            keys int32 (n,), removed bits or None, first row, probe, planes, total, scale)``.
            The code arrays are views into the index, valid until it changes.
        """
        nb = self.n_bytes
        for name, a, dtype, shape in (("probe", probe, np.uint8, (nb,)), ("keys", keys, np.int32, (self.ntotal,))):
            if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape:
                raise invalid(name, f"{np.dtype(dtype).name} {shape}", getattr(a, "shape", type(a).__name__))
        if not isinstance(planes, np.ndarray) or planes.dtype != np.uint8 or planes.ndim != 2 \
                or planes.shape[1] != nb or not 1 <= len(planes) <= 16:
            raise invalid("planes", f"uint8 (L, {nb}) with 1 <= L <= 16", getattr(planes, "shape", type(planes).__name__))
        removed = self._tomb.bits() if self._n_removed else None
        passes = []
        for index, offset, n in self._parts():
            if not n:
                continue
            # a non-flat index keeps no codes in place: every row is reconstructed (slow; the
            # default BFlat is what the exhaustive pass is for)
            codes = self._storage(index, n) if hasattr(index, "xb") else self._reconstruct_all(index)
            passes.append((codes, keys[offset:offset + n], removed, offset, probe, planes, int(total), float(scale)))
        return passes

    def add_scores(self, probe: np.ndarray, planes: np.ndarray, total: int, scale, keys: np.ndarray,
                   sums: np.ndarray, seen: np.ndarray) -> None:
        """Add every active row's weighted agreement with one probe to its person's sum.

        The code stage's exhaustive pass (native ``code_sums``, one read of every stored code):
        ``sums[keys[row]] += scale * (total - 2 sum_l 2^l popcount((code ^ probe) & planes[l]))``,
        from 0 where ``seen[keys[row]]`` is 0, and ``seen[keys[row]] = 1`` (see
        :class:`~biomatch.retrieval.codes.ProbeWeights`).  The code stage sums every position
        at once (:meth:`score_passes`; :meth:`~biomatch.retrieval.faiss_retrieval.FaissRetrieval.person_sums`).

        Parameters
        ----------
        probe : uint8 (n_bytes,)
        planes : uint8 (L, n_bytes)
        total : int
        scale : float32
        keys : int32 (ntotal,)
            The person (sum index) of every row; rows whose key is outside ``sums`` are skipped.
        sums : float32 (K,), updated in place (its values where ``seen`` is 0 are ignored)
        seen : uint8 (K,), updated in place
        """
        from .. import _native as native  # the compiled core, loaded on first use

        passes = self.score_passes(probe, planes, total, scale, keys)
        if not (isinstance(sums, np.ndarray) and sums.dtype == np.float32 and sums.ndim == 1
                and isinstance(seen, np.ndarray) and seen.dtype == np.uint8 and seen.shape == sums.shape):
            raise invalid("sums", "float32 (K,) with seen uint8 (K,)", getattr(sums, "shape", type(sums).__name__))
        native.code_sums_blocked(passes, sums, seen, 0)

    def codes(self, rows: np.ndarray) -> np.ndarray:
        """The stored codes of ``rows`` (int64 (m,), each in ``[0, ntotal)``): ``uint8 (m, n_bytes)``.

        Read in place from the flat index's storage (mapped or in memory), without copying the
        index; removed rows are returned too (their codes are still stored).
        """
        r = np.asarray(rows, np.int64)
        if r.ndim != 1 or (len(r) and (r.min() < 0 or r.max() >= self.ntotal)):
            raise invalid("rows", f"int64 (m,) row ids in [0, {self.ntotal})", r[:4])
        # Row gathers by np.take: numpy's fancy indexing of (m, 64) uint8 rows, and any scattered
        # assignment of them, is ~10x slower (6,400 rows per position and probe in a dedup).
        pieces, where = [], []
        for index, offset, n in self._parts():
            at = np.flatnonzero((r >= offset) & (r < offset + n))
            if not len(at):
                continue
            if hasattr(index, "xb"):
                pieces.append(np.take(self._storage(index, n), r[at] - offset, axis=0))
            else:  # not flat (e.g. BIVF): only the rows asked for, never the whole index
                if hasattr(index, "make_direct_map") and not index.direct_map.type:
                    index.make_direct_map()  # once: 8 B per row, kept up to date by later adds
                pieces.append(np.asarray([index.reconstruct(int(i)) for i in r[at] - offset], np.uint8))
            where.append(at)
        if not pieces:
            return np.empty((0, self.n_bytes), np.uint8)
        if len(pieces) == 1:  # the parts cover [0, ntotal): one part holds every row, in order
            return pieces[0].reshape(len(r), self.n_bytes)
        order = np.empty(len(r), np.int64)
        order[np.concatenate(where)] = np.arange(len(r))
        return np.take(np.concatenate([p.reshape(-1, self.n_bytes) for p in pieces]), order, axis=0)

    def _storage(self, index, n: int) -> np.ndarray:
        """A read-only view ``uint8 (n, n_bytes)`` of a flat index's codes (valid until it grows)."""
        faiss = faiss_module(None)
        view = faiss.rev_swig_ptr(index.xb.data(), n * self.n_bytes) if n else np.zeros(0, np.uint8)
        view = np.asarray(view).reshape(n, self.n_bytes)
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, seal=None) -> dict:
        """Write base + delta as one index, atomically (temp file, fsync, rename, mode 0600).

        Tombstones go to ``<path>.removed`` (a packed bitmap, written the same way) when
        any row is removed; a stale one is deleted otherwise.

        Parameters
        ----------
        path : path
        seal : callable (bytes, file name) -> bytes, optional
            Encrypts each file's bytes before they are written (an encrypted gallery's index;
            such a file is read back with ``open(..., unseal=...)``, into memory).

        Returns
        -------
        dict file name -> {"bytes": int, "sha256": hex str}
            What was written, for the caller's manifest (FAISS files carry no checksum of
            their own: flipped code bytes would be read back silently).
        """
        faiss = faiss_module(None)
        path = Path(path)
        if self._delta is None and not self._mapped:
            index = self._base
        else:
            index = faiss.IndexBinaryFlat(self.n_bits)
            for part, _, n in self._parts():
                if n:
                    index.add(self._reconstruct_all(part))
        data = np.asarray(faiss.serialize_index_binary(index)).tobytes()
        if seal is not None:
            data = seal(data, path.name)
        write_private_atomic(path, data)
        written = {path.name: file_digest(data)}
        tomb = path.with_name(path.name + _TOMBSTONE_SUFFIX)
        if self._n_removed:
            bits = self._tomb.packed()
            if seal is not None:
                bits = seal(bits, tomb.name)
            write_private_atomic(tomb, bits)
            written[tomb.name] = file_digest(bits)
        elif tomb.exists():
            tomb.unlink()
        return written

    @staticmethod
    def _reconstruct_all(index) -> np.ndarray:
        if hasattr(index, "xb"):  # flat: the codes are the storage
            return faiss_module(None).vector_to_array(index.xb).reshape(int(index.ntotal), int(index.code_size))
        return np.vstack([index.reconstruct(i) for i in range(int(index.ntotal))])

    @classmethod
    def open(cls, path: str | Path, mmap: bool = True, *, threads: int | None = 1,
             unseal=None) -> "FingerIndex":
        """Open an index written by :meth:`save`.

        Parameters
        ----------
        path : path
        mmap : bool
            Map the file read-only (``faiss.IO_FLAG_MMAP_IFC``).  The file must not be modified
            while it is mapped.  Either way, rows added later go to an in-memory delta: the
            opened base is never grown (mapped, it cannot be; read into memory, it is exactly
            sized, and growing it would let its vector double).
        unseal : callable (bytes, file name) -> bytes, optional
            Decrypts files written with ``save(..., seal=...)``: the index is then read into
            memory (a mapping would expose nothing but ciphertext), ``mmap`` is ignored.

        Raises
        ------
        IndexFileError
            Missing, unreadable or corrupt file.
        """
        faiss = faiss_module(threads)
        path = Path(path)
        if not path.is_file():
            raise IndexFileError(f"index: expected a file at {path}, found none")
        try:
            if unseal is not None:
                mmap = False
                raw = np.frombuffer(unseal(path.read_bytes(), path.name), np.uint8)
                base = faiss.deserialize_index_binary(raw)
            elif mmap:
                base = faiss.read_index_binary(str(path), faiss.IO_FLAG_MMAP_IFC)
            else:
                base = faiss.read_index_binary(str(path))
        except RuntimeError as exc:
            raise IndexFileError(f"index {path}: cannot read a FAISS binary index ({exc})") from exc
        self = cls.__new__(cls)
        is_flat = isinstance(base, faiss.IndexBinaryFlat)
        self._init(_counting(base), "BFlat" if is_flat else type(base).__name__, mapped=bool(mmap), frozen=True)
        n = int(base.ntotal)
        if mmap and is_flat and n:
            # every probe reads every code of the file: 2 MiB pages (see advise_huge_pages)
            advise_huge_pages(self._storage(base, n))
        self._tomb = Tombstones(n)
        tomb = path.with_name(path.name + _TOMBSTONE_SUFFIX)
        if tomb.exists():
            raw = tomb.read_bytes() if unseal is None else unseal(tomb.read_bytes(), tomb.name)
            bits = np.frombuffer(raw, np.uint8)
            if len(bits) != (n + 7) // 8:
                raise IndexFileError(f"index {tomb}: expected {(n + 7) // 8} bytes of tombstones, got {len(bits)}")
            self._tomb = Tombstones(n, bits)
        return self
