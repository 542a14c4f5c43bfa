"""Two-phase search across shards: the router's side (pure functions over small arrays).

A search visits every shard three times, so that S shards re-rank what ONE shard holding the
same data would re-rank, and give exactly its answer::

    1a scan      each shard: probe codes -> per position the nearest rows (FAISS, exhaustive);
                 returns a histogram of their Hamming distances and its row counts
       router    per position: the largest distance d such that at most ``n_rows`` rows of the
                 whole gallery lie within d                                    (:func:`row_cuts`)
    1b persons   each shard: per-person code scores from the rows within the cuts; returns its
                 best ``n_keep`` (score, subject id) pairs
       router    the gallery's ``n_keep``-th and ``rerank_full_persons``-th best persons by
                 (score desc, subject id), the ``face_candidates``-th best face similarity
                 (reported by 1a)                               (:func:`nth_person`, :func:`nth_best`)
    2  rerank    each shard: native re-ranking of ITS persons above those cuts (cascade, fusion)
       router    merge by (score desc, subject id), keep the ``top`` best

Why cuts and not counts: "the best n" depends on how ties are broken, and shards break ties by
their own row order and store keys; a cut on a value ("every row within distance d", "every
person before (score s, id x)") gives the same set whatever the partition.  Rows tied at a
position's cut are therefore all dropped (the cut keeps at most ``n_rows``); persons tied on
their code score are ordered by subject id, so exactly ``n_keep`` are re-ranked.  The one-shard gallery runs this same protocol, so S
shards and one shard give the same candidates, scores and decisions.  Total re-ranking work no
longer grows with the number of shards: the global top persons are re-ranked once, each by
the shard that holds them.

Each shard keeps the output of 1a between the calls (keyed by a query id, bounded); a shard
that lost it (a restarted actor) raises :class:`ScanLostError` and the router starts over.
"""

from __future__ import annotations

import numpy as np

from ..errors import BiomatchError

__all__ = ["ScanLostError", "row_cuts", "nth_best", "nth_person", "n_rows_for"]


class ScanLostError(BiomatchError):
    """A shard no longer holds the scan of a query (restarted between the phases): search again."""


def n_rows_for(params, counts: dict, n_valid: int) -> tuple[int, int]:
    """``(k_persons, rows per position)`` of the gallery-wide code stage.

    Parameters
    ----------
    params : FaissRetrievalParams
    counts : dict position -> active rows in the whole gallery
    n_valid : int
        Probe fingers with a valid code at positions that hold rows.
    """
    n_persons = max(counts.values(), default=0)
    k = params.k_persons(n_persons, n_valid)
    return k, params.rows_per_person * k


def row_cuts(hists: list[dict], n_rows: int) -> dict:
    """Per position, the largest distance d with at most ``n_rows`` rows within d, gallery-wide.

    ``hists``: one ``{position: int64 counts per distance}`` per shard, each counting the
    shard's nearest ``n_rows + 1`` rows (enough: a distance cut keeping at most ``n_rows`` rows
    in all keeps at most that many in any shard, whose list therefore holds all of them).
    A position with no admissible distance gets -1 (nothing kept).
    """
    total: dict = {}
    for h in hists:
        for p, c in h.items():
            c = np.asarray(c, np.int64)
            if p in total:
                n = max(len(total[p]), len(c))
                total[p] = np.pad(total[p], (0, n - len(total[p]))) + np.pad(c, (0, n - len(c)))
            else:
                total[p] = c.copy()
    cuts = {}
    for p, c in total.items():
        within = np.cumsum(c)
        ok = np.flatnonzero(within <= n_rows)
        cuts[p] = int(ok[-1]) if len(ok) else -1
    return cuts


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
