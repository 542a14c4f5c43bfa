"""Idempotent enrolment: a retry gets the first answer, never a second enrolment, across restarts and kills."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from service_util import Server, auth, enrolled_counts, kill_trial, make_gallery, make_keys, make_record, record_json


@pytest.fixture
def fresh(tmp_path):
    gallery = make_gallery(tmp_path / "g", persons=6)
    keys = make_keys(gallery)
    servers = []

    def start():
        s = Server(gallery).start()
        servers.append(s)
        return s

    try:
        yield gallery, keys, start
    finally:
        for s in servers:
            s.kill()


def _enrol(c, body, key, idem):
    return c.post("/v1/enrol", json=body, headers=dict(auth(key), **{"Idempotency-Key": idem}))


def test_retry_same_answer_once_and_conflicting_reuse(served):
    server, keys, _ = served
    body = record_json("IDEM-1", 800, impression=0)
    with server.client() as c:
        first = _enrol(c, body, keys["enrol"], "order-1")
        assert first.status_code == 200 and first.json()["enrolled"] and "idempotent-replay" not in first.headers
        again = _enrol(c, body, keys["enrol"], "order-1")
        assert again.status_code == 200 and again.json() == first.json()
        assert again.headers["idempotent-replay"] == "true"
        # the same request as multipart (another encoding, another boundary) is the same request
        from biomatch.formats import encode

        rec = make_record("x", 800, impression=0)
        files = {f"finger_{p}": (f"{p}.bmt", encode(t)) for p, t in rec.fingers.items()}
        r = c.post("/v1/enrol", data={"subject_id": "IDEM-1"}, files=files,
                   headers=dict(auth(keys["enrol"]), **{"Idempotency-Key": "order-1"}))
        assert r.status_code == 200 and r.json() == first.json()
        # another body under the same key
        other = _enrol(c, record_json("IDEM-2", 801, impression=0), keys["enrol"], "order-1")
        assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
        assert c.get("/v1/subjects/IDEM-2", headers=auth(keys["search"])).status_code == 404
        # keys are per API key: another client's "order-1" is its own
        r = _enrol(c, record_json("IDEM-3", 802, impression=0), keys["all"], "order-1")
        assert r.status_code == 200 and r.json()["enrolled"]
        # a refused request leaves no claim: the fixed retry runs
        bad = {"subject_id": "IDEM-4", "fingers": [{"position": 1, "data": "AAAA"}]}
        assert _enrol(c, bad, keys["enrol"], "order-4").status_code == 400
        r = _enrol(c, record_json("IDEM-4", 803, impression=0), keys["enrol"], "order-4")
        assert r.status_code == 200 and r.json()["enrolled"]


def test_retry_after_restart_and_after_a_lost_answer(fresh):
    gallery, keys, start = fresh
    body = record_json("R-1", 900, impression=0)
    server = start()
    with server.client() as c:
        first = _enrol(c, body, keys["enrol"], "k-1")
        assert first.json()["enrolled"]
    server.stop()

    # A kill between the enrolment's commit and the answer's: the claim is pending, its process dead,
    # the subject enrolled.  Built here as it would be left on disk.
    from biomatch.dedup import Gallery
    from biomatch.service.inputs import fingerprint, parse_json
    from biomatch.service.schemas import EnrolIn

    lost = record_json("R-2", 901, impression=0)
    with Gallery.open(gallery) as g:
        g.enroll(make_record("R-2", 901, impression=0))
    untouched = record_json("R-3", 902, impression=0)
    key_id = keys["enrol"].split("_")[1]
    db = sqlite3.connect(gallery / "service" / "idempotency.sqlite")
    for sid, b, k in (("R-2", lost, "k-2"), ("R-3", untouched, "k-3")):
        fp = fingerprint(parse_json(json.dumps(b).encode(), EnrolIn))
        db.execute("INSERT INTO keys (key_id, idem_key, fingerprint, subject_id, owner, created_utc) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (key_id, k, fp, sid, "999999999:0", time.time()))
    db.commit()
    db.close()

    server = start()
    with server.client() as c:
        again = _enrol(c, body, keys["enrol"], "k-1")
        assert again.json() == first.json() and again.headers["idempotent-replay"] == "true"
        r = _enrol(c, lost, keys["enrol"], "k-2")        # found by its subject id, not enrolled again
        assert r.status_code == 200, r.text
        assert r.json()["enrolled"] and r.json()["recovered"] and r.json()["decision"] == "UNIQUE"
        assert _enrol(c, lost, keys["enrol"], "k-2").json() == r.json()
        r = _enrol(c, untouched, keys["enrol"], "k-3")   # never committed: it runs now
        assert r.status_code == 200 and r.json()["enrolled"] and not r.json()["recovered"]
        assert c.get("/v1/stats", headers=auth(keys["admin"])).json()["subjects"] == 6 + 3


def test_sigkill_during_concurrent_enrolments(fresh):
    """Kill -9 the server while 4 clients enrol; after a restart every acknowledged enrolment is there,
    and retrying every request with its key enrols each subject exactly once (2 trials here;
    benchmarks/service_kill.py runs 20 and prints a table)."""
    gallery, keys, _ = fresh
    all_sent: set = set()
    for trial in range(2):
        r = kill_trial(gallery, keys, trial, first_person=trial * 10_000, acked_before_kill=3 + trial * 2)
        assert r["acked"], "no enrolment acknowledged before the kill"
        assert r["missing"] == 0 and r["retry_failed"] == 0 and r["answer_changed"] == 0, r
        assert r["audit_ok"], r
        all_sent |= r["subjects"]
    subjects, present = enrolled_counts(gallery, all_sent)
    assert present == len(all_sent) and subjects == 6 + len(all_sent)   # each sent subject exactly once
