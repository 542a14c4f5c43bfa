"""Fusion: the evidence of several fingers (and a face) as one per-subject score in decades.

The ``k`` terms compared (positions present in both probe and candidate, plus the face when
both have one; missing ones contribute nothing and do not count) give ``E = sum(e)``.  For
independent impostor terms ``E ~ Gamma(k, ln 10)``, so the probability that one non-mated
subject reaches ``E`` is ``P_k(E) = exp(-E ln10) * sum_{j<k} (E ln10)^j / j!``, and the fused
score is ``-log10 P_k(E)``: a per-subject false match rate that compares fairly across
candidates with different numbers of fingers.  Real fingers of one person are not independent
(shared pattern class, capture session): the fused score is then optimistic, which
``fingers_correlation_discount`` (a multiplier < 1) can absorb once measured.

Reference: Ross, Nandakumar & Jain, *Handbook of Multibiometrics* (2006), ch. 4 (score-level
fusion by likelihood ratios).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .evidence import face_evidence, finger_evidence
from .params import DecisionParams

__all__ = ["fuse_evidence", "fuse", "CandidateEvidence", "fuse_candidates", "escalates"]

_LN10 = math.log(10.0)


def fuse_evidence(total_decades, n_fingers, params: DecisionParams = DecisionParams()) -> np.ndarray:
    """Fused score ``-log10 P_k(E)`` (decades) from summed evidence ``E`` over ``k`` fingers.

    Vectorised over subjects; ``k = 0`` gives 0.
    """
    total = np.atleast_1d(np.asarray(total_decades, np.float64))
    k = np.atleast_1d(np.asarray(n_fingers, np.int64))
    x = total * _LN10
    out = np.zeros(np.broadcast(total, k).shape, np.float64)
    kmax = int(k.max()) if k.size else 0
    # log sum_{j<k} x^j / j!, accumulated term by term in log space (x may be 0).
    with np.errstate(divide="ignore"):
        logx = np.log(x)
    terms = np.full(out.shape, -np.inf)
    acc = np.full(out.shape, -np.inf)
    for j in range(kmax):
        terms = np.zeros(out.shape) if j == 0 else terms + logx - math.log(j)
        acc = np.where(j < k, np.logaddexp(acc, terms), acc)
    log_p = np.minimum(-x + acc, 0.0)
    out = np.where(k > 0, -log_p / _LN10, 0.0) * params.fingers_correlation_discount
    return out


def fuse(finger_scores: dict, params: DecisionParams = DecisionParams()) -> float:
    """Fused score (decades) of one candidate from ``{position: native score}``."""
    vals = list(finger_scores.values())
    if not vals:
        return 0.0
    return float(fuse_evidence(finger_evidence(vals, params).sum(), len(vals), params)[0])


def escalates(scores: np.ndarray, params: DecisionParams) -> np.ndarray:
    """Which screened candidates earn a match of all their fingers (the re-ranking cascade).

    Parameters
    ----------
    scores : ndarray (m, f) of float64
        Native scores of the fingers matched so far, NaN where not matched.

    Returns
    -------
    ndarray (m,) of bool
        The fused score of the matched fingers reaches ``rerank_escalate_decades``.  A non-mated
        candidate escalates with probability ``10**-rerank_escalate_decades``.
    """
    ev = np.where(np.isnan(scores), 0.0, finger_evidence(np.nan_to_num(scores), params))
    partial = fuse_evidence(ev.sum(1), (~np.isnan(scores)).sum(1), params)
    return partial >= params.rerank_escalate_decades


@dataclass(frozen=True)
class CandidateEvidence:
    """The evidence of ``m`` candidates and their fused scores (what :func:`fuse_candidates` returns).

    Attributes
    ----------
    rows, cols : ndarray of int64
        Candidate row and finger column of every matched finger (``np.nonzero`` order).
    finger_scores, finger_evidence : ndarray of float64
        Their native scores and evidence (decades), aligned with ``rows``.
    has_face : ndarray (m,) of bool
    face_evidence : ndarray (m,) of float64
        0 where ``has_face`` is False.
    scored : ndarray of int64
        Candidates with at least one term.
    fused : ndarray of float64
        Their fused scores (decades), aligned with ``scored``.
    """

    rows: np.ndarray
    cols: np.ndarray
    finger_scores: np.ndarray
    finger_evidence: np.ndarray
    has_face: np.ndarray
    face_evidence: np.ndarray
    scored: np.ndarray
    fused: np.ndarray


def fuse_candidates(scores: np.ndarray, cosines: np.ndarray, params: DecisionParams) -> CandidateEvidence:
    """Evidence and fused score of each candidate from its finger scores and face cosine.

    Parameters
    ----------
    scores : ndarray (m, f) of float64
        Native finger scores, NaN where a finger was not matched.
    cosines : ndarray (m,) of float64
        Face cosine, NaN where either side has no face.
    """
    done = ~np.isnan(scores)
    has_face = ~np.isnan(cosines)
    rows, cols = np.nonzero(done)
    sc = scores[done]
    ev = finger_evidence(sc, params)
    face_ev = np.where(has_face, face_evidence(np.nan_to_num(cosines), params), 0.0)
    total = np.bincount(rows, weights=ev, minlength=len(scores)) + face_ev
    count = np.bincount(rows, minlength=len(scores)) + has_face
    scored = np.flatnonzero(count > 0)
    fused = fuse_evidence(total[scored], count[scored], params)
    return CandidateEvidence(rows=rows, cols=cols, finger_scores=sc, finger_evidence=ev, has_face=has_face,
                             face_evidence=face_ev, scored=scored, fused=fused)
