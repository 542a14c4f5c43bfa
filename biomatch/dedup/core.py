"""A gallery's life cycle: open and create, the write lock, following the manifest, routing.

:class:`GalleryCore` holds what every gallery front end shares (the embedded
:class:`~biomatch.dedup.gallery.Gallery` and the Ray router / writer of
:mod:`biomatch.dedup.cluster`): the manifest, the shards (anything implementing
:class:`~biomatch.dedup.protocol.ShardProtocol`), the folder's lock, and the routing of a
subject to its shard.  The operations (enrol, search, verify, stats) live in
:mod:`biomatch.dedup.gallery`.

Atomic enrol: a writer takes a thread lock and the folder's ``flock``, catches every shard up
with what other processes committed, deduplicates, and commits the subject in one SQLite
transaction (``synchronous=FULL``: fsync'd before the enrolment returns).  Two records of one
person enrolled at the same moment, by threads or processes, are therefore serialised: the
second sees the first and gets ``DUPLICATE``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import Mapping

from .. import decide
from ..errors import DuplicateSubjectError, GalleryClosedError, GalleryExistsError, IncompatibleGalleryError, \
    StorageError, invalid
from ..params import MatchParams, from_json, params_hash
from ..retrieval.components import make_retrieval
from ..template import GENERATED_PARAMS_HASH, Template
from . import intake
from . import manifest as _mf
from .encryption import KEY_ENV, KeyEnv, Keyring, check_provider, describe_section
from .errors import GalleryKeyError
from .protocol import CountSubjects, HasSubject, PositionCounts, Present, ShardCall, dispatch
from .shard import Shard, ShardSpec

__all__ = ["GalleryCore", "DEFAULT_CACHE_BYTES"]

DEFAULT_CACHE_BYTES = 512 * 2**20


def shard_spec(path: Path, manifest: dict, i: int, read_only: bool, n_threads: int,
               cache_bytes: int = DEFAULT_CACHE_BYTES, key=None) -> ShardSpec:
    """The spec of shard ``i`` of the gallery at ``path``."""
    return ShardSpec(cache_bytes=cache_bytes, folder=str(path / "shards" / f"{i:03d}"),
                     gallery_id=manifest["gallery_id"], match_params_json=manifest["match_params"],
                     retrieval=manifest["retrieval"]["kind"], read_only=read_only, n_threads=n_threads, key=key)


def open_keyring(path: Path, manifest: dict, key) -> Keyring | None:
    """The unwrapped key set of an encrypted gallery (None for a plain one), checked before any
    store is opened.  ``key`` None: the ``BIOMATCH_GALLERY_KEY`` variable when set.

    Raises
    ------
    GalleryKeyError
        Encrypted and no key, or the key's id is not the gallery's, or it does not unwrap.
    """
    section = manifest.get("encryption")
    if section is None:
        if key is not None:
            raise GalleryKeyError(f"key: the gallery {str(path)!r} is not encrypted, but a key was given "
                                  f"(open it without one)", None, getattr(key, "key_id", None))
        return None
    if key is None:
        if not os.environ.get(KEY_ENV):
            raise GalleryKeyError(f"key: the gallery {str(path)!r} is encrypted under key {section['kek_id']}; "
                                  f"give its key file (key=KeyFile(PATH), --key-file PATH) or set {KEY_ENV}",
                                  section["kek_id"])
        key = KeyEnv()
    return Keyring(check_provider(key), path / _mf.MANIFEST, manifest["gallery_id"], section)


class GalleryCore:
    """The shared state and life cycle of a gallery (see :class:`~biomatch.dedup.gallery.Gallery`)."""

    def __init__(self, path: Path, manifest: dict, read_only: bool, n_threads: int,
                 decision: decide.DecisionParams | None, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 keyring: Keyring | None = None):
        self._keyring = keyring
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
        self.decision_params = decision or _mf.decision_from_json(manifest["decision_params"])
        self._thread_lock = threading.RLock()
        self._closed = False
        self._lock_fd = None
        if lock:
            try:
                self._lock_fd = os.open(path / _mf.LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StorageError(f"path: cannot open the lock file in {str(path)!r}: {exc.strerror}") from exc
        self._manifest_sig = None  # (mtime, size, inode) of the manifest last read; None: re-read
        self._counts_seen: dict = {}  # code rows per position at the last search (the hint of routers)

    def _open_shard(self, i: int):
        return Shard(self._spec(i, self.read_only, self._n_threads), keyring=getattr(self, "_keyring", None))


    def _spec(self, i: int, read_only: bool, n_threads: int) -> ShardSpec:
        keyring = getattr(self, "_keyring", None)
        return shard_spec(self.path, self._manifest, i, read_only, n_threads, self._cache_bytes,
                          None if keyring is None else keyring.provider)

    @property
    def encryption(self) -> dict:
        """Whether the gallery is encrypted, and its key ids (nothing secret; see
        :mod:`biomatch.dedup.encryption`)."""
        return describe_section(self._manifest.get("encryption"))

    # ---- lifecycle ----------------------------------------------------------------------------
    @classmethod
    def create(cls, path, *, n_shards: int = 1, match_params: MatchParams = MatchParams(),
               decision: decide.DecisionParams = decide.DecisionParams(), template_params_hash: str | None = None,
               retrieval: str = "faiss", n_threads: int = 1, cache_bytes: int | None = None,
               generated_background: bool = False, key=None) -> "GalleryCore":
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
        generated_background : bool
            Also accept templates of the print generator's template model
            (:data:`biomatch.template.GENERATED_PARAMS_HASH`) beside the gallery's extraction
            generation: a benchmark's generated population with real prints enrolled and
            searched among it.  Never for a registry: generated people are not people.
        key : KeyProvider, optional
            Encrypt the gallery at rest (:mod:`biomatch.dedup.encryption`): templates, faces
            and metadata sealed with AES-256-GCM under a new data key wrapped by this
            key-encryption key (``KeyFile(path)``: 32 random bytes, mode 0600;
            ``KeyEnv()``: base64 in ``BIOMATCH_GALLERY_KEY``; or a KMS implementation of
            :class:`~biomatch.dedup.encryption.KeyProvider`).  Every later open needs it.
        """
        path = _mf.gallery_path(path)
        if not isinstance(generated_background, bool):
            raise invalid("generated_background", "a bool", generated_background)
        if isinstance(n_shards, bool) or not isinstance(n_shards, int) or not 1 <= n_shards <= 1000:
            raise invalid("n_shards", "an int in [1, 1000]", n_shards)
        if not isinstance(match_params, MatchParams):
            raise invalid("match_params", "a MatchParams", type(match_params).__name__)
        if not isinstance(decision, decide.DecisionParams):
            raise invalid("decision", "a DecisionParams", type(decision).__name__)
        if template_params_hash is not None and not isinstance(template_params_hash, str):
            raise invalid("template_params_hash", "None or a str", template_params_hash)
        intake.check_open_args(n_threads, DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes)
        make_retrieval(retrieval)  # validates the name
        if key is not None:
            check_provider(key)
            key.key_id  # the key is readable (a key file's mode and size are checked) before anything is made
        # Every argument is checked: from here on a failure removes what this call made.
        if path.is_dir() and (path / _mf.CREATING).exists() and not (path / _mf.MANIFEST).exists():
            _mf.discard_interrupted_creation(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise GalleryExistsError(f"path: expected a new or empty folder, {str(path)!r} already holds files")
        made_folder = not path.exists()
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path, 0o700)
            # Not written atomically on purpose: its presence is the message, so it must appear
            # in one step (a temporary file killed before its rename would be an unknown leftover).
            os.close(os.open(path / _mf.CREATING, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            (path / "shards").mkdir(mode=0o700)
        except OSError as exc:
            _mf.undo_create(path, made_folder)
            raise StorageError(f"path: cannot create gallery folder {str(path)!r}: {exc.strerror}") from exc
        try:
            manifest = _mf.new_manifest(n_shards, match_params, decision, template_params_hash, retrieval,
                                        generated_background, key)
            keyring = None if key is None else Keyring(key, path / _mf.MANIFEST, manifest["gallery_id"],
                                                       manifest["encryption"])
            for i in range(n_shards):
                Shard.create(shard_spec(path, manifest, i, False, 1, key=key), i, keyring).close()
            # The manifest is written last: a folder without it is not a gallery (the marker says
            # that a kill interrupted its creation, so that create() may start again).
            _mf.write_manifest(path, manifest)
            (path / _mf.CREATING).unlink()
        except BaseException:
            if not (path / _mf.MANIFEST).exists():
                _mf.undo_create(path, made_folder)
            raise
        return cls.open(path, n_threads=n_threads, cache_bytes=cache_bytes, key=key)

    @classmethod
    def open(cls, path, *, match_params: MatchParams | None = None, decision: decide.DecisionParams | None = None,
             read_only: bool = False, n_threads: int = 1, cache_bytes: int | None = None,
             key=None) -> "GalleryCore":
        """Open an existing gallery; in-memory state is rebuilt and caught up from the stores.

        ``cache_bytes`` bounds each shard's LRU cache of prepared templates (default 512 MiB);
        templates are otherwise read from the store and prepared when they become candidates.
        ``key``: the KeyProvider of an encrypted gallery (default: ``BIOMATCH_GALLERY_KEY`` when
        set); it is checked against the manifest before any store is opened.

        Raises
        ------
        NotAGalleryError, IncompatibleGalleryError, StorageError
        GalleryKeyError
            Encrypted, and no key or a key of another id.
        """
        path = _mf.gallery_path(path)
        if not isinstance(read_only, bool):
            raise invalid("read_only", "a bool", read_only)
        intake.check_open_args(n_threads, DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes)
        manifest, cache_bytes = cls._checked_open(path, match_params, decision, cache_bytes)
        keyring = open_keyring(path, manifest, key)
        return cls(path, manifest, read_only, n_threads, decision, cache_bytes, keyring)

    @classmethod
    def _checked_open(cls, path: Path, match_params, decision, cache_bytes) -> tuple[dict, int]:
        """The manifest and the cache size of an :meth:`open`, the arguments checked against them."""
        manifest = _mf.read_manifest(path)
        if match_params is not None and params_hash(match_params) not in (
                manifest["match_params_hash"], params_hash(from_json(manifest["match_params"], MatchParams))):
            raise IncompatibleGalleryError(
                f"match_params: expected the gallery's generation {manifest['match_params_hash']}, "
                f"got {params_hash(match_params)}")
        if decision is not None and not isinstance(decision, decide.DecisionParams):
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
            fresh = _mf.read_manifest(self.path)
            counts = [s._store.counts() for s in self._shards]
            fresh["counts"] = {"subjects": sum(c["subjects"] for c in counts),
                               "fingers": sum(c["fingers"] for c in counts)}
            # the codes this version computes and saved (an upgrade rebuilt the indexes of another one)
            kind = fresh["retrieval"]["kind"]
            fresh["retrieval"] = {**fresh["retrieval"], "code_generation": _mf.code_generation(kind)}
            _mf.write_manifest(self.path, fresh)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _release(self) -> None:
        workers = getattr(self, "_search_workers", None)
        if workers is not None:
            self._search_workers = None
            with contextlib.suppress(Exception):
                workers.close()
        for s in self._shards:
            with contextlib.suppress(Exception):
                s.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "GalleryCore":
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
            st = os.stat(self.path / _mf.MANIFEST)
        except OSError:
            return
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig == self._manifest_sig and not force:
            return
        with self._thread_lock:
            fresh = _mf.read_manifest(self.path)
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
        return _mf.epochs(self._manifest)

    def _homes(self, subject_id: str) -> list[int]:
        """Shard numbers where a subject may be enrolled, newest routing epoch first."""
        return _mf.homes(self._manifest, subject_id)

    def _route(self, subject_id: str):
        """The shard of a NEW subject (the current epoch)."""
        return self._shards[self._homes(subject_id)[0]]

    def _locate(self, subject_id: str):
        """The shard holding an enrolled subject, else None (asks at most one shard per epoch)."""
        for i in self._homes(subject_id):
            if self._shards[i].has_subject(HasSubject(subject_id)):
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
            found = self._shards[i].present(Present(ids))
            if found:
                raise DuplicateSubjectError(f"subject_id: {found[0]!r} is already enrolled")

    def _usable(self, fingers: Mapping[int, Template], name: str) -> dict[int, Template]:
        return intake.usable(fingers, name, self.match_params, self._manifest.get("template_params_hash"),
                             self._manifest.get("generated_background", False))

    def _check_quality(self, usable: dict, name: str) -> None:
        intake.check_quality(usable, name, self.decision_params.enrol_min_quality)

    def _fix_template_generation(self, record_hash: str) -> None:
        """Fix the gallery's template generation at its first enrolment (inside the write lock)."""
        if self._manifest.get("template_params_hash") is not None:
            return
        if record_hash == GENERATED_PARAMS_HASH and self._manifest.get("generated_background", False):
            return  # the background's templates: the first real enrolment fixes the generation
        fresh = _mf.read_manifest(self.path)  # another process may have fixed it
        if fresh.get("template_params_hash") is None:
            fresh["template_params_hash"] = record_hash
            _mf.write_manifest(self.path, fresh)
        self._manifest = fresh

    def _n_subjects(self) -> int:
        return sum(self._fan(CountSubjects()))

    def _count_hint(self) -> dict:
        """The gallery's active code rows per position (embedded: fresh; see DistributedGallery)."""
        hint: dict = {}
        for s in self._shards:
            for p, n in s.position_counts(PositionCounts()).items():
                hint[p] = hint.get(p, 0) + n
        return hint

    def _fan(self, call: ShardCall) -> list:
        """Send ``call`` to every shard; the replies in shard order (embedded: in turn)."""
        return [dispatch(s, call) for s in self._shards]

    def _create_shard(self, n: int) -> None:
        Shard.create(self._spec(n, False, 1), n, getattr(self, "_keyring", None)).close()
