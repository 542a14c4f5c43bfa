"""Fusion and decision: evidence from the run-time calibration table, missing fingers, thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biomatch import decide
from biomatch.errors import InvalidInputError


def test_evidence_follows_the_calibration_table_read_at_run_time(monkeypatch):
    from biomatch import match

    table = {0.01: 0.2, 0.001: 0.3, 0.0001: 0.4}
    monkeypatch.setattr(match, "SCORE_AT_FMR", table)
    e = decide.finger_evidence([0.0, 0.2, 0.3, 0.35, 0.4, 5.0])
    assert e[0] == 0 and e[1] == pytest.approx(2) and e[2] == pytest.approx(3) and e[3] == pytest.approx(3.5)
    assert e[-1] == decide.DecisionParams().finger_evidence_max_decades
    assert np.all(np.diff(e) >= 0)


def test_fusion_is_a_gamma_tail_and_ignores_missing_fingers():
    p = decide.DecisionParams(score_at_fmr=((0.01, 0.2), (0.001, 0.3)))
    # one finger: the fused score is its evidence
    assert decide.fuse({1: 0.3}, p) == pytest.approx(3.0)
    # two fingers of 3 decades: P(S >= 6) = 10^-6 (1 + 6 ln10)
    want = 6 - math.log10(1 + 6 * math.log(10))
    assert decide.fuse({1: 0.3, 6: 0.3}, p) == pytest.approx(want)
    assert decide.fuse({}, p) == 0.0
    # adding an uninformative finger lowers the fused score (more chances for an impostor)
    assert decide.fuse({1: 0.3, 6: 0.3, 7: 0.0}, p) < decide.fuse({1: 0.3, 6: 0.3}, p)


def test_thresholds_from_target_fpir():
    p = decide.DecisionParams(duplicate_fpir=1e-3, review_fpir=1e-2, gallery_size_floor=10)
    th = decide.thresholds(100_000, p)
    assert th.duplicate_score == pytest.approx(8.0) and th.review_score == pytest.approx(7.0)
    assert decide.thresholds(1, p).gallery_size == 10
    assert decide.decide(8.1, th) == "DUPLICATE" and decide.decide(7.5, th) == "REVIEW"
    assert decide.decide(1.0, th) == "UNIQUE"


@pytest.mark.parametrize("kwargs", [dict(duplicate_fpir=0), dict(review_fpir=1e-4), dict(gallery_size_floor=0),
                                    dict(fingers_correlation_discount=0), dict(max_candidates=0)])
def test_bad_decision_params(kwargs):
    with pytest.raises(InvalidInputError):
        decide.DecisionParams(**kwargs)


def test_params_json_round_trip():
    from biomatch.params import from_json, to_json

    p = decide.DecisionParams(score_at_fmr=((0.01, 0.2), (0.001, 0.3)))
    assert from_json(to_json(p), decide.DecisionParams) == p


def test_calibrate_from_impostor_scores():
    rng = np.random.default_rng(0)
    imp = rng.normal(0.013, 0.002, 100_000)
    table = decide.calibrate(imp)
    assert [f for f, _ in table] == [0.01, 0.001, 0.0001]
    p = decide.DecisionParams(score_at_fmr=table)
    e = decide.finger_evidence(imp, p)
    assert np.mean(e >= 3) == pytest.approx(1e-3, rel=0.3)
    with pytest.raises(InvalidInputError):
        decide.calibrate(imp[:10])


@pytest.mark.parametrize("field", ["score_at_fmr", "face_score_at_fmr"])
@pytest.mark.parametrize("table", [((0.01, 0.3),), ((0.01, 0.3), (0.001, 0.2)), (("x", 1),), 5])
def test_bad_calibration_tables_refused_at_construction(field, table):
    from biomatch.decide import DecisionParams
    from biomatch.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=field):
        DecisionParams(**{field: table})
