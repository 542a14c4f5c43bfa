"""The verdict: DUPLICATE / REVIEW / UNIQUE thresholds from target error rates, and the 1:1 rule.

A non-mated probe searched against ``N`` subjects gets a false candidate with probability
``FPIR ~= N * FMR_subject``.  So the DUPLICATE threshold is ``log10(N / duplicate_fpir)`` and the
REVIEW threshold ``log10(N / review_fpir)`` (``N`` floored at ``gallery_size_floor`` so a tiny
gallery does not get lax thresholds); a 1:1 verification accepts at ``-log10(verify_fmr)``.

Reference: ISO/IEC 19795-1 (FPIR/FNIR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .fusion import fuse
from .params import DecisionParams

__all__ = ["DUPLICATE", "REVIEW", "UNIQUE", "Thresholds", "thresholds", "decide", "verdict", "refused",
           "verify_threshold", "verify"]

DUPLICATE, REVIEW, UNIQUE = "DUPLICATE", "REVIEW", "UNIQUE"


@dataclass(frozen=True)
class Thresholds:
    """Fused-score thresholds (decades) and the rates they stand for."""

    duplicate_score: float
    review_score: float
    duplicate_fpir: float
    review_fpir: float
    gallery_size: int

    def as_dict(self) -> dict:
        return dict(duplicate_score=self.duplicate_score, review_score=self.review_score,
                    duplicate_fpir=self.duplicate_fpir, review_fpir=self.review_fpir,
                    gallery_size=self.gallery_size)


def thresholds(gallery_size: int, params: DecisionParams = DecisionParams()) -> Thresholds:
    """DUPLICATE and REVIEW thresholds (decades) for a gallery of ``gallery_size`` subjects."""
    n = max(int(gallery_size), params.gallery_size_floor)
    return Thresholds(duplicate_score=math.log10(n / params.duplicate_fpir),
                      review_score=math.log10(n / params.review_fpir),
                      duplicate_fpir=params.duplicate_fpir, review_fpir=params.review_fpir, gallery_size=n)


def decide(best_score: float, th: Thresholds) -> str:
    """Decision for the best candidate's fused score."""
    if best_score >= th.duplicate_score:
        return DUPLICATE
    if best_score >= th.review_score:
        return REVIEW
    return UNIQUE


def verdict(best_score: float | None, gallery_size: int, params: DecisionParams) -> tuple[str, Thresholds]:
    """``(decision, thresholds)`` of a search whose best candidate scored ``best_score`` (None: no candidate)."""
    th = thresholds(gallery_size, params)
    return decide(0.0 if best_score is None else best_score, th), th


def refused(decision: str, accept_review: bool) -> bool:
    """Whether an enrolment with this decision is kept out of the gallery."""
    return decision == DUPLICATE or (decision == REVIEW and not accept_review)


def verify_threshold(params: DecisionParams) -> float:
    """Fused score (decades) a 1:1 comparison must reach: ``-log10(verify_fmr)``."""
    return -float(math.log10(params.verify_fmr))


def verify(finger_scores: dict, params: DecisionParams) -> tuple[bool, float, float]:
    """``(match, fused score, threshold)`` of a 1:1 comparison from ``{position: native score}``."""
    score = fuse(finger_scores, params)
    threshold = verify_threshold(params)
    return bool(finger_scores) and score >= threshold, score, threshold
