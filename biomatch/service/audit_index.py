"""The audit log's index by subject id: "who looked up this citizen" without reading the whole log.

``GALLERY/service/audit.index.sqlite`` (0600) holds, for every entry of ``audit.log`` and every
subject id it names, one row ``(subject_id, seq, offset, length)``: where the entry's line is in
the log.  A query reads the index (a B-tree lookup) and then only the lines it points at, each
checked against its own hash; the cost grows with the number of entries naming that subject, not
with the log.

The log stays the source of truth (``biomatch audit verify`` checks the log's chain, never the
index).  The index says how far it has read: the offset, seq and length of the last line it
holds, and the SHA-256 of that line's bytes.  It is written after the log line is fsync'd,
under the log's ``flock``, so it can only be behind the log, never ahead of it; a kill between
the two (or a log appended by a version without the index) leaves it behind, and it catches up
from its offset when it is next opened or queried.  When it does not fit the log (the line at
its offset is not the line it recorded: the log was restored from a backup or replaced; the
file is missing) it is rebuilt from the log.  It holds only what the log holds (subject ids and positions), so it is
as personal as the log and kept like it.

Thread-safety: used by :class:`~biomatch.service.audit.AuditLog` under its thread lock and the
log's ``flock`` (one writer at a time across processes).  Memory: constant; disk ~120 B per
(entry, subject id) pair (measured: 121 MiB for 1M entries naming 2 subject ids on average).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from pathlib import Path

from ..errors import StorageError

__all__ = ["AuditIndex", "INDEX_FILE"]

log = logging.getLogger(__name__)

INDEX_FILE = "audit.index.sqlite"
_FORMAT = 1
_BATCH_ROWS = 50_000
_READ_BYTES = 1 << 20


class AuditIndex:
    """The subject-id index of one audit log.

    Parameters
    ----------
    path : path
        The index file (created 0600).
    log_path : path
        The audit log it indexes.
    """

    def __init__(self, path, log_path):
        self.path = Path(path)
        self.log_path = Path(log_path)
        self._db = None
        self._open()

    def _open(self) -> None:
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a commit is not fsync'd; a power cut may lose the last ones, which the
            # index then reads again from the log (it can be behind, never ahead).
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS hits (subject_id TEXT NOT NULL, seq INTEGER NOT NULL, "
                       "offset INTEGER NOT NULL, length INTEGER NOT NULL, PRIMARY KEY (subject_id, seq)) "
                       "WITHOUT ROWID")
            db.execute("CREATE TABLE IF NOT EXISTS head (one INTEGER PRIMARY KEY CHECK (one = 1), format INTEGER, "
                       "offset INTEGER NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL, length INTEGER NOT NULL)")
        except sqlite3.Error as exc:
            raise StorageError(f"audit index {str(self.path)!r}: {exc}") from exc
        for suffix in ("-wal", "-shm"):
            p = self.path.with_name(self.path.name + suffix)
            if p.exists():
                os.chmod(p, 0o600)
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # ---- where the index stands ---------------------------------------------------------------------
    def head(self) -> tuple[int, int, str, int]:
        """``(offset, seq, line hash, length)`` of the last indexed line (offset: where the next line
        starts; line hash: SHA-256 of the line's bytes)."""
        row = self._db.execute("SELECT offset, seq, hash, length, format FROM head").fetchone()
        if row is None or row[4] != _FORMAT:
            return 0, 0, "", 0
        return int(row[0]), int(row[1]), str(row[2]), int(row[3])

    def _fits(self, fd: int, size: int) -> bool:
        """Whether the log still holds, at the recorded place, the last entry the index recorded."""
        offset, seq, h, length = self.head()
        if offset == 0:
            return True
        if offset > size or length <= 0:
            return False
        return _line_hash(os.pread(fd, length, offset - length)) == h

    # ---- writing (under the log's flock) ------------------------------------------------------------
    def add(self, entry: dict, offset: int, line: bytes) -> bool:
        """Index one entry whose ``line`` was just appended at ``offset`` (and fsync'd).  Returns
        False, doing nothing, when the index is not at ``offset`` (behind: an entry appended by a
        process that died before indexing it); the next :meth:`catch_up` reads it from the log."""
        if self.head()[0] != offset:
            return False
        self._write([(sid, int(entry["seq"]), offset, len(line)) for sid in _subjects(entry)],
                    (offset + len(line), int(entry["seq"]), _line_hash(line), len(line)))
        return True

    def catch_up(self, fd: int, size: int) -> int:
        """Read the log from the index's offset up to ``size`` (whole lines only) into the index,
        rebuilding it first when it does not fit the log; returns the entries read."""
        if not self._fits(fd, size):
            log.warning("audit index %s does not fit the log (restored or replaced): rebuilt from the log",
                        self.path.name)
            self._write_reset()
        offset, seq, _, length = self.head()
        rows, n, pending, last = [], 0, b"", b""
        pos = offset
        while pos + len(pending) < size:
            chunk = os.pread(fd, min(_READ_BYTES, size - pos - len(pending)), pos + len(pending))
            if not chunk:
                break
            pending += chunk
            start = 0
            while True:
                end = pending.find(b"\n", start)
                if end < 0:
                    break
                line = pending[start:end + 1]
                try:
                    entry = json.loads(line)
                    entry_seq = int(entry["seq"])
                except (ValueError, KeyError, TypeError):
                    # a damaged line: `audit verify` names it; the index goes on past it
                    entry, entry_seq = {}, seq
                seq, length, last = entry_seq, len(line), line
                rows.extend((sid, seq, pos + start, length) for sid in _subjects(entry))
                n += 1
                start = end + 1
            pos += start
            pending = pending[start:]
            if len(rows) >= _BATCH_ROWS:
                self._write(rows, (pos, seq, _line_hash(last), length))
                rows = []
        if n:
            self._write(rows, (pos, seq, _line_hash(last), length))
        return n

    def _write(self, rows, head) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO hits (subject_id, seq, offset, length) "
                                     "VALUES (?, ?, ?, ?)", rows)
                self._db.execute("INSERT OR REPLACE INTO head (one, format, offset, seq, hash, length) "
                                 "VALUES (1, ?, ?, ?, ?, ?)", (_FORMAT, *head))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"audit index {str(self.path)!r}: {exc}") from exc

    def _write_reset(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM hits")
            self._db.execute("DELETE FROM head")
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"audit index {str(self.path)!r}: {exc}") from exc

    # ---- reading ----------------------------------------------------------------------------------------
    def lookup(self, subject_id: str, limit: int) -> list[tuple[int, int, int]]:
        """``(seq, offset, length)`` of the newest ``limit`` entries naming ``subject_id``, newest first."""
        try:
            return self._db.execute("SELECT seq, offset, length FROM hits WHERE subject_id = ? ORDER BY seq DESC "
                                    "LIMIT ?", (subject_id, int(limit))).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"audit index {str(self.path)!r}: {exc}") from exc


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _subjects(entry: dict) -> list[str]:
    ids = entry.get("subject_ids") if isinstance(entry, dict) else None
    if not isinstance(ids, list):
        return []
    return list(dict.fromkeys(s for s in ids if isinstance(s, str)))
