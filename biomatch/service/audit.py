"""The audit log: one hash-chained JSON line per request, on disk before the response is sent.

``GALLERY/service/audit.log`` (mode 0600) is append-only.  Each line is the canonical JSON
(sorted keys, no spaces, ASCII) of one entry:

==============  ===================================================================================
``seq``         1, 2, 3, ... without a gap
``prev``        the ``hash`` of the previous entry (64 zeros for the first)
``hash``        SHA-256 (hex) of the canonical JSON of the entry without its ``hash``
``time_utc``    when the response was decided (ISO 8601, microseconds, ``Z``)
``request_id``  the request's id (also sent back in the ``X-Request-ID`` header)
``key_id``      who: the authenticated key or client certificate (``cert-...``; its subject in
                ``cert_subject``), or null; ``claimed_key_id`` is the id a refused key named,
                ``claimed_cert_sha256`` the fingerprint of a refused certificate
``operation``   ``enrol``, ``deduplicate``, ``identify``, ``verify``, ``remove``, ``subject``, ...
``subject_ids`` the subject ids affected or returned (the record's id, every candidate's id)
``decision``    DUPLICATE / REVIEW / UNIQUE, match / no_match, or null
``status``      the HTTP status; ``error`` and ``field`` say why a request was refused
==============  ===================================================================================

Never a template, an image, an embedding or the enrolment metadata.  So each line proves its
own content (``hash``) and its place (``seq``, ``prev``): an edited line fails its hash, a
removed one leaves a gap in ``seq`` and a broken ``prev``, reordered lines come out of sequence.
:func:`verify_log` (``biomatch audit verify``) names the first bad line and what is wrong with
it.  Cutting entries off the END at a line boundary leaves a valid shorter log: that is caught
only against a head recorded elsewhere (``biomatch audit verify`` prints the head;
``--anchor SEQ:HASH`` checks a recorded one), as is a log rewritten whole with new hashes.

Writing: entries are appended under a thread lock and an ``flock`` of the file (several worker
processes share one chain: each re-reads the tail when the file grew under it), then fsync'd;
the service sends no response before its entry is on disk.  A torn last line (a crash or a full
disk in the middle of a write; its request was never answered) is reported by
:func:`verify_log`; when the service next opens the log it moves the torn bytes to
``audit.log.torn-<UTC time>`` and appends a ``torn_tail_recovered`` entry naming their size and
SHA-256, so the chain goes on and the repair itself is on record.

Reading: "who looked up this citizen" (:meth:`AuditLog.entries_for`) goes through an index by
subject id beside the log (:mod:`.audit_index`, written after each line is on disk, caught up
from the log when it is behind, rebuilt when it does not fit it), then reads only the lines it
points at, each checked against its own hash.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .._io import fsync_dir
from ..errors import CorruptStoreError, StorageError, invalid
from .audit_index import INDEX_FILE, AuditIndex

__all__ = ["AuditLog", "AuditVerification", "verify_log", "parse_anchor", "entry_hash", "canonical", "GENESIS",
           "AUDIT_FILE", "scan_entries_for"]

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.log"
GENESIS = "0" * 64
_REQUIRED = ("seq", "prev", "hash", "time_utc", "operation", "status")
_TAIL_STEP = 64 * 1024


def canonical(entry: dict) -> bytes:
    """The bytes of an entry as written (without the newline)."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def entry_hash(entry: dict) -> str:
    """SHA-256 (hex) of the canonical bytes of ``entry`` without its ``hash`` field."""
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class AuditLog:
    """The append side of the audit log of one gallery.

    Parameters
    ----------
    path : path
        The log file (created 0600 if missing).
    index : bool
        Keep the index by subject id (``audit.index.sqlite`` beside the log) and answer
        :meth:`entries_for` from it; caught up with the log here (a first open of a long log
        without one reads it once: ~10 s per million entries).

    Notes
    -----
    Thread-safe and shared safely by processes (``flock``).  :meth:`append` costs one write and
    one fsync (~1-5 ms on a disk; the service runs it off the event loop).  Memory: constant.

    Raises
    ------
    CorruptStoreError
        At open, when the last complete line is not an entry of the chain (the log was damaged:
        run ``biomatch audit verify``).  The service refuses to start rather than write an
        unchained log.
    """

    def __init__(self, path, index: bool = True):
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(self._fd, 0o600)
        except OSError as exc:
            raise StorageError(f"audit log {str(self.path)!r}: cannot open: {exc.strerror}") from exc
        self._lock = threading.Lock()
        self._tail: tuple | None = None  # (file size, last seq, last hash)
        self.recovered: dict | None = None  # the torn tail moved aside at open, if any
        self._index = None
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._tail = self._read_tail()
                if index:
                    self._index = AuditIndex(self.path.with_name(INDEX_FILE), self.path)
                    self._index.catch_up(self._fd, self._tail[0])
            except BaseException:
                if self._index is not None:
                    self._index.close()
                os.close(self._fd)
                self._fd = None
                raise
            finally:
                if self._fd is not None:
                    try:
                        fcntl.flock(self._fd, fcntl.LOCK_UN)
                    except OSError:
                        pass

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._index is not None:
                self._index.close()
                self._index = None

    # ---- the tail --------------------------------------------------------------------------------
    def _read_tail(self) -> tuple:
        """``(size, seq, hash)`` of the last entry (under the flock); a torn tail is moved aside first."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0, 0, GENESIS
        end = size
        buf = b""
        while True:  # read back until the start of the last complete line is in ``buf``
            start = max(0, end - _TAIL_STEP)
            buf = os.pread(self._fd, end - start, start) + buf
            end = start
            if buf.count(b"\n") >= 2 or (start == 0 and b"\n" in buf) or start == 0:
                break
        if not buf.endswith(b"\n"):
            cut = buf.rfind(b"\n") + 1  # 0: the whole file is one torn line
            torn = buf[cut:]
            self._move_torn(size - len(torn), torn)
            return self._read_tail_after_recovery()
        lines = buf[:-1].split(b"\n")
        last = lines[-1]
        try:
            entry = json.loads(last)
            seq, h = int(entry["seq"]), str(entry["hash"])
            if entry_hash(entry) != h:
                raise ValueError("its hash does not match its content")
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptStoreError(f"audit log {str(self.path)!r}: the last entry is damaged ({exc}); "
                                    f"run `biomatch audit verify` and keep the log as evidence") from None
        return size, seq, h

    def _read_tail_after_recovery(self) -> tuple:
        tail = self._read_tail()
        torn_bytes, torn_sha, aside = self.recovered["bytes"], self.recovered["sha256"], self.recovered["moved_to"]
        self._tail = tail
        self._append_locked({"operation": "torn_tail_recovered", "status": 0, "torn_bytes": torn_bytes,
                             "torn_sha256": torn_sha, "moved_to": aside})
        return self._tail

    def _move_torn(self, offset: int, torn: bytes) -> None:
        """Keep a torn last line as evidence beside the log, then cut it off."""
        aside = self.path.with_name(f"{self.path.name}.torn-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
                                    f"-{os.getpid()}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, torn)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.ftruncate(self._fd, offset)
        os.fsync(self._fd)
        fsync_dir(self.path.parent)
        self.recovered = {"bytes": len(torn), "sha256": hashlib.sha256(torn).hexdigest(), "moved_to": aside.name}

    # ---- appending -------------------------------------------------------------------------------
    def append(self, record: dict) -> dict:
        """Append one entry (``record`` plus ``seq``, ``prev``, ``time_utc``, ``hash``), fsync'd
        when this returns.

        Raises
        ------
        StorageError
            The entry could not be written (the caller must not acknowledge the request).
        """
        if not isinstance(record, dict):
            raise invalid("record", "a dict", type(record).__name__)
        with self._lock:
            if self._fd is None:
                raise StorageError(f"audit log {str(self.path)!r}: closed")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if self._tail is None or os.fstat(self._fd).st_size != self._tail[0]:
                    self._tail = self._read_tail()  # another process appended (or tore) since
                return self._append_locked(record)
            except OSError as exc:
                self._tail = None
                raise StorageError(f"audit log {str(self.path)!r}: cannot append: {exc.strerror}") from exc
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _append_locked(self, record: dict) -> dict:
        size, seq, prev = self._tail
        entry = {k: v for k, v in record.items() if k not in ("seq", "prev", "hash", "time_utc")}
        entry.update(seq=seq + 1, prev=prev, time_utc=_utc_now())
        entry["hash"] = entry_hash(entry)
        line = canonical(entry) + b"\n"
        _write_all(self._fd, line)
        os.fsync(self._fd)
        self._tail = (size + len(line), seq + 1, entry["hash"])
        if self._index is not None:
            # After the fsync: the index is never ahead of the log.  A failure here leaves it
            # behind (caught up at the next query or open); the entry itself is written.
            try:
                self._index.add(entry, size, line)
            except StorageError:
                log.exception("audit index: entry %d not indexed now (it will be read from the log)", seq + 1)
        return entry

    # ---- reading -----------------------------------------------------------------------------------
    def entries_for(self, subject_id: str, limit: int) -> list[dict]:
        """The most recent entries (newest first, at most ``limit``) naming ``subject_id``:
        who looked this person up, enrolled or removed them.

        Through the index (caught up with the log first): one lookup, then one read per entry
        returned, each checked against its hash.  An index line that does not hold the entry it
        should (the log was replaced under it) makes the index rebuild; without an index, a
        linear scan of the log (:func:`scan_entries_for`).
        """
        if self._index is None:
            return scan_entries_for(self.path, subject_id, limit)
        for attempt in range(2):
            with self._lock:
                if self._fd is None:
                    raise StorageError(f"audit log {str(self.path)!r}: closed")
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                try:
                    if attempt:
                        self._index._write_reset()
                    self._index.catch_up(self._fd, os.fstat(self._fd).st_size)
                    hits = self._index.lookup(subject_id, limit)
                    lines = [os.pread(self._fd, length, offset) for _, offset, length in hits]
                except OSError as exc:
                    raise StorageError(f"audit log {str(self.path)!r}: cannot read: {exc.strerror}") from exc
                finally:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
            out = []
            for (seq, _, _), raw in zip(hits, lines):
                try:
                    entry = json.loads(raw)
                except ValueError:
                    break
                if (not isinstance(entry, dict) or entry.get("seq") != seq or entry_hash(entry) != entry.get("hash")
                        or subject_id not in (entry.get("subject_ids") or ())):
                    break
                out.append(entry)
            else:
                return out
            log.warning("audit index: an indexed line does not hold its entry; rebuilding the index from the log")
        return scan_entries_for(self.path, subject_id, limit)


def scan_entries_for(path, subject_id: str, limit: int) -> list[dict]:
    """:meth:`AuditLog.entries_for` by reading every line of the log (no index): the reference the
    index is tested against, and the way of a log without one."""
    out: list[dict] = []
    needle = json.dumps(subject_id).encode()  # as the canonical JSON writes it (ASCII, quoted)
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            if needle not in raw:  # most lines: no JSON parse
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict) and subject_id in (entry.get("subject_ids") or ()):
                out.append(entry)
    return out[::-1][:limit]


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of :func:`verify_log`.

    Attributes
    ----------
    ok : bool
    entries : int
        Entries checked (up to the first bad one).
    head_seq, head_hash
        The last good entry (record them elsewhere: ``--anchor`` detects a later truncation).
    line : int or None
        The first bad line (1-based), or None.
    problem : str or None
        What is wrong with it.
    """

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    line: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def parse_anchor(text: str) -> tuple[int, str]:
    """``"SEQ:HASH"`` -> ``(seq, hash)``."""
    seq, _, h = str(text).partition(":")
    if not (seq.isdigit() and int(seq) >= 1 and len(h) == 64 and all(c in "0123456789abcdef" for c in h)):
        raise invalid("anchor", "SEQ:HASH (a sequence number and the 64 hex digits of its hash)", text)
    return int(seq), h


def _find_seq(path: Path, seq: int, after_line: int) -> int | None:
    """The line (1-based) after ``after_line`` holding entry ``seq``, else None."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if n <= after_line:
                continue
            try:
                if json.loads(raw).get("seq") == seq:
                    return n
            except (ValueError, AttributeError):
                continue
    return None


def _lines(fh, size: int):
    """The raw lines of ``fh`` within its first ``size`` bytes (a line being appended meanwhile is not read)."""
    left = size
    while left > 0:
        raw = fh.readline(left)
        if not raw:
            return
        left -= len(raw)
        yield raw


def _snapshot_size(fh) -> int:
    """The file's size between two appends (a shared flock: writers hold it exclusively)."""
    fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
    try:
        return os.fstat(fh.fileno()).st_size
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def verify_log(path, anchor: tuple[int, str] | None = None) -> AuditVerification:
    """Check every line of an audit log: content, sequence and chain; stop at the first bad one.

    Parameters
    ----------
    path : path
        The log file.  A running service may append meanwhile: the log is checked as it was
        when the check began.
    anchor : (int, str), optional
        An entry's ``(seq, hash)`` recorded earlier: the log must still hold it.

    Returns
    -------
    AuditVerification
    """
    path = Path(path)
    if not path.is_file():
        raise invalid("path", "an audit log file", str(path))
    prev, expected, n = GENESIS, 1, 0
    anchor_seen = False

    def bad(line: int, problem: str) -> AuditVerification:
        return AuditVerification(False, expected - 1, expected - 1, prev, line, problem)

    with open(path, "rb") as fh:
        for n, raw in enumerate(_lines(fh, _snapshot_size(fh)), 1):
            if not raw.endswith(b"\n"):
                return bad(n, f"line {n}: torn (no end of line: a write interrupted by a crash or a full disk; "
                              f"its request was never answered; the service moves it aside at its next start)")
            body = raw[:-1]
            try:
                entry = json.loads(body)
                if not isinstance(entry, dict):
                    raise ValueError
            except ValueError:
                return bad(n, f"line {n}: not a JSON entry (edited or damaged)")
            missing = [k for k in _REQUIRED if k not in entry]
            if missing:
                return bad(n, f"line {n}: fields missing: {', '.join(missing)} (edited)")
            seq = entry["seq"]
            if entry_hash(entry) != entry["hash"]:
                return bad(n, f"line {n} (seq {seq}): edited: its content does not match its hash")
            if canonical(entry) != body:
                return bad(n, f"line {n} (seq {seq}): edited: not written as the service writes entries")
            if isinstance(seq, bool) or not isinstance(seq, int):
                return bad(n, f"line {n}: seq {seq!r} is not an integer (edited)")
            if seq != expected:
                if seq > expected:
                    at = _find_seq(path, expected, n)
                    what = (f"lines reordered (entry {expected} is at line {at})" if at is not None else
                            f"entr{'y' if seq - expected == 1 else 'ies'} {expected}"
                            f"{'' if seq - expected == 1 else f'-{seq - 1}'} removed")
                else:
                    what = "lines reordered or repeated"
                return bad(n, f"line {n}: entry {seq} where {expected} was expected: {what}")
            if entry["prev"] != prev:
                return bad(n, f"line {n} (seq {seq}): the chain is broken: its prev hash is not the hash of "
                              f"line {n - 1} (that line was replaced with a rehashed one)")
            if anchor is not None and seq == anchor[0]:
                if entry["hash"] != anchor[1]:
                    return bad(n, f"line {n} (seq {seq}): differs from the anchor: hash {entry['hash']}, "
                                  f"anchored {anchor[1]} (the log was rewritten)")
                anchor_seen = True
            prev, expected = entry["hash"], expected + 1
    if anchor is not None and not anchor_seen:
        return AuditVerification(False, expected - 1, expected - 1, prev, n + 1,
                                 f"entry {anchor[0]} of the anchor is missing: the log ends at entry {expected - 1} "
                                 f"(entries were cut off its end)")
    return AuditVerification(True, expected - 1, expected - 1, prev)
