"""The durable 1:N gallery: enrol with deduplication as one atomic step, search, verify, remove.

Layout of a gallery folder (0700; files 0600)::

    manifest.json          format, version, gallery id, parameters and their hashes, counts,
                           routing epochs (the shard count each epoch routes new subjects over)
    gallery.lock           flock'd by writers (enrol, remove) in every process
    shards/000/store.sqlite (+ -wal, -shm)   the source of truth (see store.py)
    shards/000/index/      derived retrieval files, caught up from the store on open

Atomic enrol: a writer takes a thread lock and the folder's ``flock``, catches every shard up
with what other processes committed, deduplicates, and commits the subject in one SQLite
transaction (``synchronous=FULL``: fsync'd before :meth:`Gallery.enroll` returns).  Two
records of one person enrolled at the same moment, by threads or processes, are therefore
serialised: the second sees the first and gets ``DUPLICATE``.

Routing: a new subject goes to shard ``blake2b(subject_id) % n`` of the current routing epoch;
:meth:`Gallery.add_shard` starts a new epoch and moves nothing, so a subject is found by asking
the shard of each epoch, newest first (one SQLite lookup per epoch).  Searches visit every
shard in two phases (:mod:`biomatch.dedup.scatter`): the answer does not depend on the number of
shards or on which shard holds whom.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, Mapping

from .. import decide as _decide
from .._io import canonical_checksum, write_private_atomic
from ..errors import (CorruptStoreError, DuplicateSubjectError, GalleryClosedError, GalleryExistsError, IncompatibleGalleryError,
                      IncompatibleTemplateError, NotAGalleryError, NoUsableFingerError, StorageError, invalid)
from ..match import prepare
from ..retrieval.codes import default_model
from ..retrieval.components import make_retrieval, registered
from ..params import MatchParams, from_json, params_hash, stored_params_hash, to_json
from ..template import Template
from .records import Enrolment, coerce_fingers
from .report import Candidate, DedupReport, Verification
from .shard import Shard, ShardSpec

__all__ = ["Gallery", "FORMAT", "FORMAT_VERSION"]

log = logging.getLogger(__name__)

FORMAT = "biomatch-gallery"
FORMAT_VERSION = 1
TEMPLATE_FORMAT = "BMT1/1"
_MANIFEST = "manifest.json"
_LOCK = "gallery.lock"
_CREATING = ".creating"  # present while create() builds the folder; the manifest is written last
DEFAULT_CACHE_BYTES = 512 * 2**20


def _extraction_family() -> set[str]:
    """Extraction generations that score on one scale: the current default and its declared lineage."""
    from .. import params

    return {params_hash(params.ExtractionParams()), *params.EXTRACTION_LINEAGE}


def _code_generation(retrieval: str) -> str | None:
    """The finger-code generation a retrieval component depends on (None: no codes)."""
    if retrieval != "faiss":
        return None
    return default_model().generation


def _check_face(record: Enrolment) -> None:
    if record.face_quality is None:
        return
    from ..errors import FaceQualityError
    from ..face import check_enrolment

    failures = check_enrolment(record.face_quality)
    if failures:
        raise FaceQualityError("record.face: refused for enrolment: " + "; ".join(map(str, failures)),
                               tuple(failures), record.face_quality)


def _decision_from_json(text: str) -> _decide.DecisionParams:
    return from_json(text, _decide.DecisionParams)


class Gallery:
    """A durable, embedded 1:N fingerprint gallery in a folder.

    Open with :meth:`create` or :meth:`open`; use as a context manager or call :meth:`close`.

    Notes
    -----
    Thread-safe, and safe across processes that open the same folder: writers are serialised
    by a lock file; readers see every committed enrolment (each call catches up from the store).
    Memory is bounded: per ten-finger enrolment ~900 B (FAISS codes 640 B + row ids 160 B +
    id maps ~180 B); templates live in the store (~0.6-1 KB per finger on disk) and are prepared
    on demand for the candidates, with an LRU cache of ``cache_bytes`` per shard (a prepared
    finger is ~37 KB).  Search cost: the exhaustive code scan plus ``(prepare ~0.5 ms + match)``
    per candidate finger re-ranked on a cold cache: every finger of the 10 best candidate
    persons, 2 of each other one, and the rest of those 2 that look like a match
    (:class:`~biomatch.decide.DecisionParams` ``rerank_*``; 3.4x fewer comparisons, the same
    decisions, in ``benchmarks/dedup_scale.py``).  With exhaustive retrieval every enrolled
    finger of each probe position is compared (only for galleries that fit the cache).
    """

    def __init__(self, path: Path, manifest: dict, read_only: bool, n_threads: int,
                 decision: _decide.DecisionParams | None, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self._init_state(path, manifest, read_only, decision, cache_bytes, lock=not read_only)
        self._n_threads = n_threads
        self._shards: list[Shard] = []
        try:
            for i in range(manifest["n_shards"]):
                self._shards.append(self._open_shard(i))
        except BaseException:
            self._release()
            raise

    def _init_state(self, path: Path, manifest: dict, read_only: bool, decision, cache_bytes: int,
                    lock: bool) -> None:
        """The state every gallery front end holds (embedded, or a Ray router / writer)."""
        self._cache_bytes = int(cache_bytes)
        self.path = path
        self._manifest = manifest
        self.read_only = read_only
        self.match_params = from_json(manifest["match_params"], MatchParams)
        self.decision_params = decision or _decision_from_json(manifest["decision_params"])
        self._thread_lock = threading.RLock()
        self._closed = False
        self._lock_fd = None
        if lock:
            try:
                self._lock_fd = os.open(path / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StorageError(f"path: cannot open the lock file in {str(path)!r}: {exc.strerror}") from exc
        self._manifest_sig = None  # (mtime, size, inode) of the manifest last read; None: re-read
        self._counts_seen: dict = {}  # code rows per position at the last search (the hint of routers)

    def _open_shard(self, i: int):
        return Shard(self._spec(i, self.read_only, self._n_threads))

    def _spec(self, i: int, read_only: bool, n_threads: int) -> ShardSpec:
        return ShardSpec(cache_bytes=getattr(self, "_cache_bytes", DEFAULT_CACHE_BYTES),
                         folder=str(self.path / "shards" / f"{i:03d}"), gallery_id=self._manifest["gallery_id"],
                         match_params_json=self._manifest["match_params"],
                         retrieval=self._manifest["retrieval"]["kind"], read_only=read_only, n_threads=n_threads)

    # ---- lifecycle ----------------------------------------------------------------------------
    @classmethod
    def create(cls, path, *, n_shards: int = 1, match_params: MatchParams = MatchParams(),
               decision: _decide.DecisionParams = _decide.DecisionParams(), template_params_hash: str | None = None,
               retrieval: str = "faiss", n_threads: int = 1, cache_bytes: int | None = None) -> "Gallery":
        """Create a gallery in a new (or empty) folder.

        Parameters
        ----------
        path : str or Path
        n_shards : int
            Partitions (subjects are routed by a hash of their id; more can be added later by
            :meth:`add_shard` without moving anything).
        match_params, decision
            Stored in the manifest; :meth:`open` refuses other match parameters.
        template_params_hash : str, optional
            Extraction parameter hash every template must carry; by default fixed by the first
            enrolment.
        retrieval : str
            Candidate retrieval component: ``"faiss"`` (default: 512-bit finger codes scanned
            exhaustively per position, the top max(50, 1%) persons re-ranked natively) or
            ``"exhaustive"`` (every enrolled finger re-ranked natively; exact, slow at scale).
        n_threads : int
            Native matcher threads per search.
        """
        path = _gallery_path(path)
        if isinstance(n_shards, bool) or not isinstance(n_shards, int) or not 1 <= n_shards <= 1000:
            raise invalid("n_shards", "an int in [1, 1000]", n_shards)
        if not isinstance(match_params, MatchParams):
            raise invalid("match_params", "a MatchParams", type(match_params).__name__)
        if not isinstance(decision, _decide.DecisionParams):
            raise invalid("decision", "a DecisionParams", type(decision).__name__)
        if template_params_hash is not None and not isinstance(template_params_hash, str):
            raise invalid("template_params_hash", "None or a str", template_params_hash)
        _check_open_args(n_threads, DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes)
        make_retrieval(retrieval)  # validates the name
        # Every argument is checked: from here on a failure removes what this call made.
        if path.is_dir() and (path / _CREATING).exists() and not (path / _MANIFEST).exists():
            _discard_interrupted_creation(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise GalleryExistsError(f"path: expected a new or empty folder, {str(path)!r} already holds files")
        made_folder = not path.exists()
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path, 0o700)
            # Not written atomically on purpose: its presence is the message, so it must appear
            # in one step (a temporary file killed before its rename would be an unknown leftover).
            os.close(os.open(path / _CREATING, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            (path / "shards").mkdir(mode=0o700)
        except OSError as exc:
            _undo_create(path, made_folder)
            raise StorageError(f"path: cannot create gallery folder {str(path)!r}: {exc.strerror}") from exc
        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION, "gallery_id": uuid.uuid4().hex,
            "created_utc": time.time(), "n_shards": n_shards,
            "routing": {"epochs": [{"n_shards": n_shards, "since_utc": time.time()}]},
            "match_params": to_json(match_params), "match_params_hash": params_hash(match_params),
            "decision_params": to_json(decision), "decision_params_hash": params_hash(decision),
            "template_format": TEMPLATE_FORMAT, "template_params_hash": template_params_hash,
            "retrieval": {"kind": retrieval, "code_generation": _code_generation(retrieval)},
            "counts": {"subjects": 0, "fingers": 0},
        }
        try:
            for i in range(n_shards):
                tmp = cls.__new__(cls)
                tmp.path, tmp._manifest = path, manifest
                Shard.create(tmp._spec(i, False, 1), i).close()
            # The manifest is written last: a folder without it is not a gallery (the marker says
            # that a kill interrupted its creation, so that create() may start again).
            _write_manifest(path, manifest)
            (path / _CREATING).unlink()
        except BaseException:
            if not (path / _MANIFEST).exists():
                _undo_create(path, made_folder)
            raise
        return cls.open(path, n_threads=n_threads, cache_bytes=cache_bytes)

    @staticmethod
    def _read_manifest(path: Path) -> dict:
        f = path / _MANIFEST
        if not path.is_dir():
            raise NotAGalleryError(f"path: expected a gallery folder, {str(path)!r} is not a folder")
        try:
            manifest = json.loads(f.read_text())
        except FileNotFoundError:
            if (path / _CREATING).exists():
                raise NotAGalleryError(f"path: {str(path)!r} holds a gallery whose creation was interrupted; "
                                       f"create it again (biomatch gallery create replaces it)") from None
            raise NotAGalleryError(f"path: {str(path)!r} is not a biomatch gallery (no {_MANIFEST})") from None
        except (OSError, ValueError) as exc:
            if (path / "shards").is_dir():  # a gallery's folder: its manifest is damaged
                raise CorruptStoreError(f"manifest {str(f)!r}: unreadable, the file is damaged ({exc}); restore it "
                                        f"from a backup (biomatch gallery restore)") from None
            raise NotAGalleryError(f"path: unreadable manifest {str(f)!r}: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise NotAGalleryError(f"path: {str(f)!r} is not a biomatch gallery manifest")
        if "checksum" in manifest and manifest["checksum"] != canonical_checksum(manifest):
            # routing, parameters and thresholds come from here: a damaged one is never used
            raise CorruptStoreError(f"manifest {str(f)!r}: checksum mismatch, the file is damaged or was edited "
                                    f"(restore it from a backup: biomatch gallery restore)")
        try:
            return Gallery._checked_manifest(manifest, f)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise CorruptStoreError(f"manifest {str(f)!r}: malformed ({type(exc).__name__}: {exc})") from None

    @staticmethod
    def _checked_manifest(manifest: dict, f: Path) -> dict:
        for key, kind in (("gallery_id", str), ("n_shards", int), ("match_params", str), ("decision_params", str)):
            if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
                raise CorruptStoreError(f"manifest {str(f)!r}: expected {key} a {kind.__name__}, "
                                        f"got {manifest.get(key)!r}")
        if manifest.get("version") != FORMAT_VERSION:
            raise IncompatibleGalleryError(
                f"manifest {str(f)!r}: expected format version {FORMAT_VERSION}, got {manifest.get('version')}")
        if manifest.get("template_format") != TEMPLATE_FORMAT:
            raise IncompatibleGalleryError(f"manifest {str(f)!r}: expected template format {TEMPLATE_FORMAT}, "
                                           f"got {manifest.get('template_format')}")
        try:
            mp = from_json(manifest["match_params"], MatchParams)
        except Exception as exc:
            raise IncompatibleGalleryError(f"manifest {str(f)!r}: unreadable match parameters ({exc})") from exc
        try:  # (no hash comparison: a field added to DecisionParams later must not lock old galleries out)
            _decision_from_json(manifest["decision_params"])
        except Exception as exc:
            raise IncompatibleGalleryError(f"manifest {str(f)!r}: unreadable decision parameters ({exc})") from exc
        # The hash of the parameters as written: a gallery written before a field existed stores
        # fewer values (read with the value that reproduces its scores, biomatch.params.from_json).
        if stored_params_hash(manifest["match_params"], MatchParams) != manifest.get("match_params_hash"):
            raise IncompatibleGalleryError(f"manifest {str(f)!r}: match parameter hash does not match its parameters")
        epochs = [e.get("n_shards") for e in (manifest.get("routing") or {}).get("epochs", ())
                  if isinstance(e, dict)] or [manifest.get("n_shards")]
        if not all(isinstance(n, int) and 1 <= n <= 1000 for n in epochs) or epochs != sorted(set(epochs)) \
                or epochs[-1] != manifest.get("n_shards"):
            raise IncompatibleGalleryError(f"manifest {str(f)!r}: routing epochs {epochs} do not end at "
                                           f"n_shards {manifest.get('n_shards')}")
        retrieval = manifest.get("retrieval") or {}
        kind = retrieval.get("kind")
        if kind not in registered():
            raise IncompatibleGalleryError(f"manifest {str(f)!r}: expected a retrieval component in "
                                           f"{registered()}, got {kind!r}")
        want = _code_generation(kind)
        if retrieval.get("code_generation") != want:
            raise IncompatibleGalleryError(f"manifest {str(f)!r}: expected finger-code generation {want}, got "
                                           f"{retrieval.get('code_generation')} (re-create the gallery, or open it "
                                           f"with the biomatch version that built it)")
        return manifest

    @classmethod
    def open(cls, path, *, match_params: MatchParams | None = None, decision: _decide.DecisionParams | None = None,
             read_only: bool = False, n_threads: int = 1, cache_bytes: int | None = None) -> "Gallery":
        """Open an existing gallery; in-memory state is rebuilt and caught up from the stores.

        ``cache_bytes`` bounds each shard's LRU cache of prepared templates (default 512 MiB);
        templates are otherwise read from the store and prepared when they become candidates.

        Raises
        ------
        NotAGalleryError, IncompatibleGalleryError, StorageError
        """
        path = _gallery_path(path)
        if not isinstance(read_only, bool):
            raise invalid("read_only", "a bool", read_only)
        _check_open_args(n_threads, DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes)
        manifest, cache_bytes = cls._checked_open(path, match_params, decision, cache_bytes)
        return cls(path, manifest, read_only, n_threads, decision, cache_bytes)

    @classmethod
    def _checked_open(cls, path: Path, match_params, decision, cache_bytes) -> tuple[dict, int]:
        """The manifest and the cache size of an :meth:`open`, the arguments checked against them."""
        manifest = cls._read_manifest(path)
        if match_params is not None and params_hash(match_params) not in (
                manifest["match_params_hash"], params_hash(from_json(manifest["match_params"], MatchParams))):
            raise IncompatibleGalleryError(
                f"match_params: expected the gallery's generation {manifest['match_params_hash']}, "
                f"got {params_hash(match_params)}")
        if decision is not None and not isinstance(decision, _decide.DecisionParams):
            raise invalid("decision", "a DecisionParams", type(decision).__name__)
        if cache_bytes is None:
            cache_bytes = DEFAULT_CACHE_BYTES
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise invalid("cache_bytes", "an int >= 0", cache_bytes)
        return manifest, cache_bytes

    def close(self) -> None:
        """Save derived index files and close the stores (idempotent)."""
        with self._thread_lock:
            if self._closed:
                return
            self._closed = True
            if not self.read_only:
                with contextlib.suppress(Exception):  # counts are informative; the stores are authoritative
                    self._write_counts()
            self._release()

    def _write_counts(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            fresh = self._read_manifest(self.path)
            counts = [s._store.counts() for s in self._shards]
            fresh["counts"] = {"subjects": sum(c["subjects"] for c in counts),
                               "fingers": sum(c["fingers"] for c in counts)}
            _write_manifest(self.path, fresh)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _release(self) -> None:
        for s in self._shards:
            with contextlib.suppress(Exception):
                s.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery(path={str(self.path)!r}, shards={len(self._shards)}, closed={self._closed})"

    # ---- helpers ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise GalleryClosedError(f"gallery {str(self.path)!r} is closed")
        self._refresh()

    def _refresh(self, force: bool = False) -> None:
        """Follow the manifest: shards added by another process (add_shard) are opened here.

        A stat per call; the manifest is re-read when it changed (it is replaced atomically, so
        a new inode) or when ``force`` (inside the write lock: routing must be current there).
        """
        try:
            st = os.stat(self.path / _MANIFEST)
        except OSError:
            return
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig == self._manifest_sig and not force:
            return
        with self._thread_lock:
            fresh = self._read_manifest(self.path)
            while len(self._shards) < fresh["n_shards"]:
                self._shards.append(self._open_shard(len(self._shards)))
            self._manifest, self._manifest_sig = fresh, sig

    @contextlib.contextmanager
    def _writer(self):
        """Serialise writers: this process's threads, then every process (flock)."""
        self._check_open()
        if self.read_only:
            raise StorageError(f"gallery {str(self.path)!r}: opened read-only")
        with self._thread_lock:
            self._check_open()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._refresh(force=True)
                for s in self._shards:
                    s.catch_up()
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _epochs(self) -> list[int]:
        """Shard counts of the routing epochs, oldest first (the last routes new subjects)."""
        routing = self._manifest.get("routing") or {}
        return [int(e["n_shards"]) for e in routing.get("epochs", ())] or [int(self._manifest["n_shards"])]

    def _homes(self, subject_id: str) -> list[int]:
        """Shard numbers where a subject may be enrolled: its hash modulo each epoch's shard
        count, newest epoch first (a subject never moves: it stays where its epoch put it)."""
        h = _subject_hash(subject_id)
        return list(dict.fromkeys(h % n for n in reversed(self._epochs())))

    def _route(self, subject_id: str) -> Shard:
        """The shard of a NEW subject (the current epoch)."""
        return self._shards[self._homes(subject_id)[0]]

    def _locate(self, subject_id: str):
        """The shard holding an enrolled subject, else None (asks at most one shard per epoch)."""
        for i in self._homes(subject_id):
            if self._shards[i].has_subject(subject_id):
                return self._shards[i]
        return None

    def _located(self, subject_id: str):
        """The shard holding a subject; for an unknown one its new-subject shard (which raises
        UnknownSubjectError on use)."""
        return self._locate(subject_id) or self._route(subject_id)

    def _check_not_enrolled_earlier(self, subject_ids: list) -> None:
        """Refuse ids enrolled under an older routing epoch (the current shard's own UNIQUE
        constraint catches the rest).  Inside the write lock."""
        older: dict[int, list] = {}
        for sid in subject_ids:
            for i in self._homes(sid)[1:]:
                older.setdefault(i, []).append(sid)
        for i, ids in older.items():
            found = self._shards[i].present(ids)
            if found:
                raise DuplicateSubjectError(f"subject_id: {found[0]!r} is already enrolled")

    def _usable(self, fingers: Mapping[int, Template], name: str) -> dict[int, Template]:
        # Empty templates (no print) carry no generation worth checking: filter first.
        usable = {p: t for p, t in fingers.items() if len(t) >= max(self.match_params.min_minutiae, 1)}
        if not usable:
            raise NoUsableFingerError(f"{name}: expected at least one finger with >= "
                                      f"{max(self.match_params.min_minutiae, 1)} minutiae, got none "
                                      f"(positions {sorted(fingers)})")
        hashes = {t.params_hash for t in usable.values()}
        if len(hashes) > 1:
            raise IncompatibleTemplateError(f"{name}: expected templates of one extraction generation, "
                                            f"got parameter hashes {sorted(hashes)}")
        want = self._manifest.get("template_params_hash")
        if want is not None and hashes != {want} and not hashes | {want} <= _extraction_family():
            raise IncompatibleTemplateError(f"{name}: expected templates with extraction parameter hash {want!r} "
                                            f"(or of its lineage, biomatch.params.EXTRACTION_LINEAGE), "
                                            f"got {next(iter(hashes))!r}")
        return usable

    def _check_quality(self, usable: dict, name: str) -> None:
        """Refuse an enrolment whose finger is below ``DecisionParams.enrol_min_quality``."""
        from .records import POSITION_NAMES
        from ..errors import FingerQualityError

        low = self.decision_params.enrol_min_quality
        for p, t in sorted(usable.items()):
            if int(t.quality) < low:
                raise FingerQualityError(f"{name}[{p}] ({POSITION_NAMES[p]}): print quality {int(t.quality)} is below "
                                         f"the gallery's enrolment minimum {low}; capture it again", p, int(t.quality), low)

    def _probe(self, probe, dpi: float = 500) -> tuple[str, dict[int, Template]]:
        if isinstance(probe, Enrolment):
            return probe.subject_id, probe.fingers
        if isinstance(probe, Mapping):
            return "", coerce_fingers(probe, dpi, "probe")
        raise invalid("probe", "an Enrolment or a mapping {position: image or Template}", type(probe).__name__)

    def _fix_template_generation(self, record_hash: str) -> None:
        """Fix the gallery's template generation at its first enrolment (inside the write lock)."""
        if self._manifest.get("template_params_hash") is not None:
            return
        fresh = self._read_manifest(self.path)  # another process may have fixed it
        if fresh.get("template_params_hash") is None:
            fresh["template_params_hash"] = record_hash
            _write_manifest(self.path, fresh)
        self._manifest = fresh

    def _n_subjects(self) -> int:
        return sum(s.n_subjects for s in self._shards)

    def _count_hint(self) -> dict:
        """The gallery's active code rows per position (embedded: fresh; see DistributedGallery)."""
        hint: dict = {}
        for s in self._shards:
            for p, n in s.position_counts().items():
                hint[p] = hint.get(p, 0) + n
        return hint

    def _fan(self, method: str, *args) -> list:
        """Call ``method(*args)`` on every shard; the results in shard order (embedded: in turn)."""
        return [getattr(s, method)(*args) for s in self._shards]

    def _search(self, subject_id: str, usable: dict, top: int, face=None) -> tuple[DedupReport, dict]:
        t0 = time.perf_counter()
        prepared = {p: prepare(t, self.match_params) for p, t in usable.items()}
        timings = {"prepare": (time.perf_counter() - t0) * 1e3}
        return self._scatter_search(subject_id, tuple(sorted(usable)), usable, prepared, top, face, timings), prepared

    def _scatter_search(self, subject_id: str, positions: tuple, scan_probe, rerank_probe, top: int, face,
                        timings: dict) -> DedupReport:
        """The two-phase search over every shard (:mod:`biomatch.dedup.scatter`), merged and decided.

        ``scan_probe`` / ``rerank_probe``: what the shards' scan and rerank receive (Templates,
        prepared templates, or a Ray reference to the Templates).
        """
        from .scatter import ScanLostError, n_rows_for, nth_best, nth_person, row_cuts

        d = self.decision_params
        face_k = d.face_candidates if face is not None else 0
        t0 = time.perf_counter()
        for attempt in range(3):
            qid = uuid.uuid4().hex
            try:
                scans = self._fan("scan", qid, scan_probe, self._count_hint(), face, face_k)
                counts: dict = {}
                for sc in scans:
                    for p, n in sc["counts"].items():
                        counts[p] = counts.get(p, 0) + n
                self._counts_seen = counts
                code_cut = full_cut = (float("-inf"), "")  # no code ranking: every person, every finger
                if scans[0]["two_phase"]:
                    valid = set(scans[0]["valid"])
                    k, n_rows = n_rows_for(scans[0]["params"], counts, sum(1 for p in valid if counts.get(p)))
                    if any(sc["fetched"] < n_rows + 1 and any(sc["counts"].get(p, 0) > sc["fetched"] for p in valid)
                           for sc in scans):  # the hint was stale: a shard may lack rows within the cut
                        scans = self._fan("scan", qid, scan_probe, counts, face, face_k)
                    n_keep = max(top, k)
                    lists = self._fan("persons", qid, row_cuts([sc["hist"] for sc in scans], n_rows), n_keep)
                    code_cut, full_cut = nth_person(lists, n_keep), nth_person(lists, d.rerank_full_persons)
                face_cut = nth_best([sc["face_scores"] for sc in scans], face_k)
                t1 = time.perf_counter()
                results = self._fan("rerank", qid, rerank_probe, d, top, code_cut, full_cut, face_cut, face)
                break
            except ScanLostError:
                if attempt == 2:
                    raise
                log.warning("a shard lost the scan of a query (restarted?); searching again")
        t2 = time.perf_counter()
        timings = dict(timings, retrieve=sum(sc["ms"] for sc in scans), scatter_gather=(t2 - t0) * 1e3,
                       code_stage=(t1 - t0) * 1e3, slowest_shard=max(sum(tm.values()) for _, tm, _ in results)
                       + max(sc["ms"] for sc in scans))
        cands: list[Candidate] = []
        work: dict = {}
        for got, tm, wk in results:
            cands.extend(got)
            for key, v in tm.items():
                timings[key] = timings.get(key, 0.0) + v
            for key, v in wk.items():
                work[key] = work.get(key, 0) + v
        cands.sort(key=lambda c: (-c.score, c.subject_id))
        cands = cands[:top]
        n = sum(sc["n_subjects"] for sc in scans)
        th = _decide.thresholds(n, d)
        decision = _decide.decide(cands[0].score if cands else 0.0, th)
        return DedupReport(subject_id=subject_id, decision=decision, candidates=tuple(cands),
                           thresholds=th.as_dict(), positions_used=positions, gallery_size=n,
                           timings_ms=timings, work=work)

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
            _check_face(record)
        with self._writer():
            shard = self._route(record.subject_id)
            if self._locate(record.subject_id) is not None:
                raise DuplicateSubjectError(f"subject_id: {record.subject_id!r} is already enrolled")
            if dedup:
                report, prepared = self._search(record.subject_id, usable, self.decision_params.max_candidates,
                                                record.face)
            else:
                prepared = {p: prepare(t, self.match_params) for p, t in usable.items()}
                n = self._n_subjects()
                report = DedupReport(subject_id=record.subject_id, decision=_decide.UNIQUE,
                                     thresholds=_decide.thresholds(n, self.decision_params).as_dict(),
                                     positions_used=tuple(sorted(usable)), gallery_size=n)
            if report.decision == _decide.DUPLICATE or (report.decision == _decide.REVIEW and not accept_review):
                return report
            t0 = time.perf_counter()
            self._fix_template_generation(next(iter(usable.values())).params_hash)
            self._usable(usable, "record.fingers")  # re-check against the generation fixed under the lock
            shard.insert(record.subject_id, usable, prepared, record.metadata_json, record.face)
            timings = dict(report.timings_ms, commit=(time.perf_counter() - t0) * 1e3)
            return dataclasses.replace(report, enrolled=True, timings_ms=timings)

    def enroll_many(self, records: Iterable[Enrolment], dedup: bool = True, accept_review: bool = False,
                    progress: Callable | None = None, stop_on_error: bool = True) -> list:
        """Enrol a backlog, one durable enrolment at a time (each sees the previous ones).

        Parameters
        ----------
        progress : callable(done, total, result), optional
            Called after each record; ``result`` is its DedupReport or the exception raised;
            ``total`` is None for iterables without a length.  A record reported here is durable.
        stop_on_error : bool
            Raise the first error (default); otherwise record it and go on.

        Returns
        -------
        list of DedupReport or BiomatchError, in input order
        """
        return _each(records, lambda rec: self.enroll(rec, dedup=dedup, accept_review=accept_review),
                     progress, stop_on_error)

    def bulk_enroll(self, records: Iterable[Enrolment], dedup: bool = False, batch_size: int = 2000,
                    progress: Callable | None = None) -> int:
        """Bulk-load a trusted backlog WITHOUT deduplication (the fast path for building a gallery).

        Records are grouped in batches of ``batch_size``; each batch is committed per shard in one
        SQLite transaction (durable when committed; a kill loses at most the current batch, never
        half a subject), and indexed with finger codes computed in batches.  Nothing is searched:
        duplicates among the records or against the gallery are NOT detected (use :meth:`enroll`
        for that).  A subject id already enrolled fails its whole batch.

        Parameters
        ----------
        records : iterable of Enrolment
        dedup : bool
            Must be False (kept explicit so that callers state that dedup is skipped).
        batch_size : int
        progress : callable(done, total), optional
            Called after each committed batch.

        Returns
        -------
        int : subjects enrolled

        Raises
        ------
        InvalidInputError, DuplicateSubjectError, NoUsableFingerError, IncompatibleTemplateError
        """
        if dedup:
            raise invalid("dedup", "False (bulk_enroll never deduplicates; use enroll or enroll_many)", dedup)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise invalid("batch_size", "an int >= 1", batch_size)
        total = len(records) if hasattr(records, "__len__") else None
        done = 0
        batch: list = []

        def flush():
            nonlocal done
            if not batch:
                return
            with self._writer():
                self._fix_template_generation(next(iter(batch[0][1].values())).params_hash)
                self._check_not_enrolled_earlier([rec.subject_id for rec, _ in batch])
                per_shard: dict[int, list] = {}
                for rec, usable in batch:
                    self._usable(usable, "record.fingers")
                    shard = self._route(rec.subject_id)
                    per_shard.setdefault(id(shard), [shard, []])[1].append(
                        (rec.subject_id, usable, rec.metadata_json, rec.face))
                for shard, rows in per_shard.values():
                    done += shard.bulk_insert(rows)
            batch.clear()
            if progress is not None:
                progress(done, total)

        for rec in records:
            if not isinstance(rec, Enrolment):
                raise invalid("record", "a biomatch Enrolment", type(rec).__name__)
            usable = self._usable(rec.fingers, "record.fingers")
            self._check_quality(usable, f"record {rec.subject_id!r} fingers")
            batch.append((rec, usable))
            if len(batch) >= batch_size:
                flush()
        flush()
        return done

    def deduplicate_many(self, records: Iterable[Enrolment], progress: Callable | None = None,
                         stop_on_error: bool = True) -> list:
        """Deduplicate many records (read only); same conventions as :meth:`enroll_many`."""
        return _each(records, self.deduplicate, progress, stop_on_error)

    def identify(self, probe, k: int = 10, dpi: float = 500) -> list[Candidate]:
        """The ``k`` best enrolled subjects for a probe (Enrolment or ``{position: image or Template}``)."""
        self._check_open()
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 10000:
            raise invalid("k", "an int in [1, 10000]", k)
        sid, fingers = self._probe(probe, dpi)
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
        _, fingers = self._probe(probe, dpi)
        usable = self._usable(fingers, "probe")
        shard = self._located(subject_id)
        shard.catch_up()
        enrolled = shard.subject_prepared(subject_id)
        from ..match import FingerprintMatcher

        scores = {p: FingerprintMatcher(t, self.match_params).match(enrolled[p])
                  for p, t in usable.items() if p in enrolled}
        score = _decide.fuse(scores, self.decision_params)
        threshold = -float(__import__("math").log10(self.decision_params.verify_fmr))
        return Verification(subject_id=subject_id, match=bool(scores) and score >= threshold, score=score,
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
            self._located(subject_id).remove(subject_id)

    def __contains__(self, subject_id: str) -> bool:
        self._check_open()
        return self._locate(_sid(subject_id)) is not None

    def templates(self, subject_id: str) -> dict[int, Template]:
        """The enrolled templates of a subject, read from the store."""
        self._check_open()
        return self._located(_sid(subject_id)).subject_templates(subject_id)

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
            fresh = self._read_manifest(self.path)
            n = int(fresh["n_shards"])
            if n >= 1000:
                raise invalid("n_shards", "at most 1000 shards", n + 1)
            folder = self.path / "shards" / f"{n:03d}"
            if folder.exists():
                _discard_orphan_shard(folder)
            self._create_shard(n)
            epochs = list((fresh.get("routing") or {}).get("epochs", ())) or \
                [{"n_shards": n, "since_utc": fresh.get("created_utc")}]  # a gallery made before epochs
            fresh["routing"] = {"epochs": epochs + [{"n_shards": n + 1, "since_utc": time.time()}]}
            fresh["n_shards"] = n + 1
            _write_manifest(self.path, fresh)
            self._refresh(force=True)
            log.info("gallery %s: shard %d added (routing epoch %d)", self.path, n, len(fresh["routing"]["epochs"]))
            return n + 1

    def _create_shard(self, n: int) -> None:
        Shard.create(self._spec(n, False, 1), n).close()

    def stats(self) -> dict:
        """Counts, memory and disk use, parameters (no personal data)."""
        self._check_open()
        per = [s.stats() for s in self._shards]
        per_pos: dict[int, int] = {}
        for st in per:
            for p, n in st["fingers_per_position"].items():
                per_pos[p] = per_pos.get(p, 0) + n
        n_subj = sum(st["subjects"] for st in per)
        mem = sum(st["memory_bytes"] for st in per)
        return {"subjects": n_subj, "fingers": sum(st["fingers"] for st in per),
                "faces": sum(st["faces"] for st in per), "faces_unusable": sum(st["faces_unusable"] for st in per),
                "routing_epochs": self._epochs(),
                "fingers_per_position": dict(sorted(per_pos.items())), "shards": len(per),
                "memory_bytes": mem, "memory_bytes_per_subject": mem / n_subj if n_subj else 0.0,
                "retrieval_bytes": sum(st.get("retrieval_bytes", 0) for st in per),
                "disk_bytes": sum(st["disk_bytes"] for st in per),
                "retrieval": self._manifest["retrieval"]["kind"],
                "code_generation": self._manifest["retrieval"].get("code_generation"),
                "match_params_hash": self._manifest["match_params_hash"],
                "template_params_hash": self._manifest.get("template_params_hash"),
                "thresholds": _decide.thresholds(n_subj, self.decision_params).as_dict()}

    def check(self) -> list[str]:
        """Integrity problems of the stores (empty when sound)."""
        self._check_open()
        return [f"shard {i}: {p}" for i, s in enumerate(self._shards) for p in s.integrity_problems()]


def _write_manifest(path: Path, manifest: dict) -> None:
    """Replace the gallery manifest atomically, with a checksum of its content (0600)."""
    doc = {k: v for k, v in manifest.items() if k != "checksum"}
    doc["checksum"] = canonical_checksum(doc)
    write_private_atomic(path / _MANIFEST, json.dumps(doc, indent=1, sort_keys=True).encode())


def _gallery_path(path, name: str = "path") -> Path:
    """``path`` as a Path, refusing what cannot name a folder (None, numbers, NUL bytes)."""
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise invalid(name, "a folder path (str or os.PathLike)", type(path).__name__)
    path = Path(path)
    if "\x00" in str(path) or not str(path):
        raise invalid(name, "a folder path without NUL bytes", str(path))
    return path


def _subject_hash(subject_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(subject_id.encode(), digest_size=8).digest(), "little")


def _sid(subject_id) -> str:
    if not isinstance(subject_id, str):
        raise invalid("subject_id", "a str", type(subject_id).__name__)
    return subject_id


def _check_open_args(n_threads, cache_bytes) -> None:
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or not 1 <= n_threads <= 256:
        raise invalid("n_threads", "an int in [1, 256]", n_threads)
    if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
        raise invalid("cache_bytes", "an int >= 0", cache_bytes)


def _undo_create(path: Path, made_folder: bool) -> None:
    """Remove what a failed create() wrote (the folder itself only if create() made it)."""
    import shutil

    if made_folder:
        shutil.rmtree(path, ignore_errors=True)
        return
    for child in list(path.iterdir()) if path.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


def _discard_interrupted_creation(path: Path) -> None:
    """Empty a folder left by a create() that was killed before its manifest: nothing can have
    been enrolled there (enrolment needs the manifest), so nothing is lost."""
    log.warning("gallery %s: discarding a creation that was interrupted", path)
    _undo_create(path, made_folder=False)


def _discard_orphan_shard(folder: Path) -> None:
    """Delete a shard folder no routing epoch refers to (left by an add_shard killed before its
    manifest): no subject can have been routed there.  Refuses one that holds subjects."""
    import shutil

    from .store import Store

    try:
        store = Store(folder / Shard.STORE_NAME)
    except Exception:  # killed while creating the store: nothing in it
        store = None
    if store is not None:
        try:
            n = store.counts()["subjects"]
        except Exception:
            n = 0
        finally:
            store.close()
        if n:
            raise StorageError(f"shard folder {str(folder)!r}: not in the manifest but holds {n} subjects; "
                               f"refusing to replace it")
    log.warning("discarding %s: left by an interrupted add_shard", folder)
    shutil.rmtree(folder)


def _each(records, action, progress, stop_on_error: bool) -> list:
    """Apply ``action`` to every record; a BiomatchError either stops the batch or becomes
    that record's result, so that a backlog reports exactly which items failed."""
    from ..errors import BiomatchError

    total = len(records) if hasattr(records, "__len__") else None
    out = []
    for i, rec in enumerate(records):
        try:
            res = action(rec)
        except BiomatchError as exc:
            if stop_on_error:
                raise
            res = exc
        out.append(res)
        if progress is not None:
            progress(i + 1, total, res)
    return out
