"""Pipelined enrolment: windows searched in parallel, committed in order, never a duplicate admitted."""

from __future__ import annotations

import threading

import pytest
from dedup_util import make_record

from biomatch.dedup import DedupReport, Gallery
from biomatch.errors import DuplicateSubjectError, InvalidInputError, NoUsableFingerError


def _seeded(path, n=8):
    g = Gallery.create(path)
    g.bulk_enroll([make_record(f"old{i}", 1000 + i) for i in range(n)])
    return g


def _summary(results):
    return [(r.subject_id, r.decision, r.enrolled) if isinstance(r, DedupReport) else type(r).__name__
            for r in results]


def test_two_records_of_one_person_inside_one_window_give_one_enrolment_and_one_duplicate(tmp_path):
    g = _seeded(tmp_path / "g")
    batch = [make_record("a", 1), make_record("b", 2), make_record("a-again", 1, 1), make_record("c", 3),
             make_record("b-again", 2, 2)]
    out = g.enroll_many(batch, window=5, n_threads=2, stop_on_error=False)
    assert _summary(out) == [("a", "UNIQUE", True), ("b", "UNIQUE", True), ("a-again", "DUPLICATE", False),
                             ("c", "UNIQUE", True), ("b-again", "DUPLICATE", False)]
    # The window's earlier record is the candidate that explains the DUPLICATE, all fingers compared.
    assert out[2].candidates[0].subject_id == "a" and len(out[2].candidates[0].finger_scores) == 10
    assert out[4].candidates[0].subject_id == "b"
    assert g.stats()["subjects"] == 8 + 3
    assert g.check() == []
    g.close()


def test_the_same_person_across_windows_and_against_the_gallery(tmp_path):
    g = _seeded(tmp_path / "g")
    batch = [make_record(f"n{i}", i) for i in range(6)] + [make_record(f"r{i}", i, 1) for i in range(6)]
    batch += [make_record("old-again", 1003, 1)]
    out = g.enroll_many(batch, window=4, n_threads=2, stop_on_error=False)
    decisions = [r.decision for r in out]
    assert decisions == ["UNIQUE"] * 6 + ["DUPLICATE"] * 7, _summary(out)
    assert out[-1].candidates[0].subject_id == "old3"
    assert [r.enrolled for r in out] == [True] * 6 + [False] * 7


def test_windowed_and_serial_enrolment_take_the_same_decisions(tmp_path):
    batch = [make_record(f"p{i}", i % 7, i // 7) for i in range(14)]
    with _seeded(tmp_path / "serial") as g:
        serial = g.enroll_many(batch, stop_on_error=False)
    with _seeded(tmp_path / "windowed") as g:
        windowed = g.enroll_many(batch, window=6, n_threads=2, stop_on_error=False)
    assert _summary(windowed) == _summary(serial)
    # The same mate explains each DUPLICATE (a UNIQUE record's best non-mate may differ: within a
    # window all common fingers are compared, where a search screens most candidates on two).
    assert [r.candidates[0].subject_id for r in windowed if r.decision == "DUPLICATE"] == \
        [r.candidates[0].subject_id for r in serial if r.decision == "DUPLICATE"]


def test_a_write_by_someone_else_during_the_searches_is_seen(tmp_path, monkeypatch):
    """Another writer commits the same person between the window's searches and its commit: the
    window searches again under the lock and refuses the record."""
    from biomatch.dedup import pipeline

    g = _seeded(tmp_path / "g")
    other = Gallery.open(tmp_path / "g")
    real = pipeline._search_all
    calls = []

    def search_then_race(gallery, items, n_threads, workers=None):
        real(gallery, items, n_threads, workers)
        if not calls:  # the first (lock-free) pass: someone else enrols person 5 now
            other.enroll(make_record("elsewhere", 5))
        calls.append(n_threads)

    monkeypatch.setattr(pipeline, "_search_all", search_then_race)
    out = g.enroll_many([make_record("here", 5, 1), make_record("new", 6)], window=2, n_threads=2)
    assert len(calls) == 2  # searched again under the lock
    assert _summary(out) == [("here", "DUPLICATE", False), ("new", "UNIQUE", True)]
    assert out[0].candidates[0].subject_id == "elsewhere"
    other.close()
    g.close()


def test_concurrent_windows_from_two_threads_admit_one_record_per_person(tmp_path):
    g = _seeded(tmp_path / "g")
    results = {}
    barrier = threading.Barrier(2)

    def work(name, impression):
        barrier.wait()
        batch = [make_record(f"{name}{i}", 40 + i, impression) for i in range(5)]
        results[name] = g.enroll_many(batch, window=5, n_threads=2, stop_on_error=False)

    threads = [threading.Thread(target=work, args=(n, k)) for n, k in (("x", 0), ("y", 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(5):  # each person: exactly one of x_i, y_i enrolled, the other a DUPLICATE
        pair = [results["x"][i], results["y"][i]]
        assert sorted(r.enrolled for r in pair) == [False, True], _summary(pair)
        assert [r.decision for r in pair if not r.enrolled] == ["DUPLICATE"]
    assert g.stats()["subjects"] == 8 + 5
    g.close()


def test_errors_are_per_record_or_stop_the_backlog(tmp_path):
    g = _seeded(tmp_path / "g")
    bad = make_record("empty", 77, positions=(1,))
    bad.fingers[1] = bad.fingers[1].__class__.from_arrays([], [], [], width=300, height=300)
    batch = [make_record("ok1", 70), make_record("old2", 71), bad, make_record("ok2", 72)]
    out = g.enroll_many(batch, window=4, n_threads=2, stop_on_error=False)
    assert _summary(out) == [("ok1", "UNIQUE", True), "DuplicateSubjectError", "NoUsableFingerError",
                             ("ok2", "UNIQUE", True)]
    seen = []
    with pytest.raises(DuplicateSubjectError):
        g.enroll_many([make_record("ok3", 73), make_record("ok1", 74), make_record("ok4", 75)], window=3,
                      progress=lambda done, total, res: seen.append(done))
    assert seen == [1, 2] and "ok3" in g and "ok4" not in g  # nothing committed after the error
    with pytest.raises(NoUsableFingerError):
        g.enroll_many([bad], window=2)
    for kw in ({"window": 0}, {"window": 5000}, {"n_threads": 0}, {"window": True}):
        with pytest.raises(InvalidInputError):
            g.enroll_many([make_record("z", 80)], **kw)
    g.close()


def test_a_write_by_someone_else_before_the_window_is_seen(tmp_path):
    """Another gallery object (another process's view) enrols a person before this one starts a
    window: the window's searches see it, though this object never searched since."""
    g = _seeded(tmp_path / "g")
    g.deduplicate(make_record("warm", 1))  # this object's indexes are loaded and current
    other = Gallery.open(tmp_path / "g")
    other.enroll(make_record("first", 9))
    other.close()
    out = g.enroll_many([make_record("second", 9, 1), make_record("new", 10)], window=2, n_threads=2)
    assert _summary(out) == [("second", "DUPLICATE", False), ("new", "UNIQUE", True)]
    assert out[0].candidates[0].subject_id == "first"
    g.close()


def test_the_same_subject_id_twice_in_one_window(tmp_path):
    g = _seeded(tmp_path / "g")
    out = g.enroll_many([make_record("x", 40), make_record("x", 41), make_record("y", 42)], window=3, n_threads=2,
                        stop_on_error=False)
    assert _summary(out) == [("x", "UNIQUE", True), "DuplicateSubjectError", ("y", "UNIQUE", True)]
    assert g.stats()["subjects"] == 8 + 2 and g.check() == []
    g.close()


def test_a_window_is_written_in_one_transaction_per_shard(tmp_path, monkeypatch):
    from biomatch.dedup.shard import Shard

    g = Gallery.create(tmp_path / "g", n_shards=2)
    g.bulk_enroll([make_record(f"old{i}", 1000 + i) for i in range(6)])
    calls = {"bulk_insert": 0, "insert": 0}
    for name in calls:
        def counted(self, call, _name=name, _orig=getattr(Shard, name)):
            calls[_name] += 1
            return _orig(self, call)
        monkeypatch.setattr(Shard, name, counted)
    out = g.enroll_many([make_record(f"n{i}", 60 + i) for i in range(8)], window=8, n_threads=2)
    assert all(r.enrolled for r in out) and len({g._route(f"n{i}").folder for i in range(8)}) == 2
    assert calls == {"bulk_insert": 2, "insert": 0}  # one durable transaction per shard, not per record
    assert g.stats()["subjects"] == 6 + 8 and g.check() == []
    g.close()


def test_a_failed_window_write_falls_back_to_each_record_with_its_own_error(tmp_path, monkeypatch):
    from biomatch.dedup.shard import Shard
    from biomatch.errors import StorageError

    g = _seeded(tmp_path / "g")

    def broken_bulk(self, call):
        raise StorageError("disk: simulated failure of the window's transaction")

    insert = Shard.insert

    def insert_but_b(self, call):
        if call.subject_id == "b":
            raise StorageError("disk: simulated failure of b")
        return insert(self, call)

    monkeypatch.setattr(Shard, "bulk_insert", broken_bulk)
    monkeypatch.setattr(Shard, "insert", insert_but_b)
    batch = [make_record("a", 50), make_record("b", 51), make_record("c", 52)]
    out = g.enroll_many(batch, window=3, n_threads=2, stop_on_error=False)
    assert _summary(out) == [("a", "UNIQUE", True), "StorageError", ("c", "UNIQUE", True)]
    # stop_on_error: the error is raised after every written record of its window is reported
    seen = []
    with pytest.raises(StorageError, match="of b"):
        g.enroll_many([make_record("d", 53), make_record("b", 51), make_record("e", 54)], window=3,
                      progress=lambda done, total, res: seen.append(_summary([res])[0]))
    assert seen == [("d", "UNIQUE", True), "StorageError", ("e", "UNIQUE", True)]
    assert {"a", "c", "d", "e"} <= {s for s in ("a", "b", "c", "d", "e") if s in g} and "b" not in g
    assert g.check() == []
    g.close()


def test_search_processes_take_the_serial_decisions_and_survive_a_dead_worker(tmp_path):
    import os
    import signal

    g = _seeded(tmp_path / "g")
    batch = [make_record("a", 1), make_record("b", 2), make_record("a-again", 1, 1), make_record("c", 3),
             make_record("b-again", 2, 2), make_record("old3-again", 1003, 1)]
    out = g.enroll_many(batch, window=3, n_processes=2, stop_on_error=False)
    assert _summary(out) == [("a", "UNIQUE", True), ("b", "UNIQUE", True), ("a-again", "DUPLICATE", False),
                             ("c", "UNIQUE", True), ("b-again", "DUPLICATE", False),
                             ("old3-again", "DUPLICATE", False)]
    assert out[4].candidates[0].subject_id == "b" and out[5].candidates[0].subject_id == "old3"
    workers = g._search_workers
    assert workers is not None and workers.n == 2
    # the next backlog reuses them; its records see the previous backlog's (searched in the workers)
    out = g.enroll_many([make_record("c-again", 3, 1), make_record("d", 4)], window=2, n_processes=2)
    assert _summary(out) == [("c-again", "DUPLICATE", False), ("d", "UNIQUE", True)]
    assert g._search_workers is workers and out[0].candidates[0].subject_id == "c"
    # a worker killed: the window is searched in this process, with the same decisions
    for pid in list(workers._pool._processes):
        os.kill(pid, signal.SIGKILL)
    out = g.enroll_many([make_record("d-again", 4, 1), make_record("e", 5)], window=2, n_processes=2)
    assert _summary(out) == [("d-again", "DUPLICATE", False), ("e", "UNIQUE", True)]
    assert g.stats()["subjects"] == 8 + 5 and g.check() == []
    with pytest.raises(InvalidInputError, match="n_processes"):
        g.enroll_many([make_record("z", 80)], window=2, n_processes=-1)
    g.close()
    assert g._search_workers is None


def test_deduplicate_many_in_search_processes_gives_deduplicate_s_reports(tmp_path):
    g = _seeded(tmp_path / "g")
    probes = [make_record("p3", 1003, 1), make_record("new", 500), make_record("p5", 1005, 2)]
    bad = make_record("empty", 77, positions=(1,))
    bad.fingers[1] = bad.fingers[1].__class__.from_arrays([], [], [], width=300, height=300)
    out = g.deduplicate_many([*probes, bad], n_processes=2, stop_on_error=False)
    want = [g.deduplicate(p) for p in probes]
    assert [(r.decision, r.candidates[0].subject_id, round(r.candidates[0].score, 9)) for r in out[:3]] == \
        [(r.decision, r.candidates[0].subject_id, round(r.candidates[0].score, 9)) for r in want]
    assert [r.decision for r in out[:3]] == ["DUPLICATE", "UNIQUE", "DUPLICATE"]
    assert type(out[3]).__name__ == "NoUsableFingerError"
    assert g.stats()["subjects"] == 8  # read only
    g.close()


def test_a_window_write_that_fails_after_its_commit_reports_the_records_enrolled(tmp_path, monkeypatch):
    """The transaction went through, then the call failed (say, in indexing): the records are in the
    store, so they are reported enrolled, not refused as already enrolled by the per-record retry."""
    from biomatch.dedup.shard import Shard
    from biomatch.errors import StorageError

    g = _seeded(tmp_path / "g")
    bulk = Shard.bulk_insert

    def commit_then_fail(self, call):
        bulk(self, call)
        raise StorageError("index: simulated failure after the commit")

    monkeypatch.setattr(Shard, "bulk_insert", commit_then_fail)
    out = g.enroll_many([make_record("a", 50), make_record("b", 51)], window=2, n_threads=2, stop_on_error=False)
    assert _summary(out) == [("a", "UNIQUE", True), ("b", "UNIQUE", True)]
    monkeypatch.undo()
    assert "a" in g and "b" in g and g.stats()["subjects"] == 8 + 2
    g.close()


def test_a_closed_gallery_starts_no_search_processes(tmp_path):
    from biomatch.errors import GalleryClosedError

    g = _seeded(tmp_path / "g")
    g.close()
    with pytest.raises(GalleryClosedError):
        g.deduplicate_many([make_record("x", 1)], n_processes=2)
    with pytest.raises(GalleryClosedError):
        g.enroll_many([make_record("x", 1), make_record("y", 2)], window=2, n_processes=2)
    assert getattr(g, "_search_workers", None) is None
