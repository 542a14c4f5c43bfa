"""A shard's memory per enrolment: the 6-byte subject map, the store's id order it relies on, the
code index's key-only rows (removal, rows of subjects removed before an open, the format of
version 1), and the id limits."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from dedup_util import make_record

from biomatch.dedup.finger_map import FingerMap
from biomatch.errors import CorruptStoreError, InvalidInputError, ShardFullError


def _subjects(rng, n_keys: int, gap_share: float = 0.2):
    """Reference subjects ``{key: {position: finger id}}`` in store order; some keys are gaps
    (subjects removed before a map saw them: their ids are consumed, their rows absent)."""
    out, gaps, fid = {}, set(), 0
    for key in range(1, n_keys + 1):
        positions = sorted(rng.choice(np.arange(1, 11), rng.integers(1, 11), replace=False).tolist())
        ids = {p: fid + 1 + i for i, p in enumerate(positions)}
        fid += len(positions)
        (gaps.add(key) if rng.random() < gap_share else None)
        out[key] = ids
    return out, gaps


def _rows(subjects: dict, gaps: set) -> np.ndarray:
    return np.asarray([(f, k, p) for k, ids in subjects.items() if k not in gaps for p, f in ids.items()], np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_answers_as_the_full_maps_did(seed):
    rng = np.random.default_rng(seed)
    subjects, gaps = _subjects(rng, 300)
    rows = _rows(subjects, gaps)
    m = FingerMap(len(subjects))
    cuts = np.sort(rng.choice(np.arange(1, len(rows)), 7, replace=False))  # chunks split subjects
    for part in np.split(rows, cuts):
        m.add(part[:, 0], part[:, 1], part[:, 2])
    assert m.nbytes == 6 * (len(subjects) + 1)  # sized exactly, 6 B per key
    live = [k for k in subjects if k not in gaps]
    assert m.n_present == len(live) and m.present_keys().tolist() == live
    assert m.last_finger == rows[-1, 0] and m.max_key == live[-1]
    # finger id -> (key, position) for every id ever assigned; gaps' ids resolve to nothing
    every = np.arange(0, max(max(ids.values()) for ids in subjects.values()) + 3)
    keys, pos = m.locate(every)
    want = {f: (k, p) for k, ids in subjects.items() if k not in gaps for p, f in ids.items()}
    assert [(int(a), int(b)) for a, b in zip(keys, pos)] == [want.get(int(f), (0, 0)) for f in every]
    # key -> finger id per position
    probe = np.asarray(list(subjects) + [0, len(subjects) + 5], np.int64)
    table = m.finger_table(probe)
    for row, k in zip(table, probe.tolist()):
        ids = subjects.get(k, {}) if k not in gaps else {}
        assert row.tolist() == [ids.get(p, 0) for p in range(11)]
    assert m.positions(live[0]) == tuple(sorted(subjects[live[0]]))
    for p in (1, 5, 10):
        upto = int(rows[len(rows) // 2, 0])
        assert m.keys_at(p, upto).tolist() == [k for k in live if p in subjects[k] and subjects[k][p] <= upto]
        assert m.keys_at(p, m.last_finger).tolist() == [k for k in live if p in subjects[k]]
        for lo, hi in ((50, 120), (0, 3), (290, 10**6), (7, 7)):
            for top in (upto, m.last_finger):
                assert m.keys_at(p, top, lo, hi).tolist() == [k for k in m.keys_at(p, top).tolist() if lo <= k < hi]
    # removal: by any finger id of the subject; its ids still resolve, it is no longer enrolled
    gone = live[3::5]
    removed = m.remove([subjects[k][max(subjects[k])] for k in gone] + [0, 10**9])
    assert removed.tolist() == gone and m.remove([subjects[gone[0]][max(subjects[gone[0]])]]).tolist() == []
    assert m.n_present == len(live) - len(gone) and not m.present(gone).any()
    assert sorted(m.finger_ids(gone).tolist()) == sorted(f for k in gone for f in subjects[k].values())
    assert not m.finger_table(gone).any() and m.positions(gone[0]) == ()
    k2, _ = m.locate([subjects[gone[0]][p] for p in subjects[gone[0]]])
    assert set(k2.tolist()) == {gone[0]}


def test_map_refuses_rows_out_of_the_store_order():
    m = FingerMap()
    m.add([1, 2], [1, 1], [2, 7])
    bad = {
        "ids not increasing": ([2], [2], [1]),
        "keys decreasing": ([3, 4], [3, 2], [1, 1]),
        "positions not ascending": ([3, 4], [2, 2], [5, 4]),
        "ids of a subject not consecutive": ([3, 5], [2, 2], [1, 2]),
        "continuing a subject below its positions": ([3], [1], [5]),
        "continuing a subject with a gap": ([4], [1], [9]),
        "position out of range": ([3], [2], [11]),
    }
    for why, (f, k, p) in bad.items():
        with pytest.raises(InvalidInputError):
            m.add(f, k, p)
        assert m.last_finger == 2 and m.max_key == 1, why  # nothing folded
    m.add([3], [1], [9])  # the last subject continued in the next chunk
    assert m.positions(1) == (2, 7, 9)
    with pytest.raises(ShardFullError):
        m.add([2**32], [2], [1])


def test_map_grows_by_a_quarter():
    m = FingerMap(1000)
    size = len(m._first.data)
    m.add([1], [size], [1])
    assert size < len(m._first.data) <= int(size * 1.25) + 1


# ---- the store keeps the order --------------------------------------------------------------
def _store(tmp_path):
    from biomatch.dedup.store import Store

    return Store(tmp_path / "s.sqlite", create=True, meta={"shard": 0})


def test_store_refuses_batches_out_of_order(tmp_path):
    s = _store(tmp_path)
    subjects = [("a", None, None), ("b", None, None)]
    for fingers in ([(0, 2, b"x", 1), (0, 1, b"y", 1), (1, 1, b"z", 1)],  # positions descending
                    [(0, 1, b"x", 1), (1, 1, b"y", 1), (0, 2, b"z", 1)],  # a subject's fingers apart
                    [(1, 1, b"x", 1), (0, 1, b"y", 1)],  # subjects out of order
                    [(0, 1, b"x", 1)]):  # a subject without fingers
        with pytest.raises(InvalidInputError, match="fingers"):
            s.insert_batch(subjects, fingers)
    assert s.sequences() == {"fingers": 0, "subjects": 0, "removals": 0}  # nothing written
    with pytest.raises(InvalidInputError, match="templates"):
        s.insert("c", {}, None, None)
    assert s.insert_batch(subjects, [(0, 1, b"x", 1), (0, 4, b"y", 1), (1, 3, b"z", 1)]) == (1, 1)
    assert s.finger_keys_since(0) == [(1, 1, 1), (2, 1, 4), (3, 2, 3)]
    s.close()


def test_store_refuses_ids_a_shard_cannot_address(tmp_path, monkeypatch):
    from biomatch.dedup import store

    s = _store(tmp_path)
    monkeypatch.setattr(store, "MAX_SUBJECT_KEY", 2)
    s.insert("a", {1: (b"x", 1)}, None, None)
    with pytest.raises(ShardFullError, match="add_shard"):
        s.insert_batch([("b", None, None), ("c", None, None)], [(0, 1, b"x", 1), (1, 1, b"y", 1)])
    s.insert("b", {1: (b"x", 1)}, None, None)
    with pytest.raises(ShardFullError):
        s.insert("c", {1: (b"x", 1)}, None, None)
    assert s.counts()["subjects"] == 2 and s.sequences()["subjects"] == 2  # the refused one rolled back
    monkeypatch.setattr(store, "MAX_FINGER_ID", 3)
    with pytest.raises(ShardFullError):
        s.insert_batch([("d", None, None)], [(0, 1, b"x", 1), (0, 2, b"y", 1)])
    s.close()


def test_gallery_full_shard_refuses_and_stays_sound(tmp_path, monkeypatch):
    from biomatch.dedup import Gallery, store

    monkeypatch.setattr(store, "MAX_SUBJECT_KEY", 2)
    with Gallery.create(tmp_path / "g") as g:
        g.enroll(make_record("s0", 0, positions=(1, 2)))
        g.enroll(make_record("s1", 1, positions=(1, 2)))
        with pytest.raises(ShardFullError):
            g.enroll(make_record("s2", 2, positions=(1, 2)))
        assert g.stats()["subjects"] == 2 and g.check() == []


# ---- shards over stores and index files ----------------------------------------------------------
def _shard_folder(path: Path) -> Path:
    return path / "shards" / "000"


def test_store_out_of_order_is_damage(tmp_path):
    from biomatch.dedup import Gallery

    with Gallery.create(tmp_path / "g") as g:
        g.enroll_many([make_record(f"s{i}", i, positions=(2, 7)) for i in range(3)])
    c = sqlite3.connect(_shard_folder(tmp_path / "g") / "store.sqlite")
    c.execute("UPDATE fingers SET position = 9 WHERE id = 3")  # subject 2: positions 9 then 7
    c.commit()
    c.close()
    with pytest.raises(CorruptStoreError, match="order"):
        Gallery.open(tmp_path / "g")


def test_memory_per_enrolment_after_open(tmp_path):
    from biomatch.dedup import Gallery

    n = 40
    with Gallery.create(tmp_path / "g") as g:
        g.enroll_many([make_record(f"s{i}", i) for i in range(n)])
    with Gallery.open(tmp_path / "g") as g:
        st = g._shards[0].stats()
        assert st.maps_bytes == 6 * (n + 1)  # exactly the store's keys
        # 64 B code + 4 B key per finger, 1 bit of tombstone (codes memory-mapped)
        assert st.retrieval_bytes == 10 * (n * 68 + (n + 7) // 8)


def test_removed_after_the_index_was_saved(tmp_path):
    """The saved index still holds a subject the store removed since (another process, or a
    kill before the save): its rows are dropped at open, although its fingers are gone."""
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path) as g:
        g.enroll_many([make_record(f"s{i}", i) for i in range(6)])
    index = _shard_folder(path) / "index"
    saved = tmp_path / "index-before"
    shutil.copytree(index, saved)
    with Gallery.open(path) as g:
        g.remove("s2")
        g.remove("s5")  # the last key: beyond every key the next open folds in
    shutil.rmtree(index)
    shutil.copytree(saved, index)  # the files of before the removals
    with Gallery.open(path) as g:
        shard = g._shards[0]
        assert not shard.index_rebuilt and g.check() == []
        assert shard.position_counts() == {p: 4 for p in range(1, 11)}
        assert g.deduplicate(make_record("x", 2, 1)).decision == "UNIQUE"
        assert g.deduplicate(make_record("x", 5, 1)).decision == "UNIQUE"
        assert g.deduplicate(make_record("x", 4, 1)).candidates[0].subject_id == "s4"
        g.enroll(make_record("s6", 6))
        g.remove("s4")
        assert g.deduplicate(make_record("x", 4, 1)).decision == "UNIQUE"
    with Gallery.open(path) as g:
        assert not g._shards[0].index_rebuilt and g.check() == []
        assert g.deduplicate(make_record("x", 6, 1)).candidates[0].subject_id == "s6"
        assert g.deduplicate(make_record("x", 4, 1)).decision == "UNIQUE"


def _rewrite_rows(index: Path, position: int, change) -> None:
    """Rewrite a rows file and its manifest entry as a consistent (checksummed) save would."""
    import hashlib

    from biomatch._io import canonical_checksum

    m = json.loads((index / "manifest.json").read_text())
    f = index / m["current"] / f"rows{position:02d}.npz"
    with np.load(f) as z:
        arrays = change(dict(z))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    f.write_bytes(buf.getvalue())
    m["files"][f.name] = {"bytes": len(buf.getvalue()), "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}
    m["checksum"] = canonical_checksum(m)
    (index / "manifest.json").write_text(json.dumps(m))


def test_rows_that_disagree_with_the_store_are_rebuilt(tmp_path):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    with Gallery.create(path) as g:
        g.enroll_many([make_record(f"s{i}", i) for i in range(5)])
    index = _shard_folder(path) / "index"

    def swap(z):  # two subjects' rows exchanged: keys no longer ascending
        k = z["keys"].copy()
        k[[1, 2]] = k[[2, 1]]
        return {"keys": k}

    _rewrite_rows(index, 3, swap)
    with Gallery.open(path, read_only=True) as g:
        assert g._shards[0].index_rebuilt and "position 3" in g._shards[0].index_problems[0]
        assert g.deduplicate(make_record("x", 2, 1)).candidates[0].subject_id == "s2"
    _rewrite_rows(index, 4, lambda z: {"keys": np.where(z["keys"] == 3, 77, z["keys"]).astype(np.int32)})
    with Gallery.open(path, read_only=True) as g:  # a key the store never assigned
        assert g._shards[0].index_rebuilt
    _rewrite_rows(index, 5, lambda z: {"keys": z["keys"][:-1]})
    with Gallery.open(path, read_only=True) as g:  # a row short: refused when read
        assert "4 keys" in g._shards[0]._retrieval.rejected
        assert g.deduplicate(make_record("x", 4, 1)).candidates[0].subject_id == "s4"


def test_index_of_format_version_1_is_converted(tmp_path):
    """An index saved with finger ids per row (format version 1, before this layout) is read, its
    keys kept, and re-saved in version 2 by a writable open."""
    from biomatch.dedup import Gallery

    fixture = Path(__file__).resolve().parents[1] / "data" / "legacy_gallery_bc43d88" / "gallery"
    path = tmp_path / "legacy"
    shutil.copytree(fixture, path)
    index = _shard_folder(path) / "index"
    assert json.loads((index / "manifest.json").read_text())["version"] == 1
    with Gallery.open(path) as g:
        assert not g._shards[0].index_rebuilt and g.check() == []
        assert g._shards[0].position_counts() == {2: 6, 7: 6}
        g.remove("legacy-1")
    m = json.loads((index / "manifest.json").read_text())
    assert m["version"] == 2
    with np.load(index / m["current"] / "rows02.npz") as z:
        assert list(z) == ["keys"] and z["keys"].dtype == np.int32
    with Gallery.open(path) as g:
        assert not g._shards[0].index_rebuilt and g.check() == []
        assert g._shards[0].position_counts() == {2: 5, 7: 5}


def test_encrypted_index_in_memory_is_not_grown(tmp_path):
    """An encrypted gallery's codes are decrypted into memory at their exact size; enrolments
    after the open go to the delta, so FAISS's vector never doubles the base."""
    from biomatch.dedup import Gallery
    from biomatch.dedup.encryption import KeyFile, generate_key_file

    generate_key_file(tmp_path / "kek")
    key = KeyFile(tmp_path / "kek")
    with Gallery.create(tmp_path / "g", key=key) as g:
        g.enroll_many([make_record(f"s{i}", i, positions=(1, 2)) for i in range(4)])
    with Gallery.open(tmp_path / "g", key=key) as g:
        ix = g._shards[0]._retrieval._index[1]
        assert not ix.mapped and ix.ntotal == 4 and ix.n_delta == 0
        g.enroll(make_record("s4", 4, positions=(1, 2)))
        assert ix.n_delta == 1 and int(ix._base.ntotal) == 4
    with Gallery.open(tmp_path / "g", key=key) as g:  # folded into one sealed file at the close
        ix = g._shards[0]._retrieval._index[1]
        assert ix.ntotal == 5 and ix.n_delta == 0 and g.check() == []
        assert g.deduplicate(make_record("x", 4, 1, positions=(1, 2))).candidates[0].subject_id == "s4"
