"""Pipelined enrolment: a window of records searched in parallel, then committed in order.

Pipeline of one window::

    intake (every record) -> the shards' high-water marks -> catch-up -> searches in parallel (read only)
    -> write lock: marks unchanged? (else each record searched again under the lock)
    -> in order: the record against those accepted ahead of it in this window, merged with its
       gallery candidates -> verdict
    -> the accepted records written, one durable transaction per shard

Searching is the expensive step and needs no lock: the window's searches overlap, in threads
(the native matcher, FAISS and numpy release the GIL, the rest of a search holds it) or in search
processes (:mod:`~biomatch.dedup.search_workers`, free of the GIL), while verdicts stay serial and in input order, and the
window's accepted records are written together (one fsync per shard and window).  What a
search cannot see is the records committed ahead of it in its own window; each record is
therefore compared, all common fingers and the face, with every record of the window committed
before it, and those comparisons join its candidates before the verdict.  Two records of one
person inside one window thus end as one enrolment and one DUPLICATE, as they would one at a
time.  A write by anyone else between the searches and the commit (another process, another
thread) moves a shard's high-water mark: the window's records are then searched again under the
lock, exactly as :meth:`Gallery.enroll` does, so nothing committed is ever missed.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import decide
from ..errors import BiomatchError, DuplicateSubjectError, invalid
from ..match import FingerprintMatcher, PreparedTemplate, prepare
from . import intake
from .protocol import BulkInsert, Insert, Sequences
from .records import Enrolment
from .report import Candidate, DedupReport

__all__ = ["enroll_window", "check_window_args"]


@dataclasses.dataclass
class _Item:
    """One record of a window on its way through the pipeline."""

    record: Enrolment
    usable: dict | None = None
    report: DedupReport | None = None
    prepared: dict | None = None
    error: BiomatchError | None = None


def check_window_args(window, n_threads, n_processes=0) -> None:
    """Raise InvalidInputError unless ``window`` is an int in [1, 4096], ``n_threads`` in [1, 256]
    and ``n_processes`` in [0, 256]."""
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 4096:
        raise invalid("window", "an int in [1, 4096]", window)
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or not 1 <= n_threads <= 256:
        raise invalid("n_threads", "an int in [1, 256]", n_threads)
    if isinstance(n_processes, bool) or not isinstance(n_processes, int) or not 0 <= n_processes <= 256:
        raise invalid("n_processes", "an int in [0, 256]", n_processes)


def enroll_window(gallery, records: list, accept_review: bool, check_face_quality: bool,
                  n_threads: int, stop_on_error: bool = False, workers=None) -> list:
    """Enrol one window of records; the result of each, in input order.

    Parameters
    ----------
    gallery : Gallery
        An open, writable gallery (embedded, or the writer of a distributed one).
    records : list of Enrolment
    accept_review, check_face_quality : bool
        As :meth:`Gallery.enroll`.
    n_threads : int
        Searches run at once.
    workers : SearchWorkers, optional
        Search processes (:mod:`~biomatch.dedup.search_workers`) instead of ``n_threads``
        threads; should one die, the window is searched here.
    stop_on_error : bool
        Commit nothing after the first record that fails its checks or its verdict (the result
        list then ends with its error).  Should a shard's write fail, the records that other
        shards' transactions wrote are reported too, before and after it.

    Returns
    -------
    list of DedupReport or BiomatchError
        Each record's report (``enrolled`` True when inserted, durable on return) or the typed
        error it raised (nothing of it written).
    """
    items = [_intake(gallery, rec, check_face_quality) for rec in records]
    # The marks first, then every shard folds in what its store committed: anything committed
    # before the marks is then searched, anything after them moves them (searched again below).
    marks = _marks(gallery)
    for shard in gallery._shards:
        shard.catch_up()
    _search_all(gallery, [it for it in items if it.error is None], n_threads, workers)
    out = []
    with gallery._writer():
        if _marks(gallery) != marks:  # someone else wrote meanwhile: search again, under the lock
            _search_all(gallery, [it for it in items if it.error is None], 1)
        committed: list[_Item] = []
        n_decided = 0
        for it in items:
            n_decided += 1
            if it.error is None:
                try:
                    _decide(gallery, it, committed, accept_review)
                except BiomatchError as exc:
                    it.error = exc
            if stop_on_error and it.error is not None:
                break
        written = {id(it) for it in _insert(gallery, committed)}
        # Every record written is reported, even after an error (another shard's transaction
        # may have gone through after the failure of one before it in the window).
        last = max((i for i, it in enumerate(items) if id(it) in written), default=-1)
        for i, it in enumerate(items[:n_decided]):
            out.append(it.error if it.error is not None else it.report)
            if stop_on_error and it.error is not None and i >= last:
                break
    return out


def _intake(gallery, rec, check_face_quality: bool) -> _Item:
    """The checks of :meth:`Gallery.enroll` before its lock; an error becomes the item's."""
    it = _Item(rec)
    try:
        if not isinstance(rec, Enrolment):
            raise invalid("record", "a biomatch Enrolment", type(rec).__name__)
        it.usable = gallery._usable(rec.fingers, "record.fingers")
        gallery._check_quality(it.usable, "record.fingers")
        if check_face_quality:
            intake.check_face(rec)
    except BiomatchError as exc:
        it.error = exc
    return it


def _marks(gallery) -> tuple:
    """Each shard's store sequences: they grow with every write, by anyone, so an unchanged tuple
    means nothing was enrolled (or removed) meanwhile."""
    return tuple(tuple(sorted(seq.items())) for seq in gallery._fan(Sequences()))


def _search_all(gallery, items: list, n_threads: int, workers=None) -> None:
    """Search every item (read only), ``n_threads`` at once or in ``workers``; a search error
    becomes the item's."""
    top = gallery.decision_params.max_candidates
    if workers is not None and items:
        try:
            futures = workers.submit([(it.record.subject_id, it.usable, top, it.record.face) for it in items])
            # the window's own comparisons need its records prepared: here, while the workers search
            prepared = [{p: prepare(t, gallery.match_params) for p, t in it.usable.items()} for it in items]
            results = workers.collect(futures)
        except BiomatchError:  # a worker died: search here (the next window starts new ones)
            gallery._drop_workers(workers)
            results = None
        if results is not None:
            for it, res, prep in zip(items, results, prepared):
                if isinstance(res, BiomatchError):
                    it.error = res
                else:
                    it.report, it.prepared = res, prep
            return

    def one(it: _Item) -> None:
        try:
            it.report, prepared = gallery._search(it.record.subject_id, it.usable, top, it.record.face)
            # A distributed gallery's search prepares on the shards: prepare here for the window's checks.
            it.prepared = {p: t if isinstance(t, PreparedTemplate) else prepare(t, gallery.match_params)
                           for p, t in prepared.items()}
        except BiomatchError as exc:
            it.error = exc

    if n_threads > 1 and len(items) > 1:
        with ThreadPoolExecutor(min(n_threads, len(items)), thread_name_prefix="biomatch-enrol") as pool:
            list(pool.map(one, items))
    else:
        for it in items:
            one(it)


def _decide(gallery, it: _Item, committed: list, accept_review: bool) -> None:
    """Under the write lock: the verdict with the window's earlier accepted records; an accepted
    record joins ``committed`` (written by :func:`_insert`)."""
    rec = it.record
    if gallery._locate(rec.subject_id) is not None or any(c.record.subject_id == rec.subject_id for c in committed):
        raise DuplicateSubjectError(f"subject_id: {rec.subject_id!r} is already enrolled")
    t0 = time.perf_counter()
    report = _with_window(gallery, it, committed)
    report = dataclasses.replace(report, timings_ms=dict(report.timings_ms, window=(time.perf_counter() - t0) * 1e3))
    it.report = report
    if decide.refused(report.decision, accept_review):
        return
    gallery._fix_template_generation(next(iter(it.usable.values())).params_hash)
    gallery._usable(it.usable, "record.fingers")  # re-check against the generation fixed under the lock
    committed.append(it)


def _insert(gallery, accepted: list) -> list:
    """Write the window's accepted records: one durable transaction per shard (one fsync for the
    window instead of one per record); their reports then say ``enrolled``.  A shard whose
    transaction fails is written record by record, so that each record gets its own error.
    Returns the items written."""
    if not accepted:
        return []
    t0 = time.perf_counter()
    shards: dict[int, tuple] = {}
    for it in accepted:
        shard = gallery._route(it.record.subject_id)
        shards.setdefault(id(shard), (shard, []))[1].append(it)
    written = []
    for shard, members in shards.values():
        rows = [(it.record.subject_id, it.usable, it.record.metadata_json, it.record.face) for it in members]
        try:
            shard.bulk_insert(BulkInsert(rows))
            written.extend(members)
        except BiomatchError:
            for it in members:
                if gallery._locate(it.record.subject_id) is not None:
                    written.append(it)  # committed by the failed call before it failed (e.g. in indexing)
                    continue
                try:
                    shard.insert(Insert(it.record.subject_id, it.usable, it.record.metadata_json, it.record.face,
                                        it.prepared))
                    written.append(it)
                except BiomatchError as exc:
                    it.error = exc
    ms = (time.perf_counter() - t0) * 1e3 / len(accepted)  # the window's writes, shared
    for it in written:
        it.report = dataclasses.replace(it.report, enrolled=True, timings_ms=dict(it.report.timings_ms, commit=ms))
    return written


def _with_window(gallery, it: _Item, committed: list) -> DedupReport:
    """The item's report with the window's earlier committed records as candidates too, and the
    verdict for the gallery as it is now (those records included)."""
    report = it.report
    if not committed:
        return report
    d = gallery.decision_params
    extra = [_candidate(it, other, gallery.match_params, d) for other in committed]
    cands = sorted([*report.candidates, *(c for c in extra if c is not None)],
                   key=lambda c: (-c.score, c.subject_id))[: d.max_candidates]
    n = report.gallery_size + len(committed)
    decision, th = decide.verdict(cands[0].score if cands else None, n, d)
    return dataclasses.replace(report, decision=decision, candidates=tuple(cands), thresholds=th.as_dict(),
                               gallery_size=n)


def _candidate(it: _Item, other: _Item, match_params, d: decide.DecisionParams) -> Candidate | None:
    """``other`` as a candidate of ``it``: every common finger matched, the faces compared, fused
    as the re-ranking fuses (None when they share no finger and no face)."""
    positions = sorted(set(it.prepared) & set(other.prepared))
    scores = np.array([[FingerprintMatcher(it.prepared[p], match_params).match(other.prepared[p])
                        for p in positions]], np.float64).reshape(1, len(positions))
    fa, fb = it.record.face, other.record.face
    cos = np.array([np.nan if fa is None or fb is None
                    else float(np.dot(np.asarray(fa, np.float64), np.asarray(fb, np.float64)))])
    ev = decide.fuse_candidates(scores, cos, d)
    if not len(ev.scored):
        return None
    face = bool(ev.has_face[0])
    return Candidate(subject_id=other.record.subject_id, score=float(ev.fused[0]),
                     finger_scores={p: float(s) for p, s in zip(positions, ev.finger_scores)},
                     finger_evidence={p: float(e) for p, e in zip(positions, ev.finger_evidence)},
                     face_score=float(cos[0]) if face else None,
                     face_evidence=float(ev.face_evidence[0]) if face else None)
