"""Issue 13's reproductions, one test each: derived files checked against the store, a store that
went backwards refused, leftovers of interrupted operations handled, backup and restore."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dedup"))
from dedup_util import make_record  # noqa: E402

from biomatch.dedup import (CorruptStoreError, Gallery, StoreRegressedError, backup_gallery,  # noqa: E402
                            check_gallery, restore_gallery)
from biomatch.errors import GalleryExistsError, InvalidInputError, NotAGalleryError  # noqa: E402

POS = (1, 2, 3, 4)
SHARD = Path("shards/000")


def _enrol(g, people):
    for i in people:
        g.enroll(make_record(f"S{i:03d}", i, positions=POS), dedup=False)


def _found(g, people) -> list:
    """The people among ``people`` whose other impression deduplicates to their own id."""
    out = []
    for i in people:
        rep = g.deduplicate(make_record(f"probe-{i}", i, impression=1, positions=POS))
        if rep.decision == "DUPLICATE" and rep.candidates[0].subject_id == f"S{i:03d}":
            out.append(i)
    return out


@pytest.fixture()
def gallery20(tmp_path):
    path = tmp_path / "g"
    with Gallery.create(path) as g:
        _enrol(g, range(20))
    return path


def test_raised_indexed_upto_is_not_trusted(gallery20, caplog):
    """(1a) indexed_upto raised by 500: new enrolments used to be UNIQUE, before and after reopening."""
    m = gallery20 / SHARD / "index/manifest.json"
    doc = json.loads(m.read_text())
    doc["indexed_upto"] += 500
    m.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING):
        with Gallery.open(gallery20) as g:
            _enrol(g, range(20, 40))
            assert _found(g, range(40)) == list(range(40))
    assert "rebuilding" in caplog.text
    with Gallery.open(gallery20) as g:
        assert _found(g, range(40)) == list(range(40))
        assert g.check() == []


def test_edited_index_with_a_valid_checksum_is_checked_against_the_store(gallery20, caplog):
    """A manifest whose checksum was recomputed after the edit: the row-for-row comparison with
    the store still refuses it."""
    from biomatch._io import canonical_checksum

    m = gallery20 / SHARD / "index/manifest.json"
    doc = json.loads(m.read_text())
    doc["indexed_upto"] += 500
    doc["checksum"] = canonical_checksum(doc)
    m.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING):
        with Gallery.open(gallery20) as g:
            _enrol(g, range(20, 30))
            assert _found(g, range(30)) == list(range(30))
    assert "disagrees with the store" in caplog.text


def test_old_store_put_back_is_refused_then_accepted_explicitly(gallery20):
    """(1b) an old store.sqlite put back under a newer index: refused (it lost acknowledged
    enrolments); after the operator accepts the loss everyone the store holds is found."""
    old = gallery20.parent / "old.sqlite"
    shutil.copy(gallery20 / SHARD / "store.sqlite", old)
    with Gallery.open(gallery20) as g:
        _enrol(g, range(20, 35))
    shutil.copy(old, gallery20 / SHARD / "store.sqlite")
    with pytest.raises(StoreRegressedError, match="store.sqlite"):
        Gallery.open(gallery20)
    with pytest.raises(StoreRegressedError):
        Gallery.open(gallery20, read_only=True)
    report = check_gallery(gallery20)
    assert not report.ok and any("acknowledged" in p for p in report.problems)
    assert not check_gallery(gallery20, repair=True).ok  # a loss needs the operator's word
    report = check_gallery(gallery20, repair=True, accept_store_loss=True)
    assert report.ok and report.repaired
    with Gallery.open(gallery20) as g:
        assert g.stats()["subjects"] == 20
        _enrol(g, range(40, 55))
        assert _found(g, list(range(20)) + list(range(40, 55))) == list(range(20)) + list(range(40, 55))
        assert _found(g, range(20, 35)) == []  # lost, and not pretended otherwise
        assert g.check() == []


def test_a_whole_old_shard_put_back_under_a_newer_index_rebuilds_it(gallery20, caplog):
    """Store and watermark restored together (a file-level copy of the shard), index left newer:
    the store is consistent with its watermark, so the index is the one that is wrong."""
    saved = gallery20.parent / "shard-copy"
    shutil.copytree(gallery20 / SHARD, saved)
    with Gallery.open(gallery20) as g:
        _enrol(g, range(20, 35))
    for name in ("store.sqlite", "watermark.json"):
        shutil.copy(saved / name, gallery20 / SHARD / name)
    with caplog.at_level(logging.WARNING):
        with Gallery.open(gallery20) as g:
            _enrol(g, range(40, 55))
            assert _found(g, list(range(20)) + list(range(40, 55))) == list(range(20)) + list(range(40, 55))
    assert "disagrees with the store" in caplog.text


@pytest.mark.parametrize("name", ["rows01.npz", "pos01.faiss"])
def test_flipped_bytes_in_an_index_file_rebuild_it(gallery20, name, caplog):
    """(3) a corrupt rows file used to make the gallery unopenable (BadZipFile); flipped FAISS
    code bytes were read silently."""
    m = json.loads((gallery20 / SHARD / "index/manifest.json").read_text())
    f = gallery20 / SHARD / "index" / m["current"] / name
    data = bytearray(f.read_bytes())
    for at in range(len(data) // 3, len(data) // 3 + 8):
        data[at] ^= 0xFF
    f.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        with Gallery.open(gallery20) as g:
            assert g.stats()["subjects"] == 20
            assert _found(g, range(20)) == list(range(20))
    assert "checksum mismatch" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the rebuilt index was saved
        with Gallery.open(gallery20) as g:
            assert _found(g, range(3)) == [0, 1, 2]
    assert "rebuilding" not in caplog.text


def test_index_version_outside_the_gallery_is_refused(gallery20, caplog):
    """(5) ``current`` accepted ``../`` paths outside the gallery."""
    m = gallery20 / SHARD / "index/manifest.json"
    doc = json.loads(m.read_text())
    outside = gallery20.parent / "elsewhere"
    shutil.copytree(gallery20 / SHARD / "index" / doc["current"], outside)
    doc["current"] = "../../../../elsewhere"
    from biomatch._io import canonical_checksum

    doc["checksum"] = canonical_checksum(doc)
    m.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING):
        with Gallery.open(gallery20) as g:
            assert _found(g, range(20)) == list(range(20))
    assert "current: expected a version folder name" in caplog.text


def test_read_only_open_saves_the_index_it_had_to_rebuild(gallery20, caplog):
    """(4) a read-only open of a gallery without index files rebuilt on every call, never saved."""
    shutil.rmtree(gallery20 / SHARD / "index")
    with Gallery.open(gallery20, read_only=True) as g:
        assert g.stats()["subjects"] == 20
    assert (gallery20 / SHARD / "index/manifest.json").is_file()
    with Gallery.open(gallery20, read_only=True) as g:
        assert g._shards[0]._indexed_at_open == 0  # nothing rebuilt the second time
        assert _found(g, range(20)) == list(range(20))


def test_wal_lost_after_a_kill_is_detected(tmp_path):
    """(6) deleting the WAL after a kill silently lost acknowledged enrolments."""
    path = tmp_path / "g"
    with Gallery.create(path) as g:
        _enrol(g, range(5))
    child = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1] / "dedup")!r})
        from dedup_util import make_record
        from biomatch.dedup import Gallery
        g = Gallery.open({str(path)!r})
        for i in range(5, 15):
            g.enroll(make_record(f"S{{i:03d}}", i, positions={POS!r}), dedup=False)
        print("acknowledged", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "acknowledged"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    wal = path / SHARD / "store.sqlite-wal"
    assert wal.stat().st_size > 0
    wal.unlink()
    with pytest.raises(StoreRegressedError, match="acknowledged"):
        Gallery.open(path)


def test_damaged_watermark_is_a_typed_error_naming_it(gallery20):
    wm = gallery20 / SHARD / "watermark.json"
    wm.write_bytes(wm.read_bytes()[:-7])
    with pytest.raises(CorruptStoreError, match="watermark.json"):
        Gallery.open(gallery20)
    report = check_gallery(gallery20, repair=True)  # no evidence of a loss: re-established
    assert report.ok, report
    with Gallery.open(gallery20) as g:
        assert _found(g, range(5)) == list(range(5))
    wm.unlink()
    with pytest.raises(CorruptStoreError, match="watermark.json"):
        Gallery.open(gallery20)


def test_damaged_gallery_manifest_is_never_used(gallery20):
    m = gallery20 / "manifest.json"
    doc = json.loads(m.read_text())
    doc["decision_params"] = doc["decision_params"].replace("0.001", "0.003")
    m.write_text(json.dumps(doc))
    with pytest.raises(CorruptStoreError, match="manifest.json"):
        Gallery.open(gallery20)


def test_create_with_a_bad_argument_leaves_nothing(tmp_path):
    """(5) Gallery.create(p, n_threads=0) raised but left a complete gallery (a retry then failed)."""
    path = tmp_path / "g"
    for bad in ({"n_threads": 0}, {"cache_bytes": -1}, {"n_threads": "2"}):
        with pytest.raises(InvalidInputError):
            Gallery.create(path, **bad)
        assert not path.exists()
    Gallery.create(path).close()


def test_interrupted_create_is_recognised_and_replaced(tmp_path):
    """(5) a kill during ``create --shards 4`` left a folder without manifest.json that neither
    ``stats`` nor ``create`` could handle.  Killed for real at a random moment, several times."""
    import random

    rng = random.Random(7)
    path = tmp_path / "g"
    child = f"from biomatch.dedup import Gallery; print('go', flush=True); Gallery.create({str(path)!r}, n_shards=4)"
    outcomes = set()
    for _ in range(6):
        shutil.rmtree(path, ignore_errors=True)
        proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "go"
        import time

        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        try:
            Gallery.open(path).close()
            outcomes.add("complete")
            continue
        except NotAGalleryError as exc:
            outcomes.add("interrupted" if "interrupted" in str(exc) else "absent")
        Gallery.create(path, n_shards=4).close()
        with Gallery.open(path) as g:
            assert g.stats()["shards"] == 4
    assert outcomes - {"complete"}, outcomes  # at least one kill landed during the creation


def test_untyped_errors_of_the_gallery_api_are_typed(gallery20, tmp_path):
    """(8) Gallery.create(None) / (123) gave TypeError; ``None in g`` and g.templates(None) AttributeError."""
    for bad in (None, 123, b"bytes", "a\x00b"):
        with pytest.raises(InvalidInputError, match="path"):
            Gallery.create(bad)
        with pytest.raises(InvalidInputError, match="path"):
            Gallery.open(bad)
    with Gallery.open(gallery20) as g:
        with pytest.raises(InvalidInputError, match="subject_id"):
            None in g  # noqa: B015
        with pytest.raises(InvalidInputError, match="subject_id"):
            g.templates(None)


def test_backup_is_consistent_while_writers_run_and_restores_elsewhere(gallery20, tmp_path):
    with Gallery.open(gallery20) as g:
        g.remove("S003")
    backup = tmp_path / "backup"
    doc = backup_gallery(gallery20, backup)
    assert {s["shard"] for s in doc["shards"]} == {0}
    assert oct((backup / SHARD / "store.sqlite").stat().st_mode & 0o777) == oct(0o600)
    with Gallery.open(gallery20) as g:  # enrolments after the backup are not in it
        _enrol(g, range(20, 25))
    moved = tmp_path / "elsewhere"
    shutil.copytree(backup, moved)  # "another machine": only relative paths inside
    shutil.rmtree(backup)
    restored = tmp_path / "restored"
    restore_gallery(moved, restored)
    assert check_gallery(restored).ok
    with Gallery.open(restored) as g:
        assert g.stats()["subjects"] == 19
        people = [i for i in range(20) if i != 3]
        assert _found(g, people) == people
        assert _found(g, [3, 20, 21]) == []
    with pytest.raises(GalleryExistsError):
        restore_gallery(moved, restored)
    aside = restore_gallery(moved, restored, replace=True)
    assert aside != restored and aside.is_dir()


def test_a_damaged_backup_is_refused_naming_the_file(gallery20, tmp_path):
    backup = tmp_path / "backup"
    backup_gallery(gallery20, backup)
    f = backup / SHARD / "store.sqlite"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(CorruptStoreError, match="store.sqlite"):
        restore_gallery(backup, tmp_path / "restored")
    assert not (tmp_path / "restored").exists()


def _sql(path: Path, *statements):
    import sqlite3

    with sqlite3.connect(path / SHARD / "store.sqlite") as c:
        for st in statements:
            c.execute(st)


def test_a_damaged_row_is_refused_never_answered_under_another_id(gallery20):
    """SQLite checksums no row: a subject id changed on disk used to come back as the answer."""
    _sql(gallery20, "UPDATE subjects SET subject_id = 'S999' WHERE subject_id = 'S004'")
    with Gallery.open(gallery20) as g:
        # every search that meets the damaged row refuses (here all: every person is a candidate)
        for i in (4, 1):
            with pytest.raises(CorruptStoreError, match="store.sqlite.*subject key"):
                g.deduplicate(make_record("p", i, impression=1, positions=POS))
    assert any("subject key" in p for p in check_gallery(gallery20).problems)
    _sql(gallery20, "UPDATE subjects SET subject_id = 'S004' WHERE subject_id = 'S999'",
         "UPDATE fingers SET position = 5 WHERE id = (SELECT MIN(id) FROM fingers WHERE position = 2)")
    with pytest.raises(CorruptStoreError, match="store.sqlite.*finger"):
        Gallery.open(gallery20)  # the index disagrees with the store, whose rebuild finds the damage
    assert not check_gallery(gallery20).ok


def test_a_store_of_schema_1_is_read_and_migrated(gallery20):
    _sql(gallery20, "ALTER TABLE subjects DROP COLUMN crc", "ALTER TABLE fingers DROP COLUMN crc",
         "UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Gallery.open(gallery20, read_only=True) as g:  # read as it is, rows unverified
        assert _found(g, range(5)) == list(range(5))
    with Gallery.open(gallery20) as g:  # the first writable open adds and fills the checksums
        _enrol(g, range(20, 22))
        assert _found(g, range(22)) == list(range(22))
    assert check_gallery(gallery20).ok


def test_gallery_check_backup_restore_commands(gallery20, tmp_path):
    exe = Path(sys.executable).with_name("biomatch")

    def run(*args):
        return subprocess.run([str(exe), "gallery", *map(str, args)], capture_output=True, text=True)

    r = run("check", gallery20)
    assert r.returncode == 0 and "sound (20 subjects, 80 fingers)" in r.stdout, r.stdout + r.stderr
    assert run("backup", gallery20, tmp_path / "bk").returncode == 0
    f = gallery20 / SHARD / "index" / json.loads((gallery20 / SHARD / "index/manifest.json").read_text())["current"]
    (f / "pos02.faiss").write_bytes(b"damaged")
    r = run("check", gallery20)
    assert r.returncode == 1 and "PROBLEM index" in r.stdout and "pos02.faiss" in r.stdout, r.stdout
    r = run("check", gallery20, "--repair")
    assert r.returncode == 0 and "REPAIRED index" in r.stdout, r.stdout
    assert run("check", gallery20).returncode == 0
    r = run("restore", tmp_path / "bk", tmp_path / "restored")
    assert r.returncode == 0, r.stderr
    r = run("restore", tmp_path / "bk", tmp_path / "restored")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--replace" in r.stderr
    with Gallery.open(tmp_path / "restored") as g:
        assert _found(g, range(20)) == list(range(20))
