"""Idempotent enrolment: a retried request gets the first answer and never enrols twice.

A client sends ``Idempotency-Key: <its own unique string>`` with an enrolment.  The key (scoped
to the API key that sent it) is recorded with the request's fingerprint (a SHA-256 of the
decoded request, so a multipart retry with another boundary is the same request) BEFORE the
gallery is called, and the response is recorded (committed, ``synchronous=FULL``) before it is
sent.  On a retry:

- recorded answer, same fingerprint: that answer again (``Idempotent-Replay: true``);
- different fingerprint: 422 (the key was reused for another request);
- still pending, its owner process alive: 409 (the first attempt is still running);
- pending, owner dead (the server was killed between the two commits): the subject id tells
  what happened.  Enrolled: the enrolment committed and only its answer was lost; the answer
  is rebuilt (``enrolled: true``; the decision is UNIQUE unless the request accepted REVIEW,
  the candidates are lost) and recorded.  Not enrolled: the request runs again.

The gallery itself refuses a subject id enrolled twice (``DuplicateSubjectError``), so even a
client that retries without a key cannot enrol one person twice under one id.  State:
``GALLERY/service/idempotency.sqlite`` (WAL, fsync per commit, 0600).  Only successful answers
are kept; a refused request (4xx) leaves nothing, so a fixed retry runs.

An answer names the subject and its candidates with their scores: personal data (it says who
resembles whom).  In an encrypted gallery it is sealed with the gallery's data key
(AES-256-GCM), bound to its API key id and idempotency key, as the kept REVIEW probes are; the
subject id of the request (what the gallery holds in clear too), the request's SHA-256 and the
owner stay in clear.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..dedup.encryption import SealBrokenError, side_aad
from ..errors import CorruptStoreError
from ._db import ServiceDB

__all__ = ["IdempotencyStore", "Replay", "Recover", "IdempotencyConflict", "IdempotencyInProgress", "MAX_KEY_CHARS"]

MAX_KEY_CHARS = 200
_AAD = "biomatch-idempotency"  # a sealed answer's associated data: this, its API key id and idempotency key


class IdempotencyConflict(Exception):
    """The key was used before with another request (HTTP 422)."""


class IdempotencyInProgress(Exception):
    """The first request with this key is still running (HTTP 409)."""


@dataclass(frozen=True)
class Replay:
    """The recorded answer of the first request."""

    status: int
    body: dict


@dataclass(frozen=True)
class Recover:
    """The first attempt's process died before recording its answer: look the subject up."""

    subject_id: str


def _owner() -> str:
    """This process, in a form that a later process with the same pid cannot match."""
    pid = os.getpid()
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{pid}:{start}"


def _alive(owner: str) -> bool:
    pid, _, start = owner.partition(":")
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    try:
        now = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return True
    return now == start


class IdempotencyStore:
    """Idempotency keys of enrolments, durable across restarts.

    Notes
    -----
    Thread-safe (one connection under a lock) and shared by worker processes (SQLite's own
    locking; ``BEGIN IMMEDIATE`` makes each check-and-claim atomic).  ~1 KB per key on disk
    (the answer holds the candidates' ids and scores, never a template; sealed: 35 B more).
    """

    def __init__(self, path, cipher=None):
        self.path = Path(path)
        # An encrypted gallery's key ring: the recorded answers (subject ids, decisions, scores:
        # personal data) are then sealed with its data key, bound to their (API key, idempotency key).
        self._cipher = cipher
        self._db = ServiceDB(self.path, "idempotency store", [
            "CREATE TABLE IF NOT EXISTS keys (key_id TEXT NOT NULL, idem_key TEXT NOT NULL, "
            "fingerprint TEXT NOT NULL, subject_id TEXT NOT NULL, owner TEXT, status INTEGER, "
            "response TEXT, created_utc REAL NOT NULL, PRIMARY KEY (key_id, idem_key))"],
            sealed=[("keys", "response", ("key_id", "idem_key"), _AAD)] if cipher is not None else ())
        self._owner = _owner()

    def close(self) -> None:
        self._db.close()

    def _seal(self, key_id: str, idem_key: str, body: dict):
        data = json.dumps(body, sort_keys=True)
        if self._cipher is None:
            return data
        self._cipher.writing()
        return self._cipher.seal(data.encode(), side_aad(_AAD, key_id, idem_key))

    def _unseal(self, key_id: str, idem_key: str, stored) -> dict:
        if isinstance(stored, bytes):  # sealed
            if self._cipher is None:
                raise CorruptStoreError(f"idempotency store {str(self.path)!r}: an answer is sealed, but the "
                                        f"gallery's key ring is not open")
            try:
                stored = self._cipher.open(stored, side_aad(_AAD, key_id, idem_key))
            except SealBrokenError as exc:  # altered, or moved to another key's row
                raise CorruptStoreError(f"idempotency store {str(self.path)!r}: a recorded answer fails "
                                        f"authentication ({exc})") from None
        # text: an unencrypted gallery's, or one recorded before answers were sealed
        return json.loads(stored)

    def begin(self, key_id: str, idem_key: str, fingerprint: str, subject_id: str) -> Replay | Recover | None:
        """Claim ``idem_key`` for this request, or say what the first request with it did.

        Returns
        -------
        None
            Claimed (durably): run the request, then :meth:`finish` or :meth:`abandon`.
        Replay
            The first answer.
        Recover
            The first attempt died unanswered; it is claimed again for this request.

        Raises
        ------
        IdempotencyConflict, IdempotencyInProgress
        """
        with self._db.transaction() as db:
            row = db.execute("SELECT fingerprint, owner, status, response FROM keys "
                             "WHERE key_id = ? AND idem_key = ?", (key_id, idem_key)).fetchone()
            if row is None:
                db.execute("INSERT INTO keys (key_id, idem_key, fingerprint, subject_id, owner, created_utc) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           (key_id, idem_key, fingerprint, subject_id, self._owner, time.time()))
                return None
            if row[0] != fingerprint:
                raise IdempotencyConflict("Idempotency-Key: this key was used with another request")
            if row[2] is not None:
                return Replay(int(row[2]), self._unseal(key_id, idem_key, row[3]))
            if row[1] and (row[1] == self._owner or _alive(row[1])):
                raise IdempotencyInProgress("Idempotency-Key: the first request with this key is still "
                                            "running; retry later")
            db.execute("UPDATE keys SET owner = ? WHERE key_id = ? AND idem_key = ?", (self._owner, key_id, idem_key))
            return Recover(subject_id)

    def finish(self, key_id: str, idem_key: str, status: int, body: dict) -> None:
        """Record the answer (durable on return; before the response is sent)."""
        self._db.run("UPDATE keys SET status = ?, response = ?, owner = NULL WHERE key_id = ? AND idem_key = ?",
                     (int(status), self._seal(key_id, idem_key, body), key_id, idem_key))

    def abandon(self, key_id: str, idem_key: str) -> None:
        """Forget a claim whose request was refused (nothing was written): a fixed retry runs."""
        self._db.run("DELETE FROM keys WHERE key_id = ? AND idem_key = ? AND status IS NULL", (key_id, idem_key))
