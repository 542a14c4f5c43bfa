"""The FAISS retrieval component in a gallery: persistence (mmap + delta), rebuilds, generation checks."""

from __future__ import annotations

import json

import pytest

from dedup_util import make_record


def test_saved_index_is_mapped_and_caught_up(tmp_path):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path) as g:
        assert g.stats()["retrieval"] == "faiss"
        g.enroll_many([make_record(f"s{i}", i) for i in range(8)])
    with Gallery.open(path) as g:
        r = g._shards[0]._retrieval
        assert r._index[1].mapped and r._index[1].ntotal == 8
        g.enroll(make_record("s8", 8))  # into the in-memory delta, never add() on the map
        assert r._index[1].n_delta == 1
        g.remove("s3")
    # a third process-like open that never saw the delta: caught up from the store
    with Gallery.open(path) as g:
        assert g.deduplicate(make_record("x", 8, 1)).candidates[0].subject_id == "s8"
        assert g.deduplicate(make_record("x", 3, 1)).decision == "UNIQUE"
        assert g.deduplicate(make_record("x", 5, 1)).candidates[0].subject_id == "s5"


def test_torn_or_stale_index_files_are_rebuilt_from_the_store(tmp_path):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path) as g:
        g.enroll_many([make_record(f"s{i}", i) for i in range(5)])
    index = path / "shards" / "000" / "index"
    current = json.loads((index / "manifest.json").read_text())["current"]
    (index / current / "pos03.faiss").write_bytes(b"garbage")
    with Gallery.open(path) as g:
        assert g.deduplicate(make_record("x", 2, 1)).candidates[0].subject_id == "s2"
        g.enroll(make_record("s5", 5))
    m = json.loads((index / "manifest.json").read_text())
    m["generation"] = "other-generation"
    (index / "manifest.json").write_text(json.dumps(m))
    with Gallery.open(path) as g:
        assert g.deduplicate(make_record("x", 5, 1)).candidates[0].subject_id == "s5"


def test_gallery_of_another_code_generation_opens_and_rebuilds_its_index(tmp_path, caplog):
    """An upgrade that changes the finger codes (a new EncodeModel generation): the gallery opens,
    each shard's index of the former codes is discarded and rebuilt from the store, and a writer's
    close records the new generation in the manifest."""
    from biomatch._io import canonical_checksum
    from biomatch.dedup import Gallery
    from biomatch.dedup.manifest import code_generation

    path = tmp_path / "g"
    with Gallery.create(path) as g:
        g.enroll_many([make_record(f"s{i}", i) for i in range(6)])
    index = path / "shards" / "000" / "index"
    old = "0000000000000000-0000000000000000"
    m = json.loads((path / "manifest.json").read_text())
    assert m["retrieval"]["code_generation"] == code_generation("faiss")
    m["retrieval"]["code_generation"] = old
    m["checksum"] = canonical_checksum(m)  # as the version that built it would write it
    (path / "manifest.json").write_text(json.dumps(m))
    im = json.loads((index / "manifest.json").read_text())
    im["generation"] = old  # the saved codes of that version
    (index / "manifest.json").write_text(json.dumps(im))
    with caplog.at_level("WARNING", logger="biomatch.retrieval.faiss_retrieval"):
        g = Gallery.open(path, read_only=True)
    with g:
        assert "rebuilding from the store" in caplog.text
        assert g.stats()["code_generation"] == code_generation("faiss")
        assert g.deduplicate(make_record("x", 4, 1)).candidates[0].subject_id == "s4"
    # the rebuild is saved once, read-only opens included (derived files)
    assert json.loads((index / "manifest.json").read_text())["generation"] == code_generation("faiss")
    assert json.loads((path / "manifest.json").read_text())["retrieval"]["code_generation"] == old
    with Gallery.open(path) as g:
        assert g.deduplicate(make_record("x", 2, 1)).candidates[0].subject_id == "s2"
        g.enroll(make_record("s6", 6))
    assert json.loads((index / "manifest.json").read_text())["generation"] == code_generation("faiss")
    assert json.loads((path / "manifest.json").read_text())["retrieval"]["code_generation"] == code_generation("faiss")
    with Gallery.open(path, read_only=True) as g:  # the rebuilt files are used as they are
        assert g._shards[0]._retrieval._index[1].mapped
        assert g.deduplicate(make_record("x", 6, 1)).candidates[0].subject_id == "s6"


def test_gallery_of_an_unknown_retrieval_or_a_malformed_generation_is_refused(tmp_path):
    from biomatch._io import canonical_checksum
    from biomatch.dedup import Gallery
    from biomatch.errors import CorruptStoreError, IncompatibleGalleryError

    path = tmp_path / "g"
    Gallery.create(path).close()
    m = json.loads((path / "manifest.json").read_text())
    m["retrieval"]["code_generation"] = 12
    m["checksum"] = canonical_checksum(m)
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CorruptStoreError, match="code_generation"):
        Gallery.open(path)
    m["retrieval"] = {"kind": "nonsense", "code_generation": None}
    m["checksum"] = canonical_checksum(m)
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IncompatibleGalleryError, match="retrieval"):
        Gallery.open(path)


def test_read_only_open_maps_without_writing(tmp_path):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path) as g:
        g.enroll_many([make_record(f"s{i}", i) for i in range(4)])
    before = sorted(p.name for p in (path / "shards" / "000" / "index").iterdir())
    with Gallery.open(path, read_only=True) as g:
        assert g.deduplicate(make_record("x", 1, 1)).decision == "DUPLICATE"
    assert sorted(p.name for p in (path / "shards" / "000" / "index").iterdir()) == before
