"""Identification (1:N search) accuracy: CMC, rank-k, FNIR at FPIR, hit rate vs penetration.

Input shapes
------------
Every function works on a :class:`SearchOutcomes`, the per-search summary of a set of
1:N searches, which can be built from two forms:

- *Candidate rows* (:func:`outcomes_from_rows`, the CSV form of
  ``biomatch evaluate identification``): one row per (probe, candidate) with the score
  and a 0/1 ``mated`` flag (1 when the candidate is the probe's true identity). A probe
  is a *mated search* when one of its rows is mated, or, for truncated candidate lists
  (top-L), when its ``probe_mated`` flag says its identity is enrolled.
- *A full score matrix* (:func:`outcomes_from_matrix`): ``scores[p, j]`` of probe ``p``
  against gallery entry ``j`` and ``mate[p]``, the gallery index of the probe's mate or
  ``-1`` for a non-mated search.

Conventions
-----------
- Ranks are 1-based. Ties count against the mate: its rank is 1 + the number of
  non-mated candidates scoring ``>=`` its score (a system that returns tied candidates
  in an arbitrary order cannot claim the better rank). With several mated candidates
  (several enrolments of one identity) the best-scoring one counts.
- A mate missing from a (truncated) candidate list has rank 0 ("not found") and score
  ``-inf``; an empty candidate list of a non-mated search has top score ``-inf``.
- Open-set rates follow ISO/IEC 19795-1 and NIST IREX/FRVT: at threshold ``T`` and
  rank ``R``::

      FPIR(T)    = #{non-mated searches whose top score >= T} / K
      FNIR(T, R) = #{mated searches whose mate is not at rank <= R with score >= T} / M

- Hit rate at penetration ``p`` (rank-based filtering, gallery of ``N``): the share of
  mated searches whose mate is within the first ``floor(p * N)`` candidates, i.e. the
  CMC at rank ``floor(p * N)`` (0 when that is 0: never searching more than ``p``).

All functions are pure and thread-safe; memory O(number of searches) (the matrix form
O(P x N) for its input only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import invalid
from .metrics import _check_rate, check_labels

__all__ = [
    "SearchOutcomes",
    "outcomes_from_rows",
    "outcomes_from_matrix",
    "cmc",
    "rank_k",
    "fpir_fnir_curve",
    "fnir_at_fpir",
    "penetration_curve",
    "hit_rate_at_penetration",
    "hit_penetration_by_threshold",
]


@dataclass(frozen=True)
class SearchOutcomes:
    """Per-search summary of 1:N searches (see the module docstring).

    Attributes
    ----------
    mate_rank : ndarray of int64, shape (M,)
        1-based rank of the mate in each mated search; 0 when it is not in the list.
    mate_score : ndarray of float64, shape (M,)
        Score of the mate; ``-inf`` when it is not in the list.
    nonmated_top_score : ndarray of float64, shape (K,)
        Highest candidate score of each non-mated search; ``-inf`` for an empty list.
    gallery_size : int or None
        Number of enrolled entries ``N`` (needed for penetration rates).
    """

    mate_rank: np.ndarray
    mate_score: np.ndarray
    nonmated_top_score: np.ndarray
    gallery_size: int | None = None

    def __post_init__(self):
        r = np.asarray(self.mate_rank)
        s = np.asarray(self.mate_score, dtype=np.float64)
        t = np.asarray(self.nonmated_top_score, dtype=np.float64)
        if r.ndim != 1 or not np.issubdtype(r.dtype, np.integer):
            raise invalid("mate_rank", "a 1-d integer array", f"{r.dtype} array of shape {r.shape}")
        if (r < 0).any():
            raise invalid("mate_rank", "ranks >= 1, or 0 for a mate not found", int(r.min()))
        if s.shape != r.shape:
            raise invalid("mate_score.shape", f"{r.shape} like mate_rank", s.shape)
        if t.ndim != 1:
            raise invalid("nonmated_top_score.shape", "a 1-d array", t.shape)
        for name, a in (("mate_score", s), ("nonmated_top_score", t)):
            if np.isnan(a).any() or (a == np.inf).any():
                raise invalid(name, "finite scores or -inf (absent)", "NaN or +inf")
        if ((r == 0) != (s == -np.inf)).any():
            raise invalid("mate_score", "-inf exactly where mate_rank is 0", "a mismatch")
        n = self.gallery_size
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise invalid("gallery_size", "an int >= 1 or None", n)
            if r.size and r.max() > n:
                raise invalid("gallery_size", f">= the largest mate rank {int(r.max())}", n)
        object.__setattr__(self, "mate_rank", r.astype(np.int64))
        object.__setattr__(self, "mate_score", s)
        object.__setattr__(self, "nonmated_top_score", t)

    @property
    def n_mated(self) -> int:
        return int(self.mate_rank.size)

    @property
    def n_nonmated(self) -> int:
        return int(self.nonmated_top_score.size)


def outcomes_from_rows(probe, score, mated, probe_mated=None, gallery_size: int | None = None) -> SearchOutcomes:
    """Summarise candidate rows (one per probe x candidate) into :class:`SearchOutcomes`.

    Parameters
    ----------
    probe : array_like, shape (n,)
        Probe id of each row (any hashable values: str or int).
    score : array_like of float, shape (n,)
        Candidate score (higher = more similar); finite.
    mated : array_like of {0, 1}, shape (n,)
        1 when the candidate is the probe's true identity.
    probe_mated : array_like of {0, 1}, shape (n,), optional
        1 on every row of a probe whose identity is enrolled; needed when candidate
        lists are truncated, so that a mate missing from the list counts as a miss
        (rank 0) rather than turning the search into a non-mated one. Default: a probe
        is mated iff one of its rows is.
    gallery_size : int, optional
        ``N``, for penetration rates.

    Raises
    ------
    InvalidInputError
        Empty or misaligned arrays, NaN scores, flags other than 0/1, a probe with
        inconsistent ``probe_mated`` flags, or a mated row of a probe flagged non-mated.
    """
    from .metrics import check_scores

    s = check_scores(score, "score")
    p = np.asarray(probe)
    if p.shape != s.shape:
        raise invalid("probe.shape", f"{s.shape} like score", p.shape)
    m = check_labels(mated, "mated", s.size)
    _, inv = np.unique(p, return_inverse=True)
    inv = inv.reshape(-1)
    n_probes = int(inv.max()) + 1
    has_mate = np.bincount(inv, weights=m, minlength=n_probes) > 0
    if probe_mated is None:
        is_mated = has_mate
    else:
        pm = check_labels(probe_mated, "probe_mated", s.size)
        lo = np.bincount(inv, weights=pm, minlength=n_probes)
        cnt = np.bincount(inv, minlength=n_probes)
        mixed = (lo > 0) & (lo < cnt)
        if mixed.any():
            raise invalid("probe_mated", "one value on every row of a probe",
                          f"both 0 and 1 for probe {p[np.flatnonzero(inv == np.flatnonzero(mixed)[0])[0]]!r}")
        is_mated = lo > 0
        wrong = has_mate & ~is_mated
        if wrong.any():
            raise invalid("probe_mated", "1 for a probe with a mated row",
                          f"0 for probe {p[np.flatnonzero(inv == np.flatnonzero(wrong)[0])[0]]!r}")
    best_mate = np.full(n_probes, -np.inf)
    np.maximum.at(best_mate, inv[m], s[m])
    top = np.full(n_probes, -np.inf)
    np.maximum.at(top, inv, s)
    # Pessimistic ties: non-mated candidates scoring >= the mate rank before it.
    ahead = np.bincount(inv, weights=(~m) & (s >= best_mate[inv]), minlength=n_probes).astype(np.int64)
    rank = np.where(has_mate, 1 + ahead, 0)
    return SearchOutcomes(rank[is_mated], best_mate[is_mated], top[~is_mated], gallery_size)


def outcomes_from_matrix(scores, mate) -> SearchOutcomes:
    """Summarise a full score matrix into :class:`SearchOutcomes` (``gallery_size = N``).

    Parameters
    ----------
    scores : array_like of float, shape (P, N)
        Score of probe ``p`` against gallery entry ``j``; finite.
    mate : array_like of int, shape (P,)
        Gallery index of each probe's mate, or ``-1`` for a non-mated search.
    """
    s = np.asarray(scores, dtype=np.float64) if not isinstance(scores, np.ndarray) else scores.astype(np.float64)
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] == 0:
        raise invalid("scores.shape", "(P, N) with P, N >= 1", s.shape)
    if not np.isfinite(s).all():
        raise invalid("scores", "finite scores (no NaN or infinity)", "a non-finite value")
    mt = np.asarray(mate)
    if mt.shape != (s.shape[0],) or not np.issubdtype(mt.dtype, np.integer):
        raise invalid("mate", f"an int array of shape ({s.shape[0]},)", f"{mt.dtype} array of shape {mt.shape}")
    if ((mt < -1) | (mt >= s.shape[1])).any():
        raise invalid("mate", f"gallery indices in [0, {s.shape[1]}) or -1", mt[(mt < -1) | (mt >= s.shape[1])][0].item())
    is_m = mt >= 0
    sm = s[is_m]
    ms = sm[np.arange(sm.shape[0]), mt[is_m]]
    rank = (sm >= ms[:, None]).sum(axis=1)  # the mate itself counts once: 1 + non-mates >= it
    return SearchOutcomes(rank.astype(np.int64), ms, s[~is_m].max(axis=1) if (~is_m).any() else np.empty(0),
                          s.shape[1])


def _need_mated(o: SearchOutcomes) -> None:
    if not isinstance(o, SearchOutcomes):
        raise invalid("outcomes", "a SearchOutcomes", type(o).__name__)
    if o.n_mated == 0:
        raise invalid("outcomes", "at least one mated search", "none")


def _check_rank(k: object, name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise invalid(name, "an int >= 1", k)
    return int(k)


def cmc(outcomes: SearchOutcomes, max_rank: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative match characteristic: the share of mated searches with the mate at rank <= k.

    Parameters
    ----------
    outcomes : SearchOutcomes
    max_rank : int, optional
        Last rank; default the gallery size, else the largest observed rank.

    Returns
    -------
    ranks : ndarray of int64, shape (R,)
        ``1 .. R``.
    hit_rate : ndarray of float64, shape (R,)
        Non-decreasing, in [0, 1]. Missed mates (rank 0) never count.

    Examples
    --------
    >>> o = SearchOutcomes(np.array([1, 2, 0, 1]), np.array([.9, .5, -np.inf, .7]), np.array([]))
    >>> cmc(o, 3)[1].tolist()
    [0.5, 0.75, 0.75]
    """
    _need_mated(outcomes)
    r = outcomes.mate_rank
    R = max_rank if max_rank is not None else (outcomes.gallery_size or max(int(r.max()), 1))
    R = _check_rank(R, "max_rank")
    counts = np.bincount(r[(r >= 1) & (r <= R)], minlength=R + 1)[1:]
    return np.arange(1, R + 1, dtype=np.int64), np.cumsum(counts) / r.size


def rank_k(outcomes: SearchOutcomes, k: int = 1) -> float:
    """Identification rate at rank ``k`` (rank-1 by default): the CMC at ``k``."""
    _need_mated(outcomes)
    k = _check_rank(k, "k")
    r = outcomes.mate_rank
    return float(((r >= 1) & (r <= k)).sum() / r.size)


@dataclass(frozen=True)
class OpenSetCurve:
    """FPIR and FNIR at every threshold where either can change.

    Attributes
    ----------
    thresholds : ndarray of float64, shape (k,)
        Increasing: distinct finite observed scores, then ``+inf``.
    fpir, fnir : ndarray of float64, shape (k,)
        ``fpir`` non-increasing, ``fnir`` non-decreasing.
    """

    thresholds: np.ndarray
    fpir: np.ndarray
    fnir: np.ndarray


def fpir_fnir_curve(outcomes: SearchOutcomes, max_rank: int | None = None) -> OpenSetCurve:
    """Open-set FPIR(T) and FNIR(T, R) (module docstring) at every useful threshold.

    Needs at least one mated and one non-mated search. ``max_rank`` (``R``) defaults
    to no rank limit (any rank in the list counts).
    """
    _need_mated(outcomes)
    if outcomes.n_nonmated == 0:
        raise invalid("outcomes", "at least one non-mated search (FPIR is undefined without)", "none")
    R = None if max_rank is None else _check_rank(max_rank, "max_rank")
    found = outcomes.mate_rank >= 1
    if R is not None:
        found &= outcomes.mate_rank <= R
    ms = np.sort(np.where(found, outcomes.mate_score, -np.inf))
    nt = np.sort(outcomes.nonmated_top_score)
    finite = np.concatenate([ms[np.isfinite(ms)], nt[np.isfinite(nt)]])
    t = np.append(np.unique(finite), np.inf)
    fpir = (nt.size - np.searchsorted(nt, t, side="left")) / nt.size
    fnir = np.searchsorted(ms, t, side="left") / ms.size
    return OpenSetCurve(t, fpir, fnir)


def fnir_at_fpir(outcomes: SearchOutcomes, fpir: float, max_rank: int | None = None) -> float:
    """Lowest FNIR over thresholds with FPIR <= ``fpir`` (e.g. 0.01).

    Examples
    --------
    >>> o = SearchOutcomes(np.array([1, 1, 2]), np.array([.9, .4, .8]), np.array([.5, .3]))
    >>> fnir_at_fpir(o, 0.0), fnir_at_fpir(o, 0.5)
    (0.3333333333333333, 0.0)
    """
    c = fpir_fnir_curve(outcomes, max_rank)
    target = _check_rate(fpir, "fpir")
    return float(c.fnir[c.fpir <= target + 1e-12].min())


def penetration_curve(outcomes: SearchOutcomes) -> tuple[np.ndarray, np.ndarray]:
    """Hit rate against penetration rate for rank-based filtering (keep the top ``k`` of ``N``).

    Returns
    -------
    penetration : ndarray of float64, shape (N,)
        ``k / N`` for ``k = 1 .. N``.
    hit_rate : ndarray of float64, shape (N,)
        The CMC at rank ``k``.
    """
    _need_mated(outcomes)
    n = outcomes.gallery_size
    if n is None:
        raise invalid("outcomes.gallery_size", "the gallery size N (needed for penetration rates)", None)
    ranks, hit = cmc(outcomes, n)
    return ranks / n, hit


def hit_rate_at_penetration(outcomes: SearchOutcomes, penetration: float) -> float:
    """Hit rate when the first ``floor(penetration * N)`` candidates are kept (0 if none)."""
    _need_mated(outcomes)
    n = outcomes.gallery_size
    if n is None:
        raise invalid("outcomes.gallery_size", "the gallery size N (needed for penetration rates)", None)
    k = int(np.floor(_check_rate(penetration, "penetration") * n + 1e-9))
    return 0.0 if k == 0 else rank_k(outcomes, k)


def hit_penetration_by_threshold(scores, mate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hit rate against penetration rate for threshold-based filtering (keep scores >= ``t``).

    Parameters
    ----------
    scores : array_like of float, shape (P, N)
        Every probe against every gallery entry; finite.
    mate : array_like of int, shape (P,)
        Gallery index of each probe's mate, or ``-1`` (non-mated probes count in the
        penetration only).

    Returns
    -------
    thresholds : ndarray of float64, shape (k,)
        Distinct scores, increasing, then ``+inf``.
    penetration : ndarray of float64, shape (k,)
        Mean over all probes of the share of the gallery scoring ``>= t``.
    hit_rate : ndarray of float64, shape (k,)
        Share of mated probes whose mate scores ``>= t``.
    """
    o = outcomes_from_matrix(scores, mate)  # validates
    _need_mated(o)
    s = np.asarray(scores, dtype=np.float64)
    flat = np.sort(s.ravel())
    t = np.append(np.unique(flat), np.inf)
    pen = (flat.size - np.searchsorted(flat, t, side="left")) / flat.size
    ms = np.sort(o.mate_score)
    hit = (ms.size - np.searchsorted(ms, t, side="left")) / ms.size
    return t, pen, hit
