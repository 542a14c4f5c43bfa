"""Error rates against a slow, obviously correct reference and hand-computed cases."""

import math

import numpy as np
import pytest

from biomatch.errors import InvalidInputError
from biomatch.evaluate import metrics as M


# --------------------------------------------------------------------------- slow reference

def ref_rates(genuine, impostor, t):
    fmr = sum(1 for s in impostor if s >= t) / len(impostor)
    fnmr = sum(1 for s in genuine if s < t) / len(genuine)
    return fmr, fnmr


def ref_thresholds(genuine, impostor):
    """A superset of every useful threshold: scores, midpoints between them, and +-inf."""
    s = sorted(set(genuine) | set(impostor))
    mids = [(a + b) / 2 for a, b in zip(s, s[1:])]
    return sorted(set(s) | set(mids) | {-math.inf, math.inf})


def ref_eer(genuine, impostor):
    ts = ref_thresholds(genuine, impostor)
    rates = {t: ref_rates(genuine, impostor, t) for t in ts}
    t1 = max(t for t in ts if rates[t][1] <= rates[t][0])
    t2 = min(t for t in ts if rates[t][1] >= rates[t][0])
    fmr1, fnmr1 = rates[t1]
    fmr2, fnmr2 = rates[t2]
    lo, hi = (fnmr1, fmr1) if fnmr1 + fmr1 <= fmr2 + fnmr2 else (fmr2, fnmr2)
    return (lo + hi) / 2, lo, hi


def ref_fnmr_at(genuine, impostor, max_fmr):
    return min(fnmr for fmr, fnmr in (ref_rates(genuine, impostor, t) for t in ref_thresholds(genuine, impostor))
               if fmr <= max_fmr + 1e-12)


def ref_zero_fnmr(genuine, impostor):
    return min(fmr for fmr, fnmr in (ref_rates(genuine, impostor, t) for t in ref_thresholds(genuine, impostor))
               if fnmr == 0)


# --------------------------------------------------------------------------- hand-computed

def test_perfect_separation():
    m = M.compute_metrics([2, 3], [0, 1])
    assert (m.eer, m.eer_low, m.eer_high) == (0, 0, 0)
    assert m.fmr100 == m.fmr1000 == m.zerofmr == m.zerofnmr == 0


def test_identical_scores_give_half():
    # t=1: FMR 1, FNMR 0; t=inf: FMR 0, FNMR 1. Equal sums -> [FNMR(t1), FMR(t1)] = [0, 1].
    assert M.eer_interval([1.0], [1.0]) == (0.0, 1.0)
    assert M.eer([1.0], [1.0]) == 0.5
    assert M.zero_fmr([1.0], [1.0]) == 1.0
    assert M.zero_fnmr([1.0], [1.0]) == 1.0


def test_ties_accept_at_threshold():
    # score >= t accepts: an impostor tied with a genuine is accepted with it.
    c = M.error_curves([1, 2], [2, 0])
    assert c.thresholds.tolist() == [0, 1, 2, math.inf]
    assert c.fmr.tolist() == [1.0, 0.5, 0.5, 0.0]
    assert c.fnmr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert M.eer([1, 2], [2, 0]) == 0.5
    assert M.zero_fnmr([1, 2], [2, 0]) == 0.5
    assert M.fnmr_at_fmr([1, 2], [2, 0], 0.01) == 1.0


def test_eer_interval_when_curves_cross_between_scores():
    # thresholds .2 .5 .6 .7 .8 inf; FMR 1 2/3 2/3 1/3 0 0; FNMR 0 0 .5 .5 .5 1
    # t1 = .6 (sum 7/6), t2 = .7 (sum 5/6) -> interval [FMR(t2), FNMR(t2)] = [1/3, 1/2]
    g, i = [0.5, 0.8], [0.2, 0.6, 0.7]
    lo, hi = M.eer_interval(g, i)
    assert lo == pytest.approx(1 / 3) and hi == pytest.approx(1 / 2)
    assert M.eer(g, i) == pytest.approx(5 / 12)


def test_fmr100_needs_fmr_at_most_one_percent():
    # 100 impostors at 0..99 (one per score), genuine at 98.5 and 50.5:
    # FMR <= 1% needs t > 98, i.e. t in (98, 99] -> FMR 1/100, FNMR 1/2 (50.5 rejected).
    imp = np.arange(100.0)
    gen = [98.5, 50.5]
    assert M.fnmr_at_fmr(gen, imp, 0.01) == 0.5
    assert M.fnmr_at_fmr(gen, imp, 0.001) == 1.0  # FMR 0 only above every impostor
    m = M.compute_metrics(gen, imp)
    assert m.fmr100 == 0.5 and m.fmr1000 == 1.0 and m.fmr10000 == 1.0 and m.zerofmr == 1.0


def test_det_points_monotone_and_complete():
    fmr, fnmr = M.det_points([0.9, 0.8, 0.4], [0.1, 0.5, 0.2])
    assert fmr[0] == 1 and fnmr[0] == 0 and fmr[-1] == 0 and fnmr[-1] == 1
    assert np.all(np.diff(fmr) <= 0) and np.all(np.diff(fnmr) >= 0)


# --------------------------------------------------------------------------- against the reference

@pytest.mark.parametrize("seed", range(25))
def test_against_reference(seed):
    rng = np.random.default_rng(seed)
    g = np.round(rng.normal(2.0, 1.0, rng.integers(1, 40)), 1)   # rounding makes many ties
    i = np.round(rng.normal(0.0, 1.0, rng.integers(1, 120)), 1)
    g, i = g.tolist(), i.tolist()
    m = M.compute_metrics(g, i)
    e, lo, hi = ref_eer(g, i)
    assert (m.eer, m.eer_low, m.eer_high) == pytest.approx((e, lo, hi))
    assert m.fmr100 == pytest.approx(ref_fnmr_at(g, i, 0.01))
    assert m.fmr1000 == pytest.approx(ref_fnmr_at(g, i, 0.001))
    assert m.zerofmr == pytest.approx(ref_fnmr_at(g, i, 0.0))
    assert m.zerofnmr == pytest.approx(ref_zero_fnmr(g, i))
    assert lo <= m.eer <= hi
    assert M.eer(g, i) == m.eer


def test_integer_and_float_inputs_agree():
    g, i = [5, 7, 9], [1, 5, 6]
    assert M.compute_metrics(g, i) == M.compute_metrics(np.array(g, np.float32), np.array(i, np.int64))


def test_swapping_labels_is_not_symmetric_but_bounded():
    rng = np.random.default_rng(1)
    g, i = rng.normal(1, 1, 50), rng.normal(0, 1, 50)
    assert M.eer(g, i) < 0.5 < M.eer(i, g)


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("bad, fragment", [
    ([], "empty"),
    ([1.0, float("nan")], "NaN"),
    ([1.0, float("inf")], "NaN or infinity"),
    ([[1.0, 2.0]], "1-d"),
    (["a", "b"], "dtype"),
    ([True, False], "dtype"),
])
@pytest.mark.parametrize("which", ["genuine", "impostor"])
def test_invalid_input_names_the_argument(bad, fragment, which):
    args = {"genuine": [1.0, 2.0], "impostor": [0.0, 1.0]}
    args[which] = bad
    with pytest.raises(InvalidInputError) as exc:
        M.compute_metrics(args["genuine"], args["impostor"])
    assert which in str(exc.value) and fragment in str(exc.value)


@pytest.mark.parametrize("rate", [-0.1, 1.5, "x", True])
def test_fnmr_at_fmr_rejects_bad_rate(rate):
    with pytest.raises(InvalidInputError, match="max_fmr"):
        M.fnmr_at_fmr([1.0], [0.0], rate)


# --------------------------------------------------------------------------- issue 6 additions

def test_no_impostors_is_a_clear_error():
    with pytest.raises(InvalidInputError, match="impostor: expected at least one score, got 'an empty array'"):
        M.eer([0.5, 0.7], [])


def test_single_genuine():
    # One genuine at 0.6 among impostors 0.1 .. 0.9: t=0.6 -> FMR 4/9, FNMR 0; t=0.7 -> FMR 3/9, FNMR 1.
    imp = np.round(np.arange(1, 10) / 10, 1)
    m = M.compute_metrics([0.6], imp)
    # t1 = 0.6 (sum 4/9), t2 = 0.7 (sum 12/9): interval [FNMR(t1), FMR(t1)] = [0, 4/9]
    assert (m.eer_low, m.eer_high) == pytest.approx((0.0, 4 / 9))
    assert m.zerofnmr == pytest.approx(4 / 9) and m.zerofmr == 1.0
    assert (m.n_genuine, m.n_impostor) == (1, 9)


def test_all_equal_scores():
    m = M.compute_metrics([3.0] * 4, [3.0] * 7)
    assert (m.eer, m.fmr100, m.zerofmr, m.zerofnmr) == (0.5, 1.0, 1.0, 1.0)


def test_fmr10000_needs_ten_thousand_impostors():
    imp = np.arange(20000.0)
    gen = [19998.5, 19999.5, 100.0]
    # FMR <= 1e-4 allows 2 impostors >= t: t in (19997, 19998] -> genuine 100 rejected.
    assert M.compute_metrics(gen, imp).fmr10000 == pytest.approx(1 / 3)
    assert M.fnmr_at_fmr(gen, imp, 1e-4) == pytest.approx(1 / 3)


def test_roc_points_hand_computed():
    fmr, tmr = M.roc_points([3, 4], [1, 3])
    assert fmr.tolist() == [0.0, 0.0, 0.5, 1.0] and tmr.tolist() == [0.0, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("seed", range(10))
def test_roc_against_reference(seed):
    rng = np.random.default_rng(seed)
    g = np.round(rng.normal(1, 1, rng.integers(1, 30)), 1).tolist()
    i = np.round(rng.normal(0, 1, rng.integers(1, 60)), 1).tolist()
    fmr, tmr = M.roc_points(g, i)
    ts = sorted(set(g) | set(i) | {math.inf}, reverse=True)
    ref = [ref_rates(g, i, t) for t in ts]
    assert fmr.tolist() == pytest.approx([r[0] for r in ref])
    assert tmr.tolist() == pytest.approx([1 - r[1] for r in ref])


def test_weighted_curves_equal_repeated_scores():
    g, i = np.array([0.2, 0.5, 0.9]), np.array([0.1, 0.5, 0.3, 0.2])
    wg, wi = np.array([2.0, 0.0, 1.0]), np.array([1.0, 3.0, 0.0, 1.0])
    t = np.append(np.unique(np.concatenate([g, i])), np.inf)
    c = M.weighted_error_curves(t, np.searchsorted(t, g), wg, np.searchsorted(t, i), wi)
    ref = M.error_curves(np.repeat(g, wg.astype(int)), np.repeat(i, wi.astype(int)))
    at = np.searchsorted(t, ref.thresholds)
    assert c.fmr[at].tolist() == pytest.approx(ref.fmr.tolist())
    assert c.fnmr[at].tolist() == pytest.approx(ref.fnmr.tolist())
    assert M.weighted_error_curves(t, np.searchsorted(t, g), 0 * wg, np.searchsorted(t, i), wi) is None


def test_split_scores_and_labels():
    g, i = M.split_scores([0.9, 0.1, 0.8], [1, 0, True])
    assert g.tolist() == [0.9, 0.8] and i.tolist() == [0.1]


@pytest.mark.parametrize("labels, fragment", [
    ([1, 2, 0], "labels: expected 0 (impostor) or 1 (genuine), got '2 at index 1'"),
    ([1, 0], "labels.shape: expected (3,) like the scores"),
    (["1", "0", "1"], "labels.dtype"),
    ([1.0, 0.5, 0.0], "got '0.5 at index 1'"),
])
def test_bad_labels_are_named(labels, fragment):
    with pytest.raises(InvalidInputError) as exc:
        M.split_scores([0.9, 0.1, 0.8], labels)
    assert fragment in str(exc.value)


def test_nan_score_is_named_with_its_index():
    with pytest.raises(InvalidInputError, match=r"scores: expected finite scores \(no NaN or infinity\), got 'nan at index 1'"):
        M.split_scores([0.9, float("nan")], [1, 0])
