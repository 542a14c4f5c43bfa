"""Gallery behaviour: enrol, deduplicate, identify, verify, remove, stats; typed errors; files."""

from __future__ import annotations

import json
import pickle
import stat

import numpy as np
import pytest

from dedup_util import make_record


def _errors():
    from biomatch.dedup import errors

    return errors


def test_enrol_then_duplicate_and_unique(gallery):
    for i in range(20):
        r = gallery.enroll(make_record(f"s{i}", i, metadata={"site": "A"}))
        assert r.enrolled and r.decision == "UNIQUE"
    dup = gallery.deduplicate(make_record("new", 4, 1))
    assert dup.decision == "DUPLICATE" and not dup.enrolled
    best = dup.candidates[0]
    assert best.subject_id == "s4" and set(best.finger_scores) == set(range(1, 11))
    assert best.score >= dup.thresholds["duplicate_score"]
    assert {"duplicate_fpir", "review_fpir", "gallery_size"} <= set(dup.thresholds)
    assert [c.score for c in dup.candidates] == sorted((c.score for c in dup.candidates), reverse=True)
    assert gallery.deduplicate(make_record("new", 999, 1)).decision == "UNIQUE"
    r = gallery.enroll(make_record("again", 4, 2))
    assert r.decision == "DUPLICATE" and not r.enrolled and "again" not in gallery
    json.dumps(dup.to_dict())


def test_missing_fingers_still_match(gallery):
    gallery.enroll(make_record("a", 1, 0, positions=(1, 2, 3, 4)))
    gallery.enroll(make_record("b", 2))
    r = gallery.deduplicate(make_record("x", 1, 1, positions=(2, 3, 9)))
    assert r.candidates[0].subject_id == "a" and set(r.candidates[0].finger_scores) == {2, 3}


def test_identify_verify_remove_stats(gallery):
    gallery.enroll_many([make_record(f"s{i}", i) for i in range(6)])
    probe = make_record("p", 3, 1).fingers
    assert gallery.identify(probe, k=2)[0].subject_id == "s3"
    assert gallery.verify("s3", probe).match and not gallery.verify("s2", probe).match
    st = gallery.stats()
    assert st["subjects"] == 6 and st["fingers"] == 60 and st["fingers_per_position"][10] == 6
    gallery.remove("s3")
    assert "s3" not in gallery and gallery.identify(probe, k=1)[0].subject_id != "s3"
    with pytest.raises(_errors().UnknownSubjectError):
        gallery.remove("s3")
    with pytest.raises(_errors().UnknownSubjectError):
        gallery.verify("nobody", probe)


def test_batch_progress_and_errors(gallery):
    seen = []
    recs = [make_record("a", 1), make_record("b", 2), make_record("a", 3)]
    out = gallery.enroll_many(recs, progress=lambda done, total, res: seen.append((done, total)), stop_on_error=False)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert out[0].enrolled and out[1].enrolled and isinstance(out[2], _errors().DuplicateSubjectError)
    reps = gallery.deduplicate_many([make_record("q", 2, 1), make_record("r", 50, 1)])
    assert [r.decision for r in reps] == ["DUPLICATE", "UNIQUE"]


def test_duplicate_id_and_unusable_fingers_leave_gallery_untouched(gallery):
    from biomatch.dedup import Enrolment
    from biomatch.template import Template

    gallery.enroll(make_record("a", 1))
    with pytest.raises(_errors().DuplicateSubjectError):
        gallery.enroll(make_record("a", 2), dedup=False)
    with pytest.raises(_errors().NoUsableFingerError):
        gallery.enroll(Enrolment("e", {1: Template.empty(), 2: Template.empty()}))
    assert gallery.stats()["subjects"] == 1 and "e" not in gallery


def test_mismatched_template_generation(gallery):
    from biomatch.dedup import Enrolment
    from biomatch.errors import IncompatibleTemplateError
    from biomatch.template import Template

    gallery.enroll(make_record("a", 1))
    t = make_record("x", 2).fingers[1]
    other = Template(t.minutiae, t.width, t.height, t.quality, "0123456789abcdef")
    with pytest.raises(IncompatibleTemplateError):
        gallery.enroll(Enrolment("b", {1: other}))
    with pytest.raises(IncompatibleTemplateError):
        gallery.deduplicate(Enrolment("b", {1: other, 2: t}))
    assert gallery.stats()["subjects"] == 1


def _as_extracted(rec, params_hash="763063c72d9e6916"):
    """The record's templates relabelled as the real extractor's (a real print's stand-in)."""
    from biomatch.dedup import Enrolment
    from biomatch.template import Template

    return Enrolment(rec.subject_id, {p: Template(t.minutiae, t.width, t.height, t.quality, params_hash)
                                      for p, t in rec.fingers.items()})


def test_a_generated_background_holds_real_prints_only_when_declared(tmp_path):
    from biomatch.dedup import Gallery
    from biomatch.errors import IncompatibleTemplateError, InvalidInputError

    with Gallery.create(tmp_path / "bg", generated_background=True) as g:
        g.bulk_enroll([make_record(f"gen{i}", i) for i in range(20)])  # generated people first
        assert g._manifest.get("template_params_hash") is None  # the background fixes no generation
        real = _as_extracted(make_record("real0", 500))
        assert g.enroll(real).decision == "UNIQUE"
        assert g._manifest["template_params_hash"] == "763063c72d9e6916"  # the first real one does
        # Real searches find real mates and generated ones, generated searches both too.
        assert g.deduplicate(_as_extracted(make_record("again", 500, 1))).candidates[0].subject_id == "real0"
        assert g.deduplicate(make_record("gen-again", 3, 1)).candidates[0].subject_id == "gen3"
        g.enroll(make_record("gen-late", 900))
        with pytest.raises(IncompatibleTemplateError):  # another real generation is still refused
            g.enroll(_as_extracted(make_record("other", 501), "0123456789abcdef"))
        with pytest.raises(IncompatibleTemplateError):  # and so is one record mixing the two
            mixed = _as_extracted(make_record("mixed", 502))
            mixed.fingers[1] = make_record("x", 502).fingers[1]
            g.enroll(mixed)
    with Gallery.open(tmp_path / "bg", read_only=True) as g:  # the declaration is in the manifest
        assert g.stats()["subjects"] == 22 and g.check() == []
    with Gallery.create(tmp_path / "plain") as g:  # undeclared: generated and real never mix
        g.bulk_enroll([make_record(f"gen{i}", i) for i in range(3)])
        with pytest.raises(IncompatibleTemplateError):
            g.enroll(_as_extracted(make_record("real0", 500)))
    with pytest.raises(InvalidInputError):
        Gallery.create(tmp_path / "bad", generated_background="yes")


def test_bad_records():
    from biomatch.dedup import Enrolment
    from biomatch.errors import FaceImageError, InvalidInputError

    t = make_record("a", 1).fingers[1]
    for kwargs in (dict(subject_id="", fingers={1: t}), dict(subject_id=3, fingers={1: t}),
                   dict(subject_id="a", fingers={11: t}), dict(subject_id="a", fingers={0: t}),
                   dict(subject_id="a", fingers={True: t}), dict(subject_id="a", fingers={}),
                   dict(subject_id="a", fingers={1: 42}), dict(subject_id="a", fingers=[t]),
                   dict(subject_id="a", fingers={1: t}, dpi=50), dict(subject_id="a", fingers={1: t}, metadata=[1]),
                   dict(subject_id="a", fingers={1: t}, metadata={"x": object()}),
                   dict(subject_id="a", fingers={1: t}, face=np.zeros(10, np.uint8))):
        with pytest.raises(InvalidInputError):
            Enrolment(**kwargs)
    with pytest.raises(FaceImageError, match="face|image"):  # a 10x10 image: too small for a face
        Enrolment("a", {1: t}, face=np.zeros((10, 10), np.uint8))
    assert "minutiae" not in repr(Enrolment("a", {1: t}))


def test_open_refuses_what_is_not_a_gallery(tmp_path):
    from biomatch.dedup import Gallery

    e = _errors()
    with pytest.raises(e.NotAGalleryError):
        Gallery.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("hello")
    with pytest.raises(e.NotAGalleryError):
        Gallery.open(tmp_path / "plain")
    with pytest.raises(e.GalleryExistsError):
        Gallery.create(tmp_path / "plain")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(e.NotAGalleryError):
        Gallery.open(tmp_path / "bad")


def test_version_and_parameter_mismatch(tmp_path):
    from biomatch.dedup import Gallery
    from biomatch.params import MatchParams

    e = _errors()
    path = tmp_path / "g"
    Gallery.create(path).close()
    with pytest.raises(e.IncompatibleGalleryError):
        Gallery.open(path, match_params=MatchParams(radius_px=60.0))
    m = json.loads((path / "manifest.json").read_text())
    m["version"] = 99
    from biomatch._io import canonical_checksum

    m["checksum"] = canonical_checksum(m)  # as another version would write it
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(e.IncompatibleGalleryError):
        Gallery.open(path)


def test_full_disk_rolls_back(gallery):
    gallery.enroll(make_record("a", 1))
    store = gallery._shards[0]._store
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count={pages}")  # the next write finds the disk full
    with pytest.raises(_errors().StorageError):
        gallery.enroll(make_record("b", 2), dedup=False)
    store._conn.execute("PRAGMA max_page_count=1073741823")
    assert "b" not in gallery and gallery.stats()["subjects"] == 1
    assert gallery.enroll(make_record("b", 2)).enrolled  # and it still works afterwards


def test_read_only_open(tmp_path):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path) as g:
        g.enroll(make_record("a", 1))
    with Gallery.open(path, read_only=True) as g:
        assert g.deduplicate(make_record("x", 1, 1)).decision == "DUPLICATE"
        with pytest.raises(_errors().StorageError):
            g.enroll(make_record("b", 2))
        with pytest.raises(_errors().StorageError):
            g.remove("a")


def test_files_are_private_and_closed_gallery_refuses(tmp_path):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    g = Gallery.create(path)
    g.enroll(make_record("a", 1))
    g.close()
    g.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for f in path.rglob("*"):
        want = 0o700 if f.is_dir() else 0o600
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, (f, oct(f.stat().st_mode), oct(want))
    with pytest.raises(_errors().GalleryClosedError):
        g.deduplicate(make_record("x", 1, 1))


def test_shards_route_and_pickle(tmp_path):
    from biomatch.dedup import Gallery, Shard

    with Gallery.create(tmp_path / "g", n_shards=3) as g:
        g.enroll_many([make_record(f"s{i}", i, positions=(1, 6)) for i in range(12)])
        assert sorted(s.count_subjects() for s in g._shards) != [0, 0, 12]
        assert g.deduplicate(make_record("x", 5, 1, positions=(1, 6))).candidates[0].subject_id == "s5"
        shard = g._shards[0]
        clone = pickle.loads(pickle.dumps(shard))
        try:
            assert clone.count_subjects() == shard.count_subjects()
        finally:
            clone.close()
    with Gallery.open(tmp_path / "g") as g:
        assert g.stats()["subjects"] == 12 and g.stats()["shards"] == 3


def test_enrolment_refuses_a_finger_below_the_minimum_quality(tmp_path):
    import dataclasses

    from biomatch.decide import DecisionParams
    from biomatch.dedup import Gallery
    from biomatch.errors import FingerQualityError, InvalidInputError

    with pytest.raises(InvalidInputError, match="enrol_min_quality"):
        DecisionParams(enrol_min_quality=101)
    rec = make_record("q1", 1, positions=(1, 2, 3))
    poor = dataclasses.replace(rec.fingers[2], quality=20)
    low = type(rec)("q1", {1: rec.fingers[1], 2: poor, 3: rec.fingers[3]})
    with Gallery.create(tmp_path / "g", decision=DecisionParams(enrol_min_quality=40)) as g:
        with pytest.raises(FingerQualityError, match=r"\[2\] \(right index\): print quality 20 is below .* 40") as e:
            g.enroll(low)
        assert (e.value.position, e.value.quality, e.value.minimum) == (2, 20, 40)
        assert "q1" not in g and g.stats()["subjects"] == 0
        with pytest.raises(FingerQualityError):
            g.bulk_enroll([low])
        assert g.deduplicate(low).decision == "UNIQUE"  # searches are never refused for quality
        assert g.enroll(rec).enrolled
