"""ANSI/NIST-ITL transactions through the service: a Type-3 finger record enrolled and found again;
a slap-only record (Type-4) segmented into its fingers and enrolled; a generated ten-print card with
swapped rolled fingers refused by the sequence check, a correct one enrolled; damaged records refused
naming the field.  Uses the NIST samples of ../shared/datasets (skipped without them, failing under
CI=true) and generated cards."""

from __future__ import annotations

import base64

import pytest
from service_util import Server, auth, make_keys

from _util import need_dataset


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from biomatch.dedup import Gallery

    gallery = tmp_path_factory.mktemp("svc-an2k") / "g"
    Gallery.create(gallery).close()
    keys = make_keys(gallery)
    s = Server(gallery).start()
    try:
        yield s, keys
    finally:
        s.stop()


def _tx(name: str) -> str:
    return base64.b64encode((need_dataset("samples/nist_libbiomeval") / name).read_bytes()).decode()


def test_type3_transaction_enrolled_then_found(server):
    s, keys = server
    with s.client() as c:
        r = c.post("/v1/enrol", json={"subject_id": "T3-1", "transaction": _tx("type3.an2k")},
                   headers=auth(keys["enrol"]))
        assert r.status_code == 200, r.text
        assert r.json()["enrolled"] and r.json()["positions_used"] == [2]
        r = c.post("/v1/deduplicate", json={"subject_id": "T3-again", "transaction": _tx("type3.an2k")},
                   headers=auth(keys["search"]))
        assert r.status_code == 200, r.text
        assert r.json()["decision"] == "DUPLICATE" and r.json()["candidates"][0]["subject_id"] == "T3-1"
        # multipart: the same record as a file part
        r = c.post("/v1/deduplicate", data={"subject_id": "T3-mp"},
                   files={"transaction": ("t.an2k", base64.b64decode(_tx("type3.an2k")), "application/octet-stream")},
                   headers=auth(keys["search"]))
        assert r.status_code == 200 and r.json()["candidates"][0]["subject_id"] == "T3-1", r.text


def test_slap_only_transaction_is_segmented_and_enrolled(server):
    s, keys = server
    with s.client() as c:
        r = c.post("/v1/enrol", json={"subject_id": "slaps", "transaction": _tx("type4-slaps.an2k")},
                   headers=auth(keys["enrol"]))
        assert r.status_code == 200, r.text
        # the four fingers of each hand from its slap (the sample's thumbs are separate plain records)
        assert {2, 3, 4, 5, 7, 8, 9, 10} <= set(r.json()["positions_used"]), r.text
        r = c.post("/v1/deduplicate", json={"subject_id": "slaps-again", "transaction": _tx("type4-slaps.an2k")},
                   headers=auth(keys["search"]))
        assert r.status_code == 200 and r.json()["decision"] == "DUPLICATE", r.text
        assert r.json()["candidates"][0]["subject_id"] == "slaps"


def _card(tmp_path, swap_rate: float) -> str:
    from biomatch.datasets.tenprint import write_cards

    out = write_cards(tmp_path / f"cards{swap_rate}", 1, 7, swap_rate=swap_rate, hand_swap_rate=0.0,
                      missing_rate=0.0)
    return base64.b64encode((out / "card_0001" / "card.an2k").read_bytes()).decode()


def test_generated_card_swapped_fingers_refused_correct_card_enrolled(server, tmp_path):
    s, keys = server
    with s.client() as c:
        r = c.post("/v1/enrol", json={"subject_id": "card-swapped", "transaction": _card(tmp_path, 1.0)},
                   headers=auth(keys["enrol"]))
        assert r.status_code == 400 and r.json()["field"] == "transaction", r.text
        assert r.json()["error"] == "SequenceCheckError" and "swapped" in r.json()["detail"], r.text
        r = c.get("/v1/subjects/card-swapped", headers=auth(keys["all"]))
        assert r.status_code == 404, r.text                  # nothing enrolled
        r = c.post("/v1/enrol", json={"subject_id": "card-ok", "transaction": _card(tmp_path, 0.0)},
                   headers=auth(keys["enrol"]))
        assert r.status_code == 200 and r.json()["enrolled"], r.text
        assert r.json()["positions_used"] == list(range(1, 11)), r.text
        assert c.get("/v1/subjects/card-ok", headers=auth(keys["all"])).status_code == 200


def test_damaged_transactions_are_refused_naming_the_field(server):
    s, keys = server
    with s.client() as c:
        raw = bytearray(base64.b64decode(_tx("type3.an2k")))
        cut = base64.b64encode(bytes(raw[: len(raw) // 2])).decode()  # truncated mid-record
        r = c.post("/v1/deduplicate", json={"subject_id": "cut", "transaction": cut}, headers=auth(keys["search"]))
        assert r.status_code == 400 and r.json()["field"].startswith("transaction"), r.text
        assert r.json()["error"] and "Traceback" not in r.text
