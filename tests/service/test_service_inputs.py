"""Malformed requests: a 4xx with a JSON body naming the field, never a 5xx; the size limit."""

from __future__ import annotations

import base64

import pytest

from service_util import auth, record_json

B64_JUNK = base64.b64encode(b"\x89PNG\r\n\x1a\n not really").decode()
FMR_JUNK = base64.b64encode(b"FMR\0 20\0" + b"\0" * 20).decode()

CASES = [  # (path, body, status, field)
    ("/v1/enrol", {}, 422, "subject_id"),
    ("/v1/enrol", {"subject_id": "A", "fingers": "x"}, 422, "fingers"),
    ("/v1/enrol", {"subject_id": "A", "fingers": [{"position": 0, "data": "AA=="}]}, 422, "fingers[0].position"),
    ("/v1/enrol", {"subject_id": "A", "fingers": [{"position": 1}]}, 422, "fingers[0].data"),
    ("/v1/enrol", {"subject_id": "A", "fingers": [{"position": 1, "data": "AA==", "colour": 1}]}, 422,
     "fingers[0].colour"),
    ("/v1/enrol", {"subject_id": "A", "fingers": [{"position": 1, "data": "AA==", "dpi": 5}]}, 422, "fingers[0].dpi"),
    ("/v1/enrol", {"subject_id": "A", "fingers": [{"position": 1, "data": "not base64!"}]}, 422, "fingers[0].data"),
    ("/v1/enrol", {"subject_id": "A", "fingers": [{"position": 1, "data": B64_JUNK}]}, 400, "fingers[0].data"),
    ("/v1/enrol", {"subject_id": "A", "fingers": [{"position": 1, "data": FMR_JUNK}]}, 400, "fingers[0].data"),
    ("/v1/enrol", {"subject_id": "A", "fingers": []}, 422, "fingers"),
    ("/v1/enrol", {"subject_id": "\u202eA", "fingers": [{"position": 1, "data": "AA=="}]}, 400, "subject_id"),
    ("/v1/enrol", {"subject_id": "A", "fingers": [{"position": 1, "data": "AA=="}], "face": {"data": B64_JUNK}},
     400, "fingers[0].data"),
    ("/v1/enrol", {"subject_id": "A", "transaction": B64_JUNK}, 400, "transaction"),
    ("/v1/enrol", {"subject_id": "A", "metadata": [1]}, 422, "metadata"),
    ("/v1/enrol", [1, 2], 422, "body"),
    ("/v1/identify", {"fingers": [{"position": 1, "data": "AA=="}], "k": 0}, 422, "k"),
    ("/v1/identify", {"fingers": [{"position": 1, "data": "AA=="}], "k": 100000}, 422, "k"),
    ("/v1/deduplicate", {"fingers": [{"position": 1, "data": "AA=="}]}, 422, "subject_id"),
]


@pytest.mark.parametrize("path,body,status,field", CASES, ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(CASES)])
def test_bad_json_names_the_field(served, path, body, status, field):
    server, keys, _ = served
    with server.client() as c:
        r = c.post(path, json=body, headers=auth(keys["all"]))
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and r.json()["detail"]


def test_bad_template_bytes_and_unusable_fingers(served):
    server, keys, _ = served
    good = record_json("A", 1, positions=(1,))
    tpl = base64.b64decode(good["fingers"][0]["data"])
    with server.client() as c:
        r = c.post("/v1/identify", json={"fingers": [{"position": 1, "data": base64.b64encode(tpl[:-9]).decode()}]},
                   headers=auth(keys["all"]))
        assert r.status_code == 400 and r.json()["field"] == "fingers[0].data" and r.json()["error"] == "FormatError"
        r = c.post("/v1/identify", json={"fingers": [{"position": 1, "kind": "template", "data": B64_JUNK}]},
                   headers=auth(keys["all"]))
        assert r.status_code == 400 and r.json()["field"] == "fingers[0].data"


def test_bad_multipart_and_media_types(served):
    server, keys, _ = served
    h = auth(keys["all"])
    with server.client() as c:
        r = c.post("/v1/enrol", data={"subject_id": "A", "colour": "red"}, files={"finger_1": ("a", b"x")}, headers=h)
        assert r.status_code == 422 and r.json()["field"] == "colour"
        r = c.post("/v1/enrol", data={"subject_id": "A", "dpi_3": "500"}, files={"finger_1": ("a", b"xx")}, headers=h)
        assert r.status_code == 422 and r.json()["field"] == "finger_3"
        r = c.post("/v1/enrol", data={"subject_id": "A", "dpi_1": "9"}, files={"finger_1": ("a", b"xx")}, headers=h)
        assert r.status_code == 422 and r.json()["field"] == "dpi_1"
        r = c.post("/v1/enrol", data={"subject_id": "A", "metadata": "{"}, files={"finger_1": ("a", b"xx")}, headers=h)
        assert r.status_code == 422 and r.json()["field"] == "metadata"
        r = c.post("/v1/enrol", content=b"--x\r\nbroken", headers=dict(h, **{"content-type": "multipart/form-data; boundary=x"}))
        assert 400 <= r.status_code < 500
        r = c.post("/v1/enrol", content=b"subject_id=A", headers=dict(h, **{"content-type": "text/plain"}))
        assert r.status_code == 415 and r.json()["field"] == "Content-Type"
        r = c.post("/v1/enrol", json=record_json("A", 1), headers=dict(h, **{"Idempotency-Key": "k" * 201}))
        assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key"
        r = c.get("/v1/reviews?limit=abc", headers=h)
        assert r.status_code == 422 and r.json()["field"] == "limit"
        r = c.put("/v1/stats", headers=h)
        assert r.status_code == 405


def test_size_limit_413(served):
    server, keys, _ = served   # served with --max-request-mb 1
    big = {"subject_id": "BIG", "fingers": [{"position": 1, "data": base64.b64encode(b"\0" * (2**20)).decode()}]}
    with server.client() as c:
        r = c.post("/v1/enrol", json=big, headers=auth(keys["enrol"]))
        assert r.status_code == 413 and r.json()["field"] == "body"
        # no Content-Length (chunked): counted while it is read
        r = c.post("/v1/enrol", content=iter([b"{" + b" " * 2**19] * 3), headers=dict(
            auth(keys["enrol"]), **{"content-type": "application/json"}))
        assert r.status_code == 413
        # below the limit goes through
        assert c.post("/v1/deduplicate", json=record_json("SMALL", 1), headers=auth(keys["search"])).status_code == 200
