"""A shard's side of the two-phase search: scan, persons, re-rank (see :mod:`biomatch.dedup.scatter`).

Each call answers one message of :mod:`biomatch.dedup.protocol`; the state of a query between
the calls is kept under its id (bounded: a router that vanishes leaves at most one behind).
The re-ranking is the list of stages of :mod:`biomatch.dedup.rerank`, with the evidence,
fusion and escalation rule of :mod:`biomatch.decide`.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import decide
from ..match import FingerprintMatcher, PreparedTemplate, prepare
from . import rerank as stages
from .protocol import Persons, PersonsReply, Rerank, RerankReply, RerankTimings, RerankWork, Scan, ScanReply
from .scatter import ScanLostError, best_with_ties, k_persons_for

__all__ = ["ShardSearch"]


class ShardSearch:
    """The search half of :class:`~biomatch.dedup.shard.Shard` (a mixin over its state)."""

    def _pool(self):
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.spec.n_threads, thread_name_prefix="biomatch-prepare")
            return self._executor

    def _prepared(self, fids: np.ndarray) -> list:
        """Prepared templates of ``fids`` (in order): from the cache, else read and prepared."""
        out = [self._cache.get(int(f)) for f in fids]
        missing = [int(f) for f, pt in zip(fids, out) if pt is None]
        if missing:
            with self._lock:
                blobs = self._store.templates_by_ids(missing)
            todo = [f for f in missing if blobs.get(f) is not None]  # None: removed meanwhile
            make = lambda f: prepare(self._decode_stored(f, blobs[f]), self._params)  # noqa: E731
            if self.spec.n_threads > 1 and len(todo) >= 16:
                # the native prepare releases the GIL: threads prepare in parallel
                made = dict(zip(todo, self._pool().map(make, todo)))
            else:
                made = {f: make(f) for f in todo}
            for f, pt in made.items():
                self._cache.put(f, pt)
            out = [pt if pt is not None else made.get(int(f)) for f, pt in zip(fids, out)]
        return out

    def _score(self, probe: dict, pos: np.ndarray, fids: np.ndarray) -> tuple[np.ndarray, float]:
        """Native scores of candidate fingers ``fids`` (at positions ``pos``) against the probe.

        Returns (scores, NaN for fingers removed meanwhile; seconds spent preparing candidates).
        """
        out = np.full(len(fids), np.nan)
        tp = time.perf_counter()
        all_preps = self._prepared(fids)  # one store read, one parallel batch
        t_prep = time.perf_counter() - tp
        for p, pt in probe.items():
            at = np.flatnonzero(pos == p)
            if len(at) == 0:
                continue
            preps = [all_preps[i] for i in at]
            ok = np.asarray([x is not None for x in preps], bool)
            if ok.any():
                out[at[ok]] = FingerprintMatcher(pt, self._params).match_many(
                    [x for x in preps if x is not None], n_threads=self.spec.n_threads)
        return out, t_prep

    _MAX_QUERIES = 64
    """Queries kept between the phases (oldest dropped; a router that vanishes leaves one behind).
    Between the phases a query holds its ~k best persons (~100 B each) and the probe's codes."""


    def scan(self, call: Scan) -> ScanReply:
        """Phase 1a: the exhaustive code scan of the probe, kept for :meth:`persons` and :meth:`rerank`."""
        t0 = time.perf_counter()
        r = self._retrieval
        two_phase = hasattr(r, "scan")
        state: dict = {"two_phase": two_phase, "face_rows": np.zeros(0, np.int64), "face_scores": np.zeros(0)}
        codes_out: dict = {}
        with self._lock:
            if two_phase:
                codes_out = self._scan_codes(call, state)
            if call.face is not None and call.face_k and self._faces.n_active:
                hits = self._faces.search(call.face, min(call.face_k, self._faces.n_active))
                ok = hits.rows[0] >= 0
                state["face_rows"], state["face_scores"] = hits.rows[0][ok], hits.scores[0][ok].astype(np.float64)
            n_subjects = self._map.n_present
            self._queries[call.qid] = state
            while len(self._queries) > self._MAX_QUERIES:
                self._queries.popitem(last=False)
        return ScanReply(two_phase=two_phase, face_scores=state["face_scores"], n_subjects=n_subjects,
                         ms=(time.perf_counter() - t0) * 1e3, **codes_out)

    def _scan_codes(self, call: Scan, state: dict) -> dict:
        """Score every person of the shard on the probe's codes and keep the best; how many
        follows from the router's hint (by the router's own rule,
        :func:`~biomatch.dedup.scatter.k_persons_for`)."""
        r = self._retrieval
        codes = r.probe_codes(call.templates)
        merged = dict(call.counts_hint)
        for p, n in r.position_counts().items():
            merged[p] = max(merged.get(p, 0), n)
        k = k_persons_for(r.params, call.counts_hint, sum(1 for p in codes if merged.get(p)))
        n_best = max(k, call.top)
        keys, total, n_scored = r.scan(codes, n_best)
        state.update(codes=codes, keys=keys, total=total)
        return dict(fetched=n_best, scored=n_scored, counts=r.position_counts(), valid=sorted(codes), params=r.params)

    def _query(self, qid: str, pop: bool = False) -> dict:
        with self._lock:
            state = self._queries.pop(qid, None) if pop else self._queries.get(qid)
        if state is None:
            raise ScanLostError(f"shard {str(self.folder)!r}: no scan of query {qid} (restarted?): search again")
        return state

    def persons(self, call: Persons) -> PersonsReply:
        """Phase 1b: this shard's ``n_keep`` best persons by code score (ties at its cut included),
        with their per-position scores kept for the cascade."""
        state = self._query(call.qid)
        if not state["two_phase"]:
            return PersonsReply([])
        # Only these can pass the gallery-wide cut (it is at least this shard's n_keep-th best).
        best = np.sort(best_with_ties(state["total"], call.n_keep))
        keys, total = state["keys"][best], state["total"][best]
        with self._lock:
            table = self._retrieval.person_table(state["codes"], keys)
            named = self._store.subject_ids(keys.tolist())  # removed meanwhile: absent
        names = [named.get(int(k)) for k in keys]
        state.update(keys=keys, table=table, total=total, names=names)
        del state["codes"]
        return PersonsReply([(float(t), n) for t, n in zip(total, names) if n is not None])

    def rerank(self, call: Rerank) -> RerankReply:
        """Phase 2: natively re-rank this shard's persons selected by the gallery-wide cuts.

        The stages of :mod:`biomatch.dedup.rerank`: select the candidates, add those only the
        face found, match the first round of the cascade, escalate the screened persons whose
        partial evidence reaches ``rerank_escalate_decades``, fuse and rank.
        """
        state = self._query(call.qid, pop=True)
        d = call.decision
        t0 = time.perf_counter()
        with self._lock:
            keys, code, full, n_face_only = self._select(state, call)
            table = self._map.finger_table(keys)
            cos = self._face_cosines(keys, call.face)
        probe, t_prep = self._prepared_probe(call.probe, len(keys))
        positions = np.asarray(sorted(probe), np.int64)
        fid, has, first = stages.cascade(positions, code, table, full, d)
        scores, t_match_prep, n_escalated = self._match_cascade(probe, positions, fid, has, first, d)
        t_prep += t_match_prep
        t2 = time.perf_counter()
        ev = decide.fuse_candidates(scores, cos, d)
        out = self._ranked(ev, keys, positions, cos, call.top)
        t3 = time.perf_counter()
        work = RerankWork(candidates=len(keys), fingers_matched=int((~np.isnan(scores)).sum()),
                          escalated=n_escalated, face_only_candidates=n_face_only,
                          faces_compared=int(ev.has_face.sum()))
        timings = RerankTimings(prepare_candidates=t_prep * 1e3, rerank=((t2 - t0) - t_prep) * 1e3,
                                fuse=(t3 - t2) * 1e3)
        return RerankReply(out, timings, work)

    def _select(self, state: dict, call: Rerank) -> tuple:
        """``(keys, code, full, n_face_only)``: the candidate persons of this shard (under the lock)."""
        if state["two_phase"]:
            keys, code, full = stages.select_by_code(state, call.code_cut, call.full_cut)
        else:
            cand = self._retrieval.candidates({p: getattr(t, "template", t) for p, t in call.probe.items()},
                                              call.top)
            if cand is None:  # every enrolled person
                keys = self._map.present_keys()
            else:  # the persons of the candidate finger ids
                ids = [np.asarray(v, np.int64) for v in cand.values()]
                keys = self._map.locate(np.concatenate(ids) if ids else np.zeros(0, np.int64))[0]
            keys, code, full = stages.select_all(keys)
        keys, code, full = stages.within(keys, code, full, self._map.max_key + 1)
        face_hit = state["face_rows"][state["face_scores"] >= call.face_cut]
        return stages.add_face_only(keys, code, full, self._face_key.data[face_hit].astype(np.int64))

    def _face_cosines(self, keys: np.ndarray, face) -> np.ndarray:
        """Cosine of the probe's face with each candidate's (NaN: no face on either side)."""
        cos = np.full(len(keys), np.nan)
        if face is not None and len(keys):
            key_face = self._key_face.data
            face_rows = np.where(keys < len(key_face), key_face[np.minimum(keys, len(key_face) - 1)], -1)
            have = face_rows >= 0
            if have.any():
                # float64, row by row: the same value whatever the shard and the batch
                v = self._faces.vectors(face_rows[have]).astype(np.float64)
                cos[have] = (v * np.asarray(face, np.float64)[None, :]).sum(axis=1)
        return cos

    def _prepared_probe(self, probe: dict, n_candidates: int) -> tuple[dict, float]:
        """The probe prepared (only when there is a candidate); seconds spent."""
        if not n_candidates or all(isinstance(t, PreparedTemplate) for t in probe.values()):
            return probe, 0.0
        tp = time.perf_counter()
        probe = {p: t if isinstance(t, PreparedTemplate) else prepare(t, self._params) for p, t in probe.items()}
        return probe, time.perf_counter() - tp

    def _match_cascade(self, probe: dict, positions: np.ndarray, fid: np.ndarray, has: np.ndarray,
                       first: np.ndarray, d: decide.DecisionParams) -> tuple[np.ndarray, float, int]:
        """Scores (m, f) of the first round and of the escalated persons' other fingers (NaN: not
        matched); seconds spent preparing candidates; persons escalated."""
        pos = positions[None, :].repeat(len(fid), 0)
        scores = np.full(fid.shape, np.nan)
        t_prep = 0.0
        if first.any():
            scores[first], t = self._score(probe, pos[first], fid[first])
            t_prep += t
        rows = stages.screened(has, first)
        if not len(rows):
            return scores, t_prep, 0
        up = rows[decide.escalates(scores[rows], d)]
        second = np.zeros_like(first)
        second[up] = has[up] & ~first[up]
        if second.any():
            scores[second], t = self._score(probe, pos[second], fid[second])
            t_prep += t
        return scores, t_prep, len(up)

    def _ranked(self, ev: decide.CandidateEvidence, keys: np.ndarray, positions: np.ndarray, cos: np.ndarray,
                top: int) -> list:
        """The ``top`` best candidates (ties included), named from the store."""
        if not len(ev.scored):
            return []
        best = stages.best_rows(ev, top)
        with self._lock:
            names = self._store.subject_ids([int(keys[ev.scored[b]]) for b in best])
        return stages.ranked_candidates(ev, best, keys, positions, cos, names)
