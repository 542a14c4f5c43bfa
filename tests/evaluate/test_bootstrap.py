"""Subject bootstrap: replicates equal explicit resampling, reproducible with a seed; rule of 3."""

import numpy as np
import pytest

from biomatch.errors import InvalidInputError
from biomatch.evaluate import bootstrap as B
from biomatch.evaluate import metrics as M


def data(seed=0, n_subj=12):
    rng = np.random.default_rng(seed)
    gs = np.repeat(np.arange(n_subj), 3)                      # 3 genuine pairs per subject
    g = np.round(rng.normal(2.0, 1.0, gs.size) + rng.normal(0, 0.7, n_subj)[gs], 2)  # correlated per subject
    a, b = np.triu_indices(n_subj, 1)
    isub = np.stack([a, b], axis=1)
    i = np.round(rng.normal(0.0, 1.0, a.size), 2)
    return g, i, gs, isub


def ref_replicates(g, i, gs, isub, statistic, n_boot, seed):
    """Explicit resampling: draw subjects, then repeat every comparison by its multiplicity."""
    names = np.unique(np.concatenate([gs.astype(str).ravel(), isub.astype(str).ravel()]))
    code = {n: k for k, n in enumerate(names)}
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        draw = rng.integers(0, names.size, names.size)
        c = np.bincount(draw, minlength=names.size)
        gg = [s for s, subj in zip(g, gs) if True for _ in range(c[code[str(subj)]])]
        ii = [s for s, (x, y) in zip(i, isub) for _ in range(c[code[str(x)]] * c[code[str(y)]])]
        if gg and ii:
            out.append(statistic(gg, ii))
    return out


def test_replicates_equal_explicit_resampling():
    g, i, gs, isub = data()
    r = B.Resampler(g, i, gs, isub, seed=3)
    fast = B.bootstrap_statistic(r, lambda c: sum(M._eer_interval(c)) / 2, 30)
    slow = ref_replicates(g, i, gs, isub, M.eer, 30, 3)
    assert fast == pytest.approx(slow)
    r = B.Resampler(g, i, gs, isub, seed=4)
    fast = B.bootstrap_statistic(r, lambda c: float(B._fnmr_at(c, 0.05)), 30)
    slow = ref_replicates(g, i, gs, isub, lambda a, b: M.fnmr_at_fmr(a, b, 0.05), 30, 4)
    assert fast == pytest.approx(slow)


def test_one_subject_per_impostor_comparison():
    g, i, gs, isub = data(1)
    r = B.Resampler(g, i, gs, isub[:, 0], seed=0)
    wg, wi = r.weights()
    assert wi.shape == i.shape and wg.shape == g.shape
    # Each comparison's weight is its subject's multiplicity: equal within a subject.
    for s in np.unique(gs):
        assert np.unique(wg[gs == s]).size == 1


def test_reproducible_with_seed_and_varies_without():
    g, i, gs, isub = data(2)
    a = B.eer_ci(g, i, genuine_subjects=gs, impostor_subjects=isub, n_boot=200, seed=7)
    b = B.eer_ci(g, i, genuine_subjects=gs, impostor_subjects=isub, n_boot=200, seed=7)
    c = B.eer_ci(g, i, genuine_subjects=gs, impostor_subjects=isub, n_boot=200, seed=8)
    assert a == b and a.as_list() != c.as_list()
    assert a.low <= a.estimate <= a.high and a.method == "bootstrap-subjects" and a.n_boot == 200
    assert a.estimate == M.eer(g, i)


def test_subjects_widen_the_interval_when_comparisons_correlate():
    rng = np.random.default_rng(5)
    n = 40
    gs = np.repeat(np.arange(n), 10)
    g = rng.normal(2.5, 0.3, gs.size) + rng.normal(0, 1.0, n)[gs]  # strong per-subject effect
    isub = np.repeat(np.arange(n), 50)
    i = rng.normal(0, 1, isub.size)
    by_subject = B.eer_ci(g, i, genuine_subjects=gs, impostor_subjects=isub, n_boot=300)
    by_comparison = B.eer_ci(g, i, n_boot=300)
    assert by_comparison.method == "bootstrap-comparisons"
    assert (by_subject.high - by_subject.low) > 1.3 * (by_comparison.high - by_comparison.low)


def test_percentile_interval_is_the_quantile_of_replicates():
    g, i, gs, isub = data(3)
    ci = B.fnmr_at_fmr_ci(g, i, 0.1, genuine_subjects=gs, impostor_subjects=isub, n_boot=100, seed=1)
    reps = B.bootstrap_statistic(B.Resampler(g, i, gs, isub, 1), lambda c: float(B._fnmr_at(c, 0.1)), 100)
    assert (ci.low, ci.high) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])))
    assert ci.estimate == M.fnmr_at_fmr(g, i, 0.1)


def test_rule_of_three():
    assert B.rule_of_three(3000) == pytest.approx(3 / 3000, rel=0.002)
    assert B.rule_of_three(1) == pytest.approx(0.95)
    assert B.rule_of_three(100, level=0.99) == pytest.approx(1 - 0.01 ** (1 / 100))


def test_no_error_observed_gives_rule_of_three_bound():
    g, i = np.arange(10.0, 30.0), np.arange(0.0, 8.0)   # perfectly separated
    ci = B.eer_ci(g, i, n_boot=50)
    assert ci.method == "rule-of-3" and ci.estimate == 0 and ci.low == 0
    assert ci.high == pytest.approx(B.rule_of_three(8))
    ci = B.fnmr_at_fmr_ci(g, i, 0.001, n_boot=50)
    assert ci.method == "rule-of-3" and ci.high == pytest.approx(B.rule_of_three(20))


def test_det_band_contains_the_curve():
    g, i, gs, isub = data(4, 30)
    band = B.det_band(g, i, genuine_subjects=gs, impostor_subjects=isub, n_boot=100)
    assert band.fmr.shape == band.low.shape == band.high.shape == band.fnmr.shape
    assert (band.low <= band.high).all()
    assert band.fmr[0] == pytest.approx(1 / i.size) and band.fmr[-1] == 1.0


@pytest.mark.parametrize("kwargs, fragment", [
    ({"genuine_subjects": [1, 2]}, "both or neither"),
    ({"genuine_subjects": [1, 2], "impostor_subjects": [1]}, "impostor_subjects.shape: expected (2,) or (2, 2)"),
    ({"genuine_subjects": [1], "impostor_subjects": [1, 2]}, "genuine_subjects.shape: expected (2,)"),
    ({"n_boot": 0}, "n_boot: expected an int >= 1"),
    ({"level": 1.0}, "level: expected a confidence level"),
    ({"seed": -1}, "seed: expected an int >= 0 or None"),
])
def test_bad_arguments_are_named(kwargs, fragment):
    with pytest.raises(InvalidInputError) as exc:
        B.eer_ci([1.0, 2.0], [0.0, 1.5], **kwargs)
    assert fragment in str(exc.value)


def test_nan_and_empty_scores_are_refused():
    with pytest.raises(InvalidInputError, match="genuine: expected finite"):
        B.eer_ci([1.0, float("nan")], [0.0])
    with pytest.raises(InvalidInputError, match="impostor: expected at least one score"):
        B.eer_ci([1.0], [])


def test_metrics_ci_agrees_with_the_single_intervals():
    g, i, gs, isub = data(6, 20)
    kw = dict(genuine_subjects=gs, impostor_subjects=isub, n_boot=150, seed=2)
    all_ = B.metrics_ci(g, i, fmrs=[("fmr20", 0.2), ("fmr5", 0.05)], **kw)
    assert all_["eer"] == B.eer_ci(g, i, **kw)
    assert all_["fmr5"] == B.fnmr_at_fmr_ci(g, i, 0.05, **kw)
    assert all_["fmr20"] == B.fnmr_at_fmr_ci(g, i, 0.2, **kw)
