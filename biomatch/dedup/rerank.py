"""Re-ranking stages of one shard (phase 2 of the search), as small functions over arrays.

In order (:meth:`~biomatch.dedup.shard_search.ShardSearch.rerank` lists them)::

    select_by_code      persons before the gallery-wide code cut; those before the full cut
                        are matched on every finger
    select_all          (a retrieval without code ranking) every candidate person, every finger
    add_face_only       persons only the face index found, screened like the code stage's tail
    cascade             the first round: every finger of the full persons, the
                        ``rerank_screen_fingers`` closest of the others
    screened            the persons of the first round that were only screened (their escalation
                        is decided by :func:`biomatch.decide.escalates`)
    ranked_candidates   fused scores (:func:`biomatch.decide.fuse_candidates`) -> Candidates

A candidate is a subject key (the store's integer id of a subject); ``code`` holds its per
position code scores (columns 0-10), ``full`` whether all its fingers are matched at once.
"""

from __future__ import annotations

import numpy as np

from ..decide import CandidateEvidence, DecisionParams
from .report import Candidate
from .scatter import before_cut, best_with_ties

__all__ = ["select_by_code", "select_all", "within", "add_face_only", "cascade", "screened", "ranked_candidates"]


def select_by_code(state: dict, code_cut: tuple, full_cut: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(keys, code, full)`` of the persons kept by phase 1b that sort at or before ``code_cut``."""
    if "total" in state:
        sel = np.flatnonzero(before_cut(state["total"], state["names"], code_cut))
        full = before_cut(state["total"][sel], [state["names"][i] for i in sel], full_cut)
    else:
        sel, full = np.zeros(0, np.int64), np.zeros(0, bool)
    keys = state["keys"][sel] if len(sel) else np.zeros(0, np.int64)
    code = state["table"][sel] if len(sel) else np.zeros((0, 11))
    return keys, code, full


def select_all(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(keys, code, full)`` without code ranking: the persons ``keys`` (subject keys, 0 for a
    finger that resolved to none), each matched on every finger."""
    keys = np.unique(np.asarray(keys, np.int64))
    keys = keys[keys > 0]
    return keys, np.zeros((len(keys), 11)), np.ones(len(keys), bool)


def within(keys: np.ndarray, code: np.ndarray, full: np.ndarray, n_keys: int) -> tuple:
    """Drop keys beyond the shard's maps (``n_keys``): a person removed and not yet folded."""
    keys = keys[keys < n_keys] if len(keys) else keys
    return keys, code[:len(keys)], full[:len(keys)]


def add_face_only(keys: np.ndarray, code: np.ndarray, full: np.ndarray, face_keys: np.ndarray) -> tuple:
    """Append the persons of ``face_keys`` not yet candidates, screened; returns ``(keys, code, full, n_added)``."""
    fk = face_keys[~np.isin(face_keys, keys)]
    if not len(fk):
        return keys, code, full, 0
    return (np.concatenate([keys, fk]), np.concatenate([code, np.zeros((len(fk), 11))]),
            np.concatenate([full, np.zeros(len(fk), bool)]), len(fk))


def cascade(positions: np.ndarray, code: np.ndarray, table: np.ndarray, full: np.ndarray,
            decision: DecisionParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first round of matching: ``(fid, has, first)``, each (m, f) over the probe ``positions``.

    ``fid`` the candidates' finger ids (0 where a candidate lacks the finger), ``has`` where they
    exist, ``first`` the fingers to match now: every finger of the ``full`` persons, the
    ``rerank_screen_fingers`` closest by code of the others (:class:`DecisionParams` ``rerank_*``).
    """
    fid = table[:, positions]
    has = fid > 0
    order = np.argsort(-code[:, positions], axis=1, kind="stable")  # closest codes first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(len(positions))[None, :].repeat(len(table), 0), axis=1)
    # rank among the fingers the candidate has: count fingers it has that rank before
    avail_rank = np.cumsum(np.take_along_axis(has, order, 1), axis=1) - 1
    avail_rank = np.take_along_axis(avail_rank, rank, 1)
    first = has & (full[:, None] | (avail_rank < decision.rerank_screen_fingers))
    return fid, has, first


def screened(has: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Rows matched on some but not all of their fingers in the first round."""
    return np.flatnonzero(~first.all(axis=1) & has.any(axis=1) & (first & has).any(axis=1))


def ranked_candidates(ev: CandidateEvidence, best: np.ndarray, keys: np.ndarray, positions: np.ndarray,
                      cosines: np.ndarray, names: dict) -> list:
    """The Candidates of the ``best`` scored rows, ranked by (score desc, subject id).

    ``names``: subject key -> subject id (a key without a name was removed while being scored).
    """
    out = []
    for b in best:
        i = ev.scored[b]
        sid = names.get(int(keys[i]))
        if sid is None:
            continue
        at = np.flatnonzero(ev.rows == i)
        face = bool(ev.has_face[i])
        out.append(Candidate(subject_id=sid, score=float(ev.fused[b]),
                             finger_scores={int(positions[ev.cols[r]]): float(ev.finger_scores[r]) for r in at},
                             finger_evidence={int(positions[ev.cols[r]]): float(ev.finger_evidence[r]) for r in at},
                             face_score=float(cosines[i]) if face else None,
                             face_evidence=float(ev.face_evidence[i]) if face else None))
    out.sort(key=lambda c: (-c.score, c.subject_id))
    return out


def best_rows(ev: CandidateEvidence, top: int) -> np.ndarray:
    """Indices into ``ev.scored`` of the ``top`` best fused scores, ties with the last included."""
    return best_with_ties(ev.fused, top)
