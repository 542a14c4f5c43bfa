"""Faces in the gallery: the FAISS face index, face candidates, fusion with fingers, the enrolment gate."""

from __future__ import annotations

import numpy as np
import pytest

from dedup_util import make_record


def _face(identity: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A unit 128-d 'embedding' of an identity; ``noise`` moves it away (mates ~0.6-0.9 cosine)."""
    v = np.random.default_rng(identity).standard_normal(128)
    v /= np.linalg.norm(v)
    if noise:
        u = np.random.default_rng(10_000 + seed).standard_normal(128)
        u -= (u @ v) * v
        u /= np.linalg.norm(u)
        v = np.sqrt(1 - noise ** 2) * v + noise * u
    return v.astype(np.float32)


def _with_face(rec, face):
    from biomatch.dedup import Enrolment

    return Enrolment(rec.subject_id, rec.fingers, face=face)


@pytest.fixture
def face_gallery(tmp_path):
    from biomatch.decide import DecisionParams
    from biomatch.dedup import Gallery

    g = Gallery.create(tmp_path / "g", decision=DecisionParams(gallery_size_floor=1))
    for i in range(30):
        g.enroll(_with_face(make_record(f"s{i}", i), _face(i)), dedup=False)
    yield g
    g.close()


def test_face_adds_evidence_to_the_mate(face_gallery):
    probe = make_record("q3", 3, impression=1, positions=(1,))
    plain = face_gallery.deduplicate(probe)
    fused = face_gallery.deduplicate(_with_face(probe, _face(3, noise=0.5)))
    best = fused.best
    assert best.subject_id == "s3" and 0.8 < best.face_score < 0.9 and best.face_evidence == pytest.approx(5.0)
    assert plain.best.subject_id == "s3" and plain.best.face_score is None
    assert best.score > plain.best.score + 1.0  # one more independent term of up to 5 decades
    assert fused.work["faces_compared"] >= 1


def test_face_finds_a_person_the_fingers_miss(face_gallery):
    # fingers of someone not enrolled (a non-mated finger probe), the face of s7
    probe = _with_face(make_record("x", 500, positions=(2,)), _face(7, noise=0.4))
    rep = face_gallery.deduplicate(probe)
    assert rep.best.subject_id == "s7" and rep.best.face_evidence == pytest.approx(5.0)
    # a face (capped at 5 decades) with a non-mated finger stays below the default REVIEW
    # threshold (>= 5 decades at the 1,000-subject floor)
    assert rep.best.score < 5.0
    assert rep.work["face_only_candidates"] + rep.work["candidates"] >= 1


def test_removed_faces_never_return_and_reopen_rebuilds(face_gallery, tmp_path):
    from biomatch.dedup import Gallery

    face_gallery.remove("s7")
    probe = _with_face(make_record("x", 500, positions=(2,)), _face(7, noise=0.1))
    assert all(c.subject_id != "s7" for c in face_gallery.identify(probe, k=30))
    assert face_gallery.stats()["faces"] == 29
    path = face_gallery.path
    face_gallery.close()
    with Gallery.open(path) as g:
        assert g.stats()["faces"] == 29
        rep = g.deduplicate(_with_face(make_record("y", 501, positions=(2,)), _face(8, noise=0.3)))
        assert rep.best.subject_id == "s8" and rep.best.face_score > 0.9


def test_enrolment_gate_refuses_a_poor_face_and_writes_nothing(face_gallery):
    from biomatch.errors import FaceQualityError
    from biomatch.face import FaceTemplate
    from biomatch.face.nets import MODEL_ID
    from biomatch.face.quality import FaceQuality

    poor = FaceQuality(detector_score=0.9, face_width_px=60.0, eye_distance_px=25.0, roll_deg=20.0,
                       yaw_ratio=0.0, blur_var=500.0)
    t = FaceTemplate(_face(99), MODEL_ID, "0" * 16, "0" * 16, poor)
    rec = _with_face(make_record("s99", 99), t)
    with pytest.raises(FaceQualityError, match="eye_distance_px.*roll_deg|roll_deg.*eye_distance_px") as info:
        face_gallery.enroll(rec)
    assert {f.criterion for f in info.value.failures} >= {"eye_distance_px", "roll_deg"}
    assert "s99" not in face_gallery and face_gallery.stats()["faces"] == 30
    assert face_gallery.enroll(rec, check_face_quality=False).enrolled
    assert face_gallery.stats()["faces"] == 31


def test_bad_faces_are_refused():
    from biomatch.dedup import Enrolment
    from biomatch.errors import BiomatchError, IncompatibleTemplateError, InvalidInputError, NoFaceError
    from biomatch.face import FaceTemplate
    from biomatch.face.quality import FaceQuality

    fingers = make_record("a", 1, positions=(1,)).fingers
    with pytest.raises(InvalidInputError, match="face.*128"):
        Enrolment("a", fingers, face=np.ones(64, np.float32))
    with pytest.raises(InvalidInputError, match="face.*non-zero"):
        Enrolment("a", fingers, face=np.zeros(128, np.float32))
    with pytest.raises(InvalidInputError, match="face"):
        Enrolment("a", fingers, face=np.full(128, np.nan, np.float32))
    with pytest.raises(InvalidInputError, match="face"):
        Enrolment("a", fingers, face=42)
    q = FaceQuality(0.9, 200.0, 100.0, 0.0, 0.0, 500.0)
    with pytest.raises(IncompatibleTemplateError, match="model"):
        Enrolment("a", fingers, face=FaceTemplate(_face(1), "other-model", "0" * 16, "0" * 16, q))
    ridges = (np.indices((300, 300)).sum(axis=0) % 9 < 4).astype(np.uint8) * 200  # a ridge-like pattern
    with pytest.raises(NoFaceError):
        Enrolment("a", fingers, face=ridges)
    e = Enrolment("a", fingers, face=_face(1) * 3.0)  # normalised, not refused
    assert np.linalg.norm(e.face) == pytest.approx(1.0, abs=1e-6)
    assert isinstance(NoFaceError("x"), BiomatchError)


def test_a_face_enrolled_by_another_writer_is_caught_up(tmp_path):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path) as g:
        g.enroll_many([make_record(f"s{i}", i, positions=(1, 2)) for i in range(5)], dedup=False)  # no faces
    reader = Gallery.open(path)
    try:
        assert reader.stats()["faces"] == 0  # caught up past five face-less subjects
        with Gallery.open(path) as writer:
            writer.enroll(_with_face(make_record("s9", 9, positions=(1, 2)), _face(9)), dedup=False)
        rep = reader.deduplicate(_with_face(make_record("x", 500, positions=(3,)), _face(9, noise=0.3)))
        assert reader.stats()["faces"] == 1 and rep.best.subject_id == "s9" and rep.best.face_score > 0.9
    finally:
        reader.close()
