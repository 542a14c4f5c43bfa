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


def test_gallery_of_another_code_generation_is_refused(tmp_path):
    from biomatch.dedup import Gallery
    from biomatch.errors import IncompatibleGalleryError

    path = tmp_path / "g"
    Gallery.create(path).close()
    m = json.loads((path / "manifest.json").read_text())
    assert m["retrieval"]["code_generation"]
    from biomatch._io import canonical_checksum

    m["retrieval"]["code_generation"] = "0000-0000"
    m["checksum"] = canonical_checksum(m)  # as the version that built it would write it
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IncompatibleGalleryError, match="generation"):
        Gallery.open(path)
    m["retrieval"]["kind"] = "nonsense"
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
