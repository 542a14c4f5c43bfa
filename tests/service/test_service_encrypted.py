"""The service over an encrypted gallery: --key-file, and a missing or wrong key refused at start."""

from __future__ import annotations

import subprocess
import sys

import pytest
from service_util import REVIEW_CAP_DECADES, REVIEW_POSITIONS, Server, auth, make_keys, record_json

from dedup_util import make_record


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory):
    from biomatch.dedup import Gallery, KeyFile
    from biomatch.dedup.encryption import generate_key_file

    root = tmp_path_factory.mktemp("svc-enc")
    generate_key_file(root / "kek")
    generate_key_file(root / "other")
    gallery = root / "g"
    with Gallery.create(gallery, key=KeyFile(root / "kek")) as g:
        g.bulk_enroll([make_record(f"p{i}", i) for i in range(8)])
    return gallery, root / "kek", root / "other", make_keys(gallery)


def test_served_with_its_key_file(encrypted, monkeypatch):
    gallery, kek, _, keys = encrypted
    monkeypatch.delenv("BIOMATCH_GALLERY_KEY", raising=False)
    server = Server(gallery, "--key-file", str(kek)).start()
    try:
        with server.client() as c:
            r = c.post("/v1/deduplicate", json=record_json("q-5", 5), headers=auth(keys["search"]))
            assert r.status_code == 200, r.text
            assert r.json()["decision"] == "DUPLICATE" and r.json()["candidates"][0]["subject_id"] == "p5"
            r = c.post("/v1/enrol", json=record_json("new-1", 100, impression=0), headers=auth(keys["enrol"]))
            assert r.status_code == 200 and r.json()["enrolled"], r.text
    finally:
        server.stop()


@pytest.mark.parametrize("which", ["none", "other"])
def test_a_missing_or_wrong_key_is_refused_at_start(encrypted, monkeypatch, which):
    gallery, _, other, _ = encrypted
    monkeypatch.delenv("BIOMATCH_GALLERY_KEY", raising=False)
    extra = [] if which == "none" else ["--key-file", str(other)]
    p = subprocess.run([sys.executable, "-m", "biomatch", "serve", str(gallery), "--port", "0", *extra],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "is encrypted under key local:" in p.stderr
    assert ("--key-file PATH" in p.stderr) if which == "none" else ("the key given" in p.stderr)


def test_review_probes_are_sealed_in_an_encrypted_gallery(tmp_path, monkeypatch):
    """A REVIEW case keeps its probe for the examiner: sealed with the gallery's data key (its
    template bytes appear nowhere in the review queue's files), opened for the case view, enrolled
    by "different person"."""
    import base64

    from biomatch.decide import DecisionParams
    from biomatch.dedup import Gallery, KeyFile
    from biomatch.dedup.encryption import generate_key_file

    monkeypatch.delenv("BIOMATCH_GALLERY_KEY", raising=False)
    generate_key_file(tmp_path / "kek")
    gallery = tmp_path / "g"
    with Gallery.create(gallery, key=KeyFile(tmp_path / "kek"), generated_background=True,
                        decision=DecisionParams(finger_evidence_max_decades=REVIEW_CAP_DECADES)) as g:
        g.bulk_enroll([make_record(f"P-{i}", i) for i in range(8)])
    keys = make_keys(gallery)
    server = Server(gallery, "--key-file", str(tmp_path / "kek")).start()
    try:
        with server.client() as c:
            body = record_json("REV-1", 3, impression=1, positions=REVIEW_POSITIONS)
            r = c.post("/v1/enrol", json=body, headers=auth(keys["enrol"]))
            assert r.status_code == 200 and r.json()["decision"] == "REVIEW", r.text
            case_id = r.json()["review_case"]
            view = c.get(f"/v1/reviews/{case_id}", headers=auth(keys["adjudicate"]))
            assert view.status_code == 200 and view.json()["probe_kept"], view.text
            assert view.json()["views"][0]["subject_id"] == "P-3"
            files = [f for f in (gallery / "service").glob("reviews.sqlite*")]
            on_disk = b"".join(f.read_bytes() for f in files)
            for f in body["fingers"]:  # neither the template's bytes nor their base64 (the kept form) in clear
                raw = base64.b64decode(f["data"])
                assert raw[16:48] not in on_disk and f["data"][40:80].encode() not in on_disk
            r = c.post(f"/v1/reviews/{case_id}/outcome", json={"outcome": "different_person"},
                       headers=auth(keys["adjudicate"]))
            assert r.status_code == 200 and r.json()["enrolled"] is True, r.text
    finally:
        server.stop()
