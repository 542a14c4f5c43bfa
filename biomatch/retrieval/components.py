"""Retrieval components: the pluggable first stage of a shard's search, and their registry.

A retrieval component narrows the enrolled fingers of a shard to candidates before native
re-ranking.  Every component implements :class:`Retrieval` (index life cycle):

- ``add(position, finger_ids, templates, subject_keys)``: index new fingers (ids from the store,
  increasing; ``subject_keys`` group a person's fingers and increase with the ids);
- ``remove(subject_keys, positions=None)``: tombstone the fingers of removed subjects;
- ``indexed_upto``, ``removals_upto``: the last store finger id / removal seq folded in, so that a
  shard catches a lagging index up from the store on open;
- ``save(folder)`` / ``load(folder)``: derived files (may lag; never trusted beyond those marks).

and searches in one of two ways:

- :class:`CodeRanking` (two-phase, gallery-wide cuts: ``probe_codes``, ``position_counts``, ``scan``,
  ``person_table``, ``params``): :class:`~biomatch.retrieval.faiss_retrieval.FaissRetrieval`
  (``"faiss"``, the default of new galleries), every person scored on 512-bit codes, summed
  over the probe's positions;
- :class:`CandidateFilter` (``candidates(probe, k)``: ``{position: finger ids}`` to re-rank, or
  ``None`` for "all"): :class:`ExhaustiveRetrieval` (``"exhaustive"``), the exact reference with no
  files, ~50,000 native comparisons per second per thread.

A shard tells them apart by the presence of ``scan``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import invalid
from .faiss_retrieval import FaissRetrieval

__all__ = ["Retrieval", "CandidateFilter", "CodeRanking", "ExhaustiveRetrieval", "make_retrieval", "register",
           "registered"]


class Retrieval(Protocol):
    name: str
    indexed_upto: int
    removals_upto: int

    def add(self, position: int, finger_ids: np.ndarray, templates: list, subject_keys=None) -> None: ...

    def remove(self, subject_keys: np.ndarray, positions=None) -> int: ...

    def save(self, folder: Path, cipher=None) -> None: ...

    def load(self, folder: Path, cipher=None) -> None: ...


class CandidateFilter(Retrieval, Protocol):
    def candidates(self, probe: dict, k: int) -> dict | None: ...


class CodeRanking(Retrieval, Protocol):
    params: object

    def probe_codes(self, probe: dict) -> dict: ...

    def position_counts(self) -> dict: ...

    def scan(self, codes: dict, n_best: int) -> tuple[np.ndarray, np.ndarray, int]: ...

    def person_table(self, codes: dict, keys: np.ndarray) -> np.ndarray: ...


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

    def remove(self, subject_keys, positions=None) -> int:
        return 0

    def candidates(self, probe, k):
        return None

    def save(self, folder, cipher=None) -> None:
        pass

    def load(self, folder, cipher=None) -> None:
        pass


_REGISTRY = {"exhaustive": ExhaustiveRetrieval, "faiss": FaissRetrieval}


def make_retrieval(name: str):
    """Build a retrieval component by name (``"exhaustive"``, ``"faiss"``, or one registered)."""
    if name not in _REGISTRY:
        raise invalid("retrieval", f"one of {sorted(_REGISTRY)}", name)
    return _REGISTRY[name]()


def register(name: str, factory) -> None:
    """Register a retrieval factory (a zero-argument callable) under ``name``."""
    _REGISTRY[name] = factory


def registered() -> list:
    """Names of the registered components, sorted."""
    return sorted(_REGISTRY)
