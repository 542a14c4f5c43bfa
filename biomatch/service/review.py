"""The REVIEW queue: enrolments whose decision is REVIEW wait here for an examiner.

A case holds the probe's subject id and its candidates' ids and scores (never a template).
An examiner (role ``adjudicate``) records ``same_person`` (the enrolment stays refused: the
person is already enrolled under the candidate's id) or ``different_person``; the latter lets
the registry send the same enrolment again with ``review_case`` set, which is then enrolled
despite the REVIEW decision.  (The probe's templates are not kept here: they are biometric data
and belong in the gallery's encrypted store; the examiner's web page will show them from there.)

State: ``GALLERY/service/reviews.sqlite`` (WAL, fsync per commit, 0600).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path

from ..errors import StorageError, UnknownSubjectError, invalid

__all__ = ["ReviewQueue", "OUTCOMES", "UnknownCaseError"]

OUTCOMES = ("same_person", "different_person")


class UnknownCaseError(UnknownSubjectError):
    """No review case of that id (HTTP 404)."""


class ReviewQueue:
    """Open and resolved REVIEW cases.  Thread-safe; shared by worker processes (SQLite)."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS cases (case_id TEXT PRIMARY KEY, subject_id TEXT NOT NULL, "
                             "candidates TEXT NOT NULL, opened_utc REAL NOT NULL, opened_by TEXT, outcome TEXT, "
                             "resolved_utc REAL, resolved_by TEXT)")
            self._db.execute("CREATE INDEX IF NOT EXISTS cases_subject ON cases (subject_id)")
        except sqlite3.Error as exc:
            raise StorageError(f"review queue {str(self.path)!r}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, args=()) -> list:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"review queue {str(self.path)!r}: {exc}") from exc

    def open_case(self, subject_id: str, candidates: list[dict], opened_by: str | None) -> str:
        """Queue a REVIEW decision; returns the case id."""
        case_id = "rv_" + secrets.token_hex(8)
        self._run("INSERT INTO cases (case_id, subject_id, candidates, opened_utc, opened_by) VALUES (?, ?, ?, ?, ?)",
                  (case_id, subject_id, json.dumps(candidates, sort_keys=True), time.time(), opened_by))
        return case_id

    @staticmethod
    def _as_dict(row) -> dict:
        case_id, sid, cands, opened, opened_by, outcome, resolved, resolved_by = row
        return {"case_id": case_id, "subject_id": sid, "candidates": json.loads(cands), "opened_utc": opened,
                "opened_by": opened_by, "outcome": outcome, "resolved_utc": resolved, "resolved_by": resolved_by}

    def cases(self, status: str = "open", limit: int = 100) -> list[dict]:
        """Cases, oldest first: ``status`` ``open``, ``resolved`` or ``all``."""
        where = {"open": "WHERE outcome IS NULL", "resolved": "WHERE outcome IS NOT NULL", "all": ""}.get(status)
        if where is None:
            raise invalid("status", "open, resolved or all", status)
        return [self._as_dict(r) for r in self._run(f"SELECT * FROM cases {where} ORDER BY opened_utc LIMIT ?",
                                                    (int(limit),))]

    def get(self, case_id: str) -> dict:
        rows = self._run("SELECT * FROM cases WHERE case_id = ?", (case_id,))
        if not rows:
            raise UnknownCaseError(f"case_id: no review case {case_id!r}")
        return self._as_dict(rows[0])

    def resolve(self, case_id: str, outcome: str, resolved_by: str | None) -> dict:
        """Record the examiner's outcome (once: a resolved case is not changed).

        Raises
        ------
        UnknownCaseError, InvalidInputError
        """
        if outcome not in OUTCOMES:
            raise invalid("outcome", f"one of {list(OUTCOMES)}", outcome)
        case = self.get(case_id)
        if case["outcome"] is not None:
            raise invalid("case_id", "an open case", f"{case_id} (resolved {case['outcome']})")
        self._run("UPDATE cases SET outcome = ?, resolved_utc = ?, resolved_by = ? WHERE case_id = ? AND "
                  "outcome IS NULL", (outcome, time.time(), resolved_by, case_id))
        return self.get(case_id)

    def cleared(self, case_id: str, subject_id: str) -> bool:
        """Whether ``case_id`` was resolved ``different_person`` for ``subject_id`` (its enrolment may go in)."""
        case = self.get(case_id)
        return case["subject_id"] == subject_id and case["outcome"] == "different_person"
