"""What a deduplication returns: ranked candidates that explain the decision."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["Candidate", "DedupReport", "Verification"]


@dataclass(frozen=True)
class Candidate:
    """One enrolled subject found for a probe.

    Attributes
    ----------
    subject_id : str
    score : float
        Fused score in decades (``-log10`` of the estimated per-subject false match rate,
        see :mod:`biomatch.decide`).
    finger_scores : dict int -> float
        Native matcher score of each finger compared, by ISO position.
    finger_evidence : dict int -> float
        The same fingers as single-finger evidence in decades (``-log10 FMR``).
    face_score : float or None
        Cosine similarity of the faces (None: either side has no face).
    face_evidence : float or None
        The face as evidence in decades (capped, see :class:`~biomatch.decide.DecisionParams`).
    """

    subject_id: str
    score: float
    finger_scores: dict = field(default_factory=dict)
    finger_evidence: dict = field(default_factory=dict)
    face_score: float | None = None
    face_evidence: float | None = None


@dataclass(frozen=True)
class DedupReport:
    """Outcome of :meth:`Gallery.deduplicate` or :meth:`Gallery.enroll`.

    Attributes
    ----------
    subject_id : str
        The probe record's subject id.
    decision : str
        ``"DUPLICATE"``, ``"REVIEW"`` or ``"UNIQUE"``.
    candidates : tuple of Candidate
        Ranked by fused score, best first (at most ``DecisionParams.max_candidates``).
    thresholds : dict
        ``duplicate_score``, ``review_score`` (decades) and the targets they stand for:
        ``duplicate_fpir``, ``review_fpir``, for ``gallery_size`` subjects.
    enrolled : bool
        True when :meth:`Gallery.enroll` inserted the record.
    positions_used : tuple of int
        Probe fingers that were usable (enough minutiae).
    gallery_size : int
        Subjects searched.
    timings_ms : dict
        ``retrieve``, ``rerank``, ``decide``, ``commit`` (milliseconds, where measured).
    work : dict
        What the search did, summed over shards: ``candidates`` (persons passed by the code
        stage), ``fingers_matched`` (native comparisons), ``escalated`` (screened persons
        matched on all fingers).
    """

    subject_id: str
    decision: str
    candidates: tuple = ()
    thresholds: dict = field(default_factory=dict)
    enrolled: bool = False
    positions_used: tuple = ()
    gallery_size: int = 0
    timings_ms: dict = field(default_factory=dict)
    work: dict = field(default_factory=dict)

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (no templates: reports may be logged)."""
        return asdict(self)


@dataclass(frozen=True)
class Verification:
    """Outcome of :meth:`Gallery.verify` (1:1 against one enrolled subject)."""

    subject_id: str
    match: bool
    score: float
    threshold: float
    target_fmr: float
    finger_scores: dict = field(default_factory=dict)
