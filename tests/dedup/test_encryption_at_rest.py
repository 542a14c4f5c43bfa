"""Issue 17, encryption at rest: sealed records, keys, wrong keys, nothing readable on disk, tampering."""

from __future__ import annotations

import base64
import json
import os
import sqlite3

import numpy as np
import pytest

from dedup_util import make_record


@pytest.fixture
def key_file(tmp_path):
    from biomatch.dedup.encryption import KeyFile, generate_key_file

    generate_key_file(tmp_path / "kek")
    return KeyFile(tmp_path / "kek")


@pytest.fixture
def other_key(tmp_path):
    from biomatch.dedup.encryption import KeyFile, generate_key_file

    generate_key_file(tmp_path / "other")
    return KeyFile(tmp_path / "other")


def _face(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return v / np.linalg.norm(v)


def _record(sid, person, impression=0, face_seed=None, metadata=None):
    from biomatch.dedup import Enrolment

    rec = make_record(sid, person, impression, metadata=metadata)
    return rec if face_seed is None else Enrolment(sid, rec.fingers, face=_face(face_seed), metadata=metadata)


def test_encrypted_gallery_round_trip(tmp_path, key_file):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path, key=key_file) as g:
        for i in range(6):
            assert g.enroll(_record(f"p{i}", i, face_seed=i, metadata={"name": f"N{i}"})).enrolled
        assert g.enroll(_record("again", 3, 1)).decision == "DUPLICATE"
        enc = g.stats()["encryption"]
        assert enc["encrypted"] and enc["kek_id"] == key_file.key_id and enc["data_keys"] == ["dek-1"]
    with Gallery.open(path, key=key_file) as g:
        assert g.check() == []
        assert g.identify(_record("x", 4, 1), k=1)[0].subject_id == "p4"
        t = g.templates("p2")
        assert t.keys() == make_record("p2", 2).fingers.keys()
        shard = g._shards[0]
        assert shard._store.subject_record("p5")[1] == '{"name": "N5"}'
        assert shard._faces.n_active == 6  # faces decrypted and indexed at open
    from biomatch.dedup import check_gallery

    report = check_gallery(path, key=key_file)
    assert report.ok and not report.problems and report.encryption["encrypted"]


def test_plain_gallery_unchanged(tmp_path, key_file):
    from biomatch.dedup import Gallery, GalleryKeyError
    from biomatch.dedup.manifest import FORMAT_VERSION, read_manifest

    with Gallery.create(tmp_path / "g") as g:
        g.enroll(make_record("a", 1))
        assert g.stats()["encryption"] == {"encrypted": False}
        blob = g._shards[0]._store.templates_by_ids([1])[1]
    assert blob[:4] == b"BMT1"  # stored in clear, as before
    m = read_manifest(tmp_path / "g")
    assert m["version"] == FORMAT_VERSION and "encryption" not in m
    with pytest.raises(GalleryKeyError, match="not encrypted"):
        Gallery.open(tmp_path / "g", key=key_file)


def test_no_key_or_wrong_key_is_a_typed_error_before_any_store_is_read(tmp_path, key_file, other_key, monkeypatch):
    from biomatch.dedup import Gallery, GalleryKeyError, shard
    from biomatch.errors import CorruptStoreError

    path = tmp_path / "g"
    with Gallery.create(path, key=key_file) as g:
        g.enroll(make_record("a", 1))
    monkeypatch.delenv("BIOMATCH_GALLERY_KEY", raising=False)

    def no_store(*a, **k):
        raise AssertionError("a store was opened")

    monkeypatch.setattr(shard, "Store", no_store)
    with pytest.raises(GalleryKeyError) as e:
        Gallery.open(path)
    assert e.value.expected_key_id == key_file.key_id and key_file.key_id in str(e.value)
    with pytest.raises(GalleryKeyError) as e:
        Gallery.open(path, key=other_key, read_only=True)
    assert not isinstance(e.value, CorruptStoreError)
    assert (e.value.expected_key_id, e.value.actual_key_id) == (key_file.key_id, other_key.key_id)
    assert other_key.key_id in str(e.value) and key_file.key_id in str(e.value)


def test_key_sources(tmp_path, key_file, monkeypatch):
    from biomatch.dedup import Gallery, GalleryKeyError
    from biomatch.dedup.encryption import KeyEnv, KeyFile

    path = tmp_path / "g"
    Gallery.create(path, key=key_file).close()
    os.chmod(key_file.path, 0o640)
    with pytest.raises(GalleryKeyError, match="mode 0640"):
        Gallery.open(path, key=key_file)
    os.chmod(key_file.path, 0o600)
    short = tmp_path / "short"
    short.write_bytes(b"x" * 31)
    os.chmod(short, 0o600)
    with pytest.raises(GalleryKeyError, match="expected 32 bytes"):
        Gallery.open(path, key=KeyFile(short))
    with pytest.raises(GalleryKeyError, match="cannot open"):
        Gallery.open(path, key=KeyFile(tmp_path / "missing"))
    monkeypatch.setenv("BIOMATCH_GALLERY_KEY", base64.b64encode(key_file.path.read_bytes()).decode())
    Gallery.open(path).close()  # the variable is the default
    Gallery.open(path, key=KeyEnv()).close()
    monkeypatch.setenv("BIOMATCH_GALLERY_KEY", "not base64!")
    with pytest.raises(GalleryKeyError, match="base64"):
        Gallery.open(path)
    with pytest.raises(GalleryKeyError, match="mode"):  # refused before the folder is made
        os.chmod(key_file.path, 0o644)
        Gallery.create(tmp_path / "g2", key=key_file)
    assert not (tmp_path / "g2").exists()


def _files(root):
    return [f for f in root.rglob("*") if f.is_file()]


def _secrets(records):
    """Byte strings that must not appear on disk: each template's serialised bytes (and a 24-byte
    run from its minutiae), each finger's 64-byte code (the FAISS index's rows), each face
    embedding (and a 16-byte run), each metadata text."""
    from biomatch.formats import encode
    from biomatch.retrieval.codes import finger_codes

    out = []
    for rec in records:
        codes, valid = finger_codes(list(rec.fingers.values()), return_valid=True)
        out += [c.tobytes() for c in codes[valid]]
        for t in rec.fingers.values():
            blob = encode(t)
            out += [blob, blob[len(blob) // 2:len(blob) // 2 + 24]]
        if rec.face is not None:
            f = np.asarray(rec.face, np.float32).tobytes()
            out += [f, f[200:216]]
        if rec.metadata is not None:
            out.append(rec.metadata_json.encode())
    return out


@pytest.mark.parametrize("encrypted", [True, False])
def test_nothing_readable_on_disk(tmp_path, key_file, encrypted):
    """grep every file of the gallery (store, WAL not yet checkpointed, -shm, index, manifest,
    watermark) and of a backup for known template, face and metadata bytes.  The plain gallery
    is the control: there the same search finds them, so the test can fail."""
    from biomatch.dedup import Gallery, backup_gallery

    path = tmp_path / "g"
    records = [_record(f"p{i}", i, face_seed=100 + i, metadata={"name": f"Citizen-{i:04d}"}) for i in range(8)]
    g = Gallery.create(path, key=key_file if encrypted else None)
    try:
        g.bulk_enroll(records[:4])
        for rec in records[4:]:
            assert g.enroll(rec).enrolled
        g._shards[0].checkpoint()  # index files on disk too
        wal = path / "shards" / "000" / "store.sqlite-wal"
        assert wal.stat().st_size > 0  # the enrolments are (at least partly) still in the WAL
        secrets = _secrets(records)
        files = _files(path)
        assert any(f.suffix == ".faiss" for f in files) and any(f.name.endswith("-shm") for f in files)
        found = [(f.name, i) for f in files for i, s in enumerate(secrets) if s in f.read_bytes()]
        if not encrypted:
            assert found  # the control: in clear they are found
            assert any(name.endswith(".faiss") for name, _ in found)  # the codes too
            return
        assert found == []
        backup_gallery(path, tmp_path / "backup")
        found = [(f.name, i) for f in _files(tmp_path / "backup") for i, s in enumerate(secrets)
                 if s in f.read_bytes()]
        assert found == []
    finally:
        g.close()
    assert _files(path) and all(s not in f.read_bytes() for f in _files(path) for s in _secrets(records))


def _swap_fingers(db, a: int, b: int, fix_crc: bool):
    from biomatch.dedup.store import finger_crc

    con = sqlite3.connect(db)
    (ka, pa, ta), (kb, pb, tb) = (con.execute("SELECT subject, position, template FROM fingers WHERE id = ?",
                                              (i,)).fetchone() for i in (a, b))
    for fid, key, pos, blob in ((a, ka, pa, tb), (b, kb, pb, ta)):
        crc = finger_crc(key, pos, blob) if fix_crc else None
        con.execute("UPDATE fingers SET template = ?, crc = COALESCE(?, crc) WHERE id = ?", (blob, crc, fid))
    con.commit()
    con.close()


@pytest.mark.parametrize("fix_crc", [False, True])
def test_swapped_or_damaged_rows_are_corruption_not_key_errors(tmp_path, key_file, fix_crc):
    from biomatch.dedup import Gallery
    from biomatch.errors import CorruptStoreError, GalleryKeyError

    path = tmp_path / "g"
    with Gallery.create(path, key=key_file, retrieval="exhaustive") as g:
        g.enroll(make_record("a", 1))
        g.enroll(make_record("b", 2))
    db = path / "shards" / "000" / "store.sqlite"
    _swap_fingers(db, 1, 11, fix_crc)  # the right thumbs of a and b (crc recomputed: an attacker can)
    with pytest.raises(CorruptStoreError, match="authentication" if fix_crc else "checksum") as e:
        with Gallery.open(path, key=key_file, cache_bytes=0) as g:
            g.templates("a")
    assert not isinstance(e.value, GalleryKeyError)


def test_record_under_an_unknown_data_key_names_it(tmp_path, key_file):
    from biomatch.dedup import Gallery
    from biomatch.dedup.store import finger_crc
    from biomatch.errors import GalleryKeyError

    path = tmp_path / "g"
    with Gallery.create(path, key=key_file, retrieval="exhaustive") as g:
        g.enroll(make_record("a", 1))
    con = sqlite3.connect(path / "shards" / "000" / "store.sqlite")
    key, pos, blob = con.execute("SELECT subject, position, template FROM fingers WHERE id = 1").fetchone()
    blob = blob[:3] + (7).to_bytes(4, "big") + blob[7:]
    con.execute("UPDATE fingers SET template = ?, crc = ? WHERE id = 1", (blob, finger_crc(key, pos, blob)))
    con.commit()
    con.close()
    with Gallery.open(path, key=key_file, cache_bytes=0) as g:
        with pytest.raises(GalleryKeyError, match="dek-7") as e:
            g.templates("a")
    assert e.value.expected_key_id == "dek-7"


def test_cli_create_encrypt_info_check(tmp_path, capsys, monkeypatch):
    from biomatch.cli import main

    monkeypatch.delenv("BIOMATCH_GALLERY_KEY", raising=False)
    k, g = tmp_path / "k", tmp_path / "g"
    assert main(["gallery", "new-key", str(k)]) == 0
    assert oct(k.stat().st_mode & 0o777) == "0o600"
    assert main(["gallery", "create", str(g), "--encrypt"]) == 2  # no key anywhere
    assert main(["gallery", "create", str(g), "--key-file", str(k)]) == 2  # a key without --encrypt
    assert main(["gallery", "create", str(g), "--encrypt", "--key-file", str(k)]) == 0
    assert "encrypted (AES-256-GCM" in capsys.readouterr().out
    assert main(["gallery", "info", str(g)]) == 0
    assert "key-encryption key local:" in capsys.readouterr().out
    assert main(["gallery", "stats", str(g)]) == 2
    assert "is encrypted under key local:" in capsys.readouterr().err
    assert main(["gallery", "check", str(g), "--key-file", str(k)]) == 0
    out = capsys.readouterr().out
    assert "encryption: AES-256-GCM, key local:" in out and "sound (0 subjects, 0 fingers)" in out
    assert main(["gallery", "create", str(tmp_path / "plain")]) == 0
    assert "NOT encrypted" in capsys.readouterr().out
    assert main(["gallery", "check", str(tmp_path / "plain")]) == 0
    assert "encryption: none" in capsys.readouterr().out


def test_sealed_code_index_is_reopened_without_a_rebuild_and_a_moved_file_is_not_trusted(tmp_path, key_file):
    """The FAISS code files of an encrypted gallery are sealed: reopened with the key they are
    decrypted into memory (no rebuild, the same search answers); a sealed file copied onto
    another position fails authentication and the index is rebuilt from the store."""
    import shutil

    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    records = [_record(f"p{i}", i) for i in range(6)]
    with Gallery.create(path, key=key_file) as g:
        g.bulk_enroll(records)
        g._shards[0].checkpoint()
        before = g.deduplicate(make_record("q", 3, impression=1))
    manifest = json.loads((path / "shards" / "000" / "index" / "manifest.json").read_text())
    assert manifest["sealed"] is True
    with Gallery.open(path, key=key_file) as g:
        shard = g._shards[0]
        assert not shard.index_rebuilt and shard._retrieval._loaded_version == manifest["current"]
        assert not any(ix.mapped for ix in shard._retrieval._index.values())  # decrypted into memory
        after = g.deduplicate(make_record("q", 3, impression=1))
    assert [(c.subject_id, c.score) for c in after.candidates] == [(c.subject_id, c.score) for c in before.candidates]
    vdir = path / "shards" / "000" / "index" / manifest["current"]
    shutil.copyfile(vdir / "pos02.faiss", vdir / "pos01.faiss")  # sealed, but for another position
    m = json.loads((path / "shards" / "000" / "index" / "manifest.json").read_text())
    m["files"]["pos01.faiss"] = m["files"]["pos02.faiss"]  # even with the manifest made to agree
    from biomatch._io import canonical_checksum

    m["checksum"] = canonical_checksum({k: v for k, v in m.items() if k != "checksum"})
    (path / "shards" / "000" / "index" / "manifest.json").write_text(json.dumps(m))
    with Gallery.open(path, key=key_file) as g:
        assert "authentication" in (g._shards[0]._retrieval.rejected or "")  # refused, then rebuilt from the store
        again = g.deduplicate(make_record("q", 3, impression=1))
    assert [c.subject_id for c in again.candidates] == [c.subject_id for c in before.candidates]


def test_pipelined_enrolment_of_an_encrypted_gallery_keeps_its_key_in_this_process(tmp_path, key_file):
    """Search processes would need the key: an encrypted gallery searches its windows in threads."""
    from biomatch.dedup import Gallery

    with Gallery.create(tmp_path / "g", key=key_file) as g:
        out = g.enroll_many([make_record("a", 1), make_record("a-again", 1, 1), make_record("b", 2)], window=3,
                            n_processes=2, stop_on_error=False)
        assert [(r.decision, r.enrolled) for r in out] == [("UNIQUE", True), ("DUPLICATE", False), ("UNIQUE", True)]
        assert getattr(g, "_search_workers", None) is None
