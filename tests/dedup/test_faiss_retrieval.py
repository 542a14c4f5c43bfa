"""The FAISS retrieval component: candidates, persistence (mmap + delta), generation checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dedup_util import make_record


def test_candidates_keep_the_mate_at_small_penetration():
    from biomatch.dedup.faiss_retrieval import FaissRetrieval, FaissRetrievalParams

    r = FaissRetrieval(FaissRetrievalParams(min_persons=3, penetration=0.01))
    fid = 0
    for person in range(40):
        rec = make_record(f"s{person}", person)
        for p, t in rec.fingers.items():
            fid += 1
            r.add(p, [fid], [t], [person])
    assert r.n_persons == 40 and r.indexed_upto == 400
    probe = make_record("x", 17, 1).fingers
    keys, scores, _ = r.person_scores(probe)
    assert keys[np.argmax(scores)] == 17
    cand = r.candidates(probe, 1)
    kept = {int(f) for ids in cand.values() for f in ids}
    assert r.last_k_persons == 3 and len(cand) >= 5
    assert len(set(range(17 * 10 + 1, 17 * 10 + 11)) & kept) >= 5  # the mate's best rows are kept
    ranked, table = r.ranked_persons(probe, 1)
    assert ranked[0] == 17 and table.shape == (3, 11) and not table[:, 0].any()
    by_key = dict(zip(keys.tolist(), scores.tolist()))
    assert np.allclose(table.sum(axis=1), [by_key[k] for k in ranked])  # per-position parts of the sum
    assert np.all(np.diff(table.sum(axis=1)) <= 0)  # best code score first
    r.remove(np.arange(17 * 10 + 1, 17 * 10 + 11))
    keys, scores, _ = r.person_scores(probe)
    assert 17 not in set(keys.tolist())


def test_params_validate():
    from biomatch.dedup.faiss_retrieval import FaissRetrievalParams
    from biomatch.errors import InvalidInputError

    assert FaissRetrievalParams().k_persons(100) == 50 and FaissRetrievalParams().k_persons(10**6) == 100
    assert FaissRetrievalParams().k_persons(10**6, 2) == 500  # fewer fingers: more persons
    with pytest.raises(InvalidInputError):
        FaissRetrievalParams(penetration=0)
    with pytest.raises(InvalidInputError):
        FaissRetrievalParams(min_persons=10, max_persons=5)


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
