"""The shard seam: one typed protocol, one dataclass message per call, typed replies.

A gallery talks to its shards only through :class:`ShardProtocol`.  Two implementations:
the local :class:`~biomatch.dedup.shard.Shard` (same process), and the Ray proxy
``_RemoteShard`` of :mod:`biomatch.dedup.cluster`, which sends the same messages to a
``ShardActor`` that hands them to its own local Shard with :func:`dispatch`.  Messages and
replies are frozen dataclasses of plain values, numpy arrays, Templates and Candidates, so they
pickle across processes as they are.

Adding a call: a message class here (its ``method`` names the protocol method; ``catch_up``
says whether a shard actor folds in the store first), its method on :class:`ShardProtocol`,
then its implementations in ``Shard`` and ``_RemoteShard``.  The actor needs no change.

The search is three calls (see :mod:`biomatch.dedup.scatter`)::

    Scan     -> ScanReply      phase 1a: code scan, distance histograms, nearest faces
    Persons  -> PersonsReply   phase 1b: this shard's best persons within the gallery-wide row cuts
    Rerank   -> RerankReply    phase 2:  native re-ranking of this shard's share, fused candidates
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from ..decide import DecisionParams

__all__ = ["ShardProtocol", "ShardCall", "dispatch", "Scan", "ScanReply", "Persons", "PersonsReply", "Rerank",
           "RerankReply", "RerankTimings", "RerankWork", "Insert", "BulkInsert", "EncodedRows", "Remove", "PositionCounts",
           "Present", "HasSubject", "CountSubjects", "SubjectPrepared", "SubjectTemplates", "SubjectInfo", "SubjectInfoReply",
           "Stats", "ShardStats", "IntegrityProblems", "Sequences"]


class ShardCall:
    """Base of the messages: ``method`` is the :class:`ShardProtocol` method that answers it."""

    method: ClassVar[str]
    catch_up: ClassVar[bool] = False
    """A shard actor first folds in what the store committed since (reads of memory-held state)."""


# ---- search ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scan(ShardCall):
    """Phase 1a: every person's code score for a probe; the best kept by the shard under ``qid`` for 1b and 2.

    Attributes
    ----------
    qid : str
        The query's id (chosen by the router).
    templates : dict int -> Template
        Usable probe fingers by position.
    counts_hint : dict int -> int
        The gallery's active code rows per position as the router believes them; the persons
        the shard keeps follow from it (the router checks ``ScanReply.fetched`` and scans again
        if a stale hint made them too few).
    face : ndarray (512,) of float32, optional
        The probe's unit face embedding.
    face_k : int
        Nearest faces to report.
    top : int
        Candidates the search returns (the shard keeps at least this many persons).
    """

    method: ClassVar[str] = "scan"
    catch_up: ClassVar[bool] = True
    qid: str
    templates: Any
    counts_hint: dict
    face: np.ndarray | None = None
    face_k: int = 0
    top: int = 0


@dataclass(frozen=True)
class ScanReply:
    """What phase 1a reports to the router.

    Attributes
    ----------
    two_phase : bool
        False: the retrieval has no code ranking, every person is a candidate.
    fetched : int
        Persons kept (more when tied at the last).
    scored : int
        Persons with a code score (an active row at one of the probe's positions).
    counts : dict int -> int
        This shard's active code rows per position.
    valid : list of int
        Probe positions with a valid code.
    params : FaissRetrievalParams or None
        The retrieval's parameters (they fix the gallery-wide plan of the code stage).
    face_scores : ndarray of float64
        Cosines of the nearest faces, descending.
    n_subjects : int
    ms : float
        Time spent in the shard.
    """

    two_phase: bool
    fetched: int = 0
    scored: int = 0
    counts: dict = field(default_factory=dict)
    valid: list = field(default_factory=list)
    params: Any = None
    face_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_subjects: int = 0
    ms: float = 0.0


@dataclass(frozen=True)
class Persons(ShardCall):
    """Phase 1b: the shard's ``n_keep`` best persons by code score."""

    method: ClassVar[str] = "persons"
    qid: str
    n_keep: int


@dataclass(frozen=True)
class PersonsReply:
    """The shard's ``n_keep`` best persons (ties at its cut included) as ``(code score, subject_id)``."""

    best: list = field(default_factory=list)


@dataclass(frozen=True)
class Rerank(ShardCall):
    """Phase 2: native re-ranking of the shard's persons selected by the gallery-wide cuts.

    Attributes
    ----------
    probe : dict int -> PreparedTemplate or Template
        Usable probe fingers (Templates are prepared by the shard, only if it has a candidate).
    decision : DecisionParams
    top : int
        Candidates to return (ties with the last included).
    code_cut, full_cut : (float, str)
        Persons sorting at or before ``code_cut`` by (code score desc, subject id) are
        candidates, those at or before ``full_cut`` are matched on every common finger
        (:func:`~biomatch.dedup.scatter.nth_person`).
    face_cut : float
        Persons whose face cosine reaches it join as screened candidates.
    face : ndarray, optional
        The probe's face embedding (every candidate with a face gets its cosine as evidence).
    """

    method: ClassVar[str] = "rerank"
    qid: str
    probe: Any
    decision: DecisionParams
    top: int
    code_cut: tuple
    full_cut: tuple
    face_cut: float
    face: np.ndarray | None = None


@dataclass(frozen=True)
class RerankTimings:
    """Milliseconds spent by one shard's re-ranking (summed over shards in the report)."""

    prepare_candidates: float = 0.0
    rerank: float = 0.0
    fuse: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RerankWork:
    """What one shard's re-ranking did (summed over shards into ``DedupReport.work``)."""

    candidates: int = 0
    fingers_matched: int = 0
    escalated: int = 0
    face_only_candidates: int = 0
    faces_compared: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RerankReply:
    """:class:`~biomatch.dedup.report.Candidate` objects ranked best first, with the shard's timings
    and work counts."""

    candidates: list
    timings: RerankTimings
    work: RerankWork


# ---- writes (the caller holds the gallery's write lock) -----------------------------------------
@dataclass(frozen=True)
class Insert(ShardCall):
    """Durably insert one subject (committed and fsync'd when answered), then index it.

    ``prepared`` ({position: PreparedTemplate}) seeds the local cache; never sent to an actor
    (prepared templates hold native objects).
    """

    method: ClassVar[str] = "insert"
    subject_id: str
    templates: dict
    metadata_json: str | None = None
    face: np.ndarray | None = None
    prepared: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EncodedRows:
    """Bulk rows already serialised and coded by the caller (:mod:`biomatch.dedup.bulk`), so that
    a shard's write is one transaction of ``executemany`` and one index append per position.

    Attributes
    ----------
    subjects : list of (subject_id, metadata_json or None, face bytes or None)
    fingers : list of (subject index, position, BMT1 blob, n_minutiae)
        Subject-major, positions ascending within a subject; every subject has at least one.
    codes : uint8 (n_fingers, n_bytes) or None
        Finger codes of :attr:`code_generation` (None: the shard computes them).
    valid : bool (n_fingers,) or None
    code_generation : str or None
    """

    subjects: list
    fingers: list
    codes: Any = None
    valid: Any = None
    code_generation: str | None = None


@dataclass(frozen=True)
class BulkInsert(ShardCall):
    """Insert many subjects in one transaction WITHOUT dedup; answered with the number inserted.

    ``rows``: ``(subject_id, {position: Template}, metadata_json, face or None)`` tuples;
    ``encoded``: the same rows as :class:`EncodedRows` when the caller prepared them (then
    ``rows`` may be empty).
    """

    method: ClassVar[str] = "bulk_insert"
    rows: list
    encoded: EncodedRows | None = None


@dataclass(frozen=True)
class Remove(ShardCall):
    """Delete a subject and its templates (durable when answered)."""

    method: ClassVar[str] = "remove"
    subject_id: str


# ---- reads -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PositionCounts(ShardCall):
    """``{position: active code rows}`` (empty for a retrieval without codes)."""

    method: ClassVar[str] = "position_counts"
    catch_up: ClassVar[bool] = True


@dataclass(frozen=True)
class Present(ShardCall):
    """The ids among ``subject_ids`` enrolled in this shard (a list)."""

    method: ClassVar[str] = "present"
    subject_ids: list


@dataclass(frozen=True)
class HasSubject(ShardCall):
    """Whether the store holds ``subject_id`` (a bool)."""

    method: ClassVar[str] = "has_subject"
    subject_id: str


@dataclass(frozen=True)
class CountSubjects(ShardCall):
    """Subjects enrolled in this shard (an int)."""

    method: ClassVar[str] = "count_subjects"
    catch_up: ClassVar[bool] = True


@dataclass(frozen=True)
class SubjectPrepared(ShardCall):
    """``{position: PreparedTemplate}`` of an enrolled subject (prepared on demand, cached).

    Answered in the caller's process: a remote shard sends :class:`SubjectTemplates` with
    ``cached=True`` and prepares what comes back.
    """

    method: ClassVar[str] = "subject_prepared"
    subject_id: str


@dataclass(frozen=True)
class SubjectTemplates(ShardCall):
    """``{position: Template}`` of an enrolled subject: read from the store (the source of truth),
    or, ``cached``, the templates of :class:`SubjectPrepared` (memory caught up first)."""

    method: ClassVar[str] = "subject_templates"
    catch_up: ClassVar[bool] = True
    subject_id: str
    cached: bool = False


@dataclass(frozen=True)
class SubjectInfo(ShardCall):
    """What is enrolled for a subject, without a template or an embedding (a :class:`SubjectInfoReply`)."""

    method: ClassVar[str] = "subject_info"
    catch_up: ClassVar[bool] = True
    subject_id: str


@dataclass(frozen=True)
class SubjectInfoReply:
    """An enrolled subject as a registry may show it: positions, whether a face is held, metadata."""

    subject_id: str
    positions: tuple
    has_face: bool
    metadata_json: str | None


@dataclass(frozen=True)
class Stats(ShardCall):
    """Counts, memory and disk use of the shard (a :class:`ShardStats`)."""

    method: ClassVar[str] = "stats"
    catch_up: ClassVar[bool] = True


@dataclass(frozen=True)
class ShardStats:
    """One shard's counts, memory and disk use (bytes)."""

    subjects: int
    fingers: int
    fingers_per_position: dict
    memory_bytes: int
    retrieval_bytes: int
    faces: int
    face_bytes: int
    faces_unusable: int
    maps_bytes: int
    cache_bytes: int
    cache_limit_bytes: int
    cache_entries: int
    cache_hits: int
    cache_misses: int
    disk_bytes: int
    retrieval: str
    indexed_upto: int
    last_finger_id: int


@dataclass(frozen=True)
class IntegrityProblems(ShardCall):
    """SQLite's integrity check, the watermark, and the index against the store (a list; empty: sound)."""

    method: ClassVar[str] = "integrity_problems"


@dataclass(frozen=True)
class Sequences(ShardCall):
    """The store's high-water marks ``{"fingers", "subjects", "removals"}``: the last ids ever
    assigned, which grow with every write by anyone (a dict; read from the store, not memory)."""

    method: ClassVar[str] = "sequences"


class ShardProtocol(Protocol):
    """What a gallery may ask of a shard: one method per message, named by its ``method``."""

    def scan(self, call: Scan) -> ScanReply: ...

    def persons(self, call: Persons) -> PersonsReply: ...

    def rerank(self, call: Rerank) -> RerankReply: ...

    def insert(self, call: Insert) -> None: ...

    def bulk_insert(self, call: BulkInsert) -> int: ...

    def remove(self, call: Remove) -> None: ...

    def position_counts(self, call: PositionCounts) -> dict: ...

    def present(self, call: Present) -> list: ...

    def has_subject(self, call: HasSubject) -> bool: ...

    def count_subjects(self, call: CountSubjects) -> int: ...

    def subject_prepared(self, call: SubjectPrepared) -> dict: ...

    def subject_templates(self, call: SubjectTemplates) -> dict: ...

    def subject_info(self, call: SubjectInfo) -> SubjectInfoReply: ...

    def stats(self, call: Stats) -> ShardStats: ...

    def integrity_problems(self, call: IntegrityProblems) -> list: ...

    def sequences(self, call: Sequences) -> dict: ...

    def catch_up(self) -> int:
        """Fold in what the store committed since the last call (local; a remote shard's actor
        does it itself before every call marked ``catch_up``)."""

    def close(self) -> None: ...


def dispatch(shard: ShardProtocol, call: ShardCall):
    """Answer ``call`` with the shard's method of that name."""
    return getattr(shard, call.method)(call)
