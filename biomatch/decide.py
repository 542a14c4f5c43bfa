"""Multi-finger score fusion and the DUPLICATE / REVIEW / UNIQUE decision of 1:N deduplication.

Fusion
------
1. Each native finger score ``s`` becomes *evidence* in decades, ``e(s) = -log10 FMR(s)``:
   the single-finger false match rate is read from the matcher's calibration table
   (:data:`biomatch.match.SCORE_AT_FMR`, read at run time because its scale may change) by
   piecewise-linear interpolation of ``log10 FMR`` against the score, extrapolated with the
   end slopes, clipped to ``[0, finger_evidence_max_decades]``.  Under the impostor
   hypothesis ``P(e >= x) = 10**-x``, i.e. ``e ~ Exponential(ln 10)``.
2. The ``k`` fingers compared (positions present in both probe and candidate; missing fingers
   contribute nothing and do not count) give ``E = sum(e)``.  For independent impostor fingers
   ``E ~ Gamma(k, ln 10)``, so the probability that one non-mated subject reaches ``E`` is
   ``P_k(E) = exp(-E ln10) * sum_{j<k} (E ln10)^j / j!``.
3. The fused score is ``-log10 P_k(E)`` (decades): a per-subject false match rate that
   compares fairly across candidates with different numbers of fingers.

Decision
--------
A non-mated probe searched against ``N`` subjects gets a false candidate with probability
``FPIR ~= N * FMR_subject``.  So the DUPLICATE threshold is ``log10(N / duplicate_fpir)`` and the
REVIEW threshold ``log10(N / review_fpir)`` (``N`` floored at ``gallery_size_floor`` so a tiny
gallery does not get lax thresholds).  Real fingers of one person are not independent
(shared pattern class, capture session): the fused score is then optimistic, which
``fingers_correlation_discount`` (a multiplier < 1 on the fused score) can absorb once measured.

References: Ross, Nandakumar & Jain, *Handbook of Multibiometrics* (2006), ch. 4 (score-level
fusion by likelihood ratios); ISO/IEC 19795-1 (FPIR/FNIR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import invalid

__all__ = ["DecisionParams", "Thresholds", "calibrate", "finger_evidence", "face_evidence", "fuse", "fuse_evidence", "thresholds",
           "decide", "DUPLICATE", "REVIEW", "UNIQUE"]

DUPLICATE, REVIEW, UNIQUE = "DUPLICATE", "REVIEW", "UNIQUE"
_LN10 = math.log(10.0)


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
                _calibration(self, face=name == "face_score_at_fmr")  # refuse a bad table now, not mid-search


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


def _calibration(params: DecisionParams, face: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(scores ascending, decades) of the single-finger (or face) calibration table, read now."""
    name = "face_score_at_fmr" if face else "score_at_fmr"
    if getattr(params, name) is not None:
        table = dict(getattr(params, name))
    elif face:
        from .face.match import COSINE_AT_FMR

        table = dict(COSINE_AT_FMR)
    else:
        from .match import SCORE_AT_FMR

        table = dict(SCORE_AT_FMR)
    pts = sorted((float(s), -math.log10(f)) for f, s in table.items() if s is not None and 0 < f < 1)
    if len(pts) < 2 or any(b[0] <= a[0] or b[1] <= a[1] for a, b in zip(pts, pts[1:])):
        raise invalid(name, "at least two (fmr, score) points, score increasing as fmr falls", table)
    arr = np.asarray(pts, np.float64)
    return arr[:, 0], arr[:, 1]


def finger_evidence(scores, params: DecisionParams = DecisionParams()) -> np.ndarray:
    """Single-finger evidence ``-log10 FMR(score)`` in decades, clipped to ``[0, max]``.

    Parameters
    ----------
    scores : array_like of float
        Native matcher scores.

    Returns
    -------
    ndarray of float64, same shape
    """
    return _evidence(scores, *_calibration(params), params.finger_evidence_max_decades)


def face_evidence(cosines, params: DecisionParams = DecisionParams()) -> np.ndarray:
    """Face evidence ``-log10 FMR(cosine)`` in decades, clipped to ``[0, face_evidence_max_decades]``.

    Under the impostor hypothesis it has the same law as a finger's evidence, so it fuses as
    one more independent term (see :func:`fuse_evidence`).
    """
    return _evidence(cosines, *_calibration(params, face=True), params.face_evidence_max_decades)


def _evidence(scores, xs: np.ndarray, ys: np.ndarray, cap: float) -> np.ndarray:
    s = np.asarray(scores, np.float64)
    lo_slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
    hi_slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    e = np.interp(s, xs, ys)
    e = np.where(s < xs[0], ys[0] + (s - xs[0]) * lo_slope, e)
    e = np.where(s > xs[-1], ys[-1] + (s - xs[-1]) * hi_slope, e)
    return np.clip(e, 0.0, cap)


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


def calibrate(impostor_scores, fmrs=(0.01, 0.001, 0.0001)) -> tuple:
    """A ``score_at_fmr`` table for :class:`DecisionParams` from measured single-finger impostor scores.

    Parameters
    ----------
    impostor_scores : array_like of float
        Native scores of non-mated finger pairs (need well over ``1 / min(fmrs)`` of them).
    fmrs : sequence of float
        False match rates to tabulate.

    Returns
    -------
    tuple of (fmr, score)
        The score at which the fraction of impostors scoring >= it equals each fmr.
    """
    s = np.sort(np.asarray(impostor_scores, np.float64))
    if s.size * min(fmrs) < 1:
        raise invalid("impostor_scores", f"at least {int(math.ceil(1 / min(fmrs)))} scores", s.size)
    return tuple((float(f), float(np.quantile(s, 1.0 - f))) for f in fmrs)
