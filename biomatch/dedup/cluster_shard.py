"""A shard on a Ray cluster: the ``ShardActor`` that hosts a Shard, and ``_RemoteShard``, its proxy.

Both sides speak :mod:`biomatch.dedup.protocol`: the proxy implements
:class:`~biomatch.dedup.protocol.ShardProtocol` by sending each message to the actor's one
entry point, :meth:`ShardActor.handle`, which answers it with its local Shard.  Reads are
retried by Ray across actor restarts; writes are completed exactly once (the proxy asks the
restarted actor whether a write committed before repeating it).

Ray is imported here only, inside functions (an optional dependency: ``biomatch[cluster]``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable

from ..errors import BiomatchError, StorageError
from ..match import prepare
from ..params import MatchParams, from_json
from .protocol import (BulkInsert, CountSubjects, HasSubject, Insert, IntegrityProblems, Persons, PersonsReply,
                       PositionCounts, Present, Remove, Rerank, RerankReply, Scan, ScanReply, Sequences, ShardCall,
                       ShardStats, Stats, SubjectInfo, SubjectInfoReply, SubjectPrepared, SubjectTemplates,
                       dispatch)
from .shard import Shard, ShardSpec

__all__ = ["ShardActor", "ClusterUnavailableError", "FOLD_EVERY", "WRITE_ATTEMPTS"]

log = logging.getLogger(__name__)

FOLD_EVERY = 100_000
"""Subjects a shard actor inserts between two folds of its in-memory delta into its saved,
memory-mapped index files.  A restarted actor re-encodes only the fingers enrolled since the
last fold (a few ms per subject), so this bounds its restart time (minutes at most by
default), at the cost of one index write (~0.7 KB per subject of the shard) per fold."""
WRITE_ATTEMPTS = 5
"""Attempts of one shard write across shard-actor restarts (each attempt first checks whether
the previous one committed, so a write is applied exactly once)."""


class ClusterUnavailableError(StorageError):
    """A cluster actor died during a call whose outcome cannot be known by the caller.

    Raised for an enrolment when the writer actor died while handling it: the enrolment may or
    may not be committed.  Retrying is safe: a committed subject then raises
    :class:`~biomatch.errors.DuplicateSubjectError`, an uncommitted one is enrolled.
    """


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise BiomatchError("the distributed gallery needs Ray: pip install 'biomatch[cluster]'") from exc
    return ray


def _unwrap(exc):
    """The BiomatchError a remote call raised (re-raised as itself), else None."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BiomatchError) else None


def _get(ref, unavailable):
    """``ray.get`` that re-raises a remote project error as itself and a dead actor as
    ``unavailable(exc)`` (a ClusterUnavailableError saying what was lost)."""
    ray = _ray()
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = _unwrap(exc)
        if cause is not None:
            raise cause from None
        raise
    except ray.exceptions.RayActorError as exc:
        raise unavailable(exc) from exc


# ---- the shard actor (a plain class; wrapped with ray.remote when first used) -----------------------
class ShardActor:
    """One shard in its own process: :class:`~biomatch.dedup.shard.Shard` behind Ray calls.

    Every call that reads memory first catches up with the store, so routers never need a
    separate catch-up round trip; probes arrive as Templates and are prepared here (prepared
    templates hold native objects and cannot be pickled).
    """

    def __init__(self, spec: ShardSpec, fold_every: int = FOLD_EVERY):
        import faiss
        import numba

        faiss.omp_set_num_threads(1)  # parallelism comes from shards: OpenMP threads would contend
        numba.set_num_threads(1)
        self.params = from_json(spec.match_params_json, MatchParams)
        self.fold_every = fold_every
        self.unsaved = 0
        self.shard = Shard(spec)

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> int:
        return 0

    def node_id(self) -> str:
        """The Ray node this actor runs on (placement checks)."""
        return _ray().get_runtime_context().get_node_id()

    def handle(self, call: ShardCall):
        """Answer one message of :mod:`biomatch.dedup.protocol` with the local shard.

        Calls marked ``catch_up`` fold in the store first (routers never need a separate
        catch-up round trip); a probe sent as a Ray reference is fetched here; inserts count
        towards the next fold of the index files."""
        ray = _ray()
        refs = {f.name: getattr(call, f.name) for f in dataclasses.fields(call)
                if isinstance(getattr(call, f.name), ray.ObjectRef)}
        if refs:
            call = dataclasses.replace(call, **{name: ray.get(ref) for name, ref in refs.items()})
        if call.catch_up:
            self.shard.catch_up()
        reply = dispatch(self.shard, call)
        if isinstance(call, (Insert, BulkInsert)):
            self._written(1 if reply is None else reply)
        return reply

    def _written(self, n: int) -> None:
        self.unsaved += n
        if self.unsaved >= self.fold_every:
            self.save()

    def save(self) -> None:
        """Write the derived index files (a clean close) and re-open: the in-memory delta is
        folded into the saved, memory-mapped codes, and a restart after this loads them at once."""
        spec = self.shard.spec
        self.shard.close()
        self.shard = Shard(spec)
        self.unsaved = 0


# ---- the shard as seen by Gallery's methods ----------------------------------------------------
class _RemoteShard:
    """:class:`~biomatch.dedup.protocol.ShardProtocol` over one shard actor (the Ray proxy of a Shard).

    Every message goes to the actor's one entry point, ``ShardActor.handle``.

    Reads are retried by Ray across actor restarts.  Writes are not retried blindly: they run
    under the writer's lock, so after an actor failure the proxy asks the restarted actor
    whether the write committed and repeats it only if it did not (exactly once).
    """

    def __init__(self, actor, number: int, match_params):
        self.actor = actor
        self.number = number
        self._params = match_params  # to prepare what subject_prepared fetches

    def get(self, ref, what: str):
        return _get(ref, lambda exc: ClusterUnavailableError(
            f"shard {self.number}: actor unavailable during {what} ({exc})"))

    def _call(self, call: ShardCall):
        return self.get(self.actor.handle.remote(call), call.method)

    def pid(self) -> int:
        return self.get(self.actor.pid.remote(), "pid")

    def _write(self, call: ShardCall, committed: Callable[[], bool], what: str):
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return self.get(self.actor.handle.options(max_task_retries=0).remote(call), what)
            except ClusterUnavailableError:
                if attempt == WRITE_ATTEMPTS:
                    raise
                log.warning("shard %d: actor failed during %s (attempt %d); checking the store", self.number,
                            what, attempt)
                if committed():  # a retried read: waits for the restarted actor
                    return None

    def catch_up(self) -> int:
        return 0  # every actor call that reads memory catches up itself

    def scan(self, call: Scan) -> ScanReply:
        return self._call(call)

    def persons(self, call: Persons) -> PersonsReply:
        return self._call(call)

    def rerank(self, call: Rerank) -> RerankReply:
        return self._call(call)

    def insert(self, call: Insert) -> None:
        call = dataclasses.replace(call, prepared={})  # prepared templates hold native objects
        self._write(call, lambda: self.has_subject(HasSubject(call.subject_id)), f"insert of {call.subject_id!r}")

    def bulk_insert(self, call: BulkInsert) -> int:
        done = self._write(call, lambda: self.has_subject(HasSubject(call.rows[0][0])), "bulk insert")
        return len(call.rows) if done is None else done  # one transaction: all of the batch or none

    def remove(self, call: Remove) -> None:
        self._write(call, lambda: not self.has_subject(HasSubject(call.subject_id)),
                    f"removal of {call.subject_id!r}")

    def position_counts(self, call: PositionCounts = PositionCounts()) -> dict:
        return self._call(call)

    def present(self, call: Present) -> list:
        return self._call(call)

    def has_subject(self, call: HasSubject) -> bool:
        return self._call(call)

    def count_subjects(self, call: CountSubjects = CountSubjects()) -> int:
        return self._call(call)

    def subject_prepared(self, call: SubjectPrepared) -> dict:
        templates = self._call(SubjectTemplates(call.subject_id, cached=True))
        return {p: prepare(t, self._params) for p, t in templates.items()}

    def subject_templates(self, call: SubjectTemplates) -> dict:
        return self._call(call)

    def subject_info(self, call: SubjectInfo) -> SubjectInfoReply:
        return self._call(call)

    def stats(self, call: Stats = Stats()) -> ShardStats:
        return self._call(call)

    def integrity_problems(self, call: IntegrityProblems = IntegrityProblems()) -> list:
        return self._call(call)

    def sequences(self, call: Sequences = Sequences()) -> dict:
        return self._call(call)

    def close(self) -> None:
        pass  # the actor is shared by every router; see release_actors
