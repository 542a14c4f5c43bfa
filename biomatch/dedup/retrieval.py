"""Candidate retrieval: the pluggable first stage of a shard's search.

A retrieval component narrows the enrolled fingers of a shard to candidates before native
re-ranking.  Its interface (duck-typed, see :class:`Retrieval`) is what a FAISS code index
(``biomatch.encode`` + ``biomatch.index.FingerIndex``) plugs into:

- ``add(position, finger_ids, templates, subject_keys)``: index new fingers (ids from the store,
  increasing; ``subject_keys`` group a person's fingers);
- ``remove(finger_ids)``: tombstone fingers;
- ``candidates(probe, k)``: ``{position: finger ids}`` to re-rank, or ``None`` for "all";
- ``indexed_upto``, ``removals_upto``: the last store finger id / removal seq folded in, so that a
  shard catches a lagging index up from the store on open;
- ``save(folder)`` / ``load(folder)``: derived files (may lag; never trusted beyond those marks).

:class:`ExhaustiveRetrieval` (every finger of the probe's positions is a candidate) is the
reference: exact, no files, ~50,000 native comparisons per second per thread.
:class:`~biomatch.dedup.faiss_retrieval.FaissRetrieval` (``"faiss"``, the default of new
galleries) keeps the top persons by summed per-position Hamming similarity of 512-bit codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = ["Retrieval", "ExhaustiveRetrieval", "make_retrieval"]


class Retrieval(Protocol):
    name: str
    indexed_upto: int
    removals_upto: int

    def add(self, position: int, finger_ids: np.ndarray, templates: list, subject_keys=None) -> None: ...

    def remove(self, finger_ids: np.ndarray) -> None: ...

    def candidates(self, probe: dict, k: int) -> dict | None: ...

    def save(self, folder: Path) -> None: ...

    def load(self, folder: Path) -> None: ...


class ExhaustiveRetrieval:
    """Every enrolled finger of the same position is a candidate (exact; no index files).

    Thread-safety: stateless apart from the two marks, which the shard updates under its lock.
    """

    name = "exhaustive"

    def __init__(self):
        self.indexed_upto = 0
        self.removals_upto = 0

    def add(self, position, finger_ids, templates, subject_keys=None) -> None:
        if len(finger_ids):
            self.indexed_upto = max(self.indexed_upto, int(np.max(finger_ids)))

    def remove(self, finger_ids) -> None:
        pass

    def candidates(self, probe, k):
        return None

    def save(self, folder) -> None:
        pass

    def load(self, folder) -> None:
        pass


def _faiss_retrieval():
    from .faiss_retrieval import FaissRetrieval

    return FaissRetrieval()


_REGISTRY = {"exhaustive": ExhaustiveRetrieval, "faiss": _faiss_retrieval}


def make_retrieval(name: str):
    """Build a retrieval component by name (``"exhaustive"``, ``"faiss"``, or one registered)."""
    from ..errors import invalid

    if name not in _REGISTRY:
        raise invalid("retrieval", f"one of {sorted(_REGISTRY)}", name)
    return _REGISTRY[name]()


def register(name: str, factory) -> None:
    """Register a retrieval factory (a zero-argument callable) under ``name``."""
    _REGISTRY[name] = factory
