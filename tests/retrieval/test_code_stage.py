"""FaissRetrieval on its own: the two-phase code stage (scan, person table), code_ranking, parameters."""

from __future__ import annotations

import numpy as np
import pytest

from biomatch.datasets.synthetic import template_impressions
from biomatch.errors import InvalidInputError
from biomatch.retrieval.faiss_retrieval import FaissRetrieval, FaissRetrievalParams, code_ranking


def _fingers(person: int, impression: int = 0) -> dict:
    """Impression ``impression`` of the ten fingers of generated person ``person`` (as tests/dedup)."""
    return {p: template_impressions(person * 16 + p, impression + 1)[impression] for p in range(1, 11)}


@pytest.fixture(scope="module")
def forty():
    r = FaissRetrieval(FaissRetrievalParams(min_persons=3, penetration=0.01))
    fid = 0
    for person in range(40):
        for p, t in _fingers(person).items():
            fid += 1
            r.add(p, [fid], [t], [person])
    return r


def test_code_stage_ranks_the_mate_first(forty):
    r = forty
    assert r.n_persons == 40 and r.indexed_upto == 400
    assert r.position_counts() == {p: 40 for p in range(1, 11)}
    probe = _fingers(17, 1)
    codes = r.probe_codes(probe)
    assert sorted(codes) == list(range(1, 11)) and all(c.code.shape == (r.n_bits // 8,) for c in codes.values())
    keys, scores, k = code_ranking(r, probe)
    assert k == 3 and keys[np.argmax(scores)] == 17 and np.all(np.diff(keys) > 0)
    # the exhaustive pass: every person's sum, equal to the per-row scores added in position order
    sums, seen = (a.copy() for a in r.person_sums(codes))  # the retrieval's buffers: kept, copied
    assert sums.dtype == np.float32 and seen.tolist() == [1] * 40 and np.isfinite(sums).all()
    ref = np.zeros(40, np.float32)
    for p in sorted(codes):
        rows = np.arange(40)
        ref[r._keys[p].view()] += codes[p].scores(r._index[p].codes(rows))
    assert np.array_equal(sums, ref)
    assert np.array_equal(np.sort(scores), np.sort(sums.astype(np.float64)))
    # the scan keeps the best n (all persons tied with the n-th), scores as the sums
    best, total, n_scored = r.scan(codes, 5)
    assert n_scored == 40 and len(best) == 5 and 17 in best.tolist()
    assert np.array_equal(total, sums[best].astype(np.float64))
    assert total.min() >= np.sort(sums)[-5]
    assert len(r.scan(codes, 100)[0]) == 40 and len(r.scan(codes, 0)[0]) == 0
    # the table's columns are the per-position parts of the sum
    table = r.person_table(codes, best)
    assert table.shape == (len(best), 11) and not table[:, 0].any()
    np.testing.assert_allclose(table.sum(axis=1), total, rtol=1e-5)
    assert r.person_table(codes, np.array([999], np.int64)).tolist() == [[0.0] * 11]  # no such person


@pytest.mark.parametrize("n_planes", [1, 3, 4, 6])  # 3 is the default; 6 takes AVX2's scalar path
def test_every_kernel_sums_the_same_and_skips_removed_rows(n_planes):
    from biomatch._native import available_kernels, load_kernel
    rng = np.random.default_rng(3)
    n = 1003  # not a multiple of 8: the tombstone bitmap's last byte is partial
    codes = rng.integers(0, 256, (n, 64), dtype=np.uint8)
    keys = np.sort(rng.choice(5000, n, replace=False)).astype(np.int32)
    probe = rng.integers(0, 256, 64, dtype=np.uint8)
    planes = rng.integers(0, 256, (n_planes, 64), dtype=np.uint8)
    removed = np.zeros(n, bool)
    removed[rng.choice(n, 50, replace=False)] = True
    packed = np.packbits(np.concatenate([np.zeros(3, bool), removed]))  # rows start at bit 3

    def plane_scores(rows, probe, planes, total, scale):  # the definition, in numpy
        ones = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int64)
        d = sum(ones[(rows ^ probe) & plane].sum(axis=1) << level for level, plane in enumerate(planes))
        return np.float32(scale) * (total - 2 * d).astype(np.float32)

    want = np.zeros(5000, np.float32)
    want[keys[~removed]] += plane_scores(codes[~removed], probe, planes, 1234, np.float32(0.25))
    for name in available_kernels():
        sums, seen = np.zeros(5000, np.float32), np.zeros(5000, np.uint8)
        load_kernel(name).code_sums(codes, keys, packed, 3, probe, planes, 1234, 0.25, sums, seen)
        assert np.array_equal(sums, want), name
        assert np.array_equal(np.flatnonzero(seen), np.sort(keys[~removed])), name
        short = np.full(10, np.nan, np.float32)  # not seen yet: the values are ignored, sums start from 0
        load_kernel(name).code_sums(codes, keys, None, 0, probe, planes, 1234, 0.25, short, np.zeros(10, np.uint8))
        short[np.isnan(short)] = 0
        assert np.array_equal(short, np.bincount(keys[keys < 10], plane_scores(codes[keys < 10], probe, planes, 1234,
                                                                                 np.float32(0.25)), 10).astype(np.float32))
        with pytest.raises(ValueError, match="width"):
            load_kernel(name).code_sums(codes, keys, None, 0, probe[:32], planes, 1, 1.0, sums, seen)


def test_blocked_sums_are_the_sums_position_after_position():
    """code_sums_blocked (every position in one call, persons in blocks) gives the bits of
    code_sums called position after position, on every kernel: runs of consecutive keys (the
    vector add), gaps, keys past the sums (skipped), removed rows, a delta part after the base,
    row counts that are not multiples of 8, blocks from 1 person up."""
    from biomatch._native import available_kernels, load_kernel
    rng = np.random.default_rng(5)
    n_keys = 3000

    def keys_with_runs(n, hi):
        runs = np.concatenate([np.arange(s, s + rng.integers(1, 40)) for s in rng.choice(hi, n // 8, replace=False)])
        return np.unique(np.concatenate([runs, rng.choice(hi, n // 4, replace=False)]))[:n].astype(np.int32)

    passes = []
    for position in range(3):
        keys = keys_with_runs(1500 + 7 * position, n_keys + 200)  # some beyond n_keys: skipped
        n = len(keys)
        codes = rng.integers(0, 256, (n, 64), dtype=np.uint8)
        probe = rng.integers(0, 256, 64, dtype=np.uint8)
        planes = rng.integers(0, 256, (3, 64), dtype=np.uint8)
        removed = None
        if position == 1:
            removed = np.packbits(rng.random(n + 5) < 0.1)
        cut = n - 101  # base rows, then a delta (as FingerIndex.score_passes gives them)
        for lo, hi in ((0, cut), (cut, n)):
            passes.append((codes[lo:hi], keys[lo:hi], removed, lo + (5 if removed is not None else 0), probe, planes,
                           1000 + position, float(np.float32(0.5 + position))))
    results = {}
    for name in available_kernels():
        native = load_kernel(name)
        ref_sums, ref_seen = np.full(n_keys, -np.inf, np.float32), np.zeros(n_keys, np.uint8)
        for args in passes:
            native.code_sums(*args, ref_sums, ref_seen)
        for block in (0, 1, 7, 64, 16_384):
            sums, seen = np.full(n_keys, -np.inf, np.float32), np.zeros(n_keys, np.uint8)
            native.code_sums_blocked(passes, sums, seen, block)
            assert np.array_equal(sums.view(np.uint32), ref_sums.view(np.uint32)), (name, block)
            assert np.array_equal(seen, ref_seen), (name, block)
        results[name] = ref_sums
        with pytest.raises(ValueError, match="width"):
            native.code_sums_blocked([passes[0][:4] + (passes[0][4][:32],) + passes[0][5:]], sums, seen, 8)
    first = next(iter(results.values()))
    assert all(np.array_equal(v.view(np.uint32), first.view(np.uint32)) for v in results.values())
    assert np.isfinite(first).sum() > 1500  # most persons were summed


def test_removed_subjects_leave_the_code_stage():
    r = FaissRetrieval(FaissRetrievalParams(min_persons=3, penetration=0.01))
    for person in range(1, 7):
        for p, t in _fingers(person).items():
            r.add(p, [person * 10 + p], [t], [person])
    probe = _fingers(4, 1)
    assert 4 in set(code_ranking(r, probe)[0].tolist())
    assert r.remove([4]) == 10 and r.remove([4]) == 0  # every position; idempotent
    assert 4 not in set(code_ranking(r, probe)[0].tolist())
    assert r.position_counts() == {p: 5 for p in range(1, 11)}
    assert r.remove([5, 6], positions=[2, 3]) == 2  # one finger each
    assert r.position_counts()[2] == 4 and r.position_counts()[3] == 4 and r.position_counts()[4] == 5
    assert r.remove([99]) == 0  # no such subject
    assert r.drop_absent(lambda keys: np.isin(keys, [1, 2, 3])) == 2 * 10 - 2  # 5 and 6 whole
    assert r.position_counts() == {p: 3 for p in range(1, 11)}


def test_rows_keep_keys_ascending():
    r = FaissRetrieval()
    t = _fingers(1)[1]
    r.add(1, [5], [t], [3])
    with pytest.raises(InvalidInputError, match="subject_keys"):
        r.add(1, [6], [t], [3])  # the binary search of remove() needs strictly increasing keys
    with pytest.raises(InvalidInputError, match="subject_keys"):
        r.add(2, [7, 8], [t, t], [5, 4])
    with pytest.raises(InvalidInputError, match="subject_keys"):
        r.add(2, [9], [t], [2**31])  # int32 keys
    r.add(1, [10], [t], [4])
    assert r._keys[1].view().tolist() == [3, 4] and r._keys[1].view().dtype == np.int32


def test_params_validate():
    assert FaissRetrievalParams().k_persons(100) == 50 and FaissRetrievalParams().k_persons(10**6) == 100
    assert FaissRetrievalParams().k_persons(10**6, 2) == 500  # fewer fingers: more persons
    with pytest.raises(InvalidInputError):
        FaissRetrievalParams(penetration=0)
    with pytest.raises(InvalidInputError):
        FaissRetrievalParams(min_persons=10, max_persons=5)


def test_a_person_weakly_alike_on_every_finger_outranks_one_strong_finger():
    # Why the stage sums every finger's score rather than only each position's nearest rows: a
    # person poor on all ten fingers agrees with the probe a little everywhere (here 56 of 256 on
    # each finger, sum 560) and reaches no position's nearest rows; one impostor finger that
    # happens to lie close (156) must not outrank him.
    from biomatch.retrieval.faiss_retrieval import ProbeCode

    rng = np.random.default_rng(9)
    r = FaissRetrieval()
    probe = {p: rng.integers(0, 256, 64, dtype=np.uint8) for p in range(1, 11)}

    def flipped(code, n):
        bits = np.unpackbits(code)
        bits[rng.choice(512, n, replace=False)] ^= 1
        return np.packbits(bits)

    for p in range(1, 11):
        codes = rng.integers(0, 256, (300, 64), dtype=np.uint8)  # persons 0..299: strangers
        codes[7] = flipped(probe[p], 200)  # person 7: Hamming 200 on every finger
        if p == 3:
            codes[11] = flipped(probe[p], 100)  # person 11: one finger at 100, the rest strangers'
        r.add_codes(p, np.arange(300) + 1000 * p, codes, np.ones(300, bool), np.arange(300))
    planes = np.full((3, 64), 255, np.uint8)  # every bit weighs 7: plain Hamming scores
    codes = {p: ProbeCode(c, planes, 7 * 512, np.float32(256 / (7 * 512))) for p, c in probe.items()}
    keys, scores, n = r.scan(codes, 2)
    assert n == 300 and keys[np.argmax(scores)] == 7
    assert max(scores) == pytest.approx(10 * 56, abs=1e-2)
    table = r.person_table(codes, np.array([7, 11]))
    assert table[0, 1:].tolist() == pytest.approx([56.0] * 10, abs=1e-3) and table[1, 3] == pytest.approx(156, abs=1e-3)
    r.remove([7])  # removed: no longer scored, at any position
    keys, scores, n = r.scan(codes, 1)
    assert n == 299 and keys.tolist() == [11]


def test_nth_largest_is_the_partition_value():
    from biomatch.retrieval._codes_nb import nth_largest

    rng = np.random.default_rng(2)
    for m, n in ((1, 1), (10, 10), (1000, 1), (1000, 37), (5000, 100)):
        v = rng.integers(-50, 50, m).astype(np.float32)  # many ties
        v[rng.random(m) < 0.1] = -np.inf  # persons without a row
        assert nth_largest(v, n) == np.partition(v, m - n)[m - n], (m, n)


def test_the_code_stage_refuses_bad_arguments(forty):
    from biomatch.retrieval.codes import plane_scores
    from biomatch.retrieval.finger_index import FingerIndex

    r = forty
    codes = r.probe_codes(_fingers(3, 1))
    with pytest.raises(InvalidInputError, match="n_best"):
        r.scan(codes, -1)
    with pytest.raises(InvalidInputError, match="n_best"):
        r.scan(codes, 2.5)
    ix = FingerIndex(512)
    ix.add(np.zeros((4, 64), np.uint8))
    good = dict(probe=np.zeros(64, np.uint8), planes=np.zeros((3, 64), np.uint8), total=1, scale=1.0,
                keys=np.arange(4, dtype=np.int32), sums=np.zeros(4, np.float32), seen=np.zeros(4, np.uint8))
    for name, bad in (("probe", np.zeros(32, np.uint8)), ("probe", np.zeros(64, np.int64)),
                      ("keys", np.arange(3, dtype=np.int32)), ("keys", np.arange(4)),
                      ("planes", np.zeros((0, 64), np.uint8)), ("planes", np.zeros(64, np.uint8)),
                      ("sums", np.zeros(4)), ("sums", [0.0] * 4)):
        with pytest.raises(InvalidInputError, match=name):
            ix.add_scores(**dict(good, **{name: bad}))
    sums = good["sums"]
    ix.add_scores(**good)  # all zero codes and probe: every bit agrees, scale * total each
    assert sums.tolist() == [1.0] * 4 and good["seen"].tolist() == [1] * 4
    with pytest.raises(InvalidInputError, match="codes"):
        plane_scores(np.zeros((2, 64)), good["probe"], good["planes"], 1, 1.0)  # float codes: never cast
    with pytest.raises(InvalidInputError, match="planes"):
        plane_scores(np.zeros((2, 64), np.uint8), good["probe"], np.zeros((2, 32), np.uint8), 1, 1.0)
