"""Search processes for pipelined enrolment and batch deduplication: searches on every core, free of the GIL.

A window's searches run in threads of the writer's process by default; about half of a search
is Python (decoding, the code stage's bookkeeping, the verdict) and holds the GIL, so two
threads gain little over one.  :class:`SearchWorkers` runs them instead in ``n`` processes
(``spawn``), each with the gallery opened read-only: every search first folds in what the
stores committed (as :meth:`Gallery.deduplicate` does), so a worker sees at least what the
writer saw when it took the shards' high-water marks (:mod:`biomatch.dedup.pipeline`), and the
writer's own checks stay what they are.  The memory-mapped code indexes are shared by the page
cache; each worker holds its own subject maps and prepared-template cache (as large as the
writer's: a search prepares ~300 candidate fingers, and the cache is what spares it).

Encrypted galleries keep the threads (their key provider stays in the writer's process).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..errors import BiomatchError, StorageError

__all__ = ["SearchWorkers"]

_GALLERY = None
"""The worker process's read-only gallery (set by :func:`_start`)."""


def _start(gallery_class, path: str, match_params, decision, cache_bytes: int) -> None:
    """Worker initialiser: open the gallery read-only with the writer's parameters (the class is
    passed in, so that this module does not import the gallery that imports it)."""
    global _GALLERY
    _GALLERY = gallery_class.open(path, match_params=match_params, decision=decision, read_only=True,
                                  cache_bytes=cache_bytes)


def _search(subject_id: str, usable: dict, top: int, face):
    """One record's search in a worker: its DedupReport, or the BiomatchError it raised."""
    g = _GALLERY
    try:
        g._refresh()
        for s in g._shards:
            s.catch_up()
        return g._search(subject_id, usable, top, face)[0]
    except BiomatchError as exc:
        return exc


class SearchWorkers:
    """``n`` processes that search a gallery read-only for its writer.

    Parameters
    ----------
    gallery : Gallery
        The writer's gallery (its path and parameters are those of the workers).
    n : int
        Processes (one per core to use).

    Notes
    -----
    Starting a worker costs an interpreter, the imports and an open of the gallery (about one
    to a few seconds); keep the object for a whole backlog and :meth:`close` it (or use it as a
    context manager).  Not thread-safe: one writer uses it.
    """

    def __init__(self, gallery, n: int):
        self.n = n
        self._pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                                         initargs=(type(gallery), str(gallery.path), gallery.match_params,
                                                   gallery.decision_params, gallery._cache_bytes))

    def search(self, requests: list) -> list:
        """``[(subject_id, usable, top, face)]`` -> their DedupReports or BiomatchErrors, in order."""
        return self.collect(self.submit(requests))

    def submit(self, requests: list) -> list:
        """Start the searches of ``requests`` (as :meth:`search`); their futures, for :meth:`collect`.

        Raises
        ------
        StorageError
            The pool is broken or closed (the caller then searches in its own process).
        """
        try:
            return [self._pool.submit(_search, *r) for r in requests]
        except (BrokenProcessPool, RuntimeError) as exc:  # RuntimeError: the pool was shut down
            raise StorageError(f"search workers: a worker process died or was stopped ({exc})") from None

    def collect(self, futures: list) -> list:
        """The results of :meth:`submit`'s futures, in order; StorageError if a worker died."""
        try:
            return [f.result() for f in futures]
        except BrokenProcessPool as exc:
            raise StorageError(f"search workers: a worker process died ({exc})") from None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "SearchWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
