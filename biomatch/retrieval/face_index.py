"""A FAISS float index of face embeddings, searched by cosine similarity.

A :class:`FaceIndex` holds L2-normalised 128-d float32 embeddings (SFace) of a gallery
shard and returns, per probe, the rows with the highest inner product (= cosine, since
every row and probe has unit norm).  It shares the row life cycle of
:class:`~biomatch.retrieval.rows.RowIndex` with the finger index (implicit rows, a
memory-mapped base, an in-memory exact delta, tombstones):

- The index behind it is chosen by a FAISS factory string: ``"Flat"`` (default, exact),
  ``"IVF<nlist>,Flat"`` / ``"IVF<nlist>,SQ8"`` ... or ``"HNSW<M>"``, always with
  ``METRIC_INNER_PRODUCT``.  Recall of IVF and HNSW against exact search at 1M is
  measured by ``benchmarks/face_index.py``.
- Removed rows are tombstones, excluded inside FAISS by an ID selector (no over-fetch),
  so a removed row is never returned; their vectors stay until the caller rebuilds.
- :meth:`FaceIndex.open` maps a saved index read-only (``faiss.IO_FLAG_MMAP_IFC``).  FAISS
  cannot grow a mapped index (``add()`` and ``reset()`` abort the process, ``remove_ids()``
  crashes it), hence the delta; ``save`` folds base and delta into one file.
  (``IO_FLAG_MMAP`` would copy a flat index into memory.)

Persistence: two files, ``<path>`` (the FAISS index) and ``<path>.removed`` (the sidecar:
dimension, factory, row count, lineage id and the tombstone bitmap, CRC-checked).  Each is
written atomically (temporary file mode 0600, fsync, rename, fsync of the folder), the
sidecar first.  Rows are append-only and tombstones are never cleared, so a kill between
the two renames leaves an older index with a newer sidecar: its extra tombstones are
removals the caller really made and its extra rows are ignored — never a removed row
coming back.  Overwriting the files of *another* index first deletes the old sidecar; a
missing sidecar makes :meth:`open` refuse, so a torn overwrite is reported, not guessed.

Thread-safety: as :mod:`biomatch.retrieval.rows`; ``train`` and ``tune`` are mutations too.

Memory: ``"Flat"`` 4 x dim = 512 bytes per row plus 1 bit of tombstone; IVF adds 8 bytes of
id per row; HNSW<M> adds about 8 x M bytes of graph links per row.
"""

from __future__ import annotations

import logging
import struct
import uuid
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._io import fsync_dir, write_file_atomic, write_private_atomic
from ..errors import IndexFileError, InvalidInputError, invalid
from ..face.embed import EMBEDDING_DIM
from .rows import RowIndex, best_of_parts, faiss_module, unpack_tombstones

__all__ = ["FaceIndex", "FaceHits", "DEFAULT_FACTORY", "NORM_TOLERANCE"]

log = logging.getLogger(__name__)

DEFAULT_FACTORY = "Flat"
NORM_TOLERANCE = 1e-3
"""Largest accepted ``| ||v|| - 1 |`` of an embedding (the tolerance of :class:`FaceTemplate`)."""

_SIDECAR_SUFFIX = ".removed"
_SIDECAR_MAGIC = b"BMFX"
_SIDECAR_VERSION = 1
_SIDECAR_HEAD = struct.Struct("<4sHHQ16sH")  # magic, version, dim, ntotal, lineage, factory length


class FaceHits(NamedTuple):
    """Result of :meth:`FaceIndex.search` (unpacks as ``scores, rows``, like FAISS and FingerIndex).

    Attributes
    ----------
    scores : float32 (q, k)
        Cosine similarities in [-1, 1], descending per probe; ``-inf`` where a result is missing.
    rows : int64 (q, k)
        Row ids, ``-1`` where fewer than ``k`` active rows were found.
    """

    scores: np.ndarray
    rows: np.ndarray


def _kind(faiss, index) -> str:
    """"ivf", "hnsw" or "flat" (flat-code indexes such as Flat, SQ8, PQ); "" if unsupported."""
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexFlatCodes):
        return "flat"
    return ""


class FaceIndex(RowIndex):
    """Unit-norm face embeddings of one gallery shard, searched by cosine similarity.

    Parameters
    ----------
    dim : int
        Embedding length (128 for SFace).
    factory : str
        FAISS factory string, built with ``METRIC_INNER_PRODUCT``: ``"Flat"`` (exact, default),
        ``"IVF<nlist>,Flat"``, ``"IVF<nlist>,SQ8"``, ``"HNSW<M>"``, ``"SQ8"`` ...  Transforms
        (``"PCA..."``, ``"OPQ..."``) and id maps (``"IDMap,..."``) are refused: rows are implicit
        and per-call search parameters must reach the index.  Indexes that need training are
        trained on the first :meth:`add` (or call :meth:`train`).
    threads : int or None
        Sets ``faiss.omp_set_num_threads`` (process-wide) when not None; default 1.

    Notes
    -----
    Embeddings must be finite with unit L2 norm (within :data:`NORM_TOLERANCE`); others are
    refused, not normalised: an unnormalised vector means raw network output or another
    model, and silently normalising it would hide that.  ``FaceTemplate.embedding`` always
    qualifies.  Thread-safety and memory: see the module docstring.

    Examples
    --------
    >>> index = FaceIndex()
    >>> index.add(np.stack([t.embedding for t in templates]))  # doctest: +SKIP
    0
    >>> scores, rows = index.search(probe.embedding, k=10)  # doctest: +SKIP
    """

    def __init__(self, dim: int = EMBEDDING_DIM, factory: str = DEFAULT_FACTORY, *, threads: int | None = 1):
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= 65535:
            raise invalid("dim", "an int in [1, 65535]", dim)
        if not isinstance(factory, str) or not factory:
            raise invalid("factory", "a FAISS factory string such as 'Flat', 'IVF1024,Flat' or 'HNSW32'", factory)
        faiss = faiss_module(threads)
        try:
            base = faiss.index_factory(int(dim), factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise invalid("factory", "a FAISS factory string such as 'Flat', 'IVF1024,Flat' or 'HNSW32'",
                          factory) from exc
        if not _kind(faiss, base):
            raise invalid("factory", "a flat, IVF or HNSW index without transform or id map "
                          f"(got a {type(base).__name__})", factory)
        self._init(base, factory, mapped=False, lineage=uuid.uuid4().bytes)

    def _init(self, base, factory: str, mapped: bool, lineage: bytes) -> None:
        super()._init(base, factory, mapped)
        self._lineage = lineage  # random id of this index's history, kept across save/open
        self._keep_cache: dict = {}  # (offset, n) -> packed "not removed" bitmap for FAISS

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return int(self._base.d)

    @property
    def is_trained(self) -> bool:
        return bool(self._base.is_trained)

    def __repr__(self) -> str:
        return (f"FaceIndex(factory={self._factory!r}, dim={self.dim}, rows={self.ntotal}, "
                f"removed={self._n_removed}, delta={self.n_delta}, mapped={self._mapped})")

    # ------------------------------------------------------------------ RowIndex hooks
    def _checked(self, x, name: str = "embeddings") -> np.ndarray:
        if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
            raise invalid(name, "a float ndarray of unit-norm embeddings",
                          getattr(x, "dtype", type(x).__name__))
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise invalid(name, f"shape (n, {self.dim}) or ({self.dim},)", x.shape)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if len(x) == 0:
            return x
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise InvalidInputError(f"{name}: expected finite values, got NaN or inf in {len(bad)} row(s) "
                                    f"(first: row {int(bad[0])})")
        norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
        off = np.abs(norms - 1.0) > NORM_TOLERANCE
        if off.any():
            bad = np.flatnonzero(off)
            raise InvalidInputError(
                f"{name}: expected unit L2 norm (|norm - 1| <= {NORM_TOLERANCE}), got norm "
                f"{norms[bad[0]]:.6g} at row {int(bad[0])} ({len(bad)} row(s) off); refused, not "
                "normalised: pass FaceTemplate.embedding or normalise deliberately")
        return x

    def _new_delta(self):
        return faiss_module(None).IndexFlatIP(self.dim)

    def _train_first(self, x: np.ndarray) -> None:
        self.train(x)

    def _changed(self) -> None:
        self._keep_cache.clear()

    # ------------------------------------------------------------------ mutation
    def train(self, embeddings: np.ndarray) -> None:
        """Train an IVF (or quantised) index on representative embeddings (>= 39 x nlist advised).

        A no-op for indexes that need no training (Flat, HNSW).

        Raises
        ------
        InvalidInputError
            Bad embeddings, too few of them for the factory, or the index is mapped.
        """
        x = self._checked(embeddings)
        if self._base.is_trained:
            return
        try:
            self._base.train(x)
        except RuntimeError as exc:
            raise InvalidInputError(f"embeddings: too few or unsuitable to train {self._factory!r} "
                                    f"(got {len(x)} rows): {str(exc).splitlines()[-1]}") from exc

    def add(self, embeddings: np.ndarray) -> int:
        """Append embeddings; returns the row id of the first one (rows are consecutive).

        Parameters
        ----------
        embeddings : float (n, dim) or (dim,), unit norm
            Converted to float32.

        Raises
        ------
        InvalidInputError
            Wrong dtype or shape, NaN/inf, norm not 1, or an untrainable first batch.
        """
        return super().add(embeddings)

    def vectors(self, rows) -> np.ndarray:
        """The stored embeddings of ``rows``, float32 (n, dim) (flat indexes: exact copies).

        Raises
        ------
        InvalidInputError
            A row out of range, or an index kind that cannot give its vectors back (IVF/HNSW
            without a direct map).
        """
        r = np.asarray(rows, np.int64).ravel()
        if r.size and (r.min() < 0 or r.max() >= self.ntotal):
            raise invalid("rows", f"row ids in [0, {self.ntotal})", f"[{r.min()}, {r.max()}]")
        out = np.empty((r.size, self.dim), np.float32)
        n_base = self._base.ntotal
        try:
            for part, index, offset in ((r < n_base, self._base, 0), (r >= n_base, self._delta, n_base)):
                if part.any():
                    out[part] = index.reconstruct_batch(r[part] - offset)
        except RuntimeError as exc:
            raise invalid("index", "a flat index (vectors cannot be read back from this one)",
                          self._factory) from exc
        return out

    def tune(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Set the default search effort stored in the index (and in its saved file).

        ``nprobe``: IVF lists visited (FAISS default 1); ``ef_search``: HNSW candidate list
        size (FAISS default 16).  Per-call values given to :meth:`search` take precedence.
        """
        nprobe, ef_search = self._effort(nprobe, ef_search)
        if nprobe is not None:
            self._base.nprobe = nprobe
        if ef_search is not None:
            self._base.hnsw.efSearch = ef_search

    def _effort(self, nprobe, ef_search):
        faiss = faiss_module(None)
        kind = _kind(faiss, self._base)
        for name, value, wanted in (("nprobe", nprobe, "ivf"), ("ef_search", ef_search, "hnsw")):
            if value is None:
                continue
            if kind != wanted:
                raise invalid(name, f"None for a {self._factory!r} index (only {wanted.upper()} uses it)", value)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise invalid(name, "an int >= 1", value)
        return (None if nprobe is None else int(nprobe)), (None if ef_search is None else int(ef_search))

    # ------------------------------------------------------------------ search
    def _keep_bitmap(self, offset: int, n: int) -> np.ndarray:
        key = (offset, n)
        bm = self._keep_cache.get(key)
        if bm is None:
            # IDSelectorBitmap reads bit (i & 7) of byte (i >> 3): little bit order.
            bm = np.packbits(~self._tomb.flags(offset, n), bitorder="little")
            self._keep_cache[key] = bm
        return bm

    def search(self, embeddings: np.ndarray, k: int, *, nprobe: int | None = None,
               ef_search: int | None = None) -> FaceHits:
        """The ``k`` active rows most similar to each probe (cosine), best first.

        Parameters
        ----------
        embeddings : float (q, dim) or (dim,), unit norm
        k : int
            Results per probe (>= 1).
        nprobe, ef_search : int or None
            Per-call search effort for IVF / HNSW (see :meth:`tune`); refused for other kinds.

        Returns
        -------
        FaceHits
            ``scores`` float32 (q, k), ``rows`` int64 (q, k); missing results are
            ``-inf`` / ``-1``.  Removed rows are never returned.  Ties are broken by FAISS.
        """
        x = self._checked(embeddings)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise invalid("k", "an int >= 1", k)
        k = int(k)
        nprobe, ef_search = self._effort(nprobe, ef_search)
        faiss = faiss_module(None)
        q = len(x)
        parts = [self._search_part(faiss, index, x, min(k, n), offset, n, nprobe, ef_search)
                 for index, offset, n in self._parts() if n and q]
        scores = np.full((q, k), -np.inf, np.float32)
        rows = np.full((q, k), -1, np.int64)
        if not parts:
            return FaceHits(scores, rows)
        s = np.concatenate([p[0] for p in parts], axis=1)
        r = np.concatenate([p[1] for p in parts], axis=1)
        s, r = best_of_parts(-np.where(r < 0, -np.inf, s), r, k)
        s = -s
        missing = ~np.isfinite(s)
        m = s.shape[1]
        scores[:, :m] = np.where(missing, -np.inf, np.clip(s, -1.0, 1.0))
        rows[:, :m] = np.where(missing, -1, r)
        return FaceHits(scores, rows)

    def _search_part(self, faiss, index, x, kk, offset, n, nprobe, ef_search):
        kind = _kind(faiss, index)
        sel = None
        bitmap = None
        if self._tomb.count_in(offset, n):
            bitmap = self._keep_bitmap(offset, n)  # must outlive the search call
            sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
        if kind == "ivf":
            params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe if nprobe is not None else index.nprobe)
        elif kind == "hnsw":
            params = faiss.SearchParametersHNSW(
                sel=sel, efSearch=ef_search if ef_search is not None else index.hnsw.efSearch)
        else:
            params = faiss.SearchParameters(sel=sel) if sel is not None else None
        d, r = index.search(x, kk, params=params)
        del bitmap
        return d, np.where(r >= 0, r + offset, -1)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write base + delta as one index plus its sidecar, atomically and in a kill-safe order.

        Memory: an index with a delta or a mapped base is copied once in memory while folding.

        Raises
        ------
        IndexFileError
            The file cannot be written.
        """
        faiss = faiss_module(None)
        path = Path(path)
        sidecar = path.with_name(path.name + _SIDECAR_SUFFIX)
        index = self._base
        if self._mapped or self._delta is not None:
            # A mapped index cannot grow: fold into an owned in-memory copy of the same kind.
            index = faiss.deserialize_index(faiss.serialize_index(self._base))
            if self._delta is not None and self._delta.ntotal:
                index.add(self._delta.reconstruct_n(0, self.n_delta))
        try:
            if path.exists() and _read_lineage(sidecar) != self._lineage:
                # Another index's files: drop its sidecar first, so a kill mid-way leaves a
                # file without sidecar (refused by open) rather than a foreign pairing.
                if sidecar.exists():
                    sidecar.unlink()
                fsync_dir(path.parent)
            write_private_atomic(sidecar, self._sidecar_bytes())
            _write_index_atomic(faiss, index, path)
        except OSError as exc:
            raise IndexFileError(f"index {path}: cannot write ({exc.strerror or exc})") from exc

    def _sidecar_bytes(self) -> bytes:
        fac = self._factory.encode()
        body = (_SIDECAR_HEAD.pack(_SIDECAR_MAGIC, _SIDECAR_VERSION, self.dim, self.ntotal, self._lineage, len(fac))
                + fac + self._tomb.packed())
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def open(cls, path: str | Path, mmap: bool = True, *, threads: int | None = 1) -> "FaceIndex":
        """Open an index written by :meth:`save`.

        Parameters
        ----------
        path : path
        mmap : bool
            Map the file read-only (``faiss.IO_FLAG_MMAP_IFC``); new rows then go to an
            in-memory exact delta.  The file must not be modified in place while mapped
            (:meth:`save` replaces it by rename, which is safe).

        Raises
        ------
        IndexFileError
            Missing, unreadable or corrupt index or sidecar; another dimension, metric or
            index kind; a sidecar older than the index.
        """
        faiss = faiss_module(threads)
        path = Path(path)
        sidecar = path.with_name(path.name + _SIDECAR_SUFFIX)
        if not path.is_file():
            raise IndexFileError(f"index: expected a file at {path}, found none")
        if not sidecar.is_file():
            raise IndexFileError(f"index {path}: expected its sidecar {sidecar.name} (row count and tombstones), "
                                 "found none (interrupted overwrite or a foreign file)")
        dim, n_side, lineage, factory, removed = _parse_sidecar(sidecar)
        try:
            base = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        except RuntimeError as exc:
            raise IndexFileError(f"index {path}: cannot read a FAISS index ({str(exc).splitlines()[-1]})") from exc
        if not _kind(faiss, base) or base.metric_type != faiss.METRIC_INNER_PRODUCT or int(base.d) != dim:
            raise IndexFileError(f"index {path}: expected a {dim}-d inner-product flat/IVF/HNSW index, got "
                                 f"{type(base).__name__} of {base.d} dims, metric {base.metric_type}")
        n = int(base.ntotal)
        if n_side < n:
            raise IndexFileError(f"index {sidecar}: expected tombstones for {n} rows, got {n_side} "
                                 "(sidecar older than the index)")
        if n_side > n:
            log.warning("index %s: sidecar covers %d rows, the index %d (save interrupted between the two "
                        "renames); rows %d..%d are lost, tombstones kept", path, n_side, n, n, n_side - 1)
        self = cls.__new__(cls)
        self._init(base, factory, mapped=bool(mmap), lineage=lineage)
        self._set_tombstones(removed[:n].copy())
        return self


def _read_lineage(sidecar: Path) -> bytes | None:
    try:
        with open(sidecar, "rb") as fh:
            head = fh.read(_SIDECAR_HEAD.size)
        magic, _, _, _, lineage, _ = _SIDECAR_HEAD.unpack(head)
        return lineage if magic == _SIDECAR_MAGIC else None
    except (OSError, struct.error):
        return None


def _parse_sidecar(sidecar: Path):
    try:
        data = sidecar.read_bytes()
    except OSError as exc:
        raise IndexFileError(f"index {sidecar}: cannot read ({exc.strerror})") from exc
    if len(data) < _SIDECAR_HEAD.size + 4 or data[:4] != _SIDECAR_MAGIC:
        raise IndexFileError(f"index {sidecar}: expected a biomatch face-index sidecar ({_SIDECAR_MAGIC!r}), "
                             f"got {data[:4]!r}")
    (crc,) = struct.unpack_from("<I", data, len(data) - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise IndexFileError(f"index {sidecar}: checksum mismatch (corrupt sidecar)")
    _, version, dim, n, lineage, flen = _SIDECAR_HEAD.unpack_from(data)
    if version != _SIDECAR_VERSION:
        raise IndexFileError(f"index {sidecar}: expected sidecar version {_SIDECAR_VERSION}, got {version}")
    start = _SIDECAR_HEAD.size + flen
    nbytes = (n + 7) // 8
    if len(data) - 4 - start != nbytes:
        raise IndexFileError(f"index {sidecar}: expected {nbytes} bytes of tombstones, got {len(data) - 4 - start}")
    factory = data[_SIDECAR_HEAD.size:start].decode("ascii", "replace")
    removed = unpack_tombstones(np.frombuffer(data, np.uint8, nbytes, start), n)
    return dim, n, lineage, factory, removed


def _write_index_atomic(faiss, index, path: Path) -> None:
    """FAISS writes the temporary file (mode 0600) itself, no in-memory copy; fsync, rename."""
    def write(tmp: Path) -> None:
        try:
            faiss.write_index(index, str(tmp))
        except RuntimeError as exc:
            raise OSError(f"FAISS cannot write {tmp}: {str(exc).splitlines()[-1]}") from exc

    write_file_atomic(path, write)
