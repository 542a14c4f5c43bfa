"""Kept images (``biomatch serve --keep-images``): the submitted finger and face images of enrolled
subjects and of a REVIEW case's probe are kept sealed in an encrypted gallery (their bytes appear in
no file of the gallery folder), served to the examiner's page, given to the subject when "different
person" enrols the probe, and deleted with the subject.  Refused on an unencrypted gallery unless
forced.  The page test (headless Chromium) draws the images under the minutiae and the two faces
side by side (``BIOMATCH_REVIEW_SCREENSHOTS=docs`` saves its screenshots for the README)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from service_util import REVIEW_CAP_DECADES, Server, auth, make_keys

REPO = Path(__file__).resolve().parents[2]
POSITIONS = (1, 2, 3, 7)
PERSONS = 4
FACES = Path(os.environ.get("BIOMATCH_DATASETS", REPO.parent / "shared" / "datasets")) / "faces" / "photos_a" / "id01"


def _print(person: int, position: int, imp: int) -> np.ndarray:
    from biomatch.datasets.synthetic import impression, master

    return impression(master(person * 10 + position), imp).image


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _body(sid: str, person: int, imp: int, face: Path | None = None) -> dict:
    body = {"subject_id": sid, "fingers": [{"position": p, "dpi": 500, "data": base64.b64encode(
        _png(_print(person, p, imp))).decode()} for p in POSITIONS]}
    if face is not None:
        body["face"] = {"data": base64.b64encode(face.read_bytes()).decode()}
    return body


def _faces() -> tuple[Path, Path] | tuple[None, None]:
    a, b = FACES / "img1.jpg", FACES / "img2.jpg"
    return (a, b) if a.is_file() and b.is_file() else (None, None)


def _decision_params():
    """Caps that make another impression of 4 fingers (and, with faces, another photo of the face) a
    REVIEW in this small gallery: fingers alone saturate 2.2 decades each (fused ~5.6); with a face,
    fingers at 1.8 and the face at 2.5 (fused ~5.6): between REVIEW (5) and DUPLICATE (6)."""
    from biomatch.decide import DecisionParams

    if _faces()[0] is None:
        return DecisionParams(finger_evidence_max_decades=REVIEW_CAP_DECADES)
    return DecisionParams(finger_evidence_max_decades=1.8, face_evidence_max_decades=2.5)


def _files_bytes(folder: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file())


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """An encrypted gallery served with --keep-images: PERSONS people enrolled through the API with
    finger images (P-3 with a face), then a REVIEW case of another impression of P-3."""
    from biomatch.dedup import Gallery, KeyFile
    from biomatch.dedup.encryption import generate_key_file

    root = tmp_path_factory.mktemp("images")
    generate_key_file(root / "kek")
    gallery = root / "g"
    Gallery.create(gallery, key=KeyFile(root / "kek"), generated_background=True,
                   decision=_decision_params()).close()
    keys = make_keys(gallery)
    env_key = os.environ.pop("BIOMATCH_GALLERY_KEY", None)
    server = Server(gallery, "--key-file", str(root / "kek"), "--keep-images").start()
    face_a, face_b = _faces()
    sent = {}
    try:
        with server.client() as c:
            for i in range(PERSONS):
                body = _body(f"P-{i}", i, 0, face_a if i == 3 else None)
                r = c.post("/v1/enrol", json=body, headers=auth(keys["enrol"]))
                assert r.status_code == 200 and r.json()["enrolled"], r.text
                sent[f"P-{i}"] = body
            body = _body("APPLICANT-7", 3, 1, face_b)
            r = c.post("/v1/enrol", json=body, headers=auth(keys["enrol"]))
            assert r.status_code == 200 and r.json()["decision"] == "REVIEW", r.text
            sent["APPLICANT-7"] = body
            case_id = r.json()["review_case"]
        yield server, keys, gallery, sent, case_id, face_a is not None
    finally:
        server.stop()
        if env_key is not None:
            os.environ["BIOMATCH_GALLERY_KEY"] = env_key


def _decoded(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_images_sealed_served_and_shown_in_the_case(kept):
    server, keys, gallery, sent, case_id, with_faces = kept
    from biomatch.service.images import encode_finger

    with server.client() as c:
        view = c.get(f"/v1/reviews/{case_id}", headers=auth(keys["adjudicate"]))
        assert view.status_code == 200, view.text
        cand = view.json()["views"][0]
        assert cand["subject_id"] == "P-3" and len(cand["fingers"]) == len(POSITIONS)
        for f in cand["fingers"]:
            p = f["position"]
            for side, url, sid, imp in (("probe", f["probe"]["image"], "APPLICANT-7", 1),
                                        ("candidate", f["candidate"]["image"], "P-3", 0)):
                assert url, f"no {side} image of finger {p}"
                r = c.get(url, headers=auth(keys["adjudicate"]))
                assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
                assert np.array_equal(_decoded(r.content), _print(3, p, imp))  # what the extractor read
                assert c.get(url, headers=auth(keys["search"])).status_code == 403  # the adjudicate role only
                assert c.get(url).status_code == 401
        if with_faces:
            a, b = _faces()
            probe_face = c.get(cand["probe_face_image"], headers=auth(keys["adjudicate"]))
            assert probe_face.content == b.read_bytes() and probe_face.headers["content-type"] == "image/jpeg"
            assert c.get(cand["face_image"], headers=auth(keys["adjudicate"])).content == a.read_bytes()
        entries = c.get("/v1/audit/subjects/P-3", headers=auth(keys["audit"])).json()["entries"]
        assert any(e["operation"] == "subject_image" for e in entries)  # viewing an image is audited

    # Nothing of the images readable anywhere in the gallery folder (stores, WAL, service state).
    on_disk = _files_bytes(gallery)
    for sid, body in sent.items():
        for f in body["fingers"]:
            stored = encode_finger(_print(int(sid[-1]) if sid.startswith("P-") else 3, f["position"],
                                          0 if sid.startswith("P-") else 1))
            for blob in (stored, base64.b64decode(f["data"])):
                mid = len(blob) // 2
                assert blob[mid:mid + 32] not in on_disk, f"{sid} finger {f['position']} readable on disk"
        if "face" in body:
            face = base64.b64decode(body["face"]["data"])
            assert face[1000:1032] not in on_disk, f"{sid} face readable on disk"
    assert (gallery / "service" / "images.sqlite").stat().st_mode & 0o777 == 0o600


def test_images_follow_the_case_and_go_with_the_subject(kept):
    server, keys, gallery, _, case_id, _ = kept
    first = f"/v1/reviews/{case_id}/images/finger/{POSITIONS[0]}"
    with server.client() as c:
        r = c.post(f"/v1/reviews/{case_id}/outcome", json={"outcome": "different_person"},
                   headers=auth(keys["adjudicate"]))
        assert r.status_code == 200 and r.json()["enrolled"] is True, r.text
        assert c.get(first, headers=auth(keys["adjudicate"])).status_code == 404  # moved from the case ...
        subject_img = f"/v1/subjects/APPLICANT-7/images/finger/{POSITIONS[0]}"
        r = c.get(subject_img, headers=auth(keys["adjudicate"]))
        assert r.status_code == 200 and np.array_equal(_decoded(r.content), _print(3, POSITIONS[0], 1))  # ... here
        assert c.delete("/v1/subjects/APPLICANT-7", headers=auth(keys["admin"])).status_code == 200
        assert c.get(subject_img, headers=auth(keys["adjudicate"])).status_code == 404
    import sqlite3

    db = sqlite3.connect(gallery / "service" / "images.sqlite")
    try:
        owners = {row[0] for row in db.execute("SELECT DISTINCT owner FROM images")}
    finally:
        db.close()
    assert "subject:APPLICANT-7" not in owners and f"case:{case_id}" not in owners
    assert {"subject:P-0", "subject:P-3"} <= owners


def test_a_subject_removed_outside_the_service_loses_its_images(kept):
    """Gallery.remove in another process does not know of the image store: the images go when the
    subject's image is next asked for (while the service runs) or when the service next opens."""
    import sqlite3

    from biomatch.dedup import Gallery, KeyFile

    server, keys, gallery, _, _, _ = kept
    g = Gallery.open(gallery, key=KeyFile(gallery.parent / "kek"))
    try:
        g.remove("P-0")
    finally:
        g.close()
    url = f"/v1/subjects/P-0/images/finger/{POSITIONS[0]}"
    with server.client() as c:
        r = c.get(url, headers=auth(keys["adjudicate"]))
        assert r.status_code == 404 and "not enrolled" in r.text, r.text
    db = sqlite3.connect(gallery / "service" / "images.sqlite")
    try:
        assert not db.execute("SELECT COUNT(*) FROM images WHERE owner = 'subject:P-0'").fetchone()[0]
        assert db.execute("SELECT COUNT(*) FROM images WHERE owner = 'subject:P-1'").fetchone()[0]
    finally:
        db.close()


def test_images_of_absent_subjects_are_purged_when_the_service_opens(tmp_path):
    from biomatch.dedup import Gallery
    from biomatch.service import ServiceParams
    from biomatch.service.images import subject_owner
    from biomatch.service.runtime import Service

    Gallery.create(tmp_path / "g").close()
    params = ServiceParams(keep_images=True, keep_images_in_clear=True)
    svc = Service.open(tmp_path / "g", params)
    try:
        svc.images.put(subject_owner("ghost"), {("finger", 1): b"\x89PNG not really"})
        assert svc.images.kept(subject_owner("ghost"))
    finally:
        svc.close()
    svc = Service.open(tmp_path / "g", params)  # "ghost" is not enrolled: its image goes
    try:
        assert not svc.images.kept(subject_owner("ghost"))
    finally:
        svc.close()


def test_keep_images_refused_on_an_unencrypted_gallery(tmp_path):
    from biomatch.dedup import Gallery

    Gallery.create(tmp_path / "g").close()
    r = subprocess.run([sys.executable, "-m", "biomatch", "serve", str(tmp_path / "g"), "--port", "0",
                        "--keep-images"], capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k != "BIOMATCH_GALLERY_KEY"})
    assert r.returncode == 2 and "--keep-images" in r.stderr and "encrypted" in r.stderr, r.stderr
    from biomatch.errors import InvalidInputError
    from biomatch.service import ServiceParams
    from biomatch.service.runtime import Service

    with pytest.raises(InvalidInputError, match="keep_images"):
        Service.open(tmp_path / "g", ServiceParams(keep_images=True))
    svc = Service.open(tmp_path / "g", ServiceParams(keep_images=True, keep_images_in_clear=True))  # forced
    try:
        assert svc.images is not None
    finally:
        svc.close()


def _chromium() -> str | None:
    for c in (os.environ.get("BIOMATCH_CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium")):
        if c and os.access(c, os.X_OK) and Path(c).is_file():
            return c
    return None


def test_review_page_shows_the_kept_images(tmp_path_factory):
    """A fresh case (the module's was resolved above): the page draws each finger's image under its
    minutiae on both sides and the two faces; screenshots for the README."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium binary found (apt-get install chromium, or set BIOMATCH_CHROMIUM)")
    from biomatch.dedup import Gallery, KeyFile
    from biomatch.dedup.encryption import generate_key_file

    root = tmp_path_factory.mktemp("page-images")
    generate_key_file(root / "kek")
    gallery = root / "g"
    Gallery.create(gallery, key=KeyFile(root / "kek"), generated_background=True,
                   decision=_decision_params()).close()
    keys = make_keys(gallery)
    face_a, face_b = _faces()
    server = Server(gallery, "--key-file", str(root / "kek"), "--keep-images").start()
    try:
        with server.client() as c:
            for i in range(PERSONS):
                r = c.post("/v1/enrol", json=_body(f"P-{i}", i, 0, face_a if i == 3 else None),
                           headers=auth(keys["enrol"]))
                assert r.status_code == 200 and r.json()["enrolled"], r.text
            r = c.post("/v1/enrol", json=_body("APPLICANT-7", 3, 1, face_b), headers=auth(keys["enrol"]))
            assert r.status_code == 200 and r.json()["decision"] == "REVIEW", r.text
            case_id = r.json()["review_case"]
        with sync_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
            try:
                page = b.new_page(viewport={"width": 1100, "height": 760})
                errors, failed = [], []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("response", lambda resp: failed.append((resp.url, resp.status))
                        if resp.status >= 400 and not resp.url.endswith("/favicon.ico") else None)
                page.goto(server.url + "/review/")
                page.fill("#key", keys["adjudicate"])
                page.click("#connect")
                row = page.locator(f"tr[data-case='{case_id}']")
                row.wait_for()
                _shot(page, root, "review_queue.png")
                row.locator("button.open").click()
                # each row is appended once both its images are fetched: wait for the last one
                page.locator(".finger").nth(len(POSITIONS) - 1).wait_for()
                page.locator("#status", has_text="case ").wait_for()  # the page says so when all is drawn
                fingers = page.locator(".finger")
                assert fingers.count() == len(POSITIONS)
                for i in range(len(POSITIONS)):
                    for side in ("probe", "candidate"):
                        img = fingers.nth(i).locator(f"svg.{side} image.print-image")
                        assert img.count() == 1 and img.get_attribute("href").startswith("blob:")
                if face_a is not None:
                    faces = page.locator("#face img")
                    faces.nth(1).wait_for()
                    assert faces.count() == 2
                    assert page.evaluate("[...document.querySelectorAll('#face img')].every(i => i.complete && "
                                         "i.naturalWidth > 0)")
                # every image decoded by the browser (a broken blob has no size)
                sizes = page.evaluate("Promise.all([...document.querySelectorAll('svg image')].map(i => "
                                      "new Promise(r => { const im = new Image(); im.onload = () => "
                                      "r(im.naturalWidth); im.onerror = () => r(0); "
                                      "im.src = i.getAttribute('href'); })))")
                assert len(sizes) == 2 * len(POSITIONS) and all(s > 0 for s in sizes), sizes
                _shot(page, root, "review_case.png")
                assert not errors and not failed, (errors, failed)
            finally:
                b.close()
    finally:
        server.stop()


def _shot(page, folder: Path, name: str) -> None:
    out = folder / name
    page.screenshot(path=str(out), full_page=True)
    keep = os.environ.get("BIOMATCH_REVIEW_SCREENSHOTS")
    if keep:  # for the README: a small palette keeps the PNG small
        from PIL import Image

        # The face photographs come from a shared test dataset that must not be committed (not even
        # blurred): the README's copy shows a plain placeholder of the same size where the browser
        # drew them (the test checked above that it did).
        page.evaluate("""document.querySelectorAll('#face img').forEach(i => {
            const d = document.createElement('span');  // a box, not an image: the page's CSP allows no data: URL
            Object.assign(d.style, {display: 'inline-block', width: '112px', height: '112px', marginRight: '8px',
                                    background: '#c8c8c8', border: '1px solid #bbb', verticalAlign: 'middle',
                                    font: '12px sans-serif', color: '#555', textAlign: 'center', lineHeight: '16px',
                                    paddingTop: '40px', boxSizing: 'border-box'});
            d.textContent = 'face photo (not committed)';
            i.replaceWith(d);
        })""")
        page.screenshot(path=str(out), full_page=True)

        Path(keep).mkdir(parents=True, exist_ok=True)
        with Image.open(out) as im:
            im.convert("RGB").quantize(colors=96).save(Path(keep) / name, optimize=True)


def test_kept_as_sent_and_shown_as_png():
    """A finger kept as its WSQ (or JPEG 2000) file is sent to the page as PNG of the same pixels
    (as biomatch's reader decodes them); PNG and JPEG go as kept; pixels from a transaction are kept as PNG."""
    from biomatch.imaging import decode_bytes, wsq
    from biomatch.service.images import for_display, record_images

    img = _print(1, 1, 0)
    for data in (wsq.encode(img), cv2.imencode(".jp2", img)[1].tobytes()):
        shown, media = for_display("finger", data)
        assert media == "image/png" and np.array_equal(_decoded(shown), decode_bytes(data, "x", mode="grey8"))
    png = _png(img)
    assert for_display("finger", png) == (png, "image/png")
    kept = record_images({1: png, 2: img}, [1, 2, 3], None)
    assert kept[("finger", 1)] == png and np.array_equal(_decoded(kept[("finger", 2)]), img) and len(kept) == 2
