"""`gallery backup` carries the service's state: keys, the audit log, idempotency answers, REVIEW cases
and their probes; taken while the server answers requests, restored elsewhere, all of it usable."""

from __future__ import annotations

import stat
import threading

import httpx

from service_util import (REVIEW_POSITIONS, Server, auth, enrol_with_key, make_keys, record_json, review_gallery)


def test_backup_and_restore_carry_the_service_state(tmp_path):
    from biomatch.dedup import Gallery, backup_gallery, restore_gallery
    from biomatch.service.audit import verify_log
    from biomatch.service.auth import KeyStore
    from biomatch.service.review import ReviewQueue

    gallery = review_gallery(tmp_path / "g", persons=6)
    keys = make_keys(gallery)
    server = Server(gallery).start()
    try:
        with server.client() as c:
            r = enrol_with_key(c, record_json("B-1", 900, impression=0), keys["enrol"], "order-B-1")
            first = r.json()
            assert r.status_code == 200 and first["enrolled"]
            r = c.post("/v1/enrol", json=record_json("B-REV", 2, impression=1, positions=REVIEW_POSITIONS),
                       headers=auth(keys["enrol"]))
            assert r.json()["decision"] == "REVIEW"
            case_id = r.json()["review_case"]
        stop, answered = threading.Event(), threading.Event()

        def searches():  # the audit log grows while it is copied
            with httpx.Client(base_url=server.url, timeout=60) as c:
                while not stop.is_set():
                    c.get("/v1/subjects/P-1", headers=auth(keys["search"]))
                    answered.set()

        t = threading.Thread(target=searches)
        t.start()
        try:
            # one search audited before the copy starts (the copy must hold >= 3 entries); the
            # others run during it
            assert answered.wait(timeout=60)
            doc = backup_gallery(gallery, tmp_path / "bk")
        finally:
            stop.set()
            t.join(timeout=60)
    finally:
        server.stop()
    assert sorted(doc["service"]) == ["audit.index.sqlite", "audit.log", "idempotency.sqlite", "keys.json",
                                     "reviews.sqlite"]
    assert {f"service/{n}" for n in doc["service"]} <= set(doc["files"])
    assert not any(n.endswith(("-wal", "-shm", ".lock")) for n in doc["files"])
    head = verify_log(tmp_path / "bk" / "service" / "audit.log")
    assert head.ok and head.entries >= 3

    restore_gallery(tmp_path / "bk", tmp_path / "g2")
    svc = tmp_path / "g2" / "service"
    assert stat.S_IMODE(svc.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in svc.iterdir())
    assert KeyStore(svc).authenticate(keys["enrol"]) is not None
    assert KeyStore(svc).authenticate(keys["revoked"]) is None          # revocations restored too
    q = ReviewQueue(svc / "reviews.sqlite")
    try:
        assert q.get(case_id)["probe_kept"] and sorted(q.probe(case_id).fingers) == list(REVIEW_POSITIONS)
    finally:
        q.close()
    with Gallery.open(tmp_path / "g2", read_only=True) as g:
        assert "B-1" in g
    # the restored service answers a retry from its idempotency store and continues the audit chain
    server = Server(tmp_path / "g2").start()
    try:
        with server.client() as c:
            r = enrol_with_key(c, record_json("B-1", 900, impression=0), keys["enrol"], "order-B-1")
            assert r.status_code == 200 and r.json() == first and r.headers["idempotent-replay"] == "true"
            v = c.get("/v1/audit/verify", headers=auth(keys["audit"])).json()
            assert v["ok"] and v["entries"] > head.entries
    finally:
        server.stop()


def test_backup_of_a_gallery_without_service_state(tmp_path):
    from biomatch.dedup import backup_gallery, restore_gallery

    gallery = review_gallery(tmp_path / "g", persons=2)
    doc = backup_gallery(gallery, tmp_path / "bk")
    assert doc["service"] == [] and not (tmp_path / "bk" / "service").exists()
    restore_gallery(tmp_path / "bk", tmp_path / "g2")
    assert not (tmp_path / "g2" / "service").exists()
