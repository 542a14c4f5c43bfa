"""The gallery on a Ray cluster: one actor per shard, scatter-gather search, one cluster-wide writer.

Pipeline of one enrolment through a :class:`DistributedGallery`::

    router (any process) -> writer actor (one per gallery, serialises enrolments cluster-wide,
    holds the folder's flock) -> two-phase search over every shard actor (scatter.py: scan,
    person cut, re-rank of each shard's share) -> merge and decide exactly as Gallery does ->
    insert on the subject's shard of the current routing epoch (durable) -> report

Actors (named, detached, namespace ``biomatch``, shared by every router of the gallery)::

    <gallery_id>/shard-000 ... shard-NNN   ShardActor: opens Shard(spec) in its own process,
                                           num_cpus=1, one OpenMP thread, restarted on failure
                                           (re-opens its shard from the store); reads retried
    <gallery_id>/writer                    WriterActor: max_concurrency 1, restarted on failure

Why one writer actor and not a lock: a lease lock held by a router that dies must expire, and a
router that stalls past its lease could still insert after another router's dedup; an actor that
runs dedup-then-insert itself has neither problem (its mailbox is the lock, and it dies with the
operation).  It also takes the gallery folder's ``flock``, so embedded :class:`Gallery` writers
on the same machine are serialised with the cluster.  Searches (deduplicate, identify, verify)
do not go through it and scale with routers and shards.

Multi-node placement: when a node advertises the custom resource ``biomatch_shard_NNN`` the
actor of shard NNN is placed there (that node must hold ``shards/NNN`` under the same path), and
``biomatch_gallery`` places the writer (the node holding ``manifest.json`` and
``gallery.lock``); without those resources every actor may run anywhere (one machine).

The shard actor and its proxy are in :mod:`biomatch.dedup.cluster_shard`.  Ray is imported only by
these two modules; ``biomatch`` and the embedded gallery never import them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterable

from ..errors import BiomatchError, StorageError, invalid
from ..params import to_json
from .cluster_shard import FOLD_EVERY, ClusterUnavailableError, ShardActor, _get, _RemoteShard, _ray
from . import pipeline
from .core import open_keyring
from .gallery import Gallery
from .intake import check_face, windowed
from .manifest import decision_from_json, read_manifest
from .pipeline import check_window_args
from .protocol import ShardCall
from .records import Enrolment
from .report import DedupReport

__all__ = ["DistributedGallery", "ClusterUnavailableError", "NAMESPACE", "connect", "release_actors"]

log = logging.getLogger(__name__)

NAMESPACE = "biomatch"
_WRITER_RESTART_WAIT_S = 120.0
"""How long a router waits for a restarted writer actor after losing a write to its death (its
restart re-opens the gallery: seconds; beyond this the next write fails as unavailable too)."""


def connect(address: str | None = None, **init_kwargs) -> None:
    """Connect this process to a Ray cluster unless it already is.

    ``address`` None starts a private local cluster; ``"auto"`` joins the one started on this
    machine by ``biomatch cluster start`` (or ``ray start --head``).  None is passed to Ray as
    ``"local"``: Ray's own default (no address) silently joins the latest cluster started on the
    machine (``RAY_ADDRESS`` or ``/tmp/ray/ray_current_cluster``), which may be anybody's.
    """
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address="local" if address is None else address, include_dashboard=False, log_to_driver=False,
                 **init_kwargs)


# ---- moving records over the wire ----------------------------------------------------------------
def _wire(record: Enrolment) -> tuple:
    """An Enrolment as plain picklable values (Enrolment itself refuses attribute setting)."""
    return (record.subject_id, record.fingers, record.face, record.face_quality, record.dpi, record.metadata)


def _unwire(values: tuple) -> Enrolment:
    """The Enrolment of :func:`_wire`'s values (already validated by the sender's constructor)."""
    rec = object.__new__(Enrolment)
    for name, v in zip(("subject_id", "fingers", "face", "face_quality", "dpi", "metadata"), values):
        object.__setattr__(rec, name, v)
    return rec


# ---- the writer actor (a plain class; wrapped with ray.remote when first used) ----------------------
class WriterActor:
    """The gallery's single writer: dedup-then-insert of one record at a time, cluster-wide."""

    def __init__(self, path: str, cache_bytes: int, fold_every: int, key=None):
        self.g = DistributedGallery.open(path, cache_bytes=cache_bytes, fold_every=fold_every, key=key, _writer=True)

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return _ray().get_runtime_context().get_node_id()

    def enroll(self, wired, dedup, accept_review, decision_json) -> DedupReport:
        self.g.decision_params = decision_from_json(decision_json)
        return Gallery.enroll(self.g, _unwire(wired), dedup=dedup, accept_review=accept_review,
                              check_face_quality=False)  # checked by the router (the quality is not sent)

    def enroll_window(self, wired_batch, accept_review, decision_json, n_threads, stop_on_error) -> list:
        self.g.decision_params = decision_from_json(decision_json)
        return pipeline.enroll_window(self.g, [_unwire(w) for w in wired_batch], accept_review, False, n_threads,
                                      stop_on_error)  # faces checked by the router (the quality is not sent)

    def bulk_enroll(self, wired_batch) -> int:
        records = [_unwire(w) for w in wired_batch]
        return Gallery.bulk_enroll(self.g, records, batch_size=max(len(records), 1))

    def remove(self, subject_id) -> None:
        Gallery.remove(self.g, subject_id)

    def add_shard(self) -> int:
        return Gallery.add_shard(self.g)


# ---- the router ------------------------------------------------------------------------------------
def _actor_name(gallery_id: str, what: str) -> str:
    return f"{gallery_id}/{what}"


def _placement(resource: str) -> dict:
    ray = _ray()
    return {"resources": {resource: 0.001}} if ray.cluster_resources().get(resource) else {}


class DistributedGallery(Gallery):
    """A gallery whose shards are Ray actors; the API of :class:`~biomatch.dedup.Gallery`.

    Open with :meth:`create` or :meth:`open` (connects to Ray first: ``address`` as for
    :func:`connect`).  Several routers (processes, machines) may open the same gallery: they
    share its actors.  Answers are those of the embedded gallery on the same folder, and of a
    one-shard gallery holding the same data: same candidates, scores and decisions (the
    two-phase search of :mod:`biomatch.dedup.scatter`).

    Notes
    -----
    Thread-safe like Gallery.  Enrolments (``enroll``, ``enroll_many``, ``bulk_enroll``,
    ``remove``) are forwarded to the gallery's writer actor, which serialises them across the
    cluster (and with embedded writers on the same folder, by its flock), and so is
    :meth:`add_shard`; searches visit every shard actor in parallel, three calls each (scan,
    person scores, re-ranking of the shard's share of the gallery-wide top k), and merge here.
    Memory here is small (the manifest and the candidates); each shard actor holds what an
    embedded shard holds
    (~900 B per ten-finger enrolment plus its cache) and a Ray worker (~150-250 MiB).
    Per query Ray adds 10-20 ms (three round trips; ``benchmarks/cluster_scaling.py``), and
    each shard with candidates prepares the probe itself (~0.5 ms per finger, in parallel).

    If a shard actor dies, Ray restarts it (it re-opens its shard from the store); searches in
    flight are retried; a write in flight is completed exactly once (see ``_RemoteShard``).  If
    the writer actor dies during an enrolment, that enrolment raises
    :class:`ClusterUnavailableError` (outcome unknown; retrying is safe) and batch methods with
    ``stop_on_error=False`` report it for that item.
    """

    def __init__(self, path: Path, manifest: dict, read_only: bool, decision, cache_bytes: int,
                 writer_role: bool = False, fold_every: int = FOLD_EVERY, keyring=None):
        ray = _ray()
        self._keyring = keyring  # its KeyProvider goes to the actors in their ShardSpecs (never key material)
        self._init_state(path, manifest, read_only, decision, cache_bytes, lock=writer_role)
        self._writer_role = writer_role
        gid = manifest["gallery_id"]
        self._fold_every = fold_every
        self._shards = [self._open_shard(i) for i in range(manifest["n_shards"])]
        self._writer_actor = None
        if not writer_role and not read_only:
            self._writer_actor = ray.remote(WriterActor).options(
                name=_actor_name(gid, "writer"), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1,
                **_placement("biomatch_gallery")).remote(str(path), self._cache_bytes, fold_every,
                                                         None if keyring is None else keyring.provider)

    def _open_shard(self, i: int) -> "_RemoteShard":
        """The proxy of shard ``i``'s actor, started unless running (shared by every router)."""
        ray = _ray()
        actor = ray.remote(ShardActor).options(
            name=_actor_name(self._manifest["gallery_id"], f"shard-{i:03d}"), namespace=NAMESPACE,
            lifetime="detached", get_if_exists=True, num_cpus=1, max_restarts=-1, max_task_retries=-1,
            **_placement(f"biomatch_shard_{i:03d}")).remote(self._spec(i, False, 1), self._fold_every)
        return _RemoteShard(actor, i, self.match_params)

    def _create_shard(self, n: int) -> None:
        if not self._writer_role:
            raise StorageError("writes go through the writer actor")  # never reached: overridden below
        super()._create_shard(n)

    # ---- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def create(cls, path, *, address: str | None = None, n_shards: int = 1, cache_bytes: int | None = None,
               **kwargs) -> "DistributedGallery":
        """Create the gallery folder (as :meth:`Gallery.create`) and open it on the cluster."""
        Gallery.create(path, n_shards=n_shards, **kwargs).close()
        return cls.open(path, address=address, cache_bytes=cache_bytes, key=kwargs.get("key"))

    @classmethod
    def open(cls, path, *, address: str | None = None, match_params=None, decision=None, read_only: bool = False,
             cache_bytes: int | None = None, fold_every: int = FOLD_EVERY, key=None,
             _writer: bool = False) -> "DistributedGallery":
        """Open a gallery folder on the cluster, starting its actors unless they are running.

        Parameters
        ----------
        address : str, optional
            Ray address for :func:`connect` (ignored when this process is already connected).
        read_only : bool
            No writer actor is started or used; writes raise StorageError.
        cache_bytes : int, optional
            LRU cache of prepared templates per shard actor (used when the actors start).
        fold_every : int
            Subjects a shard actor inserts between folds of its delta into its saved index
            files (see :data:`FOLD_EVERY`; used when the actors start).
        key : KeyProvider, optional
            An encrypted gallery's key (as :meth:`Gallery.open`).  It is sent to the actors
            when they start: a :class:`~biomatch.dedup.encryption.KeyFile` must be readable at
            the same path on their nodes (a ``KeyEnv`` variable set there); a ``LocalKey``
            cannot be sent.
        """
        path = Path(path).resolve()
        manifest, cache_bytes = cls._checked_open(path, match_params, decision, cache_bytes)
        if isinstance(fold_every, bool) or not isinstance(fold_every, int) or fold_every < 1:
            raise invalid("fold_every", "an int >= 1", fold_every)
        keyring = open_keyring(path, manifest, key)
        if not _writer:
            connect(address)
        return cls(path, manifest, read_only, decision, cache_bytes, writer_role=_writer, fold_every=fold_every,
                   keyring=keyring)

    def close(self) -> None:
        """Forget the actors (they keep serving other routers; see :func:`release_actors`)."""
        with self._thread_lock:
            if self._closed:
                return
            self._closed = True
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __repr__(self) -> str:
        return f"DistributedGallery(path={str(self.path)!r}, shards={len(self._shards)}, closed={self._closed})"

    def actors(self) -> dict:
        """``{"shard-000": handle, ..., "writer": handle}`` (for monitoring and fault tests)."""
        out = {f"shard-{s.number:03d}": s.actor for s in self._shards}
        if self._writer_actor is not None:
            out["writer"] = self._writer_actor
        return out

    # ---- the parts of Gallery that differ ------------------------------------------------------------
    @contextlib.contextmanager
    def _writer(self):
        """In the writer actor: this actor's lock, then the folder's flock (embedded writers)."""
        self._check_open()
        if not self._writer_role:
            raise StorageError("writes go through the writer actor")  # never reached: overridden below
        with self._thread_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._refresh(force=True)  # routing (add_shard by another writer) is current under the lock
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _count_hint(self) -> dict:
        return self._counts_seen  # the counts of the last search (a stale hint costs a second scan)

    def _fan(self, call: ShardCall) -> list:
        """Send ``call`` to every shard actor in parallel; the replies in shard order."""
        refs = [s.actor.handle.remote(call) for s in self._shards]
        return [s.get(r, call.method) for s, r in zip(self._shards, refs)]

    def _search(self, subject_id: str, usable: dict, top: int, face=None) -> tuple[DedupReport, dict]:
        """The two-phase scatter-gather of Gallery, over the shard actors (they prepare the probe)."""
        probe = _ray().put(dict(usable))
        report = self._scatter_search(subject_id, tuple(sorted(usable)), probe, probe, top, face, {})
        return report, usable

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only or self._writer_actor is None:
            raise StorageError(f"gallery {str(self.path)!r}: opened read-only")

    def _writer_call(self, ref, what: str):
        try:
            return _get(ref, lambda exc: ClusterUnavailableError(
                f"writer actor died during {what}: the outcome is unknown; retrying is safe (a committed subject "
                f"then raises DuplicateSubjectError)"))
        except ClusterUnavailableError:
            # Only the call in flight is lost: the next write must reach the restarted actor, not
            # race Ray's restart and fail too (a busy machine restarts it in seconds).
            self._await_writer()
            raise

    def _await_writer(self) -> None:
        """Wait (up to ``_WRITER_RESTART_WAIT_S``) until the writer actor answers again."""
        ray = _ray()
        deadline = time.monotonic() + _WRITER_RESTART_WAIT_S
        while time.monotonic() < deadline:
            try:
                ray.get(self._writer_actor.pid.remote(), timeout=max(0.1, deadline - time.monotonic()))
                return
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                time.sleep(0.2)
        log.warning("writer actor of %s did not come back within %.0f s", self.path, _WRITER_RESTART_WAIT_S)

    def enroll(self, record: Enrolment, dedup: bool = True, accept_review: bool = False,
               check_face_quality: bool = True) -> DedupReport:
        """As :meth:`Gallery.enroll`, serialised cluster-wide by the writer actor.

        Raises
        ------
        ClusterUnavailableError
            The writer actor died while handling this record (outcome unknown; retry).
        """
        self._check_writable()
        if not isinstance(record, Enrolment):
            raise invalid("record", "a biomatch Enrolment", type(record).__name__)
        self._check_quality(self._usable(record.fingers, "record.fingers"), "record.fingers")  # before the trip
        if check_face_quality:
            check_face(record)
        ref = self._writer_actor.enroll.remote(_wire(record), dedup, accept_review, to_json(self.decision_params))
        return self._writer_call(ref, f"the enrolment of {record.subject_id!r}")

    def enroll_many(self, records: Iterable[Enrolment], dedup: bool = True, accept_review: bool = False,
                    progress: Callable | None = None, stop_on_error: bool = True, window: int = 1,
                    n_threads: int = 1) -> list:
        """As :meth:`Gallery.enroll_many`; each window is one call to the writer actor, which searches
        its records in parallel over the shard actors and commits them in order."""
        check_window_args(window, n_threads)
        if window == 1 or not dedup:
            return Gallery.enroll_many(self, records, dedup=dedup, accept_review=accept_review, progress=progress,
                                       stop_on_error=stop_on_error)
        self._check_writable()

        def send(recs: list) -> list:
            # The router's checks before the trip (as enroll); a record failing them is not sent.
            errors: dict[int, BiomatchError] = {}
            for i, rec in enumerate(recs):
                try:
                    if not isinstance(rec, Enrolment):
                        raise invalid("record", "a biomatch Enrolment", type(rec).__name__)
                    self._check_quality(self._usable(rec.fingers, "record.fingers"), "record.fingers")
                    check_face(rec)
                except BiomatchError as exc:
                    errors[i] = exc
                    if stop_on_error:
                        break
            last = min(errors) if stop_on_error and errors else len(recs)
            ok = [rec for i, rec in enumerate(recs[:last]) if i not in errors]
            done = iter(self._writer_call(self._writer_actor.enroll_window.remote(
                [_wire(r) for r in ok], accept_review, to_json(self.decision_params), n_threads, stop_on_error),
                f"a window of {len(ok)} enrolments") if ok else [])
            out = [errors[i] if i in errors else next(done, None) for i in range(min(last + 1, len(recs)))]
            return [r for r in out if r is not None]

        return windowed(records, window, send, progress, stop_on_error)

    def bulk_enroll(self, records: Iterable[Enrolment], dedup: bool = False, batch_size: int = 2000,
                    progress: Callable | None = None) -> int:
        """As :meth:`Gallery.bulk_enroll` (NO dedup); each batch is one call to the writer actor."""
        if dedup:
            raise invalid("dedup", "False (bulk_enroll never deduplicates; use enroll or enroll_many)", dedup)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise invalid("batch_size", "an int >= 1", batch_size)
        self._check_writable()
        total = len(records) if hasattr(records, "__len__") else None
        done = 0
        batch: list = []

        def flush():
            nonlocal done
            if batch:
                done += self._writer_call(self._writer_actor.bulk_enroll.remote(batch), "a bulk batch")
                batch.clear()
                if progress is not None:
                    progress(done, total)

        for rec in records:
            if not isinstance(rec, Enrolment):
                raise invalid("record", "a biomatch Enrolment", type(rec).__name__)
            self._usable(rec.fingers, "record.fingers")
            batch.append(_wire(rec))
            if len(batch) >= batch_size:
                flush()
        flush()
        return done

    def add_shard(self) -> int:
        """As :meth:`Gallery.add_shard`, by the writer actor (which creates the shard's folder under
        the gallery path on its node and starts the shard's actor); routers follow the manifest
        at their next call."""
        self._check_writable()
        n = self._writer_call(self._writer_actor.add_shard.remote(), "add_shard")
        self._refresh(force=True)
        return n

    def remove(self, subject_id: str) -> None:
        """As :meth:`Gallery.remove`, through the writer actor."""
        if not isinstance(subject_id, str):
            raise invalid("subject_id", "a str", type(subject_id).__name__)
        self._check_writable()
        self._writer_call(self._writer_actor.remove.remote(subject_id), f"the removal of {subject_id!r}")

    def stats(self) -> dict:
        """As :meth:`Gallery.stats`, plus ``cluster``: the process id of each actor."""
        st = super().stats()
        st["cluster"] = {"shard_pids": [s.pid() for s in self._shards]}
        return st

    def save_indexes(self) -> None:
        """Have every shard actor write its derived index files (faster restarts)."""
        refs = [s.actor.save.remote() for s in self._shards]
        for s, r in zip(self._shards, refs):
            s.get(r, "save")


def release_actors(path, address: str | None = None) -> int:
    """Stop the actors of the gallery at ``path`` (after saving their index files).

    Returns the number of actors stopped.  Routers still open on the gallery start them again
    at their next :meth:`DistributedGallery.open`, not in flight: release only when idle.
    """
    ray = _ray()
    manifest = read_manifest(Path(path))
    connect(address)
    gid = manifest["gallery_id"]
    n = 0
    for what in [f"shard-{i:03d}" for i in range(manifest["n_shards"])] + ["writer"]:
        try:
            actor = ray.get_actor(_actor_name(gid, what), namespace=NAMESPACE)
        except ValueError:
            continue
        if what != "writer":
            with contextlib.suppress(Exception):
                ray.get(actor.save.remote(), timeout=60)
        ray.kill(actor, no_restart=True)
        n += 1
    return n
