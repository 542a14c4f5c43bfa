"""Bulk loading (no dedup) and bounded memory: templates prepared on demand behind an LRU cache."""

from __future__ import annotations

import pytest

from dedup_util import make_record


def test_bulk_enroll_is_searchable_and_survives_reopen(tmp_path):
    from biomatch.dedup import Gallery
    from biomatch.errors import InvalidInputError

    path = tmp_path / "g"
    seen = []
    with Gallery.create(path) as g:
        with pytest.raises(InvalidInputError):
            g.bulk_enroll([make_record("x", 0)], dedup=True)
        n = g.bulk_enroll((make_record(f"s{i}", i) for i in range(25)), batch_size=10,
                          progress=lambda done, total: seen.append(done))
        assert n == 25 and seen == [10, 20, 25]
        assert g.stats()["subjects"] == 25 and g.stats()["fingers"] == 250
        rep = g.deduplicate(make_record("q", 7, 1))
        assert rep.decision == "DUPLICATE" and rep.candidates[0].subject_id == "s7"
        # bulk loading skips dedup: a second record of person 7 goes in silently
        g.bulk_enroll([make_record("s7-again", 7, 1)])
        assert "s7-again" in g
    with Gallery.open(path) as g:
        assert g.stats()["subjects"] == 26
        assert g.enroll(make_record("new", 9, 1)).decision == "DUPLICATE"
        assert g.identify(make_record("q", 12, 1).fingers, k=1)[0].subject_id == "s12"


def test_bulk_enroll_duplicate_id_fails_its_batch_only(tmp_path):
    from biomatch.dedup import DuplicateSubjectError, Gallery

    with Gallery.create(tmp_path / "g") as g:
        g.bulk_enroll([make_record(f"s{i}", i) for i in range(4)], batch_size=2)
        with pytest.raises(DuplicateSubjectError):
            g.bulk_enroll([make_record("t0", 10), make_record("s1", 11)], batch_size=2)
        assert "t0" not in g and g.stats()["subjects"] == 4
        assert g.check() == []


@pytest.mark.parametrize("retrieval", ["faiss", "exhaustive"])
def test_prepared_cache_is_bounded_and_results_unchanged(tmp_path, retrieval):
    from biomatch.dedup import Gallery

    recs = [make_record(f"s{i}", i) for i in range(12)]
    with Gallery.create(tmp_path / "big", retrieval=retrieval) as big, \
            Gallery.create(tmp_path / "small", retrieval=retrieval, cache_bytes=200_000) as small:
        for g in (big, small):
            g.enroll_many(recs, dedup=False)
        for person in (3, 8):
            probe = make_record("q", person, 1)
            a, b = big.deduplicate(probe), small.deduplicate(probe)
            assert a.candidates[0].subject_id == b.candidates[0].subject_id == f"s{person}"
            assert [c.score for c in a.candidates] == pytest.approx([c.score for c in b.candidates])
            assert small.verify(f"s{person}", probe.fingers).match
        st = small.stats()
        assert st["memory_bytes"] < 1_000_000  # codes + maps + a cache of at most 200 kB
        assert small._shards[0].stats().cache_bytes <= 200_000
        assert big.stats()["subjects"] == small.stats()["subjects"] == 12
    with Gallery.open(tmp_path / "small", cache_bytes=0) as g:  # no cache at all still works
        assert g.deduplicate(make_record("q", 5, 1)).candidates[0].subject_id == "s5"
        g.remove("s5")
        assert g.identify(make_record("q", 5, 1).fingers, k=1)[0].subject_id != "s5"
