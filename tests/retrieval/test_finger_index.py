"""FingerIndex: exact against a numpy brute force, persistence, memory-mapped delta, tombstones."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from biomatch.errors import InvalidInputError
from biomatch.retrieval.finger_index import FingerIndex, IndexFileError


def _codes(n, n_bytes=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, n_bytes), dtype=np.uint8)


def _brute(gallery, queries, removed=()):
    d = np.unpackbits(queries[:, None, :] ^ gallery[None, :, :], axis=2).sum(2)
    d[:, list(removed)] = 10**9
    return d


def _check_against_brute(index, gallery, queries, k, removed=()):
    dist, rows = index.search(queries, k)
    ref = _brute(gallery, queries, removed)
    assert dist.dtype == np.uint32 and rows.dtype == np.int64 and dist.shape == rows.shape == (len(queries), k)
    n_active = len(gallery) - len(set(removed))
    for q in range(len(queries)):
        got = rows[q][rows[q] >= 0]
        assert len(got) == min(k, n_active)
        assert not set(got) & set(removed)
        # Distances are the true ones, ascending, and equal to the k smallest (ties may reorder rows).
        np.testing.assert_array_equal(dist[q, :len(got)], ref[q, got])
        np.testing.assert_array_equal(np.sort(ref[q])[:len(got)], dist[q, :len(got)])
        assert np.all(dist[q, len(got):] == index.n_bits + 1) and np.all(rows[q, len(got):] == -1)


def test_search_equals_brute_force():
    g, q = _codes(500), _codes(20, seed=1)
    index = FingerIndex(512)
    assert index.add(g[:200]) == 0
    assert index.add(g[200:]) == 200
    assert index.ntotal == len(index) == 500
    _check_against_brute(index, g, q, 10)
    _check_against_brute(index, g, g[:5], 1)  # a code finds itself at distance 0
    assert np.all(index.search(g[:5], 1)[0][:, 0] == 0)


def test_large_k_with_many_ties_equals_brute_force():
    # k-selection by counting (use_heap off): short codes give distances 0-64, so most of a
    # large k sits on tied distances; removed rows must still be skipped.
    g, q = _codes(3000, n_bytes=8, seed=3), _codes(5, n_bytes=8, seed=4)
    index = FingerIndex(64)
    index.add(g)
    _check_against_brute(index, g, q, 1200)
    index.remove(np.arange(0, 3000, 7))
    _check_against_brute(index, g, q, 1200, removed=range(0, 3000, 7))


def test_fewer_rows_than_k_gives_minus_one():
    g = _codes(3)
    index = FingerIndex(512)
    index.add(g)
    dist, rows = index.search(g[0], 5)
    assert rows.shape == (1, 5) and list(rows[0, 3:]) == [-1, -1] and np.all(dist[0, 3:] == 513)
    empty = FingerIndex(512)
    d, r = empty.search(g, 2)
    assert np.all(r == -1) and np.all(d == 513)


def test_tombstones_never_returned():
    g, q = _codes(300), _codes(10, seed=2)
    index = FingerIndex(512)
    index.add(g)
    removed = [0, 5, 17, 299]
    assert index.remove(removed) == 4
    assert index.remove([5]) == 0
    assert len(index) == 296 and index.ntotal == 300
    _check_against_brute(index, g, np.vstack([q, g[removed]]), 7, removed)


def test_save_open_round_trip(tmp_path):
    g, q = _codes(400), _codes(10, seed=3)
    index = FingerIndex(512)
    index.add(g)
    index.remove([3, 4])
    path = tmp_path / "finger_2.bidx"
    index.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    for mmap in (False, True):
        back = FingerIndex.open(path, mmap=mmap)
        assert back.mapped is mmap and back.ntotal == 400 and len(back) == 398
        _check_against_brute(back, g, q, 9, [3, 4])


def test_mapped_codes_are_advised_for_huge_pages(tmp_path):
    """Opening maps the codes and advises the whole mapping for 2 MiB pages (Linux): the
    mapping is flagged (VmFlags "hg" in smaps), and the codes read back unchanged."""
    import sys

    from biomatch._io import advise_huge_pages

    g = _codes(3000)
    index = FingerIndex(512)
    index.add(g)
    path = tmp_path / "big.bidx"
    index.save(path)
    mapped = FingerIndex.open(path, mmap=True)
    view = mapped._storage(mapped._base, mapped.ntotal)
    assert np.array_equal(view, g) and not view.flags.writeable
    assert advise_huge_pages(np.zeros(4)) in (True, False)  # anonymous memory: allowed, whatever the kernel says
    if sys.platform.startswith("linux") and os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"):
        addr = view.__array_interface__["data"][0]
        flags = None
        with open("/proc/self/smaps") as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            lo, _, hi = line.split(" ", 1)[0].partition("-")
            if hi and all(c in "0123456789abcdef" for c in lo + hi) and int(lo, 16) <= addr < int(hi, 16):
                flags = next(x for x in lines[i + 1:] if x.startswith("VmFlags"))
                break
        assert flags is not None and " hg" in flags, flags


def test_mmap_plus_delta(tmp_path):
    g, q = _codes(600), _codes(15, seed=4)
    index = FingerIndex(512)
    index.add(g[:400])
    path = tmp_path / "f.bidx"
    index.save(path)
    mapped = FingerIndex.open(path, mmap=True)
    assert mapped.add(g[400:]) == 400  # goes to the in-memory delta, never to the mapped index
    assert mapped.n_delta == 200
    mapped.remove([10, 450])
    _check_against_brute(mapped, g, np.vstack([q, g[[10, 450, 500]]]), 12, [10, 450])
    # Folding base + delta into a new file keeps every row and tombstone.
    path2 = tmp_path / "g.bidx"
    mapped.save(path2)
    again = FingerIndex.open(path2, mmap=False)
    assert again.ntotal == 600 and again.n_delta == 0
    _check_against_brute(again, g, q, 12, [10, 450])


def test_bad_input(tmp_path):
    index = FingerIndex(256)
    with pytest.raises(InvalidInputError, match="codes"):
        index.add(np.zeros((2, 32), np.int64))
    with pytest.raises(InvalidInputError, match="shape"):
        index.add(np.zeros((2, 64), np.uint8))
    with pytest.raises(InvalidInputError, match="k"):
        index.search(np.zeros(32, np.uint8), 0)
    with pytest.raises(InvalidInputError, match="rows"):
        index.remove([0])
    with pytest.raises(InvalidInputError, match="n_bits"):
        FingerIndex(100)
    with pytest.raises(InvalidInputError, match="factory"):
        FingerIndex(256, "NoSuchIndex")
    with pytest.raises(IndexFileError):
        FingerIndex.open(tmp_path / "missing.bidx")
    (tmp_path / "junk.bidx").write_bytes(b"not an index")
    with pytest.raises(IndexFileError):
        FingerIndex.open(tmp_path / "junk.bidx")
