"""The REVIEW queue: enrolments whose decision is REVIEW wait here for an examiner.

A case holds the probe's subject id and its candidates' ids and scores, and, beside it in the
same database, the probe itself (:class:`ReviewProbe`: its templates, face embedding and
metadata), so that the examiner's page can draw the probe against each candidate and an outcome
of ``different_person`` can enrol it.  The probe is written in the same transaction as its case
(a case never exists half-written), is read only by :mod:`.adjudicate` and is deleted when the
case is resolved (after ``same_person`` at once; after ``different_person`` once the probe is
enrolled).  It is never logged.  It is stored as the gallery's templates are: in an encrypted
gallery sealed with its data key (bound to its case id), else plain, in a 0600 file inside the
0700 ``service`` folder.

An examiner (role ``adjudicate``) records ``same_person`` (the enrolment stays refused: the person
is already enrolled under the candidate's id) or ``different_person`` (the probe is enrolled
despite the REVIEW decision).  A case opened without a probe (by an older version, or by
:meth:`ReviewQueue.open_case` without one) is resolved the old way: after ``different_person``
the registry sends the same enrolment again with ``review_case`` set.

State: ``GALLERY/service/reviews.sqlite`` (WAL, fsync per commit, 0600; tables ``cases`` and
``probes``).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..dedup.encryption import side_aad
from ..errors import CorruptStoreError, UnknownSubjectError, invalid
from ._db import ServiceDB

__all__ = ["ReviewQueue", "ReviewProbe", "OUTCOMES", "UnknownCaseError"]

OUTCOMES = ("same_person", "different_person")
_PROBE_FORMAT = "biomatch-review-probe"
_AAD = "biomatch-review-probe"  # a sealed probe's associated data: this and its case id
# A case's candidates (ids and scores: who resembles whom) and the answer of its enrolment are
# personal data too: sealed in an encrypted gallery, bound to the case and the column.
_AAD_CASE = "biomatch-review-candidates"
_AAD_ENROLMENT = "biomatch-review-enrolment"
_CASE_COLUMNS = ("case_id", "subject_id", "candidates", "opened_utc", "opened_by", "outcome", "resolved_utc",
                 "resolved_by", "enrolled", "enrolment")


class UnknownCaseError(UnknownSubjectError):
    """No review case of that id (HTTP 404)."""


@dataclass(frozen=True)
class ReviewProbe:
    """The record of a REVIEW case, as it was sent: what the examiner compares and what is enrolled.

    Attributes
    ----------
    fingers : dict of int -> Template
        The record's templates by finger position.
    face : ndarray of float32, shape (128,), or None
        The record's face embedding (its quality was checked when the record was searched).
    metadata : dict or None
        The record's metadata.

    Notes
    -----
    Immutable.  ``repr`` shows no template (personal data).  ~0.7 KB per finger, 0.5 KB for a face.
    """

    fingers: dict = field(repr=False)
    face: np.ndarray | None = field(default=None, repr=False)
    metadata: dict | None = field(default=None, repr=False)

    def to_bytes(self) -> bytes:
        from ..formats import encode

        doc = {"format": _PROBE_FORMAT, "version": 1,
               "fingers": {str(p): base64.b64encode(encode(t)).decode() for p, t in sorted(self.fingers.items())},
               "face": None if self.face is None else base64.b64encode(
                   np.asarray(self.face, "<f4").tobytes()).decode(),
               "metadata": self.metadata}
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> "ReviewProbe":
        from ..formats import decode

        try:
            doc = json.loads(data)
            if doc.get("format") != _PROBE_FORMAT:
                raise ValueError(f"format {doc.get('format')!r}")
            fingers = {int(p): decode(base64.b64decode(b)) for p, b in doc["fingers"].items()}
            face = None if doc["face"] is None else np.frombuffer(base64.b64decode(doc["face"]), "<f4").copy()
            return cls(fingers, face, doc["metadata"])
        except Exception as exc:  # any damage: the file is the service's own, so it is corrupt, not bad input
            raise CorruptStoreError(f"{where}: expected a stored review probe, cannot read it "
                                    f"({type(exc).__name__})") from None


class ReviewQueue:
    """Open and resolved REVIEW cases, and the probes of the open ones.

    Notes
    -----
    Thread-safe (one connection under a lock); shared by worker processes (SQLite's locking).
    """

    def __init__(self, path, cipher=None):
        self.path = Path(path)
        # An encrypted gallery's key ring: the kept probes (templates, face, metadata) are then
        # sealed with its data key, bound to their case, like every record of the gallery.
        self._cipher = cipher
        self._db = ServiceDB(self.path, "review queue", [
            "CREATE TABLE IF NOT EXISTS cases (case_id TEXT PRIMARY KEY, subject_id TEXT NOT NULL, "
            "candidates TEXT NOT NULL, opened_utc REAL NOT NULL, opened_by TEXT, outcome TEXT, "
            "resolved_utc REAL, resolved_by TEXT)",
            "CREATE TABLE IF NOT EXISTS probes (case_id TEXT PRIMARY KEY, record BLOB NOT NULL)"],
            sealed=[("probes", "record", ("case_id",), _AAD), ("cases", "candidates", ("case_id",), _AAD_CASE),
                    ("cases", "enrolment", ("case_id",), _AAD_ENROLMENT)] if cipher is not None else ())
        have = {row[1] for row in self._db.run("PRAGMA table_info(cases)")}
        for name in ("enrolled INTEGER", "enrolment TEXT"):  # added with the examiner's page
            if name.split()[0] not in have:
                self._db.run(f"ALTER TABLE cases ADD COLUMN {name}")
        self._db.run("CREATE INDEX IF NOT EXISTS cases_subject ON cases (subject_id)")

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, args=()) -> list:
        return self._db.run(sql, args)

    def _transaction(self, statements) -> list[int]:
        """Run ``(sql, args)`` statements as one transaction; their row counts."""
        return self._db.transact(statements)

    def open_case(self, subject_id: str, candidates: list[dict], opened_by: str | None,
                  probe: ReviewProbe | None = None) -> str:
        """Queue a REVIEW decision, with its probe when given (one transaction); returns the case id."""
        case_id = "rv_" + secrets.token_hex(8)
        statements = [("INSERT INTO cases (case_id, subject_id, candidates, opened_utc, opened_by) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (case_id, subject_id, self._seal_json(_AAD_CASE, case_id, candidates), time.time(), opened_by))]
        if probe is not None:
            statements.append(("INSERT INTO probes (case_id, record) VALUES (?, ?)",
                               (case_id, self._seal(case_id, probe))))
        self._transaction(statements)
        return case_id

    def _seal_json(self, prefix: str, case_id: str, value):
        data = json.dumps(value, sort_keys=True)
        if self._cipher is None:
            return data
        self._cipher.writing()
        return self._cipher.seal(data.encode(), side_aad(prefix, case_id))

    def _open_json(self, prefix: str, case_id: str, stored):
        if stored is None:
            return None
        if isinstance(stored, bytes):  # sealed (text: a plain gallery's, or written before sealing)
            stored = self._unseal_bytes(stored, side_aad(prefix, case_id),
                                        f"review queue {self.path.name!r}, case {case_id}")
        return json.loads(stored)

    def _as_dict(self, row, probe_kept: bool) -> dict:
        case_id, sid, cands, opened, opened_by, outcome, resolved, resolved_by, enrolled, enrolment = row
        return {"case_id": case_id, "subject_id": sid, "candidates": self._open_json(_AAD_CASE, case_id, cands),
                "opened_utc": opened, "opened_by": opened_by, "outcome": outcome, "resolved_utc": resolved,
                "resolved_by": resolved_by, "probe_kept": probe_kept,
                "enrolled": None if enrolled is None else bool(enrolled),
                "enrolment": self._open_json(_AAD_ENROLMENT, case_id, enrolment)}

    def _select(self, where: str, args=()) -> list[dict]:
        cols = ", ".join(f"c.{c}" for c in _CASE_COLUMNS)
        rows = self._run(f"SELECT {cols}, p.case_id IS NOT NULL FROM cases c LEFT JOIN probes p "
                         f"ON p.case_id = c.case_id {where}", args)
        return [self._as_dict(r[:-1], bool(r[-1])) for r in rows]

    def cases(self, status: str = "open", limit: int = 100) -> list[dict]:
        """Cases, oldest first: ``status`` ``open``, ``resolved`` or ``all``."""
        where = {"open": "WHERE c.outcome IS NULL", "resolved": "WHERE c.outcome IS NOT NULL", "all": ""}.get(status)
        if where is None:
            raise invalid("status", "open, resolved or all", status)
        return self._select(f"{where} ORDER BY c.opened_utc LIMIT ?", (int(limit),))

    def get(self, case_id: str) -> dict:
        rows = self._select("WHERE c.case_id = ?", (case_id,))
        if not rows:
            raise UnknownCaseError(f"case_id: no review case {case_id!r}")
        return rows[0]

    def probe(self, case_id: str) -> ReviewProbe | None:
        """The stored probe of a case (None once resolved, or when the case was opened without one)."""
        rows = self._run("SELECT record FROM probes WHERE case_id = ?", (case_id,))
        if not rows:
            return None
        where = f"review queue {self.path.name!r}, case {case_id}"
        return ReviewProbe.from_bytes(self._unseal(case_id, rows[0][0], where), where)

    @staticmethod
    def _aad(case_id: str) -> bytes:
        return side_aad(_AAD, case_id)

    def _seal(self, case_id: str, probe: "ReviewProbe") -> bytes:
        data = probe.to_bytes()
        if self._cipher is None:
            return data
        self._cipher.writing()
        return self._cipher.seal(data, self._aad(case_id))

    def _unseal(self, case_id: str, blob: bytes, where: str) -> bytes:
        if self._cipher is None:
            return blob
        return self._unseal_bytes(blob, self._aad(case_id), where)

    def _unseal_bytes(self, blob: bytes, aad: bytes, where: str) -> bytes:
        if self._cipher is None:
            raise CorruptStoreError(f"{where}: a value is sealed, but the gallery's key ring is not open")
        from ..dedup.encryption import SealBrokenError

        try:
            return self._cipher.open(blob, aad)
        except SealBrokenError as exc:  # altered, moved to another case or column, or written in clear
            raise CorruptStoreError(f"{where}: a kept value fails authentication ({exc})") from None

    def resolve(self, case_id: str, outcome: str, resolved_by: str | None) -> dict:
        """Record the examiner's outcome (once: a resolved case is not changed).

        ``same_person`` deletes the probe in the same transaction.  ``different_person`` keeps
        it until :meth:`finish` records its enrolment; until then the same outcome may be
        recorded again (a retry after a crash between the two), and is answered with the case.

        Raises
        ------
        UnknownCaseError, InvalidInputError
        """
        if outcome not in OUTCOMES:
            raise invalid("outcome", f"one of {list(OUTCOMES)}", outcome)
        case = self.get(case_id)
        if case["outcome"] is not None:
            if case["outcome"] == outcome == "different_person" and case["probe_kept"] and case["enrolled"] is None:
                return case  # resolved, its enrolment not finished: the retry finishes it
            raise invalid("case_id", "an open case", f"{case_id} (resolved {case['outcome']})")
        statements = [("UPDATE cases SET outcome = ?, resolved_utc = ?, resolved_by = ? WHERE case_id = ? AND "
                       "outcome IS NULL", (outcome, time.time(), resolved_by, case_id))]
        if outcome == "same_person":
            statements.append(("DELETE FROM probes WHERE case_id = ?", (case_id,)))
        if self._transaction(statements)[0] != 1:  # another examiner (or worker) got there first
            raise invalid("case_id", "an open case", f"{case_id} (resolved meanwhile)")
        return self.get(case_id)

    def finish(self, case_id: str, enrolled: bool, enrolment: dict) -> dict:
        """Record what enrolling a ``different_person`` case's probe did, and delete the probe.

        The first record stands: a second finish of the same case (another worker process
        finishing it at the same time) changes nothing.
        """
        self._transaction([("UPDATE cases SET enrolled = ?, enrolment = ? WHERE case_id = ? AND enrolled IS NULL",
                            (int(bool(enrolled)), self._seal_json(_AAD_ENROLMENT, case_id, enrolment), case_id)),
                           ("DELETE FROM probes WHERE case_id = ?", (case_id,))])
        return self.get(case_id)

    def cleared(self, case_id: str, subject_id: str) -> bool:
        """Whether ``case_id`` was resolved ``different_person`` for ``subject_id`` (its enrolment may go in)."""
        case = self.get(case_id)
        return case["subject_id"] == subject_id and case["outcome"] == "different_person"
