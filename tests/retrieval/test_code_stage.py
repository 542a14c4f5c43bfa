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
    # per position: rows ascending by distance, each with its subject key
    scanned = r.scan(codes, 5)
    for p, (d, skeys, scores) in scanned.items():
        assert len(d) == 5 and np.all(np.diff(d) >= 0) and skeys.dtype == np.int64 and np.all(skeys >= 0)
        assert np.all(skeys < 40) and len(set(skeys.tolist())) == 5
        assert scores.dtype == np.float32 and scores.shape == (5,) and np.all(scores <= r.n_bits / 2 + 1e-3)
    # the table's columns are the per-position parts of the sum; a cut at -1 keeps nothing there
    keys5, table = r.person_table(scanned, {p: r.n_bits for p in scanned})
    assert table.shape == (len(keys5), 11) and not table[:, 0].any()
    assert keys5[np.argmax(table.sum(axis=1))] == 17
    keys0, table0 = r.person_table(scanned, {p: -1 for p in scanned})
    assert len(keys0) == 0 and table0.shape == (0, 11)


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
