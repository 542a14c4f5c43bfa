"""The gallery on a local Ray cluster (4 logical CPUs: 2 shard actors, a writer actor, routers).

Same answers as the embedded gallery on the same folder; enrolment atomic across routers (and
with embedded writers); a shard or writer actor killed in the middle of a batch loses no
acknowledged enrolment, and a retry completes the failed items without duplicates.

Skipped when Ray is not installed (``pip install '.[cluster]'``): CI installs ``.[test]`` only.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dedup_util import make_record

from _util import need_module  # noqa: E402

ray = need_module("ray", "Ray is not installed (pip install -e '.[test]' or '.[cluster]'): distributed gallery untested")

HERE = Path(__file__).resolve().parent
N_SHARDS = 2


@pytest.fixture(scope="module")
def cluster():
    # Workers are spawned by this process: they inherit PYTHONPATH and can import the helpers.
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), old]))
    # "local": a private cluster even when another one runs on this machine (Ray's default would join it)
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


@pytest.fixture
def open_distributed(cluster):
    """Open DistributedGallery objects; their actors are released after the test."""
    from biomatch.dedup.cluster import DistributedGallery, release_actors

    opened = []

    def opener(path, **kw):
        g = DistributedGallery.open(path, **kw)
        opened.append(g)
        return g

    yield opener
    for g in opened:
        g.close()
    for path in {g.path for g in opened}:
        release_actors(path)


def face(person: int) -> np.ndarray:
    v = np.random.default_rng(person).standard_normal(128).astype(np.float32)
    return v / np.linalg.norm(v)


def face_record(subject_id, person, impression=0, positions=range(1, 11)):
    """make_record with a face: the person's embedding, plus noise for later impressions."""
    from biomatch.dedup import Enrolment

    base = make_record(subject_id, person, impression, positions)
    f = face(person) + 0.3 * impression * face(10_000 + 100 * person + impression)
    return Enrolment(subject_id, base.fingers, face=f)


def registry(n: int = 24) -> list:
    return [face_record(f"s{i}", i) if i % 2 else make_record(f"s{i}", i) for i in range(n)]


def same_report(a, b) -> None:
    assert a.decision == b.decision
    assert a.candidates == b.candidates  # ids, fused scores, finger scores, evidence, faces
    assert a.thresholds == b.thresholds
    assert a.gallery_size == b.gallery_size
    assert a.positions_used == b.positions_used
    assert a.enrolled == b.enrolled
    assert a.work == b.work


@pytest.mark.parametrize("retrieval", ["faiss", "exhaustive"])
def test_searches_give_the_embedded_answers(tmp_path, open_distributed, retrieval):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path, n_shards=N_SHARDS, retrieval=retrieval) as g:
        g.bulk_enroll(registry())
    probes = ([make_record(f"m{i}", i, 1) for i in (0, 2, 5)] + [face_record(f"f{i}", i, 1) for i in (1, 7)]
              + [make_record("partial", 4, 2, positions=(2, 3)), face_record("faceonly", 9, 1, positions=(1,))]
              + [make_record(f"n{i}", 900 + i) for i in range(3)] + [face_record("nf", 950)])
    d = open_distributed(path)
    with Gallery.open(path, read_only=True) as e:
        for p in probes:
            same_report(d.deduplicate(p), e.deduplicate(p))
            assert d.identify(p, k=3) == e.identify(p, k=3)
        assert [r.candidates for r in d.deduplicate_many(probes[:3])] == \
               [r.candidates for r in e.deduplicate_many(probes[:3])]
        assert d.verify("s5", probes[2]) == e.verify("s5", probes[2])
        assert d.verify("s6", probes[2]) == e.verify("s6", probes[2])
        assert d.templates("s3").keys() == e.templates("s3").keys()
        ds, es = d.stats(), e.stats()
        for key in ("subjects", "fingers", "faces", "fingers_per_position", "shards", "thresholds"):
            assert ds[key] == es[key], key
        assert len(set(ds["cluster"]["shard_pids"])) == N_SHARDS
        assert os.getpid() not in ds["cluster"]["shard_pids"]
        assert ("s3" in d) and ("nobody" not in d)


def test_enrolments_give_the_embedded_answers(tmp_path, open_distributed):
    from biomatch.dedup import Gallery
    from biomatch.errors import DuplicateSubjectError, UnknownSubjectError

    stream = (registry(10) + [make_record("back3", 3, 1), face_record("back5", 5, 2), make_record("new", 300)]
              + [make_record(f"late{i}", 400 + i) for i in range(3)] + [make_record("back401", 401, 1)])
    Gallery.create(tmp_path / "d", n_shards=N_SHARDS).close()
    d = open_distributed(tmp_path / "d")
    with Gallery.create(tmp_path / "e", n_shards=N_SHARDS) as e:
        for rec in stream:
            same_report(d.enroll(rec), e.enroll(rec))
        with pytest.raises(DuplicateSubjectError):
            d.enroll(make_record("s2", 2))
        d.remove("s4"), e.remove("s4")
        with pytest.raises(UnknownSubjectError):
            d.remove("s4")
        assert d.bulk_enroll([make_record("bulk1", 500), make_record("bulk2", 501)], batch_size=1) == 2
        e.bulk_enroll([make_record("bulk1", 500), make_record("bulk2", 501)])
        for p in (make_record("q", 4, 1), make_record("q", 401, 2), make_record("q", 501, 1)):
            same_report(d.deduplicate(p), e.deduplicate(p))
    with Gallery.open(tmp_path / "d", read_only=True) as back:  # the cluster's writes are a plain gallery
        assert back.stats()["subjects"] == len(stream) - 3 - 1 + 2
        assert back.check() == []


def test_read_only_router_refuses_writes(tmp_path, open_distributed):
    from biomatch.dedup import Gallery
    from biomatch.errors import StorageError

    Gallery.create(tmp_path / "g").close()
    d = open_distributed(tmp_path / "g", read_only=True)
    with pytest.raises(StorageError):
        d.enroll(make_record("a", 1))
    assert d.deduplicate(make_record("a", 1)).decision == "UNIQUE"


def test_one_person_at_once_on_routers_and_an_embedded_writer(tmp_path, open_distributed):
    """Routers in three processes and an embedded Gallery enrol one person at the same moment."""
    from _cluster_router import enroll_at

    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path, n_shards=N_SHARDS) as g:
        g.bulk_enroll(registry(6))
    d = open_distributed(path)
    d.deduplicate(make_record("warm", 1))  # actors started and warm before the race
    router = ray.remote(num_cpus=0)(enroll_at)
    start = time.time() + 8.0  # routers are up (import, connect) well before
    refs = [router.remote(str(path), f"r{i}", 77, i, start) for i in range(3)]
    embedded = []

    def local():
        rec = make_record("local", 77, 3)
        with Gallery.open(path) as e:
            time.sleep(max(0.0, start - time.time()))
            r = e.enroll(rec)
            embedded.append((r.decision, r.enrolled))

    t = threading.Thread(target=local)
    t.start()
    outcomes = ray.get(refs, timeout=300)
    t.join(timeout=300)
    outcomes += embedded
    assert len(outcomes) == 4
    assert sum(enrolled for _, enrolled in outcomes) == 1, outcomes
    assert all(dec == "DUPLICATE" for dec, enrolled in outcomes if not enrolled), outcomes
    assert d.stats()["subjects"] == 7


def _kill_when(d, actor: str, after: int, progress: list, delay_s: float = 0.03) -> threading.Thread:
    """SIGKILL an actor's process once ``progress`` holds ``after`` items (plus a short delay, so
    that the kill lands inside the next operation)."""
    pid = ray.get(d.actors()[actor].pid.remote())

    def run():
        while len(progress) < after:
            time.sleep(0.002)
        time.sleep(delay_s)
        os.kill(pid, signal.SIGKILL)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _fault_batch(tmp_path, open_distributed, victim: str):
    from biomatch.dedup import DedupReport, Gallery
    from biomatch.dedup.cluster import ClusterUnavailableError
    from biomatch.errors import DuplicateSubjectError

    path = tmp_path / "g"
    with Gallery.create(path, n_shards=N_SHARDS) as g:
        g.bulk_enroll([make_record(f"old{i}", i) for i in range(10)])
    d = open_distributed(path)
    d.deduplicate(make_record("warm", 1))
    pid_before = ray.get(d.actors()[victim].pid.remote())
    new = [make_record(f"new{i}", 100 + i) for i in range(14)]
    returning = [make_record(f"back{i}", i, 1) for i in range(4)]
    batch = new[:7] + returning[:2] + new[7:] + returning[2:]
    probes = [make_record(f"probe{i}", i % 12, 2) for i in range(12)]
    done: list = []
    killer = _kill_when(d, victim, 3, done)
    searched: list = []
    searcher = threading.Thread(target=lambda: searched.extend(d.deduplicate_many(probes, stop_on_error=False)))
    searcher.start()
    results = d.enroll_many(batch, stop_on_error=False, progress=lambda i, n, r: done.append(r))
    searcher.join(timeout=600)
    killer.join(timeout=60)
    assert ray.get(d.actors()[victim].pid.remote()) != pid_before  # killed and restarted

    # The batch completed or named exactly the items that failed, with the one error of this case.
    assert len(results) == len(batch)
    failed = [rec for rec, r in zip(batch, results) if not isinstance(r, DedupReport)]
    assert all(isinstance(r, (DedupReport, ClusterUnavailableError)) for r in results), results
    acknowledged = [r.subject_id for r in results if isinstance(r, DedupReport) and r.enrolled]
    for sid in acknowledged:
        assert sid in d
    # Searches are retried across the restart: all complete, with the answers of a quiet gallery.
    assert len(searched) == len(probes) and all(isinstance(r, DedupReport) for r in searched), searched
    assert [r.decision for r in searched][:10] == ["DUPLICATE"] * 10

    # Retry the failed items: committed ones say so (DuplicateSubjectError), the others get in.
    retry = d.enroll_many(failed, stop_on_error=False)
    for rec, r in zip(failed, retry):
        assert isinstance(r, (DedupReport, DuplicateSubjectError)), r
        assert (rec.subject_id in d) == (rec in new)
    with Gallery.open(path, read_only=True) as back:
        assert back.stats()["subjects"] == 10 + len(new)
        assert all(r.subject_id in back for r in new) and not any(r.subject_id in back for r in returning)
        assert back.check() == []
        for rec in new:  # each new person once: a fresh probe finds exactly one mate
            rep = back.deduplicate(make_record("again", 100 + new.index(rec), 2))
            assert rep.decision == "DUPLICATE" and rep.candidates[0].subject_id == rec.subject_id
            assert sum(c.score > rep.thresholds["review_score"] for c in rep.candidates) == 1
    return results, failed


def test_shard_actor_killed_mid_batch(tmp_path, open_distributed):
    results, failed = _fault_batch(tmp_path, open_distributed, "shard-000")
    # Writes in flight are completed exactly once by the shard proxy: nothing should fail.
    assert failed == [], results


def test_writer_actor_killed_mid_batch(tmp_path, open_distributed):
    results, failed = _fault_batch(tmp_path, open_distributed, "writer")
    assert len(failed) <= 1, results  # at most the enrolment in flight


def test_shard_actor_killed_inside_a_long_write(tmp_path, open_distributed):
    """A bulk batch (one SQLite transaction on the shard) is cut by a kill: it is applied exactly once."""
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    Gallery.create(path).close()  # one shard: the whole batch goes to the victim
    d = open_distributed(path)
    d.deduplicate(make_record("warm", 1))
    actor = d.actors()["shard-000"]
    pid = ray.get(actor.pid.remote())
    records = [make_record(f"b{i}", 1000 + i) for i in range(600)]  # ~0.8 s of encoding on a quiet machine
    threading.Timer(0.25, os.kill, (pid, signal.SIGKILL)).start()
    t0 = time.perf_counter()
    assert d.bulk_enroll(records, batch_size=len(records)) == len(records)
    assert time.perf_counter() - t0 > 0.25  # the kill landed during the call
    assert ray.get(actor.pid.remote()) != pid
    assert d.stats()["subjects"] == len(records)
    rep = d.deduplicate(make_record("again", 1599, 1))
    assert rep.decision == "DUPLICATE" and rep.candidates[0].subject_id == "b599"


def test_cli_create_stats_release(tmp_path, cluster, capsys):
    from biomatch import cli

    path = str(tmp_path / "g")
    assert cli.main(["cluster", "create", path, "--shards", "2"]) == 0
    assert cli.main(["cluster", "stats", path, "--json"]) == 0
    assert '"shard_pids"' in capsys.readouterr().out
    assert cli.main(["cluster", "release", path]) == 0
    assert "stopped 3 actor(s)" in capsys.readouterr().out


def test_shard_actors_fold_their_delta_into_saved_index_files(tmp_path, open_distributed):
    """Every ``fold_every`` subjects a shard actor saves its index, so a restart re-encodes little."""
    import json

    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    Gallery.create(path).close()
    d = open_distributed(path, fold_every=5)
    manifest = path / "shards" / "000" / "index" / "manifest.json"

    def indexed_upto():
        return json.loads(manifest.read_text())["indexed_upto"] if manifest.exists() else 0

    for i in range(4):
        d.enroll(make_record(f"a{i}", 200 + i))
    assert indexed_upto() == 0  # four subjects: still in the in-memory delta
    d.enroll(make_record("a4", 204))
    assert indexed_upto() == 50  # the fifth folds 5 x 10 fingers into the saved files
    assert d.bulk_enroll([make_record(f"b{i}", 300 + i) for i in range(6)]) == 6
    assert indexed_upto() == 110
    assert d.deduplicate(make_record("q", 303, 1)).candidates[0].subject_id == "b3"


def test_add_shard_on_the_cluster_gives_the_one_shard_answers(tmp_path, open_distributed):
    """add_shard through the writer actor: nothing moves, the new shard actor takes new subjects,
    and every router gives the answers of a one-shard embedded gallery holding the same data."""
    from biomatch import cli
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path, n_shards=N_SHARDS) as g:
        g.bulk_enroll(registry())
    other = open_distributed(path)  # a router opened before the shard is added
    d = open_distributed(path)
    other.deduplicate(make_record("warm", 1))
    with Gallery.open(path, read_only=True) as e:
        before = {sid: i for i, s in enumerate(e._shards)
                  for (sid,) in s._store._read("SELECT subject_id FROM subjects")}
    assert d.add_shard() == N_SHARDS + 1
    assert "shard-002" in d.actors()
    new = [make_record(f"new{i}", 200 + i) for i in range(8)] + [make_record("back3", 3, 1)]
    with Gallery.create(tmp_path / "one", n_shards=1) as one:
        one.bulk_enroll(registry())
        for rec in new:
            same_report(d.enroll(rec), one.enroll(rec))
        probes = [make_record("m5", 5, 1), face_record("f7", 7, 1), make_record("m203", 203, 1),
                  face_record("faceonly", 9, 1, positions=(1,)), make_record("n", 990)]
        for p in probes:
            ref = one.deduplicate(p)
            same_report(d.deduplicate(p), ref)
            same_report(other.deduplicate(p), ref)  # followed the manifest to the third actor
    with Gallery.open(path, read_only=True) as e:
        after = {sid: i for i, s in enumerate(e._shards)
                 for (sid,) in s._store._read("SELECT subject_id FROM subjects")}
        assert {sid: after[sid] for sid in before} == before
        assert 2 in {after[r.subject_id] for r in new if r.subject_id in after}
        for p in probes:
            same_report(d.deduplicate(p), e.deduplicate(p))
    assert cli.main(["cluster", "add-shard", str(path), "--address", "auto"]) == 0
    assert d.stats()["shards"] == N_SHARDS + 2


def test_windowed_enrolment_gives_the_embedded_answers(tmp_path, open_distributed):
    """enroll_many(window=...) runs the pipeline in the writer actor: the same decisions and
    candidates as the embedded pipeline, two records of one person in a window included."""
    from biomatch.dedup import DedupReport, Gallery
    from biomatch.errors import DuplicateSubjectError

    stream = (registry(8) + [make_record("back3", 3, 1), make_record("twin-a", 600), make_record("twin-b", 600, 1)]
              + [face_record("back5", 5, 2), make_record("s2", 700), make_record("new", 300)])
    Gallery.create(tmp_path / "d", n_shards=N_SHARDS).close()
    d = open_distributed(tmp_path / "d")
    got = d.enroll_many(stream, window=5, n_threads=2, stop_on_error=False)
    with Gallery.create(tmp_path / "e", n_shards=N_SHARDS) as e:
        want = e.enroll_many(stream, window=5, n_threads=2, stop_on_error=False)
    assert len(got) == len(want) == len(stream)
    for a, b in zip(got, want):
        if isinstance(b, DedupReport):
            assert (a.decision, a.enrolled, a.candidates, a.gallery_size) == \
                   (b.decision, b.enrolled, b.candidates, b.gallery_size)
        else:
            assert type(a) is type(b)
    by_id = {r.subject_id: r for r in got if isinstance(r, DedupReport)}
    assert (by_id["twin-a"].enrolled, by_id["twin-b"].decision) == (True, "DUPLICATE")
    assert by_id["back3"].decision == by_id["back5"].decision == "DUPLICATE"
    assert isinstance(got[-2], DuplicateSubjectError)  # "s2" again: an id already enrolled
