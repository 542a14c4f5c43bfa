"""Two-phase search: S shards give exactly the answer of one shard holding the same data.

The code stage is narrowed (a few persons, a few rows per position) so that the gallery-wide
row and person cuts, and their ties, decide who is re-ranked; twins (the same templates under
two ids) make exact ties.
"""

from __future__ import annotations

import numpy as np
import pytest

from dedup_util import make_record


def face(person: int) -> np.ndarray:
    v = np.random.default_rng(person).standard_normal(128).astype(np.float32)
    return v / np.linalg.norm(v)


def face_record(subject_id, person, impression=0, positions=range(1, 11)):
    from biomatch.dedup import Enrolment

    base = make_record(subject_id, person, impression, positions)
    return Enrolment(subject_id, base.fingers, face=face(person) + 0.3 * impression * face(10_000 + person))


def registry() -> list:
    recs = [face_record(f"s{i}", i) if i % 3 == 0 else make_record(f"s{i}", i) for i in range(120)]
    # twins: identical templates under other ids, so code distances and scores tie exactly
    recs += [make_record(f"twin{i}", i) for i in (4, 5, 7, 11)]
    return recs


def probes() -> list:
    return ([make_record(f"m{i}", i, 1) for i in (0, 4, 5, 17, 60)] + [face_record(f"f{i}", i, 1) for i in (3, 9)]
            + [make_record("partial", 7, 2, positions=(2, 3)), face_record("faceonly", 30, 1, positions=(1,))]
            + [make_record(f"n{i}", 900 + i) for i in range(3)] + [face_record("nf", 950)])


def narrow(g, **kw) -> None:
    """A code stage that keeps few persons, so that the cuts matter at this size."""
    from biomatch.retrieval.faiss_retrieval import FaissRetrievalParams

    params = FaissRetrievalParams(**kw)
    for s in g._shards:
        s._retrieval.params = params


def same_report(a, b) -> None:
    assert a.decision == b.decision
    assert a.candidates == b.candidates  # ids, fused scores, finger scores, evidence, faces
    assert a.thresholds == b.thresholds
    assert a.gallery_size == b.gallery_size
    assert a.work == b.work  # the same persons re-ranked, the same fingers matched


@pytest.fixture(scope="module")
def galleries(tmp_path_factory):
    from biomatch.dedup import Gallery

    root = tmp_path_factory.mktemp("scatter")
    recs = registry()
    out = {}
    for name, shards in (("one", 1), ("three", 3)):
        with Gallery.create(root / name, n_shards=shards) as g:
            g.bulk_enroll(recs, batch_size=50)
        out[name] = root / name
    with Gallery.create(root / "grown", n_shards=2) as g:  # half before add_shard, half after
        g.bulk_enroll(recs[:60])
        g.add_shard()
        g.bulk_enroll(recs[60:])
    out["grown"] = root / "grown"
    return out


@pytest.mark.parametrize("code_stage", [{}, {"min_persons": 3, "max_persons": 3},
                                        {"min_persons": 6, "max_persons": 6}])
def test_shards_give_the_one_shard_answer(galleries, code_stage):
    from biomatch.dedup import Gallery

    opened = {k: Gallery.open(p, read_only=True) for k, p in galleries.items()}
    one = opened.pop("one")
    try:
        for g in (one, *opened.values()):
            narrow(g, **code_stage)
        for p in probes():
            ref = one.deduplicate(p)
            for name, g in opened.items():
                same_report(g.deduplicate(p), ref)
                assert g.identify(p, k=4) == one.identify(p, k=4), name
    finally:
        one.close()
        for g in opened.values():
            g.close()


def test_rerank_work_does_not_grow_with_shards(galleries):
    """The global top persons are re-ranked once, by the shard holding each (not k per shard)."""
    from biomatch.dedup import Gallery

    with Gallery.open(galleries["one"], read_only=True) as one, \
            Gallery.open(galleries["three"], read_only=True) as three:
        narrow(one, min_persons=5, max_persons=5)
        narrow(three, min_persons=5, max_persons=5)
        r1, r3 = one.deduplicate(probes()[0]), three.deduplicate(probes()[0])
        assert r1.work["candidates"] == r3.work["candidates"] == 5  # k persons, ties ordered by subject id
        assert r1.decision == "DUPLICATE" and r1.candidates == r3.candidates


def test_cuts_are_partition_free():
    from biomatch.dedup.scatter import before_cut, best_with_ties, nth_best, nth_person
    assert nth_best([[9.0, 5.0], [7.0, 5.0]], 3) == 5.0
    assert nth_best([[9.0]], 2) == float("-inf") and nth_best([[9.0]], 0) == float("inf")
    assert sorted(best_with_ties(np.array([1.0, 3.0, 2.0, 2.0]), 2)) == [1, 2, 3]
    # persons tied on their code score are ordered by subject id, whichever shard holds them
    cut = nth_person([[(9.0, "b"), (5.0, "z")], [(7.0, "c"), (5.0, "a")]], 3)
    assert cut == (5.0, "a")
    assert before_cut(np.array([9.0, 5.0]), ["b", "z"], cut).tolist() == [True, False]
    assert before_cut(np.array([7.0, 5.0]), ["c", "a"], cut).tolist() == [True, True]
    assert nth_person([[(1.0, "a")]], 2) == (float("-inf"), "") and nth_person([], 0) == (float("inf"), "")


@pytest.mark.parametrize("scored, rescans", [(80, True), (50, False), (300, True)])
def test_a_stale_hint_makes_the_router_scan_again(scored, rescans):
    # A router that believed the gallery empty hints 0 rows: the shard keeps k for that (50
    # persons); the gallery holds 20,000, so the search needs 100.  Any shard that scored more
    # persons than it kept must be scanned again with the true counts (80 scored: persons 51-80
    # could belong to the top 100), one that kept all it scored need not.
    from biomatch.decide import DecisionParams
    from biomatch.dedup.protocol import Persons, PersonsReply, Scan, ScanReply
    from biomatch.dedup.search import _code_stage
    from biomatch.retrieval.faiss_retrieval import FaissRetrievalParams

    params = FaissRetrievalParams()
    calls = []

    def fan(msg):
        calls.append(msg)
        if isinstance(msg, Scan):
            kept = params.k_persons(max(msg.counts_hint.values(), default=0))
            return [ScanReply(two_phase=True, fetched=kept, scored=scored, counts=dict.fromkeys(range(1, 11), 20_000),
                              valid=list(range(1, 11)), params=params)]
        return [PersonsReply([(1.0, "a")])]

    _code_stage(fan, "q", {}, DecisionParams(), {}, 10, None, 0)
    kinds = [type(c).__name__ for c in calls]
    assert kinds == (["Scan", "Scan", "Persons"] if rescans else ["Scan", "Persons"])
    if rescans:
        assert calls[1].counts_hint == dict.fromkeys(range(1, 11), 20_000)
    assert isinstance(calls[-1], Persons) and calls[-1].n_keep == 100
