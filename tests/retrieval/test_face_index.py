"""FaceIndex: exact against a numpy brute force, ANN kinds, tombstones, persistence, kill safety."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from biomatch.errors import IndexFileError, InvalidInputError
from biomatch.retrieval.face_index import FaceHits, FaceIndex


def _unit(n, dim=128, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _check_against_brute(index, gallery, queries, k, removed=()):
    """Scores are the true cosines, descending, equal to the k best active ones; removed rows never appear."""
    hits = index.search(queries, k)
    scores, rows = hits
    assert isinstance(hits, FaceHits) and hits.rows is rows
    assert scores.dtype == np.float32 and rows.dtype == np.int64 and scores.shape == rows.shape == (len(queries), k)
    ref = queries.astype(np.float64) @ gallery.astype(np.float64).T
    ref[:, list(removed)] = -np.inf
    n_active = len(gallery) - len(set(removed))
    for q in range(len(queries)):
        got = rows[q][rows[q] >= 0]
        assert len(got) == min(k, n_active)
        assert not set(got.tolist()) & set(removed)
        np.testing.assert_allclose(scores[q, :len(got)], ref[q, got], atol=2e-6)
        np.testing.assert_allclose(scores[q, :len(got)], np.sort(ref[q])[::-1][:len(got)], atol=2e-6)
        assert np.all(np.diff(scores[q, :len(got)]) <= 0)
        assert np.all(scores[q, len(got):] == -np.inf) and np.all(rows[q, len(got):] == -1)


def test_exact_search_equals_numpy_brute_force():
    g, q = _unit(700), _unit(25, seed=1)
    index = FaceIndex()
    assert index.add(g[:300]) == 0
    assert index.add(g[300:].astype(np.float64)) == 300  # float64 is converted, not refused
    assert index.ntotal == len(index) == 700 and index.factory == "Flat"
    _check_against_brute(index, g, q, 10)
    _check_against_brute(index, g, q, 1)
    scores, rows = index.search(g[:5], 1)  # an embedding finds itself with cosine 1
    assert list(rows[:, 0]) == [0, 1, 2, 3, 4] and np.allclose(scores[:, 0], 1.0, atol=1e-6)
    assert np.all(scores <= 1.0)


def test_fewer_rows_than_k_and_empty_index():
    g = _unit(3)
    index = FaceIndex()
    index.add(g)
    scores, rows = index.search(g[0], 5)
    assert rows.shape == (1, 5) and list(rows[0, 3:]) == [-1, -1] and np.all(scores[0, 3:] == -np.inf)
    scores, rows = FaceIndex().search(g, 2)
    assert np.all(rows == -1) and np.all(scores == -np.inf)
    assert FaceIndex().add(np.zeros((0, 128), np.float32)) == 0


def test_tombstones_never_returned():
    g, q = _unit(400), _unit(10, seed=2)
    index = FaceIndex()
    index.add(g)
    removed = [0, 5, 17, 399]
    assert index.remove(removed) == 4
    assert index.remove(np.int64(5)) == 0
    assert len(index) == 396 and index.ntotal == 400
    assert list(index.is_removed([0, 1])) == [True, False]
    _check_against_brute(index, g, np.vstack([q, g[removed]]), 7, removed)
    # Removing almost everything still returns only the survivors.
    index.remove(np.arange(2, 400))
    scores, rows = index.search(g[:3], 5)
    assert set(rows[rows >= 0].tolist()) == {1} and np.all(rows[:, 1:] == -1)


def test_ivf_with_all_lists_probed_is_exact_and_hides_tombstones():
    g, q = _unit(2000, seed=3), _unit(20, seed=4)
    index = FaceIndex(factory="IVF16,Flat")
    assert not index.is_trained
    index.add(g)  # trained on the first batch
    assert index.is_trained
    index.remove([1, 2, 3])
    scores, rows = index.search(q, 10, nprobe=16)
    index.tune(nprobe=16)
    _check_against_brute(index, g, np.vstack([q, g[:4]]), 10, [1, 2, 3])
    index.tune(nprobe=1)
    s1, r1 = index.search(q, 10)
    assert np.mean([len(set(a) & set(b)) for a, b in zip(r1, rows)]) < 10  # nprobe=1 is approximate


def test_hnsw_recall_against_brute_force():
    g, q = _unit(3000, seed=5), _unit(50, seed=6)
    index = FaceIndex(factory="HNSW32")
    index.add(g)
    index.remove([10, 20])
    ref = q @ g.T
    ref[:, [10, 20]] = -np.inf
    truth = np.argsort(-ref, axis=1)[:, :10]
    _, rows = index.search(q, 10, ef_search=200)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, truth)])
    assert recall >= 0.95
    assert not np.isin(rows, [10, 20]).any()


def test_save_open_round_trip(tmp_path):
    g, q = _unit(500), _unit(10, seed=7)
    index = FaceIndex()
    index.add(g)
    index.remove([3, 4])
    path = tmp_path / "faces.fidx"
    index.save(path)
    for p in (path, tmp_path / "faces.fidx.removed"):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    for mmap in (False, True):
        back = FaceIndex.open(path, mmap=mmap)
        assert back.mapped is mmap and back.ntotal == 500 and len(back) == 498 and back.factory == "Flat"
        _check_against_brute(back, g, q, 9, [3, 4])


def test_mmap_plus_delta_and_save_over_the_mapped_file(tmp_path):
    g, q = _unit(800), _unit(15, seed=8)
    index = FaceIndex()
    index.add(g[:500])
    path = tmp_path / "f.fidx"
    index.save(path)
    mapped = FaceIndex.open(path, mmap=True)
    assert mapped.add(g[500:]) == 500  # goes to the in-memory delta, never to the mapped index (abort)
    assert mapped.n_delta == 300
    mapped.remove([10, 650])
    _check_against_brute(mapped, g, np.vstack([q, g[[10, 650, 700]]]), 12, [10, 650])
    mapped.save(path)  # replaced by rename: the mapping keeps the old file alive
    _check_against_brute(mapped, g, q, 12, [10, 650])
    again = FaceIndex.open(path, mmap=False)
    assert again.ntotal == 800 and again.n_delta == 0 and not again.mapped
    _check_against_brute(again, g, q, 12, [10, 650])
    again.add(g[:1])  # an in-memory index grows in place
    assert again.n_delta == 0 and again.ntotal == 801


def test_ivf_and_hnsw_keep_their_kind_and_effort_through_save(tmp_path):
    g, q = _unit(2000, seed=9), _unit(10, seed=10)
    for factory, effort in (("IVF16,Flat", {"nprobe": 16}), ("HNSW16", {"ef_search": 300})):
        index = FaceIndex(factory=factory)
        index.add(g[:1500])
        index.tune(**effort)
        path = tmp_path / f"{factory.replace(',', '_')}.fidx"
        index.save(path)
        mapped = FaceIndex.open(path)
        assert mapped.factory == factory
        mapped.add(g[1500:])
        mapped.remove([0])
        folded = tmp_path / "folded.fidx"
        mapped.save(folded)
        back = FaceIndex.open(folded, mmap=False)
        assert back.factory == factory and back.ntotal == 2000 and back.n_delta == 0
        scores, rows = back.search(g[[1, 1600, 1999]], 1)
        assert list(rows[:, 0]) == [1, 1600, 1999]
        if factory.startswith("IVF"):
            _check_against_brute(back, g, q, 5, [0])  # nprobe=16 stored in the file: exact


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 64), np.float32), "shape"),
    (np.zeros((2, 128), np.int64), "float"),
    ([[0.0] * 128], "float"),
    (np.full((1, 128), np.nan, np.float32), "NaN"),
    (np.full((1, 128), 1.0, np.float32), "unit L2 norm.*norm 11.3"),
    (np.zeros((1, 128), np.float32), "unit L2 norm.*refused, not normalised"),
])
def test_bad_embeddings_are_typed(bad, match):
    index = FaceIndex()
    with pytest.raises(InvalidInputError, match=match):
        index.add(bad)
    with pytest.raises(InvalidInputError):
        index.search(bad, 1)
    assert index.ntotal == 0


def test_bad_arguments_are_typed():
    index = FaceIndex()
    index.add(_unit(5))
    with pytest.raises(InvalidInputError, match="k"):
        index.search(_unit(1), 0)
    with pytest.raises(InvalidInputError, match="rows"):
        index.remove([5])
    with pytest.raises(InvalidInputError, match="rows"):
        index.remove([0.5])
    with pytest.raises(InvalidInputError, match="nprobe"):
        index.search(_unit(1), 1, nprobe=4)  # a Flat index has no lists: refused, not ignored
    with pytest.raises(InvalidInputError, match="ef_search"):
        FaceIndex(factory="HNSW8").search(_unit(1), 1, ef_search=0)
    for factory in ("NoSuchIndex", "IDMap,Flat", "PCA64,Flat", ""):
        with pytest.raises(InvalidInputError, match="factory"):
            FaceIndex(factory=factory)
    with pytest.raises(InvalidInputError, match="dim"):
        FaceIndex(dim=0)
    with pytest.raises(InvalidInputError, match="train"):
        FaceIndex(factory="IVF64,Flat").add(_unit(10))  # fewer rows than lists


def test_bad_files_are_typed(tmp_path):
    import faiss

    with pytest.raises(IndexFileError, match="found none"):
        FaceIndex.open(tmp_path / "missing.fidx")
    index = FaceIndex()
    index.add(_unit(20))
    path = tmp_path / "a.fidx"
    index.save(path)
    side = tmp_path / "a.fidx.removed"
    good = side.read_bytes()
    side.write_bytes(good[:-5] + bytes([good[-5] ^ 1]) + good[-4:])
    with pytest.raises(IndexFileError, match="checksum"):
        FaceIndex.open(path)
    side.unlink()
    with pytest.raises(IndexFileError, match="sidecar"):
        FaceIndex.open(path)
    side.write_bytes(good)
    path.write_bytes(b"not an index")
    with pytest.raises(IndexFileError, match="cannot read"):
        FaceIndex.open(path)
    l2 = faiss.IndexFlatL2(128)
    faiss.write_index(l2, str(path))
    with pytest.raises(IndexFileError, match="inner-product"):
        FaceIndex.open(path)


def test_kill_between_sidecar_and_index_rename_never_resurrects_a_removed_row(tmp_path, monkeypatch, caplog):
    g = _unit(300, seed=11)
    index = FaceIndex()
    index.add(g[:200])
    index.remove([1])
    path = tmp_path / "k.fidx"
    index.save(path)
    old_index_bytes = path.read_bytes()
    index.add(g[200:])
    index.remove([2, 250])

    real_replace = os.replace

    def crash_on_index(src, dst):
        if os.fspath(dst) == os.fspath(path):
            raise KeyboardInterrupt("killed")  # BaseException, like a signal at that instant
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_index)
    with pytest.raises(KeyboardInterrupt):
        index.save(path)
    monkeypatch.setattr(os, "replace", real_replace)
    assert path.read_bytes() == old_index_bytes  # the old index file is intact
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    back = FaceIndex.open(path, mmap=False)
    assert back.ntotal == 200 and "rows 200..299 are lost" in caplog.text
    assert list(np.flatnonzero(back.is_removed(np.arange(200)))) == [1, 2]  # the later removal kept
    _check_against_brute(back, g[:200], g[:5], 4, [1, 2])


def test_kill_before_any_rename_leaves_the_old_pair(tmp_path, monkeypatch):
    g = _unit(100, seed=12)
    index = FaceIndex()
    index.add(g[:50])
    path = tmp_path / "k.fidx"
    index.save(path)
    before = (path.read_bytes(), (tmp_path / "k.fidx.removed").read_bytes())
    index.add(g[50:])
    index.remove([0])
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(IndexFileError, match="cannot write"):
        index.save(path)
    monkeypatch.undo()
    assert (path.read_bytes(), (tmp_path / "k.fidx.removed").read_bytes()) == before
    back = FaceIndex.open(path)
    assert back.ntotal == 50 and len(back) == 50


_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from biomatch.retrieval.face_index import FaceIndex
    path = sys.argv[1]
    index = FaceIndex()
    for gen in range(10_000):
        x = np.random.default_rng(gen).normal(size=(2000, 128)).astype(np.float32)
        index.add(x / np.linalg.norm(x, axis=1, keepdims=True))
        index.remove([7 * gen])
        index.save(path)
        if gen == 0:
            print("saved", flush=True)
""")


def test_sigkill_during_repeated_saves_leaves_a_consistent_index(tmp_path):
    """A real kill -9 at random moments: the files always open, rows are a prefix, tombstones are right."""
    path = tmp_path / "kill.fidx"
    rng = np.random.default_rng(0)
    for trial in range(4):
        for p in tmp_path.iterdir():
            p.unlink()
        child = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"saved"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        back = FaceIndex.open(path, mmap=False)
        n = back.ntotal
        assert n % 2000 == 0 and n >= 2000
        gens = n // 2000  # generations 0 .. gens-1 are in the index file
        removed = set(np.flatnonzero(back.is_removed(np.arange(n))).tolist())
        expected = {7 * g for g in range(gens)}
        # The sidecar may be one generation ahead (killed between the two renames).
        assert removed in (expected, expected | {7 * gens})
        last = np.random.default_rng(gens - 1).normal(size=(2000, 128)).astype(np.float32)
        last /= np.linalg.norm(last, axis=1, keepdims=True)
        scores, rows = back.search(last[:3], 1)
        assert list(rows[:, 0]) == [n - 2000, n - 1999, n - 1998]


def test_overwriting_another_index_replaces_both_files(tmp_path):
    path = tmp_path / "o.fidx"
    a = FaceIndex()
    a.add(_unit(30, seed=1))
    a.remove([0, 1, 2])
    a.save(path)
    b = FaceIndex()
    b.add(_unit(10, seed=2))
    b.save(path)
    back = FaceIndex.open(path)
    assert back.ntotal == 10 and len(back) == 10


def test_concurrent_searches_agree():
    from concurrent.futures import ThreadPoolExecutor

    g, q = _unit(2000, seed=13), _unit(40, seed=14)
    index = FaceIndex()
    index.add(g)
    index.remove([5, 6])
    ref = index.search(q, 5)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: index.search(q, 5), range(8)))
    for s, r in outs:
        np.testing.assert_array_equal(r, ref.rows)
