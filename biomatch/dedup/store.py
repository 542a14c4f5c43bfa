"""The durable store of one shard: SQLite in WAL mode, ``synchronous=FULL``.

Tables::

    meta      (key TEXT PRIMARY KEY, value TEXT)           schema version, gallery id, shard number
    subjects  (id INTEGER PRIMARY KEY AUTOINCREMENT, subject_id TEXT UNIQUE, metadata TEXT,
               face BLOB, enrolled_utc REAL, crc INTEGER)
    fingers   (id INTEGER PRIMARY KEY AUTOINCREMENT, subject INTEGER -> subjects.id ON DELETE CASCADE,
               position INTEGER 1-10, template BLOB (BMT1), n_minutiae INTEGER, crc INTEGER,
               UNIQUE(subject, position))

    removals  (seq INTEGER PRIMARY KEY AUTOINCREMENT, finger_id INTEGER)

``crc`` (schema 2) is a 63-bit BLAKE2b of the row's fields (subject id, metadata, face; subject key,
position, template), verified whenever a row is read for a search, an index build or a check: a
damaged row raises :class:`~biomatch.errors.CorruptStoreError` naming the store, never a wrong id.

Encrypted stores (``meta.encryption`` = ``AES-256-GCM``, opened with the gallery's
:class:`~biomatch.dedup.encryption.Keyring`): ``template``, ``face`` and ``metadata`` hold sealed
records (metadata is sealed even when empty: it binds the subject key to the subject id), each
bound to its row by its associated data -- shard number, subject key, position or subject id,
field -- so a value copied onto another row fails authentication.  ``subject_id``,
``n_minutiae``, ``enrolled_utc``, the keys and positions stay in clear (lookups and joins need
them).  The ``crc`` covers the bytes as stored (the ciphertext): damage is found without the key
and before decryption (CorruptStoreError); a sealed value that passes its crc but fails
authentication was altered or moved (CorruptStoreError too); a record under a data key the
gallery does not hold is a GalleryKeyError.

The store is the source of truth; everything in memory and every index file is derived from it.
``fingers.id`` only grows (AUTOINCREMENT, writers serialised), so an in-memory view catches up
with ``id > last_seen`` and ``removals.seq > last_seen``.  A subject and its fingers are written
in one transaction: after a crash a subject is either complete or absent.  The fingers of a
subject get consecutive ids in ascending position order, and subject keys increase with finger
ids (:meth:`Store.insert` and :meth:`Store.insert_batch` refuse to write anything else): a
shard's memory describes a subject by its first finger id and its positions alone
(:mod:`~biomatch.dedup.finger_map`).  Keys stay within :data:`MAX_SUBJECT_KEY` and finger ids
within :data:`MAX_FINGER_ID` (:class:`~biomatch.errors.ShardFullError` beyond).  Templates are
personal data: never logged; files are created 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import numbers
import os
import sqlite3
import struct
import threading
import time
from pathlib import Path

from ..errors import CorruptStoreError, ShardFullError, invalid
from .encryption import ALGORITHM, KEY_ID_OFFSET, SealBrokenError
from .errors import DuplicateSubjectError, GalleryKeyError, IncompatibleGalleryError, NotAGalleryError, \
    StorageError, UnknownSubjectError

__all__ = ["Store", "SCHEMA_VERSION", "MAX_SUBJECT_KEY", "MAX_FINGER_ID"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""2: a ``crc`` per row (version 1 stores are migrated at their first writable open)."""

MAX_SUBJECT_KEY = 2**31 - 1
"""The largest subject key a store assigns: a shard keeps one int32 key per code index row."""
MAX_FINGER_ID = 2**32 - 1
"""The largest finger id a store assigns: a shard keeps each subject's first finger id as uint32."""


def _full(path: Path, key: int, fid: int) -> ShardFullError:
    return ShardFullError(f"store {str(path)!r}: the next subject key {key} or finger id {fid} is beyond what a "
                          f"shard addresses (keys up to {MAX_SUBJECT_KEY}, finger ids up to {MAX_FINGER_ID}); "
                          f"enrol into a new shard (add_shard)")


def _check_batch_order(n_subjects: int, fingers: list) -> None:
    """Refuse fingers that would break the store's id order: each subject's fingers together and
    in ascending position order, subjects in order, each with at least one finger."""
    prev_i, prev_p = -1, 0
    for j, (i, p, *_) in enumerate(fingers):
        in_order = i == prev_i and p > prev_p or i == prev_i + 1
        if not (isinstance(p, numbers.Integral) and 1 <= p <= 10) or not in_order:
            raise invalid("fingers", "each subject's fingers together in ascending position order, subjects in "
                          "order (the order finger ids must follow)",
                          f"subject index {i} position {p} after subject index {prev_i} position {prev_p} "
                          f"(finger {j})")
        prev_i, prev_p = i, p
    if prev_i != n_subjects - 1:
        raise invalid("fingers", f"fingers of all {n_subjects} subjects", f"fingers up to subject index {prev_i}")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE subjects (id INTEGER PRIMARY KEY AUTOINCREMENT, subject_id TEXT NOT NULL UNIQUE,
                       metadata TEXT, face BLOB, enrolled_utc REAL NOT NULL, crc INTEGER);
CREATE TABLE fingers (id INTEGER PRIMARY KEY AUTOINCREMENT,
                      subject INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
                      position INTEGER NOT NULL CHECK (position BETWEEN 1 AND 10),
                      template BLOB NOT NULL, n_minutiae INTEGER NOT NULL, crc INTEGER,
                      UNIQUE (subject, position));
CREATE INDEX fingers_subject ON fingers(subject);
CREATE TABLE removals (seq INTEGER PRIMARY KEY AUTOINCREMENT, finger_id INTEGER NOT NULL);
"""


def _crc(*fields) -> int:
    """A signed 63-bit BLAKE2b checksum of a row's fields (str, bytes, int or None), length-prefixed
    so that no two rows' fields run together.  SQLite checksums neither pages nor rows: without
    this a flipped byte in a subject id or a finger's subject key would be read back silently."""
    h = hashlib.blake2b(digest_size=8)
    for f in fields:
        if f is None:
            h.update(b"\xff\xff\xff\xff")
            continue
        b = f.encode() if isinstance(f, str) else int(f).to_bytes(8, "little", signed=True) \
            if isinstance(f, int) else bytes(f)
        h.update(len(b).to_bytes(4, "little"))
        h.update(b)
    return int.from_bytes(h.digest(), "little") >> 1


_FINGER_AAD = struct.Struct(">cIqB")  # field, shard, subject key, position
_SUBJECT_AAD = struct.Struct(">cIq")  # field, shard, subject key (+ the subject id's UTF-8)
_FINGER_HEAD = struct.Struct("<IqIqI")  # the length-prefixed subject key and position, and the blob's length


def _finger_crc_fast(subject_key: int, position: int, template: bytes) -> int:
    """:func:`finger_crc` in one hash update (the same bytes, so the same checksum; bulk loading
    computes ~10^5 per batch)."""
    head = _FINGER_HEAD.pack(8, subject_key, 8, position, len(template))
    return int.from_bytes(hashlib.blake2b(head + template, digest_size=8).digest(), "little") >> 1


def subject_crc(subject_id: str, metadata, face) -> int:
    return _crc(subject_id, metadata, face)


def finger_crc(subject_key: int, position: int, template: bytes) -> int:
    return _crc(int(subject_key), int(position), template)


def _storage_error(exc: Exception, what: str, path: Path) -> StorageError:
    return StorageError(f"{what} {str(path)!r}: {exc}")


class Store:
    """One shard's SQLite database.

    Parameters
    ----------
    path : Path
        The database file.
    create : bool
        Create the file and schema (the file must not exist).
    read_only : bool
        Open with ``mode=ro``: every write raises :class:`StorageError`.
    cipher : Keyring, optional
        The gallery's keys: required to create an encrypted store and to read the sealed columns
        of one (without it, an encrypted store still answers counts, sequences and checksum
        checks; reading a template raises :class:`GalleryKeyError`).

    Notes
    -----
    Thread-safe: one connection guarded by a lock.  Across processes, SQLite's own locking plus
    the gallery's file lock serialise writers; readers never block writers (WAL).
    """

    def __init__(self, path: Path, create: bool = False, read_only: bool = False, meta: dict | None = None,
                 cipher=None):
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._bulk_cache = False
        if create:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.close(fd)
            except OSError as exc:
                raise _storage_error(exc, "cannot create store", self.path) from exc
        elif not self.path.is_file():
            raise NotAGalleryError(f"path: expected a shard store at {str(self.path)!r}, found none")
        uri = f"file:{self.path}?mode={'ro' if read_only else 'rw'}"
        try:
            self._conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                         timeout=60.0)
            if not read_only:
                mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StorageError(f"store {str(self.path)!r}: cannot switch to WAL mode (got {mode})")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            if create:
                with self.transaction():
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        self._conn.execute(statement)
                    rows = {"schema_version": str(SCHEMA_VERSION), **{k: str(v) for k, v in (meta or {}).items()}}
                    if cipher is not None:
                        rows["encryption"] = ALGORITHM
                    self._conn.executemany("INSERT INTO meta VALUES (?, ?)", rows.items())
            got = self._meta_raw().get("schema_version")
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            if isinstance(exc, sqlite3.OperationalError) and "unable to open" not in str(exc):
                raise _storage_error(exc, "cannot open store", self.path) from exc
            raise NotAGalleryError(f"path: {str(self.path)!r} is not a biomatch shard store ({exc})") from exc
        if got == "1" and not read_only:
            self._migrate_from_1()
            got = str(SCHEMA_VERSION)
        if got not in ("1", str(SCHEMA_VERSION)):
            self._close_quietly()
            raise IncompatibleGalleryError(
                f"store {str(self.path)!r}: expected schema version {SCHEMA_VERSION}, got {got}")
        self.checksummed = got == str(SCHEMA_VERSION)  # a version-1 store read only: rows unverified
        self._crc = "crc" if self.checksummed else "NULL"  # the column to select
        self._fcrc = "f.crc" if self.checksummed else "NULL"
        meta_now = self._meta_raw()
        self.encrypted = meta_now.get("encryption") is not None
        if cipher is not None and not self.encrypted or self.encrypted and meta_now["encryption"] != ALGORITHM:
            self._close_quietly()
            raise IncompatibleGalleryError(f"store {str(self.path)!r}: expected encryption "
                                           f"{ALGORITHM if cipher is not None else 'none'}, got "
                                           f"{meta_now.get('encryption') or 'none'}")
        self._cipher = cipher
        self._shard_no = int(meta_now["shard"]) if str(meta_now.get("shard", "")).isdigit() else 0

    # ---- sealing (encrypted stores) -----------------------------------------------------------
    def _finger_aad(self, key: int, position: int) -> bytes:
        return _FINGER_AAD.pack(b"F", self._shard_no, int(key), int(position))

    def _subject_aad(self, field: bytes, key: int, subject_id: str) -> bytes:
        return _SUBJECT_AAD.pack(field, self._shard_no, int(key)) + subject_id.encode()

    def _keys(self):
        if self._cipher is None:
            raise GalleryKeyError(f"store {str(self.path)!r}: encrypted, and opened without the gallery's key")
        return self._cipher

    def _open(self, blob, aad: bytes, what: str) -> bytes:
        try:
            return self._keys().open(blob, aad)
        except SealBrokenError as exc:
            raise CorruptStoreError(f"store {str(self.path)!r}: {what} fails authentication ({exc}: altered, or "
                                    f"copied from another row)") from None

    def _open_finger(self, fid, key, position, blob):
        return self._open(blob, self._finger_aad(key, position), f"finger {fid}") if self.encrypted else blob

    def _open_subject(self, key, sid, metadata, face) -> tuple:
        """``(metadata_json or None, face bytes or None)`` of a subject row as stored."""
        if not self.encrypted:
            return metadata, face
        m = self._open(metadata, self._subject_aad(b"M", key, sid), f"subject key {key} (metadata)")
        f = None if face is None else self._open(face, self._subject_aad(b"A", key, sid), f"subject key {key} (face)")
        return (m.decode() if m else None), f

    def _seal_subject(self, key: int, sid: str, metadata_json, face) -> tuple:
        """``(metadata, face)`` as stored.  Encrypted: the metadata is sealed even when None (an
        empty plaintext) so that every subject row authenticates its key and id together."""
        if not self.encrypted:
            return metadata_json, face
        c = self._keys()
        m = c.seal(b"" if metadata_json is None else metadata_json.encode(), self._subject_aad(b"M", key, sid))
        return m, None if face is None else c.seal(bytes(face), self._subject_aad(b"A", key, sid))

    def _seal_finger(self, key: int, position: int, blob: bytes) -> bytes:
        return self._keys().seal(blob, self._finger_aad(key, position)) if self.encrypted else blob

    def _migrate_from_1(self) -> None:
        """Add and fill the row checksums of a version-1 store (one transaction; re-checked
        inside it, so two processes opening it at once migrate it once)."""
        with self.transaction() as c:
            if c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] != "1":
                return
            log.info("store %s: migrating to schema version %d (row checksums)", self.path, SCHEMA_VERSION)
            c.execute("ALTER TABLE subjects ADD COLUMN crc INTEGER")
            c.execute("ALTER TABLE fingers ADD COLUMN crc INTEGER")
            c.executemany("UPDATE subjects SET crc = ? WHERE id = ?",
                          ((subject_crc(sid, m, f), k) for k, sid, m, f in
                           c.execute("SELECT id, subject_id, metadata, face FROM subjects").fetchall()))
            after = 0
            while True:
                rows = c.execute("SELECT id, subject, position, template FROM fingers WHERE id > ? ORDER BY id "
                                 "LIMIT 20000", (after,)).fetchall()
                if not rows:
                    break
                c.executemany("UPDATE fingers SET crc = ? WHERE id = ?",
                              [(finger_crc(k, p, t), f) for f, k, p, t in rows])
                after = rows[-1][0]
            c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    def _damaged(self, what: str) -> CorruptStoreError:
        return CorruptStoreError(f"store {str(self.path)!r}: {what} fails its row checksum (the file is damaged)")

    def _check_subject(self, key, sid, metadata, face, crc) -> None:
        if self.checksummed and crc != subject_crc(sid, metadata, face):
            raise self._damaged(f"subject key {key}")

    def _check_finger(self, fid, key, position, blob, crc) -> None:
        # the one-update form (the same checksum): a search checks ~300 candidate fingers
        if self.checksummed and crc != _finger_crc_fast(int(key), int(position), blob):
            raise self._damaged(f"finger {fid}")

    def _close_quietly(self):
        with contextlib.suppress(Exception):
            self._conn.close()

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    @contextlib.contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (durable on return), rolled back on any error."""
        with self._lock:
            if self.read_only:
                raise StorageError(f"store {str(self.path)!r}: opened read-only")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _storage_error(exc, "cannot start a write transaction on", self.path) from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise
                if isinstance(exc, sqlite3.Error):
                    raise _storage_error(exc, "write failed (rolled back) on", self.path) from exc
                raise

    def meta(self) -> dict:
        return dict(self._read("SELECT key, value FROM meta"))

    def _meta_raw(self) -> dict:  # inside __init__: sqlite3 errors are classified there
        with self._lock:
            return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def _read(self, sql: str, args=()):
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise _storage_error(exc, "read failed on", self.path) from exc

    def set_meta(self, key: str, value: str) -> None:
        """Insert or replace one ``meta`` row (durable on return)."""
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def sequences(self) -> dict:
        """The last finger id, subject key and removal number ever assigned (AUTOINCREMENT: they
        only grow, removals included), ``{"fingers", "subjects", "removals"}``; 0 when none."""
        got = dict(self._read("SELECT name, seq FROM sqlite_sequence"))
        out = {}
        for key, table in (("fingers", "fingers"), ("subjects", "subjects"), ("removals", "removals")):
            v = got.get(table, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise CorruptStoreError(f"store {str(self.path)!r}: sequence of {table} is {v!r}, expected an int >= 0")
            out[key] = v
        return out

    def last_subject_key(self) -> int:
        """The largest subject key the store holds (0: none): what a shard's map is sized for."""
        return int(self._read("SELECT max(id) FROM subjects")[0][0] or 0)

    def count_removals_since(self, after_seq: int) -> int:
        return int(self._read("SELECT COUNT(*) FROM removals WHERE seq > ?", (after_seq,))[0][0])

    def has_subject(self, subject_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM subjects WHERE subject_id = ?", (subject_id,)))

    def insert(self, subject_id: str, templates: dict, metadata_json: str | None, face: bytes | None) -> tuple:
        """Insert a subject and its fingers in one durable transaction.

        Parameters
        ----------
        templates : dict int -> (bytes, n_minutiae)

        Returns
        -------
        (subject key, list of (finger id, position))
        """
        if not templates:
            raise invalid("templates", "at least one finger", 0)
        if self.encrypted:
            self._keys().writing()
        try:
            with self.transaction() as c:
                if self.encrypted:  # the sealed fields are bound to the key: assign it first (as insert_batch)
                    seq = c.execute("SELECT seq FROM sqlite_sequence WHERE name = 'subjects'").fetchone()
                    key = (int(seq[0]) if seq else 0) + 1
                    meta_s, face_s = self._seal_subject(key, subject_id, metadata_json, face)
                    c.execute("INSERT INTO subjects (id, subject_id, metadata, face, enrolled_utc, crc) "
                              "VALUES (?, ?, ?, ?, ?, ?)", (key, subject_id, meta_s, face_s, time.time(),
                                                            subject_crc(subject_id, meta_s, face_s)))
                else:
                    cur = c.execute("INSERT INTO subjects (subject_id, metadata, face, enrolled_utc, crc) "
                                    "VALUES (?, ?, ?, ?, ?)", (subject_id, metadata_json, face, time.time(),
                                                               subject_crc(subject_id, metadata_json, face)))
                    key = cur.lastrowid
                fids = []
                for pos, (blob, n) in sorted(templates.items()):
                    blob = self._seal_finger(key, pos, blob)
                    cur = c.execute("INSERT INTO fingers (subject, position, template, n_minutiae, crc) "
                                    "VALUES (?, ?, ?, ?, ?)", (key, pos, blob, n, finger_crc(key, pos, blob)))
                    fids.append((cur.lastrowid, pos))
                if key > MAX_SUBJECT_KEY or fids[-1][0] > MAX_FINGER_ID:
                    raise _full(self.path, key, fids[-1][0])  # rolled back
                if fids[-1][0] - fids[0][0] != len(fids) - 1:  # AUTOINCREMENT in one transaction
                    raise StorageError(f"store {str(self.path)!r}: finger ids {[f for f, _ in fids]} of one subject "
                                       f"are not consecutive (rolled back)")
        except sqlite3.IntegrityError as exc:
            raise DuplicateSubjectError(f"subject_id: {subject_id!r} is already enrolled") from exc
        return key, fids

    def remove(self, subject_id: str) -> list[int]:
        """Delete a subject and its fingers; log the removed finger ids.  Returns them."""
        with self.transaction() as c:
            row = c.execute("SELECT id FROM subjects WHERE subject_id = ?", (subject_id,)).fetchone()
            if row is None:
                raise UnknownSubjectError(f"subject_id: {subject_id!r} is not enrolled")
            fids = [r[0] for r in c.execute("SELECT id FROM fingers WHERE subject = ?", (row[0],))]
            c.executemany("INSERT INTO removals (finger_id) VALUES (?)", [(f,) for f in fids])
            c.execute("DELETE FROM fingers WHERE subject = ?", (row[0],))
            c.execute("DELETE FROM subjects WHERE id = ?", (row[0],))
        return fids

    def fingers_since(self, after_id: int, limit: int = -1) -> list:
        """``(finger id, subject key, subject id, position, template blob)`` with ``id > after_id``
        (each row's checksum verified: :class:`CorruptStoreError` names the store and the finger)."""
        rows = self._read(f"SELECT f.id, f.subject, s.subject_id, f.position, f.template, {self._fcrc} FROM fingers f "
                          "LEFT JOIN subjects s ON s.id = f.subject WHERE f.id > ? ORDER BY f.id LIMIT ?",
                          (after_id, limit))
        for fid, key, sid, pos, blob, crc in rows:
            self._check_finger(fid, key, pos, blob, crc)
            if sid is None:  # a finger whose subject row is missing: the subject key was damaged
                raise self._damaged(f"finger {fid} (no subject {key})")
        if self.encrypted:
            return [(fid, key, sid, pos, self._open_finger(fid, key, pos, blob)) for fid, key, sid, pos, blob, _ in rows]
        return [r[:5] for r in rows]

    def finger_keys_since(self, after_id: int, limit: int = -1) -> list:
        """``(finger id, subject key, position)`` with ``id > after_id`` (no templates)."""
        return self._read("SELECT id, subject, position FROM fingers WHERE id > ? ORDER BY id LIMIT ?",
                          (after_id, limit))

    def faces_since(self, after_key: int, upto_key: int, limit: int = -1) -> list:
        """``(subject key, face blob)`` of subjects with a face and ``after_key < key <= upto_key``."""
        rows = self._read(f"SELECT id, face, subject_id, metadata, {self._crc} FROM subjects WHERE id > ? AND id <= ? "
                          "AND face IS NOT NULL ORDER BY id LIMIT ?", (after_key, upto_key, limit))
        for key, face, sid, meta, crc in rows:
            self._check_subject(key, sid, meta, face, crc)
        if self.encrypted:
            return [(key, self._open_subject(key, sid, meta, face)[1]) for key, face, sid, meta, _ in rows]
        return [(key, face) for key, face, *_ in rows]

    def templates_by_ids(self, finger_ids) -> dict:
        """``{finger id: template blob}`` of the fingers that exist among ``finger_ids``."""
        out = {}
        ids = [int(f) for f in finger_ids]
        for i in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[i:i + 900]
            for fid, key, pos, blob, crc in self._read(
                    f"SELECT id, subject, position, template, {self._crc} FROM fingers WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk):
                self._check_finger(fid, key, pos, blob, crc)
                out[fid] = self._open_finger(fid, key, pos, blob)
        return out

    def subject_ids(self, keys) -> dict:
        """``{subject key: subject id}`` of the subjects that exist among ``keys``."""
        out = {}
        ks = [int(k) for k in keys]
        for i in range(0, len(ks), 900):
            chunk = ks[i:i + 900]
            for key, sid, meta, face, crc in self._read(
                    f"SELECT id, subject_id, metadata, face, {self._crc} FROM subjects WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk):
                self._check_subject(key, sid, meta, face, crc)
                if self.encrypted:  # the sealed metadata authenticates the key <-> id binding (no face read)
                    self._open(meta, self._subject_aad(b"M", key, sid), f"subject key {key} (metadata)")
                out[key] = sid
        return out

    def subject_key(self, subject_id: str):
        rows = self._read("SELECT id FROM subjects WHERE subject_id = ?", (subject_id,))
        return rows[0][0] if rows else None

    def insert_batch(self, subjects: list, fingers: list) -> tuple[int, int]:
        """Insert many subjects and fingers in ONE durable transaction, with ids assigned here.

        The bulk-loading form of :meth:`insert`: ids are the next ones of the store's
        sequences (writers are serialised, and AUTOINCREMENT never reuses an id), so the rows go
        in with ``executemany`` and nothing is read back per row.

        Parameters
        ----------
        subjects : list of (subject_id, metadata_json or None, face bytes or None)
            Subject ``i`` gets key ``first_key + i``.
        fingers : list of (subject index, position, BMT1 blob, n_minutiae)
            Finger ``j`` gets id ``first_finger + j``: each subject's fingers together in
            ascending position order, subjects in order, every subject with at least one (the
            order of the store's ids, see the module docstring).

        Returns
        -------
        (first_key, first_finger) : the key of subject 0 and the id of finger 0

        Raises
        ------
        DuplicateSubjectError
            A subject id is already enrolled (or repeated): nothing of the batch is written.
        InvalidInputError
            ``fingers`` out of that order (a caller's bug): nothing is written.
        ShardFullError
            The batch's ids would exceed :data:`MAX_SUBJECT_KEY` or :data:`MAX_FINGER_ID`.
        """
        _check_batch_order(len(subjects), fingers)
        now = time.time()
        if self.encrypted:
            self._keys().writing()
        if not self._bulk_cache:
            # B-tree pages of the subject-id index are touched at random by a large batch: a
            # bigger page cache for this (writing) connection; durability is unchanged.
            with self._lock:
                self._conn.execute("PRAGMA cache_size = -65536")  # KiB
            self._bulk_cache = True
        try:
            with self.transaction() as c:
                seq = dict(c.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
                # AUTOINCREMENT's next id is max(sequence, largest id) + 1; the sequence is never
                # below the largest id, so it alone is the base.
                key0, fid0 = int(seq.get("subjects", 0)) + 1, int(seq.get("fingers", 0)) + 1
                if key0 + len(subjects) - 1 > MAX_SUBJECT_KEY or fid0 + len(fingers) - 1 > MAX_FINGER_ID:
                    raise _full(self.path, key0 + len(subjects) - 1, fid0 + len(fingers) - 1)
                if self.encrypted:
                    subjects = [(sid, *self._seal_subject(key0 + i, sid, meta, face))
                                for i, (sid, meta, face) in enumerate(subjects)]
                    fingers = [(i, pos, self._seal_finger(key0 + i, pos, blob), n) for i, pos, blob, n in fingers]
                c.executemany("INSERT INTO subjects (id, subject_id, metadata, face, enrolled_utc, crc) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              [(key0 + i, sid, meta, face, now, subject_crc(sid, meta, face))
                               for i, (sid, meta, face) in enumerate(subjects)])
                c.executemany("INSERT INTO fingers (id, subject, position, template, n_minutiae, crc) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              [(fid0 + j, key0 + i, pos, blob, n, _finger_crc_fast(key0 + i, pos, blob))
                               for j, (i, pos, blob, n) in enumerate(fingers)])
        except sqlite3.IntegrityError as exc:
            raise DuplicateSubjectError(f"subject_id: a subject of this batch is already enrolled ({exc})") from exc
        return key0, fid0

    def present(self, subject_ids: list) -> list:
        """The ids among ``subject_ids`` that are enrolled (one query per 900 ids)."""
        out = []
        for i in range(0, len(subject_ids), 900):  # SQLite's bound-parameter limit
            chunk = list(subject_ids[i:i + 900])
            out.extend(r[0] for r in self._read(
                f"SELECT subject_id FROM subjects WHERE subject_id IN ({','.join('?' * len(chunk))})", chunk))
        return out

    def removals_since(self, after_seq: int) -> list:
        return self._read("SELECT seq, finger_id FROM removals WHERE seq > ? ORDER BY seq", (after_seq,))

    def subject_templates(self, subject_id: str) -> dict:
        rows = self._read(f"SELECT f.id, f.subject, f.position, f.template, {self._fcrc} FROM fingers f "
                          "JOIN subjects s ON s.id = f.subject WHERE s.subject_id = ?", (subject_id,))
        for fid, key, pos, blob, crc in rows:
            self._check_finger(fid, key, pos, blob, crc)
        return {pos: self._open_finger(fid, key, pos, blob) for fid, key, pos, blob, _ in rows}

    def subject_record(self, subject_id: str):
        """``(subject key, metadata_json or None)`` of an enrolled subject, else None (decrypted
        and checked)."""
        rows = self._read(f"SELECT id, subject_id, metadata, face, {self._crc} FROM subjects WHERE subject_id = ?",
                          (subject_id,))
        if not rows:
            return None
        key, sid, meta, face, crc = rows[0]
        self._check_subject(key, sid, meta, face, crc)
        if self.encrypted:
            meta = self._open(meta, self._subject_aad(b"M", key, sid), f"subject key {key} (metadata)").decode() or None
        return key, meta

    def counts(self) -> dict:
        n_subjects = self._read("SELECT COUNT(*) FROM subjects")[0][0]
        per_pos = dict(self._read("SELECT position, COUNT(*) FROM fingers GROUP BY position"))
        return {"subjects": n_subjects, "fingers": sum(per_pos.values()), "fingers_per_position": per_pos}

    def integrity_problems(self) -> list[str]:
        """Subjects without fingers and SQLite's own integrity check (empty list = sound)."""
        out = [f"subject key {k} has no fingers" for (k,) in
               self._read("SELECT id FROM subjects WHERE id NOT IN (SELECT subject FROM fingers)")]
        if self.checksummed:
            out.extend(f"subject key {k} fails its row checksum" for k, sid, m, f, c in
                       self._read("SELECT id, subject_id, metadata, face, crc FROM subjects")
                       if c != subject_crc(sid, m, f))
        res = self._read("PRAGMA integrity_check")
        if res and res[0][0] != "ok":
            out.extend(r[0] for r in res)
        return out

    # ---- re-encryption (biomatch.dedup.rekey) ---------------------------------------------------
    def reseal_fingers(self, after_id: int, limit: int) -> tuple[int, int | None]:
        """Re-seal under the active DEK the fingers with ``id > after_id`` (``limit`` rows read,
        those under another DEK rewritten) in one transaction.  Returns ``(rewritten, last id
        read)``; the last id is None when no row was left.  Idempotent: a re-run skips what is done."""
        keys = self._keys()
        keys.writing()
        with self.transaction() as c:
            rows = c.execute("SELECT id, subject, position, template FROM fingers WHERE id > ? ORDER BY id LIMIT ?",
                             (after_id, limit)).fetchall()
            todo = []
            for fid, key, pos, blob in rows:
                if int.from_bytes(bytes(blob[KEY_ID_OFFSET:KEY_ID_OFFSET + 4]), "big") != keys.active:
                    new = self._seal_finger(key, pos, self._open_finger(fid, key, pos, blob))
                    todo.append((new, finger_crc(key, pos, new), fid))
            c.executemany("UPDATE fingers SET template = ?, crc = ? WHERE id = ?", todo)
        return len(todo), (rows[-1][0] if rows else None)

    def reseal_subjects(self, after_key: int, limit: int) -> tuple[int, int | None]:
        """:meth:`reseal_fingers` for the subjects' metadata and faces."""
        keys = self._keys()
        keys.writing()
        with self.transaction() as c:
            rows = c.execute("SELECT id, subject_id, metadata, face FROM subjects WHERE id > ? ORDER BY id LIMIT ?",
                             (after_key, limit)).fetchall()
            todo = []
            for key, sid, meta, face in rows:
                under = {int.from_bytes(bytes(b[KEY_ID_OFFSET:KEY_ID_OFFSET + 4]), "big") for b in (meta, face) if b}
                if under != {keys.active}:
                    m, f = self._seal_subject(key, sid, *self._open_subject(key, sid, meta, face))
                    todo.append((m, f, subject_crc(sid, m, f), key))
            c.executemany("UPDATE subjects SET metadata = ?, face = ?, crc = ? WHERE id = ?", todo)
        return len(todo), (rows[-1][0] if rows else None)

    def count_sealed_outside(self, dek_id: int) -> int:
        """Sealed values of this store under a DEK other than ``dek_id`` (0: re-encryption done)."""
        k = int(dek_id).to_bytes(4, "big")
        at = KEY_ID_OFFSET + 1  # SQL substr is 1-based
        return sum(self._read(sql, (k,))[0][0] for sql in (
            f"SELECT COUNT(*) FROM fingers WHERE substr(template, {at}, 4) <> ?",
            f"SELECT COUNT(*) FROM subjects WHERE substr(metadata, {at}, 4) <> ?",
            f"SELECT COUNT(*) FROM subjects WHERE face IS NOT NULL AND substr(face, {at}, 4) <> ?"))
