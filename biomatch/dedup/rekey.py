"""Key rotation of an encrypted gallery: re-wrap the data keys, or re-encrypt every record.

Two operations, together or apart (:func:`rotate_key`)::

    re-wrap      under the write lock: every data key (DEK) unwrapped by the old key-encryption
                 key (KEK) and wrapped by the new one; the manifest replaced atomically.  Instant;
                 nothing in the stores changes.
    re-encrypt   1. under the write lock: a new DEK joins the key set and becomes the active one
                    (new enrolments are sealed under it from then on), the manifest says
                    ``reencrypt: {to: new}``
                 2. without the lock, shard by shard: batches of rows re-sealed under the new DEK,
                    each batch one SQLite transaction (rows already under it are skipped)
                 3. under the write lock: every store counted (no value left under another DEK),
                    then the old DEKs dropped from the manifest

Safe under a kill at any moment: each batch commits or not; the manifest is replaced atomically;
until step 3 the key set holds the old and the new DEK, and each record names its DEK, so a
half-rotated gallery reads as before.  Running the command again resumes (step 1 is not repeated
while a re-encryption is in progress).

Concurrency: searches are never stopped.  SQLite's WAL lets readers go on during each batch; a
reader sees each row either under the old DEK or the new one (the plaintext, the finger ids, the
index and the caches are unchanged), and a process that meets a DEK it does not hold re-reads the
key set from the manifest.  Enrolments wait for the write lock in steps 1 and 3 only (step 3
counts the sealed values: ~1 s per million fingers) and, in step 2, for at most one batch's
transaction (SQLite's write lock).  A process that writes re-reads the key set when the manifest
changed, under the write lock, so it seals under the new DEK once step 1 is done.
"""

from __future__ import annotations

import logging
import struct
import time
from pathlib import Path
from typing import Callable

from ..errors import BiomatchError, GalleryKeyError, invalid
from ..retrieval.code_files import reseal_version
from . import manifest as _mf
from .encryption import SEALED_COLUMNS_TABLE, Keyring, check_provider, dek_name, describe_section, side_aad
from .maintenance import hold_lock
from .shard import Shard
from .store import Store

__all__ = ["rotate_key", "reseal_side_store"]

log = logging.getLogger(__name__)


SIDE_DIR = "service"  # the registry service's stores beside the gallery (backup.SERVICE_DIR)


def _store_path(path: Path, i: int) -> Path:
    return path / "shards" / f"{i:03d}" / Shard.STORE_NAME


def rotate_key(path, key, new_key=None, reencrypt: bool = False, batch_size: int = 2000,
               progress: Callable | None = None) -> dict:
    """Re-wrap an encrypted gallery's data keys under ``new_key`` and/or re-encrypt its records.

    Parameters
    ----------
    path : str or Path
    key : KeyProvider
        The gallery's current key-encryption key.  (After a re-wrap killed just after its
        manifest was written, the new key is accepted as the current one.)
    new_key : KeyProvider, optional
        Re-wrap the data keys under this KEK.
    reencrypt : bool
        Re-encrypt every record under a new data key (resumes one in progress).
    batch_size : int
        Rows per transaction while re-encrypting.
    progress : callable(shard, rows_rewritten), optional
        Called after each batch.

    Returns
    -------
    dict : ``encryption`` as :attr:`Gallery.encryption` shows it after the call, plus
    ``rewrapped`` (bool) and ``reencrypted_rows`` (int)

    Raises
    ------
    GalleryKeyError
        Not encrypted; ``key`` is not the gallery's key.
    InvalidInputError
        Neither ``new_key`` nor ``reencrypt``.
    """
    path = _mf.gallery_path(path)
    check_provider(key)
    if new_key is not None:
        check_provider(new_key, "new_key")
    if not isinstance(reencrypt, bool):
        raise invalid("reencrypt", "a bool", reencrypt)
    if new_key is None and not reencrypt:
        raise invalid("new_key", "a new key, or reencrypt=True", None)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 100_000:
        raise invalid("batch_size", "an int in [1, 100000]", batch_size)
    mpath = path / _mf.MANIFEST
    rewrapped = False
    with hold_lock(path / _mf.LOCK):
        manifest = _mf.read_manifest(path)
        section = manifest.get("encryption")
        if section is None:
            raise GalleryKeyError(f"path: the gallery {str(path)!r} is not encrypted (nothing to rotate)")
        new_id = None if new_key is None else new_key.key_id
        current = new_key if new_id is not None and new_id == section["kek_id"] else key
        keyring = Keyring(current, mpath, manifest["gallery_id"], section)
        if new_key is not None and new_id != section["kek_id"]:
            section = keyring.rewrapped(section, new_key)
            rewrapped = True
        if reencrypt and section.get("reencrypt") is None:
            dek_id, wrapped = keyring.new_data_key(new_key)
            section = dict(section, keys={**section["keys"], str(dek_id): wrapped}, active=dek_id,
                           reencrypt={"to": dek_id, "started_utc": time.time()})
            log.info("gallery %s: re-encryption to %s started", path, dek_name(dek_id))
        if section is not manifest["encryption"]:
            manifest["encryption"] = section
            _mf.write_manifest(path, manifest)
        provider = new_key or current
    if rewrapped:
        log.info("gallery %s: data keys re-wrapped under %s", path, new_id)
    rows = 0
    if reencrypt:
        keyring = Keyring(provider, mpath, manifest["gallery_id"])
        rows = _reencrypt(path, keyring, batch_size, progress)
    section = _mf.read_manifest(path)["encryption"]
    return {**describe_section(section), "rewrapped": rewrapped, "reencrypted_rows": rows}


def _reseal_shard(store: Store, i: int, batch_size: int, progress) -> int:
    done = 0
    for reseal in (store.reseal_fingers, store.reseal_subjects):
        after = 0
        while True:
            n, last = reseal(after, batch_size)
            if last is None:
                break
            done += n
            after = last
            if progress is not None and n:
                progress(i, done)
    return done


def reseal_side_store(db_path: Path, keyring: Keyring, batch_size: int = 500) -> int:
    """Re-seal, under the active DEK, every value of a side store (an SQLite file that declares its
    sealed columns in :data:`~biomatch.dedup.encryption.SEALED_COLUMNS_TABLE`) sealed under
    another one; returns the values rewritten.  A file without the declaration is left alone.

    Raises
    ------
    GalleryKeyError
        A value is sealed under a data key the key set does not hold.
    CorruptStoreError
        A value fails authentication.
    """
    import sqlite3

    done = 0
    db = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        try:
            declared = db.execute(f"SELECT tbl, col, key_cols, aad_prefix FROM {SEALED_COLUMNS_TABLE}").fetchall()
        except sqlite3.OperationalError:  # no declaration: nothing sealed here
            return 0
        active = keyring.active
        for tbl, col, key_cols, prefix in declared:
            keys = [k for k in key_cols.split(",") if k]
            q = lambda name: '"' + name.replace('"', '""') + '"'  # noqa: E731 (names from the file itself)
            sel = (f"SELECT rowid, {', '.join(map(q, keys))}, {q(col)} FROM {q(tbl)} WHERE typeof({q(col)}) = 'blob' "
                   f"AND substr({q(col)}, 1, 2) = X'4258' AND substr({q(col)}, 4, 4) != ? AND rowid > ? "
                   f"ORDER BY rowid LIMIT ?")
            after = 0
            while True:
                rows = db.execute(sel, (struct.pack(">I", active), after, batch_size)).fetchall()
                if not rows:
                    break
                db.execute("BEGIN IMMEDIATE")
                try:
                    for row in rows:
                        aad = side_aad(prefix, *row[1:-1])
                        db.execute(f"UPDATE {q(tbl)} SET {q(col)} = ? WHERE rowid = ? AND {q(col)} = ?",
                                   (keyring.seal(keyring.open(row[-1], aad), aad), row[0], row[-1]))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                done += len(rows)
                after = rows[-1][0]
    finally:
        db.close()
    if done:
        log.info("%s: %d sealed values re-sealed under %s", db_path.name, done, dek_name(keyring.active))
    return done


def _reencrypt(path: Path, keyring: Keyring, batch_size: int, progress) -> int:
    """Steps 2 and 3 (see the module docstring); returns the rows rewritten."""
    rows = 0
    n_done = 0
    while True:
        n_shards = int(_mf.read_manifest(path)["n_shards"])  # add_shard may run meanwhile
        for i in range(n_done, n_shards):
            store = Store(_store_path(path, i), cipher=keyring)
            try:
                rows += _reseal_shard(store, i, batch_size, progress)
            finally:
                store.close()
        n_done = n_shards
        with hold_lock(path / _mf.LOCK):
            manifest = _mf.read_manifest(path)
            if int(manifest["n_shards"]) != n_done:
                continue  # a shard was added: re-seal it, then count again
            section = manifest["encryption"]
            if section.get("reencrypt") is None:  # finished by a concurrent run
                return rows
            active = int(section["active"])
            for i in range(n_done):
                store = Store(_store_path(path, i), cipher=keyring)
                try:
                    # rows written by a writer that had not yet seen the new DEK (none expected:
                    # writers re-read the key set under this lock) are re-sealed here, under it
                    if store.count_sealed_outside(active):
                        rows += _reseal_shard(store, i, batch_size, progress)
                    left = store.count_sealed_outside(active)
                finally:
                    store.close()
                if left:
                    raise GalleryKeyError(f"store {str(_store_path(path, i))!r}: {left} values still under an old "
                                          f"data key after re-encryption; run the rotation again")
            # the service's stores beside the gallery (kept REVIEW probes, idempotent answers,
            # images): they declare their sealed columns; re-sealed before the old DEK goes
            for side in sorted((path / SIDE_DIR).glob("*.sqlite")) if (path / SIDE_DIR).is_dir() else ():
                rows += reseal_side_store(side, keyring)
            for i in range(n_done):  # the shards' sealed code index files too (else rebuilt at the next open)
                try:
                    reseal_version(_store_path(path, i).parent / "index", keyring)
                except (OSError, ValueError, BiomatchError) as exc:  # derived data: a rebuild at open
                    log.warning("shard %d: code index not re-sealed (%s); it is rebuilt at the next open", i, exc)
            manifest["encryption"] = dict(section, keys={str(active): section["keys"][str(active)]}, reencrypt=None)
            _mf.write_manifest(path, manifest)
            log.info("gallery %s: re-encrypted under %s (%d rows rewritten); old data keys dropped",
                     path, dek_name(active), rows)
            return rows
