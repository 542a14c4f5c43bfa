"""The audit log's index by subject id: same answers as a scan of the log, kept in step through a
SIGKILL, rebuilt when it does not fit the log, and never trusted over the log."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest

from biomatch.service.audit import AuditLog, scan_entries_for, verify_log
from biomatch.service.audit_index import INDEX_FILE


def _fill(log: AuditLog, n: int, seed: int = 0, people: int = 50) -> None:
    rng = random.Random(seed)
    for i in range(n):
        ids = rng.sample([f"S-{k}" for k in range(people)], rng.randint(0, 4))
        log.append({"operation": rng.choice(["deduplicate", "identify", "enrol"]), "status": 200,
                    "key_id": f"{i % 7:016x}", "subject_ids": ids})


def _same_as_scan(log: AuditLog, people: int = 50, limit: int = 1000) -> None:
    for k in list(range(people)) + [people + 1]:
        sid = f"S-{k}"
        assert log.entries_for(sid, limit) == scan_entries_for(log.path, sid, limit), sid


def test_index_answers_as_the_scan_and_reads_only_the_lines_it_returns(tmp_path, monkeypatch):
    log = AuditLog(tmp_path / "audit.log")
    try:
        _fill(log, 400)
        assert (tmp_path / INDEX_FILE).is_file() and (tmp_path / INDEX_FILE).stat().st_mode & 0o777 == 0o600
        _same_as_scan(log)
        assert [e["seq"] for e in log.entries_for("S-3", 2)] == [e["seq"] for e in scan_entries_for(log.path, "S-3", 2)]
        # The query reads the lines the index points at, not the log: no open() of the log file.
        import builtins

        real_open = builtins.open

        def no_log_scan(path, *a, **k):
            assert os.fspath(path) != os.fspath(log.path), "the log was scanned"
            return real_open(path, *a, **k)

        monkeypatch.setattr(builtins, "open", no_log_scan)
        assert len(log.entries_for("S-7", 1000)) > 0
    finally:
        log.close()


def test_index_catches_up_with_entries_it_missed(tmp_path):
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    _fill(log, 100)
    log.close()
    plain = AuditLog(path, index=False)  # entries appended by a writer that died before indexing them
    _fill(plain, 60, seed=1)
    plain.close()
    log = AuditLog(path)
    try:
        _same_as_scan(log)
        _fill(log, 30, seed=2)  # and appends go on indexing
        _same_as_scan(log)
    finally:
        log.close()
    assert verify_log(path).ok


def test_index_missing_or_not_fitting_the_log_is_rebuilt(tmp_path):
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    _fill(log, 200)
    log.close()
    saved = path.read_bytes()
    (tmp_path / INDEX_FILE).unlink()
    log = AuditLog(path)  # rebuilt from the log
    try:
        _same_as_scan(log)
        _fill(log, 50, seed=3)
    finally:
        log.close()
    # The log replaced by an older copy of itself (a restore): the index is ahead of it and is rebuilt.
    path.write_bytes(saved)
    log = AuditLog(path)
    try:
        _same_as_scan(log)
    finally:
        log.close()
    # A log of the same length but other content (rewritten): the index's last line does not match.
    other = tmp_path / "other"
    other.mkdir()
    o = AuditLog(other / "audit.log")
    _fill(o, 200, seed=9)
    o.close()
    path.write_bytes((other / "audit.log").read_bytes())
    log = AuditLog(path)
    try:
        _same_as_scan(log)
    finally:
        log.close()


def test_an_index_pointing_at_other_lines_is_not_believed(tmp_path):
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    try:
        _fill(log, 100)
        # Damage the index: S-1's rows point at S-2's lines.
        import sqlite3

        db = sqlite3.connect(tmp_path / INDEX_FILE)
        db.execute("UPDATE hits SET offset = (SELECT offset FROM hits h WHERE h.subject_id = 'S-2' LIMIT 1) "
                   "WHERE subject_id = 'S-1'")
        db.commit()
        db.close()
        _same_as_scan(log)
    finally:
        log.close()


_WRITER = textwrap.dedent("""
    import sys
    from biomatch.service.audit import AuditLog
    log = AuditLog(sys.argv[1])
    i = 0
    while True:
        log.append({"operation": "identify", "status": 200, "subject_ids": [f"S-{i % 13}", f"S-{(i * 7) % 13}"]})
        i += 1
        if i == 50:
            print("ready", flush=True)
""")


@pytest.mark.parametrize("trial", range(4))
def test_index_in_step_after_sigkill(tmp_path, trial):
    """A writer SIGKILLed at a random moment while it appends: at the next open the index answers as
    the scan (caught up from the log), the chain verifies."""
    path = tmp_path / "audit.log"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        # Let it run a little more, differently per trial, then kill it mid-append.
        target = 50 + 40 * (trial + 1)
        while sum(1 for _ in open(path, "rb")) < target:
            pass  # polls the log's growth
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    log = AuditLog(path)  # a torn last line, if any, is moved aside and recorded
    try:
        _same_as_scan(log, people=13)
        assert verify_log(path).ok
        lines = path.read_text().splitlines()
        assert json.loads(lines[-1])["seq"] == len(lines)
    finally:
        log.close()


def test_cli_audit_subject(tmp_path):
    from biomatch.dedup import Gallery
    from biomatch.service.auth import service_dir

    Gallery.create(tmp_path / "g").close()
    log = AuditLog(service_dir(tmp_path / "g") / "audit.log")
    try:
        _fill(log, 80)
        want = scan_entries_for(log.path, "S-4", 5)
    finally:
        log.close()
    r = subprocess.run([sys.executable, "-m", "biomatch", "audit", "subject", str(tmp_path / "g"), "S-4", "--limit",
                        "5"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [json.loads(line) for line in r.stdout.splitlines()] == want and want
