"""The audit log: every request on record before its answer, nothing biometric in it, tampering caught."""

from __future__ import annotations

import base64
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from biomatch.cli import main
from biomatch.service.audit import AuditLog, entry_hash, canonical, verify_log

from service_util import auth, record_json


@pytest.fixture(scope="module")
def logged(served):
    """The served gallery after a mix of requests (accepted and refused)."""
    server, keys, gallery = served
    with server.client() as c:
        c.post("/v1/deduplicate", json=record_json("LOOKUP-2", 2), headers=auth(keys["search"]))
        c.get("/v1/stats", headers=auth(keys["search"]))
        c.get("/v1/stats", headers=auth("bmk_00000000000000aa_" + "B" * 43))   # 401, claimed id recorded
        c.get("/v1/stats", headers=auth(keys["enrol"]))                         # 403
        c.post("/v1/enrol", json={"subject_id": "X", "fingers": [{"position": 1, "data": "%%"}]},
               headers=auth(keys["enrol"]))                                     # 422
        c.post("/v1/enrol", content=b"0" * (2 * 2**20), headers=auth(keys["enrol"]))  # 413
        c.get("/v1/subjects/P-2", headers=auth(keys["admin"]))
        c.get("/healthz")
        with ThreadPoolExecutor(8) as pool:   # concurrent requests share one chain
            list(pool.map(lambda _: c.get("/v1/stats", headers=auth(keys["search"])).status_code, range(24)))
    return server, keys, gallery


def _entries(gallery):
    return [json.loads(line) for line in (gallery / "service" / "audit.log").read_text().splitlines()]


def test_every_request_recorded_before_its_answer(logged):
    server, keys, gallery = logged
    entries = _entries(gallery)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    ops = [(e["operation"], e["status"]) for e in entries]
    assert ("deduplicate", 200) in ops and ("stats", 401) in ops and ("stats", 403) in ops
    assert ("enrol", 422) in ops and ("unknown", 413) in ops and ("subject", 200) in ops
    assert not any(e["operation"] == "healthz" for e in entries)
    refused = next(e for e in entries if e["status"] == 401)
    assert refused["key_id"] is None and refused["claimed_key_id"] == "00000000000000aa"
    bad = next(e for e in entries if e["status"] == 422)
    assert bad["field"] == "fingers[0].data" and bad["key_id"]
    dedup = next(e for e in entries if e["operation"] == "deduplicate" and e["subject_ids"][0] == "LOOKUP-2")
    assert dedup["decision"] == "DUPLICATE" and "P-2" in dedup["subject_ids"]
    assert all(e["time_utc"].endswith("Z") for e in entries)
    assert verify_log(gallery / "service" / "audit.log").ok


def test_no_template_image_or_metadata_in_the_log(served):
    server, keys, gallery = served
    body = dict(record_json("SECRET-1", 901, impression=0), metadata={"mother_name": "Zenobia Quillfeather"})
    with server.client() as c:
        assert c.post("/v1/enrol", json=body, headers=auth(keys["enrol"])).status_code == 200
    raw = (gallery / "service" / "audit.log").read_bytes()
    assert b"SECRET-1" in raw and b"Zenobia" not in raw
    for f in body["fingers"]:
        data = base64.b64decode(f["data"])
        assert f["data"][:40].encode() not in raw and data[8:40] not in raw


def test_who_looked_up_a_subject(logged):
    server, keys, _ = logged
    with server.client() as c:
        r = c.get("/v1/audit/subjects/P-2", headers=auth(keys["audit"]))
        assert r.status_code == 200
        entries = r.json()["entries"]
        ops = {(e["operation"], e["key_id"]) for e in entries}
        search_id = keys["search"].split("_")[1]
        admin_id = keys["admin"].split("_")[1]
        assert ("deduplicate", search_id) in ops and ("subject", admin_id) in ops
        assert [e["seq"] for e in entries] == sorted((e["seq"] for e in entries), reverse=True)
        v = c.get("/v1/audit/verify", headers=auth(keys["audit"])).json()
        assert v["ok"] and v["entries"] >= len(entries)


@pytest.fixture
def copy(logged, tmp_path):
    """A copy of the log in a gallery-like folder (for `biomatch audit verify`), and its lines."""
    _, _, gallery = logged
    (tmp_path / "service").mkdir()
    (tmp_path / "manifest.json").write_text("{}")
    log = tmp_path / "service" / "audit.log"
    shutil.copy(gallery / "service" / "audit.log", log)
    return tmp_path, log, log.read_bytes().splitlines(keepends=True)


def _verify_cli(folder, capsys, *extra):
    rc = main(["audit", "verify", str(folder), *extra])
    return rc, capsys.readouterr().out


def test_verify_intact(copy, capsys):
    folder, log, lines = copy
    rc, out = _verify_cli(folder, capsys)
    assert rc == 0 and f"intact, {len(lines)} entries" in out


def test_verify_catches_an_edited_line(copy, capsys):
    folder, log, lines = copy
    lines[2] = lines[2].replace(b'"status":', b'"status":1', 1)   # e.g. 200 -> 1200
    log.write_bytes(b"".join(lines))
    rc, out = _verify_cli(folder, capsys)
    assert rc == 1 and "line 3 (seq 3): edited" in out


def test_verify_catches_an_edited_and_rehashed_line(copy, capsys):
    folder, log, lines = copy
    e = json.loads(lines[2])
    e["subject_ids"] = ["SOMEONE-ELSE"]
    e["hash"] = entry_hash(e)
    lines[2] = canonical(e) + b"\n"
    log.write_bytes(b"".join(lines))
    rc, out = _verify_cli(folder, capsys)
    assert rc == 1 and "line 4 (seq 4): the chain is broken" in out


def test_verify_catches_a_removed_line(copy, capsys):
    folder, log, lines = copy
    del lines[4]
    log.write_bytes(b"".join(lines))
    rc, out = _verify_cli(folder, capsys)
    assert rc == 1 and "line 5: entry 6 where 5 was expected: entry 5 removed" in out


def test_verify_catches_reordered_lines(copy, capsys):
    folder, log, lines = copy
    lines[3], lines[4] = lines[4], lines[3]
    log.write_bytes(b"".join(lines))
    rc, out = _verify_cli(folder, capsys)
    assert rc == 1 and "line 4: entry 5 where 4 was expected: lines reordered (entry 4 is at line 5)" in out


def test_truncation_caught_by_an_anchor(copy, capsys):
    folder, log, lines = copy
    rc, out = _verify_cli(folder, capsys)
    head = out.rsplit("head ", 1)[1].strip()
    log.write_bytes(b"".join(lines[:-2]))
    rc, out = _verify_cli(folder, capsys)
    assert rc == 0                                            # a shorter chain is still a chain...
    rc, out = _verify_cli(folder, capsys, "--anchor", head)
    assert rc == 1 and "cut off its end" in out               # ...but not the one recorded


def test_torn_last_line_reported_then_recovered_on_record(copy, capsys):
    folder, log, lines = copy
    log.write_bytes(b"".join(lines) + lines[-1][:37])          # a crash in the middle of a write
    rc, out = _verify_cli(folder, capsys)
    assert rc == 1 and f"line {len(lines) + 1}: torn" in out
    a = AuditLog(log)                                         # what the service does when it starts
    try:
        assert a.recovered["bytes"] == 37
        a.append({"operation": "after", "status": 200})
    finally:
        a.close()
    rc, out = _verify_cli(folder, capsys)
    assert rc == 0 and f"intact, {len(lines) + 2} entries" in out
    tail = [json.loads(x) for x in log.read_text().splitlines()[-2:]]
    assert tail[0]["operation"] == "torn_tail_recovered" and tail[0]["torn_bytes"] == 37
    assert (log.parent / tail[0]["moved_to"]).read_bytes() == lines[-1][:37]
