"""The re-ranking cascade (DecisionParams.rerank_*): fewer comparisons, the same answers."""

from __future__ import annotations

import dataclasses

import pytest

from dedup_util import make_record


@pytest.fixture(scope="module")
def small_gallery(tmp_path_factory):
    from biomatch.decide import DecisionParams
    from biomatch.dedup import Gallery

    # gallery_size_floor 1: thresholds of a 60-person gallery, so impostors could reach REVIEW
    g = Gallery.create(tmp_path_factory.mktemp("casc") / "g", retrieval="faiss",
                       decision=DecisionParams(gallery_size_floor=1))
    g.enroll_many([make_record(f"s{i}", i) for i in range(60)], dedup=False)
    yield g
    g.close()


def _runs(g, probes, **changes):
    base = g.decision_params
    g.decision_params = dataclasses.replace(base, **changes)
    try:
        return [g.deduplicate(p) for p in probes]
    finally:
        g.decision_params = base


def test_cascade_gives_the_full_answer_with_fewer_comparisons(small_gallery):
    probes = [make_record(f"q{i}", i, impression=1) for i in range(0, 60, 6)]
    probes += [make_record(f"n{i}", 1000 + i) for i in range(10)]
    full = _runs(small_gallery, probes, rerank_full_persons=10**6)
    casc = _runs(small_gallery, probes, rerank_full_persons=2, rerank_screen_fingers=2)
    for f, c, p in zip(full, casc, probes):
        assert c.decision == f.decision, p.subject_id
        if p.subject_id.startswith("q"):
            assert c.decision == "DUPLICATE" and c.best.subject_id == f.best.subject_id == "s" + p.subject_id[1:]
            assert c.best.score == pytest.approx(f.best.score)  # the mate escalated or was in the head
    assert sum(c.work["fingers_matched"] for c in casc) < 0.6 * sum(f.work["fingers_matched"] for f in full)
    assert all(f.work["escalated"] == 0 for f in full)


def test_screened_mate_escalates_to_all_fingers(small_gallery):
    probe = make_record("q7", 7, impression=1)
    rep = _runs(small_gallery, [probe], rerank_full_persons=0, rerank_screen_fingers=1)[0]
    assert rep.best.subject_id == "s7" and rep.decision == "DUPLICATE"
    assert len(rep.best.finger_scores) == 10 and rep.work["escalated"] >= 1


def test_no_escalation_keeps_screened_scores_partial(small_gallery):
    probe = make_record("q7", 7, impression=1)
    rep = _runs(small_gallery, [probe], rerank_full_persons=0, rerank_screen_fingers=3,
                rerank_escalate_decades=1e5)[0]
    assert rep.best.subject_id == "s7" and len(rep.best.finger_scores) == 3
    assert rep.work["escalated"] == 0 and rep.work["fingers_matched"] <= 3 * rep.work["candidates"]


@pytest.mark.parametrize("field, value", [("rerank_full_persons", -1), ("rerank_screen_fingers", 0),
                                          ("rerank_screen_fingers", 1.5), ("rerank_escalate_decades", -1.0),
                                          ("rerank_escalate_decades", float("nan")), ("rerank_full_persons", True)])
def test_bad_cascade_params(field, value):
    from biomatch.decide import DecisionParams
    from biomatch.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=field):
        DecisionParams(**{field: value})


def test_threads_prepare_candidates_in_parallel_same_answers(tmp_path):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path) as g:
        g.enroll_many([make_record(f"s{i}", i) for i in range(25)], dedup=False)
    probes = [make_record("q3", 3, impression=1), make_record("n", 900)]
    answers = []
    for threads in (1, 2):
        with Gallery.open(path, n_threads=threads, cache_bytes=0) as g:  # cold: every candidate prepared
            answers.append([[(c.subject_id, c.score, c.finger_scores) for c in g.deduplicate(p).candidates]
                            for p in probes])
    assert answers[0] == answers[1] and answers[0][0][0][0] == "s3"
