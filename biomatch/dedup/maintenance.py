"""Operating a gallery on a bad day: check and repair, online backup, restore.

``check_gallery(path)`` verifies that the files of a gallery agree: the manifest (checksum,
routing), every shard's store (SQLite's integrity check, every template's CRC), its watermark
(the store holds everything it acknowledged) and its index (checksums, and row for row the
store's fingers).  ``repair=True`` fixes what is derived (indexes rebuilt, stale temporary files
and orphan folders removed, a damaged watermark re-established when nothing shows a loss);
the store itself is never rewritten.  A store that lost acknowledged enrolments is repaired only
when the operator says so (``accept_store_loss=True``): the lost subjects must be re-enrolled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from .._io import canonical_checksum
from ..errors import BiomatchError, CorruptStoreError, StorageError, invalid
from ..formats import decode
from . import manifest as _mf
from . import watermark as _watermark
from .core import open_keyring
from .encryption import describe_section
from .shard import Shard, ShardSpec
from .store import Store

__all__ = ["CheckReport", "check_gallery", "hold_lock", "checked_path"]

log = logging.getLogger(__name__)

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
    encryption : dict
        Whether the gallery is encrypted and its key ids (``{"encrypted": False}`` if not).
    """

    problems: list = dataclasses.field(default_factory=list)
    repaired: list = dataclasses.field(default_factory=list)
    unrepaired: list = dataclasses.field(default_factory=list)
    subjects: int = 0
    fingers: int = 0
    encryption: dict = dataclasses.field(default_factory=lambda: {"encrypted": False})

    @property
    def ok(self) -> bool:
        """True when nothing is wrong any more (all problems repaired, or none)."""
        return not self.unrepaired and (not self.problems or bool(self.repaired))

    def as_dict(self) -> dict:
        return dict(dataclasses.asdict(self), ok=self.ok)


def checked_path(value, name: str) -> Path:
    return _mf.gallery_path(value, name)


def check_gallery(path, repair: bool = False, accept_store_loss: bool = False,
                  progress: Callable | None = None, key=None) -> CheckReport:
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
    key : KeyProvider, optional
        An encrypted gallery's key (default ``BIOMATCH_GALLERY_KEY``): every sealed record is
        then authenticated too.

    Returns
    -------
    CheckReport

    Raises
    ------
    NotAGalleryError, InvalidInputError
        Not a gallery at all (nothing to check).
    GalleryKeyError
        An encrypted gallery, and no key or another one.
    """
    path = checked_path(path, "path")
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
    keyring = open_keyring(path, manifest, key)
    report.encryption = describe_section(manifest.get("encryption"))
    lock = hold_lock(path / _mf.LOCK) if repair else contextlib.nullcontext()
    with lock:
        if repair and "checksum" not in manifest:
            _mf.write_manifest(path, manifest)
            report.repaired.append(f"manifest {str(path / _mf.MANIFEST)!r}: checksum added")
        if repair and (path / _mf.CREATING).exists():
            (path / _mf.CREATING).unlink()
            report.repaired.append(f"{str(path / _mf.CREATING)!r}: stale creation marker removed")
        n = int(manifest["n_shards"])
        for i in range(n):
            _check_shard(path, manifest, i, repair, accept_store_loss, report, keyring)
            if progress is not None:
                progress(i + 1, n)
        if repair:
            _remove_leftovers(path, n, report)
    return report


@contextlib.contextmanager
def hold_lock(lock_path: Path):
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


def _check_shard(path: Path, manifest: dict, i: int, repair: bool, accept_loss: bool, report: CheckReport,
                 keyring=None) -> None:
    folder = path / "shards" / f"{i:03d}"
    store_path = folder / Shard.STORE_NAME
    problems_before = len(report.problems)
    # 1. The store alone: structure and every template's CRC (read only).
    try:
        store = Store(store_path, read_only=True, cipher=keyring)
    except BiomatchError as exc:
        report.problems.append(str(exc))
        report.unrepaired.append(str(exc))
        return
    try:
        for p in store.integrity_problems():
            report.problems.append(f"store {str(store_path)!r}: {p}")
            report.unrepaired.append(f"store {str(store_path)!r}: {p}")
        damaged = _damaged_templates(store)
        if store.encrypted:
            store.faces_since(0, 2**62)  # authenticates every sealed face (damage raises, reported below)
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
                     read_only=not repair, save_rebuilt_index=repair, cache_bytes=0,
                     key=None if keyring is None else keyring.provider)
    try:
        shard = Shard(spec, keyring=keyring)
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
