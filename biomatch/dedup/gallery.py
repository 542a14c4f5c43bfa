"""The durable 1:N gallery: enrol with deduplication as one atomic step, search, verify, remove.

Pipeline of one enrolment::

    intake (usable fingers, quality) -> write lock, catch-up -> two-phase search over every
    shard (search.py) -> verdict (biomatch.decide) -> durable insert on the subject's shard

The folder's format and routing are in :mod:`~biomatch.dedup.manifest`, the life cycle and
the write lock in :mod:`~biomatch.dedup.core`.  Searches visit every shard in two phases
(:mod:`biomatch.dedup.scatter`): the answer does not depend on the number of shards or on
which shard holds whom.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Callable, Iterable

from .. import decide
from ..errors import BiomatchError, DuplicateSubjectError, invalid
from ..match import FingerprintMatcher, prepare
from ..template import Template
from . import bulk, intake, pipeline
from . import manifest as _mf
from .core import GalleryCore
from .protocol import Insert, IntegrityProblems, Remove, Stats, SubjectInfo, SubjectPrepared, SubjectTemplates
from .records import Enrolment
from .report import Candidate, DedupReport, Verification
from .search import scatter_search

__all__ = ["Gallery"]

log = logging.getLogger(__name__)


_DEDUP_BATCH = 32
"""Records searched together by :meth:`Gallery.deduplicate_many` with search processes."""


class Gallery(GalleryCore):
    """A durable, embedded 1:N fingerprint gallery in a folder.

    Open with :meth:`create` or :meth:`open`; use as a context manager or call :meth:`close`.

    Notes
    -----
    Thread-safe, and safe across processes that open the same folder: writers are serialised
    by a lock file; readers see every committed enrolment (each call catches up from the store).
    Memory is bounded: per ten-finger enrolment 687 B (FAISS codes 640 B, memory-mapped; row
    subject keys 40 B; subject map 6 B; tombstones 1.25 B; see :mod:`~biomatch.dedup.finger_map`);
    templates live in the store (~0.6-1 KB per finger on disk) and are prepared
    on demand for the candidates, with an LRU cache of ``cache_bytes`` per shard (a prepared
    finger is ~37 KB).  Search cost: the exhaustive code scan plus ``(prepare ~0.5 ms + match)``
    per candidate finger re-ranked on a cold cache: every finger of the 10 best candidate
    persons, 2 of each other one, and the rest of those 2 that look like a match
    (:class:`~biomatch.decide.DecisionParams` ``rerank_*``; 3.4x fewer comparisons, the same
    decisions, in ``benchmarks/dedup_scale.py``).  With exhaustive retrieval every enrolled
    finger of each probe position is compared (only for galleries that fit the cache).
    """

    def _search(self, subject_id: str, usable: dict, top: int, face=None) -> tuple[DedupReport, dict]:
        t0 = time.perf_counter()
        prepared = {p: prepare(t, self.match_params) for p, t in usable.items()}
        timings = {"prepare": (time.perf_counter() - t0) * 1e3}
        return self._scatter_search(subject_id, tuple(sorted(usable)), usable, prepared, top, face, timings), prepared


    def _scatter_search(self, subject_id: str, positions: tuple, scan_probe, rerank_probe, top: int, face,
                        timings: dict) -> DedupReport:
        """The two-phase search over every shard (:func:`~biomatch.dedup.search.scatter_search`)."""
        report, self._counts_seen = scatter_search(self._fan, self._count_hint(), self.decision_params, subject_id,
                                                   positions, scan_probe, rerank_probe, top, face, timings)
        return report

    # ---- public API -----------------------------------------------------------------------------
    def deduplicate(self, record: Enrolment) -> DedupReport:
        """Search a record against the gallery without enrolling it (read only).

        Returns
        -------
        DedupReport
            ``enrolled`` is False.

        Raises
        ------
        NoUsableFingerError, IncompatibleTemplateError
        """
        self._check_open()
        if not isinstance(record, Enrolment):
            raise invalid("record", "a biomatch Enrolment", type(record).__name__)
        usable = self._usable(record.fingers, "record.fingers")
        for s in self._shards:
            s.catch_up()
        return self._search(record.subject_id, usable, self.decision_params.max_candidates, record.face)[0]

    def enroll(self, record: Enrolment, dedup: bool = True, accept_review: bool = False,
               check_face_quality: bool = True) -> DedupReport:
        """Deduplicate and insert a record as one atomic step.

        Parameters
        ----------
        record : Enrolment
        dedup : bool
            Search first; a ``DUPLICATE`` (or ``REVIEW`` unless ``accept_review``) is not enrolled.
            False inserts without searching (a trusted backlog); the report is then ``UNIQUE``
            with no candidates.
        accept_review : bool
            Enrol records whose decision is ``REVIEW``.
        check_face_quality : bool
            Refuse a face (from an image or a FaceTemplate) that fails the enrolment gate of
            :func:`biomatch.face.check_enrolment` (ISO/IEC 19794-5-derived: eye distance,
            pose, sharpness, detector confidence) with
            :class:`~biomatch.errors.FaceQualityError`, before anything is written.  Bare
            embeddings carry no quality and are not checked.

        Returns
        -------
        DedupReport
            ``enrolled`` says whether the record was inserted; when True it is durable (committed
            and fsync'd) before this returns.

        Raises
        ------
        DuplicateSubjectError
            The subject id is already enrolled.
        NoUsableFingerError, IncompatibleTemplateError, StorageError
            Nothing is written.
        """
        self._check_open()
        if not isinstance(record, Enrolment):
            raise invalid("record", "a biomatch Enrolment", type(record).__name__)
        usable = self._usable(record.fingers, "record.fingers")
        self._check_quality(usable, "record.fingers")
        if check_face_quality:
            intake.check_face(record)
        with self._writer():
            shard = self._route(record.subject_id)
            if self._locate(record.subject_id) is not None:
                raise DuplicateSubjectError(f"subject_id: {record.subject_id!r} is already enrolled")
            if dedup:
                report, prepared = self._search(record.subject_id, usable, self.decision_params.max_candidates,
                                                record.face)
            else:
                prepared = {p: prepare(t, self.match_params) for p, t in usable.items()}
                report = self._unsearched(record.subject_id, usable)
            if decide.refused(report.decision, accept_review):
                return report
            t0 = time.perf_counter()
            self._fix_template_generation(next(iter(usable.values())).params_hash)
            self._usable(usable, "record.fingers")  # re-check against the generation fixed under the lock
            shard.insert(Insert(record.subject_id, usable, record.metadata_json, record.face, prepared))
            timings = dict(report.timings_ms, commit=(time.perf_counter() - t0) * 1e3)
            return dataclasses.replace(report, enrolled=True, timings_ms=timings)

    def enroll_many(self, records: Iterable[Enrolment], dedup: bool = True, accept_review: bool = False,
                    progress: Callable | None = None, stop_on_error: bool = True, window: int = 1,
                    n_threads: int = 1, n_processes: int = 0) -> list:
        """Enrol a backlog; each record sees every record committed before it.

        Parameters
        ----------
        progress : callable(done, total, result), optional
            Called after each record; ``result`` is its DedupReport or the exception raised;
            ``total`` is None for iterables without a length.  A record reported here is durable.
        stop_on_error : bool
            Raise the first error (default); otherwise record it and go on.
        window : int
            Records searched in parallel before being committed in order
            (:mod:`~biomatch.dedup.pipeline`); 1 enrols one record at a time.  Each record is
            still compared with the records committed ahead of it in its window, so two
            records of one person give one enrolment and one DUPLICATE whatever the window.
        n_threads : int
            Searches run at once within a window, in threads of this process.
        n_processes : int
            Searches run at once within a window in this many processes instead
            (:mod:`~biomatch.dedup.search_workers`: each opens the gallery read-only and is free
            of this process's GIL; started at the first window, kept until :meth:`close`);
            0 (default) uses the threads.  Encrypted galleries always use the threads.  As for any
            ``multiprocessing`` start by ``spawn``, a script calling this must guard its entry
            point (``if __name__ == "__main__":``): each process imports the main module.

        Returns
        -------
        list of DedupReport or BiomatchError, in input order
        """
        pipeline.check_window_args(window, n_threads, n_processes)
        if window == 1 or not dedup:
            return intake.each(records, lambda rec: self.enroll(rec, dedup=dedup, accept_review=accept_review),
                               progress, stop_on_error)
        workers = self._workers(n_processes)
        return intake.windowed(records, window, lambda recs: pipeline.enroll_window(
            self, recs, accept_review, True, n_threads, stop_on_error, workers), progress, stop_on_error)

    def _workers(self, n: int):
        """The search processes of :meth:`enroll_many` and :meth:`deduplicate_many` (None: none),
        started once and reused until :meth:`close`."""
        self._check_open()  # a closed gallery would never stop them
        if n == 0 or self.encryption.get("encrypted"):
            return None
        current = getattr(self, "_search_workers", None)
        if current is not None and current.n == n:
            return current
        if current is not None:
            current.close()
        from .search_workers import SearchWorkers

        self._search_workers = SearchWorkers(self, n)
        return self._search_workers

    def _drop_workers(self, workers) -> None:
        """Forget and stop search processes that failed (the next call starts new ones)."""
        if getattr(self, "_search_workers", None) is workers:
            self._search_workers = None
        workers.close()

    def bulk_enroll(self, records: Iterable[Enrolment], dedup: bool = False, batch_size: int = 5000,
                    progress: Callable | None = None, skip_enrolled: bool = False,
                    n_threads: int | None = None) -> int:
        """Bulk-load a trusted backlog WITHOUT deduplication (the fast path for building a gallery).

        Records are grouped in batches of ``batch_size``; each batch is committed per shard in one
        SQLite transaction (durable when committed; a kill loses at most the batches not yet
        reported to ``progress``, never half a subject), and indexed with finger codes computed
        for the whole batch in ``n_threads`` threads while the previous batch is written
        (:mod:`biomatch.dedup.bulk`).  Nothing is searched: duplicates among the records or
        against the gallery are NOT detected (use :meth:`enroll` for that).  A subject id already
        enrolled fails its whole batch, unless ``skip_enrolled``.

        Parameters
        ----------
        records : iterable of Enrolment
        dedup : bool
            Must be False (kept explicit so that callers state that dedup is skipped).
        batch_size : int
        progress : callable(done, total), optional
            Called after each committed batch; ``done`` counts the records handled so far
            (inserted or skipped).
        skip_enrolled : bool
            Skip subjects already enrolled (resuming an interrupted load).
        n_threads : int, optional
            Threads of the code kernel (default: the CPUs, at most 8).

        Returns
        -------
        int : subjects enrolled

        Raises
        ------
        InvalidInputError, DuplicateSubjectError, NoUsableFingerError, IncompatibleTemplateError
            The batch holding the record is not written; the batches before it are.
        """
        if dedup:
            raise invalid("dedup", "False (bulk_enroll never deduplicates; use enroll or enroll_many)", dedup)
        if not isinstance(skip_enrolled, bool):
            raise invalid("skip_enrolled", "a bool", skip_enrolled)
        self._check_open()
        return bulk.load(self, records, batch_size, progress, skip_enrolled, n_threads)

    def deduplicate_many(self, records: Iterable[Enrolment], progress: Callable | None = None,
                         stop_on_error: bool = True, n_processes: int = 0) -> list:
        """Deduplicate many records (read only); same conventions as :meth:`enroll_many`.

        With ``n_processes`` > 0 the searches run in that many search processes
        (:mod:`~biomatch.dedup.search_workers`, as :meth:`enroll_many`), 32 records at a time;
        each result is what :meth:`deduplicate` gives.
        """
        pipeline.check_window_args(1, 1, n_processes)
        workers = self._workers(n_processes)
        if workers is None:
            return intake.each(records, self.deduplicate, progress, stop_on_error)
        return intake.windowed(records, _DEDUP_BATCH, lambda recs: self._deduplicate_batch(recs, workers), progress,
                               stop_on_error)

    def _deduplicate_batch(self, records: list, workers) -> list:
        """:meth:`deduplicate` of each record, searched in ``workers``: a report or a BiomatchError each."""
        out: list = [None] * len(records)
        requests, at = [], []
        for i, rec in enumerate(records):
            try:
                if not isinstance(rec, Enrolment):
                    raise invalid("record", "a biomatch Enrolment", type(rec).__name__)
                usable = self._usable(rec.fingers, "record.fingers")
                requests.append((rec.subject_id, usable, self.decision_params.max_candidates, rec.face))
                at.append(i)
            except BiomatchError as exc:
                out[i] = exc
        try:
            results = workers.search(requests)
        except BiomatchError:  # a worker died: search here (the next batch starts new ones)
            self._drop_workers(workers)
            results = []
            for i in at:
                try:
                    results.append(self.deduplicate(records[i]))
                except BiomatchError as exc:
                    results.append(exc)
        for i, res in zip(at, results):
            out[i] = res
        return out

    def identify(self, probe, k: int = 10, dpi: float = 500) -> list[Candidate]:
        """The ``k`` best enrolled subjects for a probe (Enrolment or ``{position: image or Template}``)."""
        self._check_open()
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 10000:
            raise invalid("k", "an int in [1, 10000]", k)
        sid, fingers = intake.probe_fingers(probe, dpi)
        usable = self._usable(fingers, "probe")
        for s in self._shards:
            s.catch_up()
        face = probe.face if isinstance(probe, Enrolment) else None
        return list(self._search(sid, usable, k, face)[0].candidates)

    def verify(self, subject_id: str, probe, dpi: float = 500) -> Verification:
        """1:1: compare a probe with one enrolled subject's common fingers.

        ``match`` is True when the fused score reaches ``-log10(DecisionParams.verify_fmr)``.

        Raises
        ------
        UnknownSubjectError, NoUsableFingerError
        """
        self._check_open()
        if not isinstance(subject_id, str):
            raise invalid("subject_id", "a str", type(subject_id).__name__)
        _, fingers = intake.probe_fingers(probe, dpi)
        usable = self._usable(fingers, "probe")
        shard = self._located(subject_id)
        shard.catch_up()
        enrolled = shard.subject_prepared(SubjectPrepared(subject_id))
        scores = {p: FingerprintMatcher(t, self.match_params).match(enrolled[p])
                  for p, t in usable.items() if p in enrolled}
        match, score, threshold = decide.verify(scores, self.decision_params)
        return Verification(subject_id=subject_id, match=match, score=score,
                            threshold=threshold, target_fmr=self.decision_params.verify_fmr, finger_scores=scores)

    def remove(self, subject_id: str) -> None:
        """Delete a subject and its templates (durable on return).

        Raises
        ------
        UnknownSubjectError
        """
        if not isinstance(subject_id, str):
            raise invalid("subject_id", "a str", type(subject_id).__name__)
        with self._writer():
            self._located(subject_id).remove(Remove(subject_id))

    def __contains__(self, subject_id: str) -> bool:
        self._check_open()
        return self._locate(intake.sid(subject_id)) is not None

    def templates(self, subject_id: str) -> dict[int, Template]:
        """The enrolled templates of a subject, read from the store."""
        self._check_open()
        return self._located(intake.sid(subject_id)).subject_templates(SubjectTemplates(subject_id))

    def subject_info(self, subject_id: str) -> dict:
        """What is enrolled for a subject, never a template or an embedding.

        Returns
        -------
        dict
            ``subject_id``, ``positions`` (list of ISO positions), ``has_face`` (bool),
            ``metadata`` (the enrolment's metadata mapping, or None).

        Raises
        ------
        UnknownSubjectError
        """
        self._check_open()
        shard = self._located(intake.sid(subject_id))
        shard.catch_up()  # another process may have enrolled or removed it
        reply = shard.subject_info(SubjectInfo(subject_id))
        return {"subject_id": reply.subject_id, "positions": list(reply.positions), "has_face": reply.has_face,
                "metadata": None if reply.metadata_json is None else json.loads(reply.metadata_json)}

    def add_shard(self) -> int:
        """Add an empty shard; new subjects are routed over all shards, nothing written moves.

        A new routing epoch is appended to the manifest: subjects enrolled before keep the
        shard their epoch gave them (lookups ask one shard per epoch, newest first), new ones
        go to ``hash(subject_id) % n_shards`` of the new epoch, so the new shard gets about
        ``1 / n_shards`` of them.  Searches always visit every shard.

        Crash-safe: the shard's folder and store are created first, then the manifest is
        replaced atomically; a kill before the replacement leaves the old gallery (an
        unreferenced, empty folder that the next add_shard discards), a kill after it leaves the
        new one.  Runs under the write lock (serialised with enrolments, in every process); other
        processes open the shard at their next call.

        Returns
        -------
        int : the number of shards now
        """
        with self._writer():
            fresh = _mf.read_manifest(self.path)
            n = int(fresh["n_shards"])
            if n >= 1000:
                raise invalid("n_shards", "at most 1000 shards", n + 1)
            folder = self.path / "shards" / f"{n:03d}"
            if folder.exists():
                _mf.discard_orphan_shard(folder)
            self._create_shard(n)
            epochs = list((fresh.get("routing") or {}).get("epochs", ())) or \
                [{"n_shards": n, "since_utc": fresh.get("created_utc")}]  # a gallery made before epochs
            fresh["routing"] = {"epochs": epochs + [{"n_shards": n + 1, "since_utc": time.time()}]}
            fresh["n_shards"] = n + 1
            _mf.write_manifest(self.path, fresh)
            self._refresh(force=True)
            log.info("gallery %s: shard %d added (routing epoch %d)", self.path, n, len(fresh["routing"]["epochs"]))
            return n + 1

    def stats(self) -> dict:
        """Counts, memory and disk use, parameters (no personal data)."""
        self._check_open()
        per = self._fan(Stats())
        per_pos: dict[int, int] = {}
        for st in per:
            for p, n in st.fingers_per_position.items():
                per_pos[p] = per_pos.get(p, 0) + n
        n_subj = sum(st.subjects for st in per)
        mem = sum(st.memory_bytes for st in per)
        return {"subjects": n_subj, "fingers": sum(st.fingers for st in per),
                "faces": sum(st.faces for st in per), "faces_unusable": sum(st.faces_unusable for st in per),
                "routing_epochs": self._epochs(),
                "fingers_per_position": dict(sorted(per_pos.items())), "shards": len(per),
                "memory_bytes": mem, "memory_bytes_per_subject": mem / n_subj if n_subj else 0.0,
                "retrieval_bytes": sum(st.retrieval_bytes for st in per),
                "disk_bytes": sum(st.disk_bytes for st in per),
                "retrieval": self._manifest["retrieval"]["kind"],
                "code_generation": _mf.code_generation(self._manifest["retrieval"]["kind"]),  # the one in use
                "encryption": self.encryption,
                "match_params_hash": self._manifest["match_params_hash"],
                "template_params_hash": self._manifest.get("template_params_hash"),
                "thresholds": decide.thresholds(n_subj, self.decision_params).as_dict()}

    def check(self) -> list[str]:
        """Integrity problems of the stores (empty when sound)."""
        self._check_open()
        return [f"shard {i}: {p}" for i, s in enumerate(self._shards) for p in s.integrity_problems(IntegrityProblems())]

    def _unsearched(self, subject_id: str, usable: dict) -> DedupReport:
        """The report of an enrolment without dedup: UNIQUE, no candidates."""
        n = self._n_subjects()
        return DedupReport(subject_id=subject_id, decision=decide.UNIQUE,
                           thresholds=decide.thresholds(n, self.decision_params).as_dict(),
                           positions_used=tuple(sorted(usable)), gallery_size=n)
