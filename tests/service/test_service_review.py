"""The REVIEW case API behind the examiner's page: the kept probe, the case view, outcomes that enrol."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from service_util import (REVIEW_POSITIONS, Server, auth, make_keys, make_record, record_json, review_gallery)


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    root = tmp_path_factory.mktemp("rev")
    gallery = review_gallery(root / "g")
    keys = make_keys(gallery)
    server = Server(gallery).start()
    try:
        yield server, keys, gallery
    finally:
        server.stop()


def _review(c, keys, sid, person):
    body = dict(record_json(sid, person, impression=1, positions=REVIEW_POSITIONS), metadata={"office": "north"})
    r = c.post("/v1/enrol", json=body, headers=auth(keys["enrol"]))
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "REVIEW" and not r.json()["enrolled"], r.json()
    return r.json()["review_case"], body


def test_case_view_draws_the_matchers_pairing(reviewed):
    server, keys, gallery = reviewed
    with server.client() as c:
        case_id, body = _review(c, keys, "REV-A", 3)
        assert c.get(f"/v1/reviews/{case_id}", headers=auth(keys["search"])).status_code == 403
        assert c.get(f"/v1/reviews/{case_id}").status_code == 401
        r = c.get(f"/v1/reviews/{case_id}", headers=auth(keys["adjudicate"]))
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        view = r.json()
        assert c.get("/v1/reviews/rv_nope", headers=auth(keys["adjudicate"])).status_code == 404
    assert view["probe_kept"] and view["outcome"] is None and view["enrolled"] is None
    best = view["views"][0]
    assert best["subject_id"] == "P-3" and best["enrolled"]
    assert [f["position"] for f in best["fingers"]] == list(REVIEW_POSITIONS)
    probe = make_record("x", 3, impression=1, positions=REVIEW_POSITIONS)
    enrolled = make_record("x", 3, impression=0, positions=REVIEW_POSITIONS)
    from biomatch.match import FingerprintMatcher

    for f in best["fingers"]:
        p = f["position"]
        assert len(f["probe"]["minutiae"]) == len(probe.fingers[p])
        assert len(f["candidate"]["minutiae"]) == len(enrolled.fingers[p])
        assert f["score"] == pytest.approx(FingerprintMatcher(probe.fingers[p]).match(enrolled.fingers[p]), rel=1e-5)
        assert view["candidates"][0]["finger_scores"][str(p)] == pytest.approx(f["score"], rel=1e-5)
        # a mated pair: the matcher paired many minutiae, one to one, and the pairs are real indices
        assert f["pairing"] in ("elastic", "global") and len(f["pairs"]) >= 6
        a, b = zip(*f["pairs"])
        assert len(set(a)) == len(a) and len(set(b)) == len(b)
        assert max(a) < len(f["probe"]["minutiae"]) and max(b) < len(f["candidate"]["minutiae"])
        assert f["probe"]["image"] is None and f["candidate"]["image"] is None   # templates only, for now


def test_probe_is_kept_private_and_never_logged(reviewed):
    server, keys, gallery = reviewed
    with server.client() as c:
        case_id, body = _review(c, keys, "REV-B", 5)
    db = gallery / "service" / "reviews.sqlite"
    for f in [db, *db.parent.glob("reviews.sqlite-*")]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    from biomatch.service.review import ReviewQueue

    q = ReviewQueue(db)
    try:
        probe = q.probe(case_id)
    finally:
        q.close()
    assert sorted(probe.fingers) == list(REVIEW_POSITIONS) and probe.metadata == {"office": "north"}
    assert "minutiae" not in repr(probe)
    sent = [base64.b64decode(f["data"]) for f in body["fingers"]]
    log = (gallery / "service" / "audit.log").read_bytes() + server.log.read_bytes()
    for data in sent:
        assert data[16:48] not in log and base64.b64encode(data)[20:60] not in log


def test_same_person_drops_the_probe_and_enrols_nothing(reviewed):
    server, keys, gallery = reviewed
    with server.client() as c:
        case_id, _ = _review(c, keys, "REV-C", 6)
        r = c.post(f"/v1/reviews/{case_id}/outcome", json={"outcome": "same_person"}, headers=auth(keys["adjudicate"]))
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "same_person" and not r.json()["probe_kept"] and r.json()["enrolled"] is None
        assert c.get("/v1/subjects/REV-C", headers=auth(keys["search"])).status_code == 404
        view = c.get(f"/v1/reviews/{case_id}", headers=auth(keys["adjudicate"])).json()
        assert view["views"] == [] and view["outcome"] == "same_person"
        r = c.post(f"/v1/reviews/{case_id}/outcome", json={"outcome": "different_person"},
                   headers=auth(keys["adjudicate"]))
        assert r.status_code == 400 and r.json()["field"] == "case_id"


def test_different_person_enrols_the_probe_audited(reviewed):
    server, keys, gallery = reviewed
    with server.client() as c:
        case_id, body = _review(c, keys, "REV-D", 7)
        assert c.get(f"/v1/reviews/{case_id}", headers=auth(keys["adjudicate"])).status_code == 200
        r = c.post(f"/v1/reviews/{case_id}/outcome", json={"outcome": "different_person"},
                   headers=auth(keys["adjudicate"]))
        assert r.status_code == 200, r.text
        case = r.json()
        assert case["enrolled"] is True and not case["probe_kept"]
        assert case["enrolment"]["enrolled"] and case["enrolment"]["decision"] == "REVIEW"
        got = c.get("/v1/subjects/REV-D", headers=auth(keys["search"])).json()
        assert got["positions"] == list(REVIEW_POSITIONS) and got["metadata"] == {"office": "north"}
        # the registry's re-send with review_case (the older flow) gets the same answer, not a 409
        r = c.post("/v1/enrol", json=dict(body, review_case=case_id), headers=auth(keys["enrol"]))
        assert r.status_code == 200 and r.json() == case["enrolment"]
        entries = c.get("/v1/audit/subjects/REV-D", headers=auth(keys["audit"])).json()["entries"]
        assert c.get("/v1/audit/verify", headers=auth(keys["audit"])).json()["ok"]
    outcome = [e for e in entries if e["operation"] == "review_outcome"]
    assert len(outcome) == 1 and outcome[0]["decision"] == "different_person" and outcome[0]["enrolled"] is True
    assert outcome[0]["key_id"] == keys["adjudicate"].split("_")[1] and "P-7" in outcome[0]["subject_ids"]
    assert any(e["operation"] == "review_case" for e in entries)   # looking at the case is audited too


def test_a_resolution_cut_short_is_finished_by_its_retry(reviewed):
    """Killed between recording different_person and enrolling: the case is resolved, its probe kept;
    the same outcome again enrols it (once)."""
    server, keys, gallery = reviewed
    from biomatch.service.review import ReviewQueue

    with server.client() as c:
        case_id, _ = _review(c, keys, "REV-E", 8)
        q = ReviewQueue(gallery / "service" / "reviews.sqlite")
        try:
            q.resolve(case_id, "different_person", "crashed")
        finally:
            q.close()
        r = c.post(f"/v1/reviews/{case_id}/outcome", json={"outcome": "same_person"}, headers=auth(keys["adjudicate"]))
        assert r.status_code == 400
        r = c.post(f"/v1/reviews/{case_id}/outcome", json={"outcome": "different_person"},
                   headers=auth(keys["adjudicate"]))
        assert r.status_code == 200 and r.json()["enrolled"] is True, r.text
        assert c.get("/v1/subjects/REV-E", headers=auth(keys["search"])).status_code == 200
        r = c.post(f"/v1/reviews/{case_id}/outcome", json={"outcome": "different_person"},
                   headers=auth(keys["adjudicate"]))
        assert r.status_code == 400      # finished: resolved once


def test_page_files_are_served_without_a_key_and_unaudited(reviewed):
    server, keys, gallery = reviewed
    before = (gallery / "service" / "audit.log").read_bytes().count(b"\n")
    with server.client() as c:
        r = c.get("/review/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert c.get("/review/review.js").headers["content-type"].startswith("text/javascript")
        assert c.get("/review/review.css").status_code == 200
        assert c.get("/review/..%2Fkeys.json").status_code == 404
        assert c.get("/review/nothing.js").status_code == 404
        assert c.get("/review", follow_redirects=False).headers["location"] == "/review/"
    assert (gallery / "service" / "audit.log").read_bytes().count(b"\n") == before


def test_two_examiners_at_once_resolve_once(reviewed):
    server, keys, gallery = reviewed
    import threading

    import httpx

    with server.client() as c:
        case_id, _ = _review(c, keys, "REV-F", 9)
    answers = []
    go = threading.Barrier(2)

    def examiner():
        with httpx.Client(base_url=server.url, timeout=120) as c:
            go.wait()
            answers.append(c.post(f"/v1/reviews/{case_id}/outcome", json={"outcome": "different_person"},
                                  headers=auth(keys["adjudicate"])))

    threads = [threading.Thread(target=examiner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(r.status_code for r in answers) == [200, 400], [r.text for r in answers]
    ok = next(r for r in answers if r.status_code == 200).json()
    assert ok["enrolled"] is True and not ok["enrolment"]["recovered"]


def test_an_unparsable_outcome_body_names_the_body(reviewed):
    """Found by Schemathesis: FastAPI's own JSON decoding answered 400 naming no field."""
    server, keys, _ = reviewed
    with server.client() as c:
        r = c.post("/v1/reviews/rv_x/outcome", content=b"\xf2{", headers=dict(auth(keys["adjudicate"]),
                                                                               **{"Content-Type": "application/json"}))
    assert r.status_code == 422 and r.json()["field"] == "body" and r.json()["error"] == "validation_error"
