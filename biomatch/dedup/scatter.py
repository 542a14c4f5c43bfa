"""Two-phase search across shards: the router's side (pure functions over small arrays).

A search visits every shard three times, so that S shards re-rank what ONE shard holding the
same data would re-rank, and give exactly its answer::

    1a scan      each shard: every person's code score, summed over the probe's positions (an
                 exhaustive pass over the codes); keeps its best ``max(k_persons, top)``
       router    ``k_persons`` from the gallery-wide row counts     (:func:`k_persons_for`)
    1b persons   each shard: its best ``n_keep`` (score, subject id) pairs
       router    the gallery's ``n_keep``-th and ``rerank_full_persons``-th best persons by
                 (score desc, subject id), the ``face_candidates``-th best face similarity
                 (reported by 1a)                               (:func:`nth_person`, :func:`nth_best`)
    2  rerank    each shard: native re-ranking of ITS persons above those cuts (cascade, fusion)
       router    merge by (score desc, subject id), keep the ``top`` best

Why cuts and not counts: "the best n" depends on how ties are broken, and shards break ties by
their own store keys; a cut on a value ("every person before (score s, id x)") gives the same
set whatever the partition.  A person's code score is the same on any shard (its fingers live in
one shard, summed in one order), and persons tied on it are ordered by subject id, so exactly
``n_keep`` are re-ranked.  The one-shard gallery runs this same protocol, so S shards and one
shard give the same candidates, scores and decisions.  Total re-ranking work does not grow with
the number of shards: the global top persons are re-ranked once, each by the shard that holds
them.

Each shard keeps the output of 1a between the calls (keyed by a query id, bounded); a shard
that lost it (a restarted actor) raises :class:`ScanLostError` and the router starts over.
"""

from __future__ import annotations

import numpy as np

from ..errors import BiomatchError

__all__ = ["ScanLostError", "nth_best", "nth_person", "k_persons_for"]


class ScanLostError(BiomatchError):
    """A shard no longer holds the scan of a query (restarted between the phases): search again."""


def k_persons_for(params, counts: dict, n_valid: int) -> int:
    """``k_persons`` of the gallery-wide code stage.

    Parameters
    ----------
    params : FaissRetrievalParams
    counts : dict position -> active rows in the whole gallery
    n_valid : int
        Probe fingers with a valid code at positions that hold rows.
    """
    return params.k_persons(max(counts.values(), default=0), n_valid)


def nth_best(lists: list, n: int) -> float:
    """The ``n``-th largest value over all shards' lists (-inf when fewer, or n = 0: keep all / none).

    Each list must hold its shard's ``n`` best values (ties at its own cut included).
    """
    if n <= 0:
        return float("inf")
    vals = np.concatenate([np.asarray(v, np.float64) for v in lists]) if lists else np.zeros(0)
    if len(vals) < n:
        return float("-inf")
    return float(np.partition(vals, len(vals) - n)[len(vals) - n])


def nth_person(lists: list, n: int) -> tuple[float, str]:
    """The ``n``-th best person over all shards by (code score desc, subject id asc).

    ``lists``: per shard, ``(score, subject_id)`` pairs holding its ``n`` best (ties at its own
    cut included).  Returns the cut ``(score, subject_id)``: a person is selected when it sorts
    at or before it (:func:`before_cut`); ``(-inf, "")`` keeps all (fewer than n), ``(inf, "")``
    none (n <= 0).
    """
    if n <= 0:
        return float("inf"), ""
    pairs = sorted((-float(s), str(name)) for lst in lists for s, name in lst)
    if len(pairs) < n:
        return float("-inf"), ""
    s, name = pairs[n - 1]
    return -s, name


def before_cut(scores: np.ndarray, names: list, cut: tuple[float, str]) -> np.ndarray:
    """Mask of the persons sorting at or before ``cut`` by (score desc, subject id asc); a person
    tied on the cut's score without a known id is not selected."""
    s, name = cut
    scores = np.asarray(scores, np.float64)
    out = scores > s
    tied = np.flatnonzero(scores == s)
    for i in tied:
        out[i] = names[i] is not None and names[i] <= name
    return out


def best_with_ties(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest ``values`` plus every value tied with the n-th (any order)."""
    values = np.asarray(values)
    if n <= 0 or len(values) == 0:
        return np.zeros(0, np.int64)
    if n >= len(values):
        return np.arange(len(values))
    nth = np.partition(values, len(values) - n)[len(values) - n]
    return np.flatnonzero(values >= nth)
