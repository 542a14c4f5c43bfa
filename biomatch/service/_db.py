"""The service's SQLite stores (idempotency keys, the REVIEW queue, kept images): one way of opening,
querying and writing them.

Each store is one file in ``GALLERY/service/`` (0600; its ``-wal`` and ``-shm`` made 0600 too),
in WAL mode with ``synchronous=FULL`` (a commit is on disk when it returns: the service answers
after it), one connection per process under a thread lock, shared by worker processes through
SQLite's own locking (``BEGIN IMMEDIATE`` makes a check-and-write atomic).  SQLite errors become
:class:`~biomatch.errors.StorageError` naming the store.

A store of an encrypted gallery declares its sealed columns in the table
:data:`~biomatch.dedup.encryption.SEALED_COLUMNS_TABLE`, so that ``gallery rotate-key
--reencrypt`` re-seals them under the new data key before the old one is dropped (the gallery
layer knows these files only by that declaration).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from ..dedup.encryption import SEALED_COLUMNS_TABLE
from ..errors import StorageError

__all__ = ["ServiceDB"]


class ServiceDB:
    """One SQLite store of the service.

    Parameters
    ----------
    path : path
    what : str
        The store's name in error messages (``"review queue"``).
    schema : sequence of str
        Statements run at open (``CREATE TABLE IF NOT EXISTS ...``).
    sealed : sequence of (table, column, key columns, associated-data prefix)
        The columns that hold sealed values (when the gallery is encrypted): a value's
        associated data is ``prefix|key column values``
        (:func:`~biomatch.dedup.encryption.side_aad`).

    Notes
    -----
    Thread-safe (one connection under a lock).
    """

    def __init__(self, path, what: str, schema=(), sealed=()):
        self.path = Path(path)
        self.what = what
        self._lock = threading.Lock()
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # deleted rows (a resolved case's probe, a removed subject's images) are overwritten,
            # not left in free pages
            self._db.execute("PRAGMA secure_delete=ON")
            for sql in schema:
                self._db.execute(sql)
            if sealed:
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {SEALED_COLUMNS_TABLE} (tbl TEXT NOT NULL, "
                                 f"col TEXT NOT NULL, key_cols TEXT NOT NULL, aad_prefix TEXT NOT NULL, "
                                 f"PRIMARY KEY (tbl, col))")
                self._db.executemany(f"INSERT OR REPLACE INTO {SEALED_COLUMNS_TABLE} (tbl, col, key_cols, aad_prefix) "
                                     f"VALUES (?, ?, ?, ?)",
                                     [(t, c, ",".join(keys), prefix) for t, c, keys, prefix in sealed])
        except sqlite3.Error as exc:
            raise StorageError(f"{what} {str(self.path)!r}: {exc}") from exc
        for suffix in ("-wal", "-shm"):  # SQLite gives them the database's mode; made sure of here
            p = self.path.with_name(self.path.name + suffix)
            if p.exists():
                os.chmod(p, 0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def run(self, sql: str, args=()) -> list:
        """One statement (autocommit); its rows."""
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"{self.what} {str(self.path)!r}: {exc}") from exc

    @contextmanager
    def transaction(self):
        """``with db.transaction() as conn:`` -- the statements run on ``conn`` are one transaction
        (``BEGIN IMMEDIATE``), committed when the block ends, rolled back if it raises (the
        exception goes on)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"{self.what} {str(self.path)!r}: {exc}") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the transaction is gone already (SQLite rolled it back itself)
                if isinstance(exc, sqlite3.Error):
                    raise StorageError(f"{self.what} {str(self.path)!r}: {exc}") from exc
                raise

    def transact(self, statements) -> list[int]:
        """Run ``(sql, args)`` statements as one transaction; their row counts."""
        with self.transaction() as db:
            return [db.execute(sql, args).rowcount for sql, args in statements]
