"""Nothing readable in the service's own stores of an encrypted gallery: the idempotency store's
recorded answers (subject ids, decisions, scores), the REVIEW queue's cases (candidates and
scores) and their kept probes are sealed
with the gallery's data key; the same requests on a plain gallery leave them readable (so the test
can fail).  After ``gallery rotate-key --reencrypt`` (old data key dropped) a new server still
replays the answers and opens the probes: the re-encryption re-sealed them."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from service_util import REVIEW_CAP_DECADES, REVIEW_POSITIONS, Server, auth, make_keys, record_json

from dedup_util import make_record


def _gallery(root, encrypted: bool):
    from biomatch.decide import DecisionParams
    from biomatch.dedup import Gallery, KeyFile
    from biomatch.dedup.encryption import generate_key_file

    key = None
    if encrypted:
        generate_key_file(root / "kek")
        key = KeyFile(root / "kek")
    gallery = root / "g"
    with Gallery.create(gallery, key=key, generated_background=True,
                        decision=DecisionParams(finger_evidence_max_decades=REVIEW_CAP_DECADES)) as g:
        g.bulk_enroll([make_record(f"P-{i}", i) for i in range(8)])
    return gallery


def _service_bytes(gallery) -> bytes:
    return b"".join(f.read_bytes() for f in sorted((gallery / "service").iterdir())
                    if f.is_file() and not f.name.startswith("audit"))


def _traces(answer: dict) -> list[bytes]:
    """What a recorded answer would show in clear: the candidates' ids as JSON writes them, each score."""
    out = []
    for c in answer["candidates"]:
        out.append(json.dumps(c["subject_id"]).encode())
        if len(repr(c["score"])) >= 8:  # a score such as 0.0 is found in any file
            out.append(repr(c["score"]).encode())
    return out


def _requests(server, keys) -> tuple[dict, dict, str]:
    with server.client() as c:
        dup = c.post("/v1/enrol", json=record_json("DUP-1", 5, impression=1),
                     headers=dict(auth(keys["enrol"]), **{"Idempotency-Key": "idem-dup-1"}))
        assert dup.status_code == 200 and dup.json()["decision"] == "DUPLICATE", dup.text
        assert dup.json()["candidates"][0]["subject_id"] == "P-5"
        body = record_json("REV-1", 3, impression=1, positions=REVIEW_POSITIONS)
        rev = c.post("/v1/enrol", json=body, headers=dict(auth(keys["enrol"]), **{"Idempotency-Key": "idem-rev-1"}))
        assert rev.status_code == 200 and rev.json()["decision"] == "REVIEW", rev.text
    return dup.json(), body, rev.json()["review_case"]


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
def test_idempotent_answers_and_review_probes_sealed(tmp_path, monkeypatch, encrypted):
    monkeypatch.delenv("BIOMATCH_GALLERY_KEY", raising=False)
    gallery = _gallery(tmp_path, encrypted)
    keys = make_keys(gallery)
    args = ("--key-file", str(tmp_path / "kek")) if encrypted else ()
    server = Server(gallery, *args).start()
    try:
        answer, probe_body, case_id = _requests(server, keys)
        on_disk = _service_bytes(gallery)  # the stores with their WAL, not yet checkpointed
    finally:
        server.stop()
    # the answer's candidates and scores, its decision, the kept probe's templates in their kept form (base64)
    traces = _traces(answer) + [b"DUPLICATE"] + [f["data"][40:80].encode() for f in probe_body["fingers"]]
    found = [t for t in traces if t in on_disk]
    if not encrypted:
        assert found == traces, "the plain gallery's stores should hold these in clear"
        return
    traces += [base64.b64decode(f["data"])[16:48] for f in probe_body["fingers"]]  # nor the raw template bytes
    found = [t for t in traces if t in on_disk]
    assert not found, f"readable in the service's stores: {found[:3]}"

    # A re-encryption drops the old data key: the stores were re-sealed, a new server reads them.
    r = subprocess.run([sys.executable, "-m", "biomatch", "gallery", "rotate-key", str(gallery), "--key-file",
                        str(tmp_path / "kek"), "--reencrypt"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    from biomatch.dedup import manifest

    assert list(manifest.read_manifest(gallery)["encryption"]["keys"]) == ["2"]
    server = Server(gallery, *args).start()
    try:
        with server.client() as c:
            again = c.post("/v1/enrol", json=record_json("DUP-1", 5, impression=1),
                           headers=dict(auth(keys["enrol"]), **{"Idempotency-Key": "idem-dup-1"}))
            assert again.status_code == 200 and again.headers.get("Idempotent-Replay") == "true", again.text
            assert again.json() == answer
            view = c.get(f"/v1/reviews/{case_id}", headers=auth(keys["adjudicate"]))
            assert view.status_code == 200 and view.json()["probe_kept"] and view.json()["views"], view.text
    finally:
        server.stop()
