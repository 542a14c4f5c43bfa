"""Identification metrics against a slow reference over raw candidate rows, and hand-computed cases."""

import math

import numpy as np
import pytest

from biomatch.errors import InvalidInputError
from biomatch.evaluate import identification as ID


# --------------------------------------------------------------------------- slow reference (raw rows)

def ref_searches(probe, score, mated):
    """{probe: (is_mated, mate_score or None, rank or 0, top score)} straight from the definitions."""
    out = {}
    for p in dict.fromkeys(probe):
        rows = [(s, m) for q, s, m in zip(probe, score, mated) if q == p]
        mates = [s for s, m in rows if m]
        top = max(s for s, _ in rows)
        if mates:
            best = max(mates)
            rank = 1 + sum(1 for s, m in rows if not m and s >= best)
            out[p] = (True, best, rank, top)
        else:
            out[p] = (False, None, 0, top)
    return out


def ref_cmc(searches, k):
    mated = [v for v in searches.values() if v[0]]
    return sum(1 for v in mated if 1 <= v[2] <= k) / len(mated)


def ref_fnir_at_fpir(searches, fpir, max_rank=None):
    mated = [v for v in searches.values() if v[0]]
    non = [v for v in searches.values() if not v[0]]
    values = sorted({v[3] for v in non} | {v[1] for v in mated})
    ts = sorted(set(values) | {(a + b) / 2 for a, b in zip(values, values[1:])} | {-math.inf, math.inf})
    best = 1.0
    for t in ts:
        fp = sum(1 for v in non if v[3] >= t) / len(non)
        fn = sum(1 for v in mated if not (v[1] >= t and (max_rank is None or v[2] <= max_rank))) / len(mated)
        if fp <= fpir + 1e-12:
            best = min(best, fn)
    return best


def random_rows(rng, n_probes=12, n_gallery=8):
    probe, cand, score, mated = [], [], [], []
    for p in range(n_probes):
        mate = rng.integers(-3, n_gallery)  # negative: a non-mated probe
        for c in range(n_gallery):
            probe.append(f"p{p}")
            cand.append(f"g{c}")
            score.append(float(np.round(rng.normal(1.5 if c == mate else 0.0, 1.0), 1)))  # ties
            mated.append(int(c == mate))
    return probe, cand, score, mated


@pytest.mark.parametrize("seed", range(20))
def test_against_reference(seed):
    rng = np.random.default_rng(seed)
    probe, _, score, mated = random_rows(rng)
    ref = ref_searches(probe, score, mated)
    if not any(v[0] for v in ref.values()) or all(v[0] for v in ref.values()):
        pytest.skip("need mated and non-mated searches")
    o = ID.outcomes_from_rows(probe, score, mated, gallery_size=8)
    ranks, hit = ID.cmc(o)
    assert hit.tolist() == pytest.approx([ref_cmc(ref, k) for k in range(1, 9)])
    assert ID.rank_k(o, 1) == pytest.approx(ref_cmc(ref, 1))
    for fpir in (0.0, 0.1, 0.25, 0.5, 1.0):
        assert ID.fnir_at_fpir(o, fpir) == pytest.approx(ref_fnir_at_fpir(ref, fpir))
        assert ID.fnir_at_fpir(o, fpir, max_rank=1) == pytest.approx(ref_fnir_at_fpir(ref, fpir, 1))


@pytest.mark.parametrize("seed", range(10))
def test_matrix_form_equals_row_form(seed):
    rng = np.random.default_rng(seed)
    s = np.round(rng.normal(0, 1, (9, 6)), 1)
    mate = np.maximum(rng.integers(-2, 6, 9), -1)
    mate[0] = 2  # at least one mated search
    probe = np.repeat(np.arange(9), 6)
    mated = (np.tile(np.arange(6), 9) == np.repeat(mate, 6)).astype(int)
    a = ID.outcomes_from_matrix(s, mate)
    b = ID.outcomes_from_rows(probe, s.ravel(), mated, gallery_size=6)
    # Row form orders probes by id, as the matrix does.
    assert a.mate_rank.tolist() == b.mate_rank.tolist()
    assert a.mate_score.tolist() == b.mate_score.tolist()
    assert a.nonmated_top_score.tolist() == b.nonmated_top_score.tolist()


# --------------------------------------------------------------------------- hand-computed

def test_ties_count_against_the_mate():
    # p1: mate 0.5 tied with one non-mate, one above -> rank 3.
    o = ID.outcomes_from_rows(["p1"] * 4, [0.5, 0.5, 0.7, 0.1], [1, 0, 0, 0], gallery_size=4)
    assert o.mate_rank.tolist() == [3]
    assert ID.cmc(o)[1].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_all_equal_scores():
    o = ID.outcomes_from_matrix(np.ones((2, 3)), np.array([0, -1]))
    assert o.mate_rank.tolist() == [3] and o.nonmated_top_score.tolist() == [1.0]
    # FPIR <= 0 needs T > 1: the mate (1.0) is then missed.
    assert ID.fnir_at_fpir(o, 0.0) == 1.0 and ID.fnir_at_fpir(o, 1.0) == 0.0


def test_single_mated_search_and_truncated_list():
    # p2's identity is enrolled but missing from its top-2 list: a miss at every rank.
    probe = ["p1", "p1", "p2", "p2", "p3", "p3"]
    score = [0.9, 0.2, 0.4, 0.3, 0.6, 0.1]
    mated = [1, 0, 0, 0, 0, 0]
    pm = [1, 1, 1, 1, 0, 0]
    o = ID.outcomes_from_rows(probe, score, mated, pm, gallery_size=100)
    assert o.mate_rank.tolist() == [1, 0] and o.mate_score.tolist() == [0.9, -np.inf]
    assert o.nonmated_top_score.tolist() == [0.6]
    assert ID.rank_k(o, 1) == 0.5 and ID.rank_k(o, 100) == 0.5
    assert ID.fnir_at_fpir(o, 0.0) == 0.5  # T in (0.6, 0.9]: p1 found, p2 never
    # Without probe_mated, p2 would be a non-mated search.
    o2 = ID.outcomes_from_rows(probe, score, mated, gallery_size=100)
    assert o2.n_mated == 1 and o2.n_nonmated == 2


def test_penetration():
    o = ID.SearchOutcomes(np.array([1, 3, 10, 0]), np.array([0.9, 0.5, 0.2, -np.inf]), np.array([]), 10)
    pen, hit = ID.penetration_curve(o)
    assert pen[0] == 0.1 and pen[-1] == 1.0
    assert hit[[0, 2, 9]].tolist() == [0.25, 0.5, 0.75]
    assert ID.hit_rate_at_penetration(o, 0.3) == 0.5
    assert ID.hit_rate_at_penetration(o, 0.05) == 0.0  # floor(0.5) = 0 candidates kept


def test_penetration_by_threshold_hand_computed():
    s = np.array([[0.9, 0.1], [0.2, 0.3]])
    t, pen, hit = ID.hit_penetration_by_threshold(s, np.array([0, 1]))
    assert t.tolist() == [0.1, 0.2, 0.3, 0.9, np.inf]
    assert pen.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert hit.tolist() == [1.0, 1.0, 1.0, 0.5, 0.0]


# --------------------------------------------------------------------------- bad input

def test_bad_inputs_are_named():
    with pytest.raises(InvalidInputError, match="mated: expected 0 \\(impostor\\) or 1"):
        ID.outcomes_from_rows(["a"], [0.3], [2])
    with pytest.raises(InvalidInputError, match="score: expected finite scores"):
        ID.outcomes_from_rows(["a", "a"], [0.3, float("nan")], [1, 0])
    with pytest.raises(InvalidInputError, match="score: expected at least one score"):
        ID.outcomes_from_rows([], [], [])
    with pytest.raises(InvalidInputError, match="probe_mated: expected one value on every row"):
        ID.outcomes_from_rows(["a", "a"], [0.3, 0.2], [0, 0], [1, 0])
    with pytest.raises(InvalidInputError, match="probe_mated: expected 1 for a probe with a mated row"):
        ID.outcomes_from_rows(["a"], [0.3], [1], [0])
    with pytest.raises(InvalidInputError, match="at least one mated search"):
        ID.cmc(ID.outcomes_from_rows(["a"], [0.3], [0]))
    with pytest.raises(InvalidInputError, match="at least one non-mated search"):
        ID.fnir_at_fpir(ID.outcomes_from_rows(["a"], [0.3], [1]), 0.1)
    with pytest.raises(InvalidInputError, match="gallery_size"):
        ID.penetration_curve(ID.outcomes_from_rows(["a"], [0.3], [1]))
    with pytest.raises(InvalidInputError, match="mate: expected gallery indices"):
        ID.outcomes_from_matrix(np.zeros((2, 2)), np.array([0, 5]))
    with pytest.raises(InvalidInputError, match="fpir"):
        ID.fnir_at_fpir(ID.SearchOutcomes(np.array([1]), np.array([1.0]), np.array([0.0])), 2.0)
