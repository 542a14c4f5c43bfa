"""Operating a gallery on a bad day: check and repair, online backup, restore.

``check_gallery(path)`` verifies that the files of a gallery agree: the manifest (checksum,
routing), every shard's store (SQLite's integrity check, every template's CRC), its watermark
(the store holds everything it acknowledged) and its index (checksums, and row for row the
store's fingers).  ``repair=True`` fixes what is derived (indexes rebuilt, stale temporary files
and orphan folders removed, a damaged watermark re-established when nothing shows a loss);
the store itself is never rewritten.  A store that lost acknowledged enrolments is repaired only
when the operator says so (``accept_store_loss=True``): the lost subjects must be re-enrolled.

``backup_gallery(path, dest)`` makes an online, consistent copy: writers are held off by the
gallery's lock for the duration (searches go on), each store is copied with SQLite's backup
API, index files are copied with their checksums verified, and ``backup.json`` records a SHA-256
of every file.  ``restore_gallery(backup, dest)`` verifies every checksum, writes the gallery
into a new folder (atomically: a kill leaves no half-restored gallery) and starts each shard's
watermark at its restored store, so the restored gallery opens on any machine and is never
silently inconsistent with its indexes (they are verified against the store at every open).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Callable

from .._io import canonical_checksum, fsync_dir, write_private_atomic
from ..errors import BiomatchError, CorruptStoreError, GalleryExistsError, NotAGalleryError, StorageError, invalid
from . import manifest as _mf
from . import watermark as _watermark
from .shard import Shard, ShardSpec
from .store import Store

__all__ = ["CheckReport", "check_gallery", "backup_gallery", "restore_gallery", "BACKUP_FORMAT"]

log = logging.getLogger(__name__)

BACKUP_FORMAT = "biomatch-gallery-backup"
_BACKUP_VERSION = 1
_BACKUP_MANIFEST = "backup.json"
_TMP = re.compile(r"\..+\.tmp\d+")  # left by a write_file_atomic that was killed


@dataclasses.dataclass
class CheckReport:
    """What :func:`check_gallery` found and did.

    Attributes
    ----------
    problems : list of str
        Disagreements found (each names its file).
    repaired : list of str
        What was repaired (``repair=True``).
    unrepaired : list of str
        Problems that need an operator (a damaged store or manifest, a store that lost
        acknowledged enrolments without ``accept_store_loss``).
    subjects : int
    fingers : int
    """

    problems: list = dataclasses.field(default_factory=list)
    repaired: list = dataclasses.field(default_factory=list)
    unrepaired: list = dataclasses.field(default_factory=list)
    subjects: int = 0
    fingers: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong any more (all problems repaired, or none)."""
        return not self.unrepaired and (not self.problems or bool(self.repaired))

    def as_dict(self) -> dict:
        return dict(dataclasses.asdict(self), ok=self.ok)


def _path(value, name: str) -> Path:
    return _mf.gallery_path(value, name)


def check_gallery(path, repair: bool = False, accept_store_loss: bool = False,
                  progress: Callable | None = None) -> CheckReport:
    """Verify (and optionally repair) a gallery folder; see the module docstring.

    Parameters
    ----------
    path : str or Path
    repair : bool
        Fix what is derived; take the write lock for it (waits for running writers).
    accept_store_loss : bool
        With ``repair``: trust a store that holds less than it acknowledged (its watermark is
        reset to the store and its index rebuilt).  The lost enrolments are reported, not
        recovered.
    progress : callable(done, total), optional
        Called after each shard.

    Returns
    -------
    CheckReport

    Raises
    ------
    NotAGalleryError, InvalidInputError
        Not a gallery at all (nothing to check).
    """
    path = _path(path, "path")
    for name, v in (("repair", repair), ("accept_store_loss", accept_store_loss)):
        if not isinstance(v, bool):
            raise invalid(name, "a bool", v)
    if accept_store_loss and not repair:
        raise invalid("accept_store_loss", "True only together with repair=True", accept_store_loss)
    report = CheckReport()
    try:
        manifest = _mf.read_manifest(path)
    except CorruptStoreError as exc:
        report.problems.append(str(exc))
        report.unrepaired.append(str(exc))
        return report
    lock = _hold_lock(path / _mf.LOCK) if repair else contextlib.nullcontext()
    with lock:
        if repair and "checksum" not in manifest:
            _mf.write_manifest(path, manifest)
            report.repaired.append(f"manifest {str(path / _mf.MANIFEST)!r}: checksum added")
        if repair and (path / _mf.CREATING).exists():
            (path / _mf.CREATING).unlink()
            report.repaired.append(f"{str(path / _mf.CREATING)!r}: stale creation marker removed")
        n = int(manifest["n_shards"])
        for i in range(n):
            _check_shard(path, manifest, i, repair, accept_store_loss, report)
            if progress is not None:
                progress(i + 1, n)
        if repair:
            _remove_leftovers(path, n, report)
    return report


@contextlib.contextmanager
def _hold_lock(lock_path: Path):
    """The gallery's writer lock (flock), as enrolments take it."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageError(f"path: cannot open the lock file {str(lock_path)!r}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _check_shard(path: Path, manifest: dict, i: int, repair: bool, accept_loss: bool, report: CheckReport) -> None:
    folder = path / "shards" / f"{i:03d}"
    store_path = folder / Shard.STORE_NAME
    problems_before = len(report.problems)
    # 1. The store alone: structure and every template's CRC (read only).
    try:
        store = Store(store_path, read_only=True)
    except BiomatchError as exc:
        report.problems.append(str(exc))
        report.unrepaired.append(str(exc))
        return
    try:
        for p in store.integrity_problems():
            report.problems.append(f"store {str(store_path)!r}: {p}")
            report.unrepaired.append(f"store {str(store_path)!r}: {p}")
        damaged = _damaged_templates(store)
        for fid, sid in damaged:
            msg = (f"store {str(store_path)!r}: finger {fid} of subject {sid!r} has a damaged template "
                   f"(re-enrol the subject from its source images)")
            report.problems.append(msg)
            report.unrepaired.append(msg)
        seqs = store.sequences()
        counts = store.counts()
        report.subjects += counts["subjects"]
        report.fingers += counts["fingers"]
        meta = store.meta()
    except BiomatchError as exc:
        report.problems.append(str(exc))
        report.unrepaired.append(str(exc))
        return
    finally:
        store.close()
    # 2. The watermark.
    shard_no = int(meta["shard"]) if str(meta.get("shard", "")).isdigit() else None
    try:
        acknowledged = _watermark.read(folder, manifest["gallery_id"], shard_no)
        if acknowledged is None and meta.get("watermark") == "1":
            raise CorruptStoreError(f"watermark {str(folder / _watermark.FILE)!r}: missing")
        if acknowledged is not None:
            _watermark.check(store_path, seqs, acknowledged)
        reset = False
    except CorruptStoreError as exc:
        report.problems.append(str(exc))
        regressed = isinstance(exc, _errors().StoreRegressedError) or _index_shows_loss(folder, seqs)
        if not repair or (regressed and not accept_loss):
            report.unrepaired.append(str(exc))
            return
        reset = True
    if reset:
        _watermark.write(folder, manifest["gallery_id"], shard_no, seqs)
        shutil.rmtree(folder / "index", ignore_errors=True)  # built for the store it had: rebuilt below
        report.repaired.append(f"watermark {str(folder / _watermark.FILE)!r}: reset to the store {seqs}; "
                               f"index rebuilt from the store")
    # 3. The index against the store: open the shard (read only unless repairing; a check
    # writes nothing).
    spec = ShardSpec(folder=str(folder), gallery_id=manifest["gallery_id"],
                     match_params_json=manifest["match_params"], retrieval=manifest["retrieval"]["kind"],
                     read_only=not repair, save_rebuilt_index=repair, cache_bytes=0)
    try:
        shard = Shard(spec)
    except BiomatchError as exc:
        report.problems.append(str(exc))
        report.unrepaired.append(str(exc))
        return
    try:
        if shard.index_rebuilt and not reset:
            why = getattr(shard, "index_problems", None) or ["it disagreed with the store"]
            report.problems.append(f"index {str(folder / 'index')!r}: {'; '.join(why)}")
            if repair:
                report.repaired.append(f"index {str(folder / 'index')!r}: rebuilt from the store")
        rejected = getattr(shard._retrieval, "rejected", None)
        if rejected and not shard.index_rebuilt and not reset:
            report.problems.append(f"index {str(folder / 'index')!r}: {rejected}")
            if repair:
                report.repaired.append(f"index {str(folder / 'index')!r}: rebuilt from the store")
    finally:
        shard.close()
    if len(report.problems) == problems_before:
        log.info("shard %s: sound", folder)


def _errors():
    from .. import errors

    return errors


def _index_shows_loss(folder: Path, seqs: dict) -> bool:
    """True when a checksummed index manifest records more than the store holds (evidence
    that the store lost acknowledged data, when the watermark itself is damaged)."""
    try:
        m = json.loads((folder / "index" / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(m, dict) or m.get("checksum") != canonical_checksum(m):
        return False
    return (isinstance(m.get("indexed_upto"), int) and m["indexed_upto"] > seqs["fingers"]) or \
        (isinstance(m.get("removals_upto"), int) and m["removals_upto"] > seqs["removals"])


def _damaged_templates(store) -> list:
    """``(finger id, subject id)`` of every finger whose template fails to decode (BMT1 CRC)."""
    from ..formats import decode

    bad = []
    after = 0
    while True:
        rows = store.fingers_since(after, limit=20_000)
        if not rows:
            return bad
        for fid, _, sid, _, blob in rows:
            try:
                decode(blob)
            except Exception:  # noqa: BLE001 - any failure to decode is damage
                bad.append((fid, sid))
        after = rows[-1][0]


def _remove_leftovers(path: Path, n_shards: int, report: CheckReport) -> None:
    """Temporary files of killed atomic writes, orphan shard folders (an add_shard killed before
    its manifest), superseded index versions."""
    for f in path.rglob(".*.tmp*"):
        if f.is_file() and _TMP.fullmatch(f.name):
            f.unlink()
            report.repaired.append(f"{str(f)!r}: temporary file of an interrupted write removed")
    for folder in sorted((path / "shards").iterdir()) if (path / "shards").is_dir() else ():
        if folder.is_dir() and folder.name.isdigit() and int(folder.name) >= n_shards:
            try:
                _mf.discard_orphan_shard(folder)
                report.repaired.append(f"{str(folder)!r}: orphan shard folder of an interrupted add_shard removed")
            except StorageError as exc:
                report.problems.append(str(exc))
                report.unrepaired.append(str(exc))


# ---- backup and restore -----------------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _new_folder(dest: Path, name: str) -> Path:
    """A hidden sibling of ``dest`` to build into (renamed onto ``dest`` when complete)."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise GalleryExistsError(f"{name}: expected a new or empty folder, {str(dest)!r} already holds files")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"{name}: cannot create {str(dest.parent)!r}: {exc.strerror}") from exc
    for old in dest.parent.glob(f".{dest.name}.partial-*"):  # left by a killed backup/restore
        shutil.rmtree(old, ignore_errors=True)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    tmp.mkdir(mode=0o700)
    return tmp


def _publish(tmp: Path, dest: Path) -> None:
    """Rename the finished folder onto ``dest`` (an empty folder is replaced), durably."""
    with contextlib.suppress(FileNotFoundError):
        dest.rmdir()  # empty (checked by _new_folder)
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


def _fsync_tree(root: Path) -> None:
    for f in root.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for d in [root, *[d for d in root.rglob("*") if d.is_dir()]]:
        fsync_dir(d)


def backup_gallery(path, dest, progress: Callable | None = None) -> dict:
    """An online, consistent copy of a gallery into the new folder ``dest``.

    Writers (enrolments, removals, add_shard) wait while it runs; searches do not.  Stores are
    copied page by page with SQLite's backup API (a consistent snapshot), the current index
    version is copied after its checksums are verified (a damaged or missing one is left out:
    the restored gallery rebuilds it from the store), and ``backup.json`` records every file's
    size and SHA-256.  ``dest`` is written under a temporary name and renamed when complete.

    Returns
    -------
    dict : the backup manifest (format, created_utc, gallery_id, shards with their sequences, files)

    Raises
    ------
    NotAGalleryError, CorruptStoreError, GalleryExistsError, StorageError
    """
    path, dest = _path(path, "path"), _path(dest, "dest")
    if dest.resolve().is_relative_to(path.resolve()):
        raise invalid("dest", "a folder outside the gallery", str(dest))
    manifest = _mf.read_manifest(path)
    tmp = _new_folder(dest, "dest")
    try:
        with _hold_lock(path / _mf.LOCK):
            manifest = _mf.read_manifest(path)  # as of the lock: add_shard may have run
            (tmp / "shards").mkdir(mode=0o700)
            write_private_atomic(tmp / _mf.MANIFEST, (path / _mf.MANIFEST).read_bytes())
            shards = []
            for i in range(int(manifest["n_shards"])):
                src, out = path / "shards" / f"{i:03d}", tmp / "shards" / f"{i:03d}"
                out.mkdir(mode=0o700)
                seqs = _backup_store(src / Shard.STORE_NAME, out / Shard.STORE_NAME)
                meta = _store_meta(out / Shard.STORE_NAME)
                _watermark.check(src / Shard.STORE_NAME, seqs,
                                 _watermark.read(src, manifest["gallery_id"], _shard_of(meta)) or seqs)
                _watermark.write(out, manifest["gallery_id"], _shard_of(meta), seqs)
                _copy_index(src / "index", out / "index")
                shards.append({"shard": i, **seqs})
                if progress is not None:
                    progress(i + 1, int(manifest["n_shards"]))
        files = {str(f.relative_to(tmp)): {"bytes": f.stat().st_size, "sha256": _sha256_file(f)}
                 for f in sorted(tmp.rglob("*")) if f.is_file()}
        doc = {"format": BACKUP_FORMAT, "version": _BACKUP_VERSION, "created_utc": time.time(),
               "gallery_id": manifest["gallery_id"], "shards": shards, "files": files}
        doc["checksum"] = canonical_checksum(doc)
        write_private_atomic(tmp / _BACKUP_MANIFEST, json.dumps(doc, indent=1, sort_keys=True).encode())
        _fsync_tree(tmp)
        _publish(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("gallery %s backed up to %s (%d files)", path, dest, len(doc["files"]))
    return doc


def _shard_of(meta: dict) -> int | None:
    return int(meta["shard"]) if str(meta.get("shard", "")).isdigit() else None


def _store_meta(db: Path) -> dict:
    s = Store(db, read_only=True)
    try:
        return s.meta()
    finally:
        s.close()


def _backup_store(src: Path, out: Path) -> dict:
    """Copy a live store with SQLite's backup API; returns the copy's sequences."""
    store = Store(src, read_only=True)
    store.close()  # validates the schema; the copy uses its own connections
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        with contextlib.closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as s, \
                contextlib.closing(sqlite3.connect(out)) as d:
            s.backup(d, pages=4096)
            d.execute("PRAGMA journal_mode=DELETE")  # one self-contained file (WAL again when opened)
        copy = Store(out, read_only=True)
        try:
            problems = copy.integrity_problems()
            seqs = copy.sequences()
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise StorageError(f"store {str(src)!r}: backup failed ({exc})") from exc
    if problems:
        raise CorruptStoreError(f"store {str(src)!r}: not backed up, it fails its integrity check: {problems[:3]}")
    return seqs


def _copy_index(src: Path, out: Path) -> None:
    """Copy the current index version if its manifest and files check out (else leave it out)."""
    from ..retrieval.code_files import check_file, checked_manifest

    try:
        m = json.loads((src / "manifest.json").read_text())
        version = checked_manifest(m)
        for name, want in m["files"].items():
            check_file(src / version / name, want)
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("index %s: not backed up (%s); the restored gallery rebuilds it from the store", src, exc)
        return
    (out / version).mkdir(parents=True, mode=0o700)
    os.chmod(out, 0o700)
    for name in m["files"]:
        shutil.copyfile(src / version / name, out / version / name)
        os.chmod(out / version / name, 0o600)
    write_private_atomic(out / "manifest.json", (src / "manifest.json").read_bytes())


def restore_gallery(backup, dest, replace: bool = False) -> Path:
    """Restore a backup made by :func:`backup_gallery` into ``dest`` (on this or another machine).

    Every file is checked against ``backup.json`` first; the gallery is written under a
    temporary name and renamed onto ``dest`` when complete.  With ``replace``, an existing
    gallery at ``dest`` is first moved aside to ``<dest>.replaced-<utc seconds>`` (never deleted).

    Returns
    -------
    Path : the folder of the existing gallery moved aside, or ``dest`` when nothing was replaced

    Raises
    ------
    NotAGalleryError
        ``backup`` is not a biomatch backup.
    CorruptStoreError
        A file of the backup is missing or damaged (named).
    GalleryExistsError
        ``dest`` holds files and ``replace`` is False.
    """
    backup, dest = _path(backup, "backup"), _path(dest, "dest")
    if not isinstance(replace, bool):
        raise invalid("replace", "a bool", replace)
    doc = _read_backup_manifest(backup)
    for rel, want in doc["files"].items():
        f = backup / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise CorruptStoreError(f"backup {str(backup / _BACKUP_MANIFEST)!r}: unexpected file path {rel!r}")
        if not f.is_file() or f.stat().st_size != want.get("bytes") or _sha256_file(f) != want.get("sha256"):
            raise CorruptStoreError(f"backup file {str(f)!r}: missing or damaged (size or SHA-256 differs from "
                                    f"{_BACKUP_MANIFEST})")
    moved = dest
    if dest.exists() and dest.is_dir() and any(dest.iterdir()):
        if not replace:
            raise GalleryExistsError(f"dest: expected a new or empty folder, {str(dest)!r} already holds files "
                                     f"(replace=True / --replace moves it aside)")
        moved = dest.with_name(f"{dest.name}.replaced-{int(time.time())}")
        os.replace(dest, moved)
        log.warning("restore: the gallery at %s was moved aside to %s", dest, moved)
    tmp = _new_folder(dest, "dest")
    try:
        for rel in doc["files"]:
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copyfile(backup / rel, out)
            os.chmod(out, 0o600)
        _fsync_tree(tmp)
        _mf.read_manifest(tmp)  # the restored manifest must be a gallery's
        _publish(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("backup %s restored to %s", backup, dest)
    return moved


def _read_backup_manifest(backup: Path) -> dict:
    f = backup / _BACKUP_MANIFEST
    try:
        doc = json.loads(f.read_text())
    except FileNotFoundError:
        raise NotAGalleryError(f"backup: {str(backup)!r} is not a biomatch backup (no {_BACKUP_MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise CorruptStoreError(f"backup manifest {str(f)!r}: unreadable ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != BACKUP_FORMAT:
        raise NotAGalleryError(f"backup: {str(f)!r} is not a biomatch backup manifest")
    if doc.get("checksum") != canonical_checksum(doc) or not isinstance(doc.get("files"), dict):
        raise CorruptStoreError(f"backup manifest {str(f)!r}: checksum mismatch, the file is damaged")
    return doc
