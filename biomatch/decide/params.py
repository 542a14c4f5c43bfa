"""Every tunable of the 1:N decision: target error rates, evidence caps, the re-ranking cascade.

One frozen dataclass, stored as JSON in each gallery's manifest (``biomatch.params.to_json``);
its validation refuses a bad value, or a bad calibration table, when it is built rather than in
the middle of a search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import invalid

__all__ = ["DecisionParams", "calibration_table"]


@dataclass(frozen=True)
class DecisionParams:
    """Every tunable of fusion and decision (rates are fractions, not percents).

    Attributes
    ----------
    duplicate_fpir : float
        Target false positive identification rate of a DUPLICATE decision.
    review_fpir : float
        Target FPIR of "REVIEW or DUPLICATE" (a looser cut; must be >= duplicate_fpir).
    gallery_size_floor : int
        Thresholds are set for at least this many enrolled subjects.
    finger_evidence_max_decades : float
        Cap on one finger's evidence (one perfect finger cannot outweigh everything).
    fingers_correlation_discount : float
        Multiplier in (0, 1] on the fused score for correlated fingers (1 = independence).
    verify_fmr : float
        Target false match rate of :meth:`Gallery.verify` (1:1).
    max_candidates : int
        Candidates listed in a report.
    score_at_fmr : tuple of (fmr, score) pairs, optional
        Calibration table overriding :data:`biomatch.match.SCORE_AT_FMR`.
    rerank_full_persons : int
        Re-ranking cascade: the candidates ranked first by the code stage whose every common
        finger is matched at once.
    rerank_screen_fingers : int
        Every other candidate is first matched on this many fingers only (those where its
        code is closest to the probe's) ...
    face_score_at_fmr : tuple of (fmr, cosine) pairs, optional
        Face calibration table overriding :data:`biomatch.face.match.COSINE_AT_FMR`.
    face_evidence_max_decades : float
        Cap on the face's evidence.  5 decades: one beyond what the calibration set (78,000
        ORL non-mated pairs) measures, because look-alikes and twins are where faces fail;
        so a face alone can at most ask for REVIEW in a small gallery and never reaches
        DUPLICATE (>= 6 decades at the 1,000-subject floor).  A cap of 4 lost a mate in the
        chimeric benchmark (a weak finger plus a face indistinguishable, once capped, from
        the best impostor face), 5 and above none (``benchmarks/chimeric_fusion.py``).
    face_candidates : int
        Persons taken from the face index per shard (added to the fingerprint candidates
        and matched like them).
    enrol_min_quality : int
        Fingerprint quality (0-100, the template's ``quality``) below which :meth:`Gallery.enroll`
        refuses a finger with :class:`~biomatch.errors.FingerQualityError` (naming the finger
        and its score), so that the operator captures it again; 0 (default) refuses nothing.
        Searches are never refused for quality.
    rerank_escalate_decades : float
        ... and on all its remaining fingers when the fused score of those reaches this many
        decades.  A non-mated candidate escalates with probability ``10**-escalate`` (the
        fused score is a per-subject -log10 FMR), so 2.0 matches all fingers of ~1% of the
        impostor candidates; preparing a candidate finger costs ~0.5 ms, which is what
        the cascade saves (measured in ``benchmarks/dedup_scale.py``).
    """

    duplicate_fpir: float = 0.001
    review_fpir: float = 0.01
    gallery_size_floor: int = 1000
    finger_evidence_max_decades: float = 10.0
    fingers_correlation_discount: float = 1.0
    verify_fmr: float = 0.0001
    max_candidates: int = 5
    score_at_fmr: tuple | None = field(default=None)
    face_score_at_fmr: tuple | None = field(default=None)
    face_evidence_max_decades: float = 5.0
    face_candidates: int = 20
    rerank_full_persons: int = 10
    rerank_screen_fingers: int = 2
    rerank_escalate_decades: float = 2.0
    enrol_min_quality: int = 0

    def __post_init__(self):
        if isinstance(self.enrol_min_quality, bool) or not isinstance(self.enrol_min_quality, int) \
                or not 0 <= self.enrol_min_quality <= 100:
            raise invalid("enrol_min_quality", "an int in [0, 100]", self.enrol_min_quality)
        for name in ("duplicate_fpir", "review_fpir", "verify_fmr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1.0:
                raise invalid(name, "a rate in (0, 1)", v)
        if self.review_fpir < self.duplicate_fpir:
            raise invalid("review_fpir", f">= duplicate_fpir ({self.duplicate_fpir})", self.review_fpir)
        if isinstance(self.gallery_size_floor, bool) or not isinstance(self.gallery_size_floor, int) \
                or self.gallery_size_floor < 1:
            raise invalid("gallery_size_floor", "an int >= 1", self.gallery_size_floor)
        if not isinstance(self.finger_evidence_max_decades, (int, float)) or not self.finger_evidence_max_decades > 0:
            raise invalid("finger_evidence_max_decades", "a number > 0", self.finger_evidence_max_decades)
        if not isinstance(self.fingers_correlation_discount, (int, float)) \
                or not 0.0 < self.fingers_correlation_discount <= 1.0:
            raise invalid("fingers_correlation_discount", "a number in (0, 1]", self.fingers_correlation_discount)
        if isinstance(self.max_candidates, bool) or not isinstance(self.max_candidates, int) \
                or not 1 <= self.max_candidates <= 10000:
            raise invalid("max_candidates", "an int in [1, 10000]", self.max_candidates)
        for name, lo in (("rerank_full_persons", 0), ("rerank_screen_fingers", 1), ("face_candidates", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise invalid(name, f"an int >= {lo}", v)
        if isinstance(self.rerank_escalate_decades, bool) or not isinstance(self.rerank_escalate_decades, (int, float)) \
                or not 0.0 <= self.rerank_escalate_decades < 1e6:
            raise invalid("rerank_escalate_decades", "a number of decades >= 0", self.rerank_escalate_decades)
        if isinstance(self.face_evidence_max_decades, bool) \
                or not isinstance(self.face_evidence_max_decades, (int, float)) \
                or not 0.0 <= self.face_evidence_max_decades <= 1e3:
            raise invalid("face_evidence_max_decades", "a number of decades in [0, 1000]",
                          self.face_evidence_max_decades)
        for name in ("score_at_fmr", "face_score_at_fmr"):
            if getattr(self, name) is not None:
                try:
                    table = tuple((float(a), float(b)) for a, b in getattr(self, name))
                except (TypeError, ValueError):
                    raise invalid(name, "a sequence of (fmr, score) pairs", getattr(self, name)) from None
                object.__setattr__(self, name, table)
                calibration_table(table, name)  # refuse a bad table now, not mid-search


def calibration_table(table: dict | tuple, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(scores ascending, decades)`` of a ``{fmr: score}`` calibration table, checked.

    Raises
    ------
    InvalidInputError
        Fewer than two points, or a score that does not rise as the FMR falls.
    """
    table = dict(table)
    pts = sorted((float(s), -math.log10(f)) for f, s in table.items() if s is not None and 0 < f < 1)
    if len(pts) < 2 or any(b[0] <= a[0] or b[1] <= a[1] for a, b in zip(pts, pts[1:])):
        raise invalid(name, "at least two (fmr, score) points, score increasing as fmr falls", table)
    arr = np.asarray(pts, np.float64)
    return arr[:, 0], arr[:, 1]
