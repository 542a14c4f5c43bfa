"""The examiner's page in a real headless Chromium (Playwright driving the system's chromium).

Skipped, saying what is missing, when playwright or a chromium binary is absent (CI machines
may have neither).  ``BIOMATCH_CHROMIUM`` names the binary; ``BIOMATCH_REVIEW_SCREENSHOTS`` a
folder to save the screenshots in (the README's come from ``docs/``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from service_util import REVIEW_POSITIONS, Server, auth, make_keys, make_record, record_json, review_gallery

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def _chromium() -> str | None:
    for c in (os.environ.get("BIOMATCH_CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if c and os.access(c, os.X_OK) and Path(c).is_file():
            return c
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found (apt-get install chromium, or "
                                                         "set BIOMATCH_CHROMIUM)")


@pytest.fixture
def page_server(tmp_path):
    gallery = review_gallery(tmp_path / "g")
    keys = make_keys(gallery)
    server = Server(gallery).start()
    try:
        yield server, keys, gallery
    finally:
        server.stop()


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def _shot(page, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    page.screenshot(path=str(out), full_page=True)
    keep = os.environ.get("BIOMATCH_REVIEW_SCREENSHOTS")
    if keep:  # for the README: a 64-colour palette keeps the PNG small
        from PIL import Image

        Path(keep).mkdir(parents=True, exist_ok=True)
        with Image.open(out) as im:
            im.convert("RGB").quantize(colors=64).save(Path(keep) / name, optimize=True)
    return out


def test_examiner_resolves_a_case_in_the_browser(page_server, browser, tmp_path):
    server, keys, gallery = page_server
    with server.client() as c:
        r = c.post("/v1/enrol", json=record_json("APPLICANT-7", 4, impression=1, positions=REVIEW_POSITIONS),
                   headers=auth(keys["enrol"]))
        assert r.status_code == 200 and r.json()["decision"] == "REVIEW", r.text
        case_id = r.json()["review_case"]
        finger_scores = r.json()["candidates"][0]["finger_scores"]
        fused = r.json()["candidates"][0]["score"]
    probe = make_record("x", 4, impression=1, positions=REVIEW_POSITIONS)
    enrolled = make_record("x", 4, impression=0, positions=REVIEW_POSITIONS)

    page = browser.new_page(viewport={"width": 1100, "height": 760})
    urls, errors = [], []
    page.on("request", lambda req: urls.append(req.url))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    failed = []
    page.on("response", lambda resp: failed.append((resp.url.replace(server.url, ""), resp.status))
            if resp.status >= 400 and not resp.url.endswith("/favicon.ico") else None)
    page.goto(server.url + "/review/")

    # a key without the role is refused by the page, and nothing is shown
    page.fill("#key", keys["search"])
    page.click("#connect")
    page.locator("#status", has_text="no adjudicate role").wait_for()  # (the page's CSP forbids eval)
    assert page.is_hidden("#queue")

    page.fill("#key", keys["adjudicate"])
    page.click("#connect")
    row = page.locator(f"tr[data-case='{case_id}']")
    row.wait_for()
    assert page.input_value("#key") == ""                       # not left in the form
    assert row.locator("td").nth(1).inner_text() == "APPLICANT-7"
    assert row.locator("td").nth(2).inner_text() == "P-4"
    assert row.locator("td").nth(3).inner_text() == f"{fused:.2f}"
    _shot(page, tmp_path, "review_queue.png")

    row.locator("button.open").click()
    page.locator(".finger").first.wait_for()
    fingers = page.locator(".finger")
    assert fingers.count() == len(REVIEW_POSITIONS)
    for i, p in enumerate(REVIEW_POSITIONS):
        f = fingers.nth(i)
        assert f.get_attribute("data-position") == str(p)
        # every minutia drawn on both sides, the matcher's pairs numbered alike on both
        assert f.locator("svg.probe g.minutia").count() == len(probe.fingers[p])
        assert f.locator("svg.candidate g.minutia").count() == len(enrolled.fingers[p])
        n_pairs = f.locator("svg.probe g.minutia.paired").count()
        assert n_pairs >= 6 and f.locator("svg.candidate g.minutia.paired").count() == n_pairs
        assert f.locator(".npairs").inner_text() == f"{n_pairs} paired"
        labels = sorted(int(t) for t in f.locator("svg.probe g.minutia.paired text").all_text_contents())
        assert labels == list(range(1, n_pairs + 1))
        assert sorted(int(t) for t in f.locator("svg.candidate g.minutia.paired text").all_text_contents()) == labels
        assert f.locator(".score").inner_text() == f"{finger_scores[str(p)]:.3f}"
    assert f"{fused:.2f}" in page.inner_text("#candidate-score")
    _shot(page, tmp_path, "review_case.png")

    page.click("#different")
    page.locator("#outcome", has_text="is enrolled").wait_for()
    assert page.is_disabled("#different") and page.is_disabled("#same")
    assert not errors, errors
    assert failed == [("/v1/reviews?status=open&limit=200", 403)], failed   # only the search key's refusal
    assert not any(keys["adjudicate"] in u or keys["adjudicate"].split("_")[2] in u for u in urls), urls
    page.close()

    with httpx.Client(base_url=server.url, timeout=60) as c:
        resolved = c.get("/v1/reviews?status=resolved", headers=auth(keys["adjudicate"])).json()["cases"]
        case = next(x for x in resolved if x["case_id"] == case_id)
        assert case["outcome"] == "different_person" and case["enrolled"] is True
        assert c.get("/v1/reviews", headers=auth(keys["adjudicate"])).json()["cases"] == []
        assert c.get("/v1/subjects/APPLICANT-7", headers=auth(keys["search"])).json()["positions"] == \
            list(REVIEW_POSITIONS)
        entries = c.get("/v1/audit/subjects/APPLICANT-7", headers=auth(keys["audit"])).json()["entries"]
        assert c.get("/v1/audit/verify", headers=auth(keys["audit"])).json()["ok"]
    ops = [(e["operation"], e["decision"], e.get("enrolled")) for e in entries]
    assert ("review_outcome", "different_person", True) in ops and ("review_case", None, None) in ops
    assert all(e["key_id"] == keys["adjudicate"].split("_")[1] for e in entries if e["operation"].startswith("review_"))
