"""The router's side of a search: the two-phase scatter-gather over every shard, merged and decided.

The calls and the cuts between them are those of :mod:`biomatch.dedup.scatter`; the shards are
reached through ``fan`` (in turn for an embedded gallery, in parallel over Ray actors for a
distributed one), each receiving one message of :mod:`biomatch.dedup.protocol`.  The verdict
is :func:`biomatch.decide.verdict` on the best merged candidate.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Callable

from .. import decide
from .protocol import Persons, Rerank, RerankReply, Scan, ScanReply, ShardCall
from .report import DedupReport
from .scatter import ScanLostError, k_persons_for, nth_best, nth_person

__all__ = ["scatter_search"]

log = logging.getLogger(__name__)

_ATTEMPTS = 3
"""Searches started over when a shard lost a query's scan (an actor restarted between phases)."""

_EVERYONE = (float("-inf"), "")  # a person cut that keeps every person (no code ranking)


def scatter_search(fan: Callable[[ShardCall], list], counts_hint: dict, d: decide.DecisionParams,
                   subject_id: str, positions: tuple, scan_probe, rerank_probe, top: int, face,
                   timings: dict) -> tuple[DedupReport, dict]:
    """The two-phase search over every shard, merged and decided.

    Parameters
    ----------
    fan : callable(message) -> list of replies, in shard order
    counts_hint : dict position -> int
        The gallery's code rows per position as this router believes them.
    scan_probe, rerank_probe
        What the shards' Scan and Rerank carry (Templates, prepared templates, or a Ray
        reference to the Templates).
    timings : dict
        Timings measured before (ms); the search's are added.

    Returns
    -------
    (DedupReport, the gallery's code rows per position as the shards reported them)
    """
    face_k = d.face_candidates if face is not None else 0
    t0 = time.perf_counter()
    for attempt in range(_ATTEMPTS):
        qid = uuid.uuid4().hex
        try:
            scans, counts, code_cut, full_cut = _code_stage(fan, qid, counts_hint, d, scan_probe, top, face, face_k)
            face_cut = nth_best([sc.face_scores for sc in scans], face_k)
            t1 = time.perf_counter()
            results = fan(Rerank(qid, rerank_probe, d, top, code_cut, full_cut, face_cut, face))
            break
        except ScanLostError:
            if attempt == _ATTEMPTS - 1:
                raise
            log.warning("a shard lost the scan of a query (restarted?); searching again")
    t2 = time.perf_counter()
    timings = dict(timings, retrieve=sum(sc.ms for sc in scans), scatter_gather=(t2 - t0) * 1e3,
                   code_stage=(t1 - t0) * 1e3,
                   slowest_shard=max(sum(r.timings.as_dict().values()) for r in results) + max(sc.ms for sc in scans))
    return _merged(results, scans, d, subject_id, positions, top, timings), counts


def _code_stage(fan, qid: str, counts_hint: dict, d: decide.DecisionParams, scan_probe, top: int, face,
                face_k: int) -> tuple[list[ScanReply], dict, tuple, tuple]:
    """Phase 1: scans, the persons; ``(scans, counts, code_cut, full_cut)``."""
    scans = fan(Scan(qid, scan_probe, counts_hint, face, face_k, top))
    counts = _summed([sc.counts for sc in scans])
    if not scans[0].two_phase:  # no code ranking: every person, every finger
        return scans, counts, _EVERYONE, _EVERYONE
    valid = set(scans[0].valid)
    n_keep = max(top, k_persons_for(scans[0].params, counts, sum(1 for p in valid if counts.get(p))))
    if any(sc.fetched < n_keep and sc.scored > sc.fetched for sc in scans):
        # the hint was stale: a shard kept fewer persons than it scored and than the search needs
        scans = fan(Scan(qid, scan_probe, counts, face, face_k, top))
    lists = [r.best for r in fan(Persons(qid, n_keep))]
    return scans, counts, nth_person(lists, n_keep), nth_person(lists, d.rerank_full_persons)


def _summed(dicts: list[dict]) -> dict:
    out: dict = {}
    for c in dicts:
        for key, v in c.items():
            out[key] = out.get(key, 0) + v
    return out


def _merged(results: list[RerankReply], scans: list[ScanReply], d: decide.DecisionParams, subject_id: str,
            positions: tuple, top: int, timings: dict) -> DedupReport:
    """The shards' candidates merged by (score desc, subject id), the ``top`` best, and the verdict."""
    cands = [c for r in results for c in r.candidates]
    timings = dict(timings)
    for r in results:
        for key, v in r.timings.as_dict().items():
            timings[key] = timings.get(key, 0.0) + v
    work = _summed([r.work.as_dict() for r in results])
    cands.sort(key=lambda c: (-c.score, c.subject_id))
    cands = cands[:top]
    n = sum(sc.n_subjects for sc in scans)
    decision, th = decide.verdict(cands[0].score if cands else None, n, d)
    return DedupReport(subject_id=subject_id, decision=decision, candidates=tuple(cands),
                       thresholds=th.as_dict(), positions_used=positions, gallery_size=n,
                       timings_ms=timings, work=work)
