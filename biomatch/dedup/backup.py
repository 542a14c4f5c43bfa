"""Online backup and verified restore of a gallery.

``backup_gallery(path, dest)`` makes an online, consistent copy: writers are held off by the
gallery's lock for the duration (searches go on), each store is copied with SQLite's backup
API, index files are copied with their checksums verified, and ``backup.json`` records a SHA-256
of every file.  ``restore_gallery(backup, dest)`` verifies every checksum, writes the gallery
into a new folder (atomically: a kill leaves no half-restored gallery) and starts each shard's
watermark at its restored store, so the restored gallery opens on any machine and is never
silently inconsistent with its indexes (they are verified against the store at every open).

The registry service's state in ``GALLERY/service/`` (API keys, the audit log, the idempotency
store, the REVIEW queue and its probes) is part of the backup when present: SQLite files through
the backup API (a consistent snapshot, WAL included), other files (the audit log, the key file)
byte for byte under a shared ``flock`` (the audit log is appended under an exclusive one, so the
copy ends at a whole entry); lock files, WAL companions and folders (the metrics of worker
processes) are left out.  This module knows the folder only as files, not the service's formats
(the service sits above ``dedup``).  Enrolments wait during the backup, so no enrolment commits
between the stores' snapshot and the service state's: an idempotency claim copied pending is
resolved by its retry after a restore, as after a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Callable

from .._io import canonical_checksum, fsync_dir, write_private_atomic
from ..errors import CorruptStoreError, GalleryExistsError, NotAGalleryError, StorageError, invalid
from ..retrieval.code_files import check_file, checked_manifest
from . import manifest as _mf
from . import watermark as _watermark
from .shard import Shard
from .store import Store
from .maintenance import checked_path, hold_lock

__all__ = ["backup_gallery", "restore_gallery", "BACKUP_FORMAT"]

log = logging.getLogger(__name__)

BACKUP_FORMAT = "biomatch-gallery-backup"
_BACKUP_VERSION = 1
_BACKUP_MANIFEST = "backup.json"
SERVICE_DIR = "service"  # the registry service's state (biomatch.service), backed up with the gallery
_SERVICE_SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal", ".lock")


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
    path, dest = checked_path(path, "path"), checked_path(dest, "dest")
    if dest.resolve().is_relative_to(path.resolve()):
        raise invalid("dest", "a folder outside the gallery", str(dest))
    manifest = _mf.read_manifest(path)
    tmp = _new_folder(dest, "dest")
    try:
        with hold_lock(path / _mf.LOCK):
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
            service = _backup_service(path / SERVICE_DIR, tmp / SERVICE_DIR)
        files = {str(f.relative_to(tmp)): {"bytes": f.stat().st_size, "sha256": _sha256_file(f)}
                 for f in sorted(tmp.rglob("*")) if f.is_file()}
        doc = {"format": BACKUP_FORMAT, "version": _BACKUP_VERSION, "created_utc": time.time(),
               "gallery_id": manifest["gallery_id"], "shards": shards, "service": service, "files": files}
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


def _backup_service(src: Path, out: Path) -> list[str]:
    """Copy the service's state files (see the module docstring); returns their names."""
    if not src.is_dir():
        return []
    out.mkdir(mode=0o700)
    names = []
    for f in sorted(src.iterdir()):
        if not f.is_file() or f.is_symlink() or f.name.endswith(_SERVICE_SKIPPED_SUFFIXES):
            continue
        try:
            fd = os.open(out / f.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            if f.suffix == ".sqlite":
                with contextlib.closing(sqlite3.connect(f"file:{f}?mode=ro", uri=True)) as s, \
                        contextlib.closing(sqlite3.connect(out / f.name)) as d:
                    s.backup(d, pages=4096)
                    d.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                    problems = d.execute("PRAGMA integrity_check").fetchall()
                if problems != [("ok",)]:
                    raise CorruptStoreError(f"service file {str(f)!r}: not backed up, it fails SQLite's integrity "
                                            f"check: {problems[:3]}")
            else:
                with open(f, "rb") as fin, open(out / f.name, "wb") as fout:
                    fcntl.flock(fin.fileno(), fcntl.LOCK_SH)  # the audit log's writers hold LOCK_EX per entry
                    shutil.copyfileobj(fin, fout, 1 << 20)
        except sqlite3.Error as exc:
            raise StorageError(f"service file {str(f)!r}: backup failed ({exc})") from exc
        except OSError as exc:
            raise StorageError(f"service file {str(f)!r}: backup failed ({exc.strerror})") from exc
        names.append(f.name)
    return names


def _copy_index(src: Path, out: Path) -> None:
    """Copy the current index version if its manifest and files check out (else leave it out)."""
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
    backup, dest = checked_path(backup, "backup"), checked_path(dest, "dest")
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
