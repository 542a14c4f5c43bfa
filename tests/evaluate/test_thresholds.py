"""Thresholds at a target FMR / FPIR and calibration tables: reference, hand cases, round trip."""

import math

import numpy as np
import pytest

from biomatch.errors import BiomatchError, InvalidInputError
from biomatch.evaluate import thresholds as T
from biomatch.evaluate.bootstrap import rule_of_three


def ref_threshold(impostor, target):
    """Smallest t with #{>= t} / I <= target, among the lowest score and every score's successor."""
    u = sorted(set(impostor))
    for t in [u[0]] + [math.nextafter(x, math.inf) for x in u]:
        if sum(1 for s in impostor if s >= t) / len(impostor) <= target + 1e-12:
            return t


@pytest.mark.parametrize("seed", range(20))
def test_against_reference(seed):
    rng = np.random.default_rng(seed)
    imp = np.round(rng.normal(0, 1, rng.integers(1, 80)), 1).tolist()
    for target in (0.0, 0.01, 0.05, 0.2, 0.5, 1.0):
        c = T.threshold_at_fmr(imp, target)
        assert c.threshold == ref_threshold(imp, target)
        assert c.fmr == sum(1 for s in imp if s >= c.threshold) / len(imp) <= target + 1e-12


@pytest.mark.parametrize("seed", range(20))
def test_fnmr_at_the_threshold_is_the_metric(seed):
    from biomatch.evaluate.metrics import fnmr_at_fmr

    rng = np.random.default_rng(seed)
    g = np.round(rng.normal(2, 1, rng.integers(1, 40)), 1)
    imp = np.round(rng.normal(0, 1, rng.integers(1, 200)), 1)
    for target in (0.0, 0.01, 0.1, 0.3):
        assert T.threshold_at_fmr(imp, target, genuine=g).fnmr == pytest.approx(fnmr_at_fmr(g, imp, target))


def test_hand_computed_with_ties():
    imp = [1, 2, 3, 3, 4]
    c = T.threshold_at_fmr(imp, 0.6, genuine=[2.5, 3, 5])
    assert (c.threshold, c.fmr, c.resolved) == (np.nextafter(2, 3), 0.6, True)   # 3, 3 and 4 accepted
    assert c.fnmr == 0.0                                                         # 2.5 accepted too
    c = T.threshold_at_fmr(imp, 0.5)                                 # the tie at 3 forbids accepting 3
    assert (c.threshold, c.fmr) == (np.nextafter(3, 4), 0.2)
    assert T.threshold_at_fmr(imp, 1.0).threshold == 1.0


def test_target_below_resolution_is_flagged():
    c = T.threshold_at_fmr([0.1, 0.2, 0.3], 1e-4)
    assert not c.resolved and c.fmr == 0.0 and c.threshold > 0.3
    assert c.threshold == np.nextafter(0.3, np.inf)
    assert c.fmr_upper == pytest.approx(rule_of_three(3))


def test_all_equal_impostors():
    c = T.threshold_at_fmr([2.0] * 10, 0.5)
    assert c.threshold > 2.0 and c.fmr == 0.0 and not c.resolved
    assert T.threshold_at_fmr([2.0] * 10, 1.0).threshold == 2.0


def test_fmr_upper_is_clopper_pearson():
    from scipy.stats import beta

    c = T.threshold_at_fmr(np.arange(1000.0), 0.01)
    assert c.fmr == 0.01 and c.fmr_upper == pytest.approx(beta.ppf(0.95, 11, 990))


def test_bootstrap_interval_of_the_threshold_is_reproducible():
    rng = np.random.default_rng(0)
    imp = rng.normal(0, 1, 2000)
    subj = np.repeat(np.arange(100), 20)
    a = T.threshold_at_fmr(imp, 0.01, impostor_subjects=subj, n_boot=200, seed=1)
    b = T.threshold_at_fmr(imp, 0.01, impostor_subjects=subj, n_boot=200, seed=1)
    assert a == b and a.ci.low <= a.threshold <= a.ci.high and a.ci.method == "bootstrap-subjects"
    assert 2.0 < a.threshold < 2.7   # the normal 99th percentile is 2.33


def test_threshold_at_fpir():
    # 4 non-mated searches, one with an empty list (-inf): FPIR <= 0.25 allows one top score >= t.
    c = T.threshold_at_fpir([0.5, 0.2, 0.7, -np.inf], 0.25, mated_scores=[0.9, 0.6, -np.inf])
    assert c.threshold == np.nextafter(0.5, 1) and c.fmr == 0.25 and c.n_impostor == 4
    assert c.fnmr == pytest.approx(1 / 3)   # the missing mate only


def test_calibration_table_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    imp, gen = rng.normal(0, 1, 5000), rng.normal(3, 1, 500)
    table = T.calibration_table(imp, gen, matcher="biomatch test", dataset="normal(0,1)")
    assert table.fmr_targets[0] == 0.5 and min(table.fmr_targets) == 2e-4 == 1 / 5000
    assert list(table.thresholds) == sorted(table.thresholds)
    for row in table.rows():
        assert row["fmr"] <= row["fmr_target"] + 1e-12
        assert table.fmr_at(row["threshold"]) == pytest.approx(row["fmr"])
        assert table.threshold_for(row["fmr_target"]) == row["threshold"]
    assert table.threshold_for(0.003) == table.threshold_for(0.002)   # the safe side
    path = table.save(tmp_path / "cal.json")
    again = T.CalibrationTable.load(path)
    assert again == table
    no_genuine = T.calibration_table(imp, fmr_targets=[0.1, 0.01])
    assert math.isnan(T.CalibrationTable.from_json(no_genuine.to_json()).fnmr[0])


def test_calibration_table_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="fmr_targets: expected rates >= 1/I"):
        T.calibration_table(np.arange(100.0), fmr_targets=[1e-3])
    bad = tmp_path / "bad.json"
    bad.write_text("{\"version\": 2}")
    with pytest.raises(BiomatchError, match="calibration table"):
        T.CalibrationTable.load(bad)
    with pytest.raises(BiomatchError, match="cannot read"):
        T.CalibrationTable.load(tmp_path / "missing.json")


@pytest.mark.parametrize("args, fragment", [
    (([], 0.1), "impostor: expected at least one score"),
    (([0.1, float("nan")], 0.1), "impostor: expected finite"),
    (([0.1], 1.5), "fmr: expected a rate in [0, 1]"),
    (([0.1], -0.1), "fmr: expected a rate in [0, 1]"),
])
def test_bad_input(args, fragment):
    with pytest.raises(InvalidInputError) as exc:
        T.threshold_at_fmr(*args)
    assert fragment in str(exc.value)


@pytest.mark.parametrize("seed", range(5))
def test_round_up_stays_on_the_safe_side(seed):
    rng = np.random.default_rng(seed)
    for x in np.concatenate([rng.normal(0, 1, 200), 10.0 ** rng.uniform(-6, 4, 200), [0.1034, 1.0, -2.5]]):
        r = T.round_up(x)
        assert r >= x and len(f"{abs(r):.10e}".split("e")[0].rstrip("0").replace(".", "")) <= 4
        assert r - x <= 10.0 ** (math.floor(math.log10(abs(x))) - 3) * 1.0000001
    assert T.round_up(0.10333394259214402) == 0.1034 and T.round_up(0.1034) == 0.1034
