"""Routing epochs: adding a shard moves nothing already written; lookups find every subject."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dedup_util import make_record

HERE = Path(__file__).resolve().parent


def where(g) -> dict:
    """subject id -> shard number, read from the stores."""
    out = {}
    for i, s in enumerate(g._shards):
        for (sid,) in s._store._read("SELECT subject_id FROM subjects"):
            out[sid] = i
    return out


@pytest.fixture
def grown(tmp_path):
    """Two shards with 40 subjects, then a third shard and 40 more."""
    from biomatch.dedup import Gallery

    g = Gallery.create(tmp_path / "g", n_shards=2)
    g.bulk_enroll([make_record(f"old{i}", i, positions=(1, 2, 7)) for i in range(40)])
    before = where(g)
    assert g.add_shard() == 3
    for i in range(40):
        assert g.enroll(make_record(f"new{i}", 100 + i, positions=(1, 2, 7))).enrolled
    yield g, before
    g.close()


def test_existing_subjects_never_move(grown):
    g, before = grown
    after = where(g)
    assert {sid: after[sid] for sid in before} == before
    assert set(before.values()) == {0, 1}
    new = {sid: i for sid, i in after.items() if sid.startswith("new")}
    assert set(new.values()) == {0, 1, 2}  # new subjects land on every shard, the new one included
    assert all(i == g._homes(sid)[0] for sid, i in new.items())
    assert g.stats()["routing_epochs"] == [2, 3] and g.stats()["subjects"] == 80
    manifest = json.loads((g.path / "manifest.json").read_text())
    assert manifest["n_shards"] == 3 and [e["n_shards"] for e in manifest["routing"]["epochs"]] == [2, 3]


def test_lookups_find_subjects_of_every_epoch(grown):
    from biomatch.errors import DuplicateSubjectError, UnknownSubjectError

    g, before = grown
    moved = [sid for sid, i in before.items() if g._homes(sid)[0] != i]
    assert moved  # subjects whose new-epoch shard differs from where they are
    sid = moved[0]
    person = int(sid[3:])
    assert sid in g and set(g.templates(sid)) == {1, 2, 7}
    assert g.verify(sid, make_record("q", person, 1, positions=(1, 2, 7))).match
    assert g.identify(make_record("q", person, 1, positions=(1, 2, 7)), k=1)[0].subject_id == sid
    assert g.deduplicate(make_record("q", person, 1, positions=(1, 2, 7))).decision == "DUPLICATE"
    with pytest.raises(DuplicateSubjectError):  # the id is taken, even though its new-epoch shard lacks it
        g.enroll(make_record(sid, 999, positions=(1, 2, 7)), dedup=False)
    with pytest.raises(DuplicateSubjectError):
        g.bulk_enroll([make_record("fresh", 998, positions=(1, 2, 7)), make_record(sid, 999, positions=(1, 2, 7))])
    assert "fresh" not in g  # the batch was refused as a whole
    g.remove(sid)
    assert sid not in g
    with pytest.raises(UnknownSubjectError):
        g.remove(sid)
    assert g.deduplicate(make_record("q", person, 1, positions=(1, 2, 7))).decision == "UNIQUE"
    assert g.enroll(make_record(sid, person, 2, positions=(1, 2, 7))).enrolled  # re-enrolled: new epoch's shard
    assert where(g)[sid] == g._homes(sid)[0]


def test_other_processes_follow_the_new_shard(tmp_path):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    Gallery.create(path, n_shards=1).close()
    with Gallery.open(path) as a, Gallery.open(path, read_only=True) as reader:
        a.add_shard()
        a.bulk_enroll([make_record(f"s{i}", i, positions=(3, 4)) for i in range(12)])
        assert set(where(a).values()) == {0, 1}
        assert reader.stats()["shards"] == 2  # opened the shard at its next call
        for i in range(12):
            assert reader.identify(make_record("q", i, 1, positions=(3, 4)), k=1)[0].subject_id == f"s{i}"


def test_a_gallery_without_epochs_opens_and_grows(tmp_path):
    """Galleries created before routing epochs: their n_shards is the first epoch."""
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path, n_shards=2) as g:
        g.bulk_enroll([make_record(f"s{i}", i, positions=(1,)) for i in range(10)])
    m = json.loads((path / "manifest.json").read_text())
    del m["routing"], m["checksum"]  # as written then: no epochs, no checksum
    (path / "manifest.json").write_text(json.dumps(m))
    with Gallery.open(path) as g:
        before = where(g)
        assert g.add_shard() == 3 and g.stats()["routing_epochs"] == [2, 3]
        assert where(g) == before and all(sid in g for sid in before)


@pytest.mark.parametrize("kill_at", ["store", "manifest"])
def test_add_shard_killed_leaves_a_consistent_gallery(tmp_path, kill_at):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path, n_shards=2) as g:
        g.bulk_enroll([make_record(f"s{i}", i, positions=(1, 2)) for i in range(20)])
        before = where(g)
    manifest = (path / "manifest.json").read_bytes()
    proc = subprocess.run([sys.executable, str(HERE / "_child.py"), "add-shard", str(path), kill_at],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert (path / "manifest.json").read_bytes() == manifest  # the old gallery, untouched
    assert (path / "shards" / "002").exists()  # the unreferenced folder of the interrupted add_shard
    with Gallery.open(path) as g:
        assert g.stats()["shards"] == 2 and where(g) == before and g.check() == []
        assert g.add_shard() == 3  # the orphan is discarded and the shard made again
        g.enroll(make_record("late", 500, positions=(1, 2)))
        assert g.check() == [] and where(g) == dict(before, late=g._homes("late")[0])
    with Gallery.open(path, read_only=True) as g:
        assert g.stats()["shards"] == 3 and g.stats()["subjects"] == 21


def test_cli_add_shard(tmp_path, capsys):
    from biomatch import cli

    path = str(tmp_path / "g")
    assert cli.main(["gallery", "create", path, "--shards", "2"]) == 0
    assert cli.main(["gallery", "add-shard", path]) == 0
    assert "3 shards (routing epochs [2, 3])" in capsys.readouterr().out


def test_one_person_twice_while_a_shard_is_added(tmp_path):
    """Two handles enrol two records of one person while a third adds a shard: exactly one gets in."""
    import threading

    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path, n_shards=1) as g:
        g.bulk_enroll([make_record(f"s{i}", i, positions=(1, 2, 3)) for i in range(10)])
    handles = [Gallery.open(path) for _ in range(3)]
    try:
        for h in handles:
            h.deduplicate(make_record("warm", 1, positions=(1, 2, 3)))
        go = threading.Barrier(3)
        out = []

        def enrol(h, sid, impression):
            go.wait()
            out.append(h.enroll(make_record(sid, 77, impression, positions=(1, 2, 3))))

        def grow(h):
            go.wait()
            h.add_shard()

        threads = [threading.Thread(target=enrol, args=(handles[0], "x1", 0)),
                   threading.Thread(target=enrol, args=(handles[1], "x2", 1)),
                   threading.Thread(target=grow, args=(handles[2],))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sorted(r.enrolled for r in out) == [False, True]
        assert [r.decision for r in out if not r.enrolled] == ["DUPLICATE"]
        assert handles[0].stats()["shards"] == 2 and handles[0].stats()["subjects"] == 11
    finally:
        for h in handles:
            h.close()
